//! The third-party artifacts of realworld/manifest.tsv: each line's
//! artifact, fetched at run time into a cache outside the repository and
//! checked against its sha256.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::realkernel::workspace;
use crate::setup::{self, run};
use crate::Arch;

/// One line of the manifest.
pub struct Artifact {
    /// pypi, npm, deb (Debian 13) or deb12 (Debian 12).
    pub source: String,
    pub name: String,
    pub version: String,
    /// The Linux architecture its ELF files are for; `None` for Android
    /// packages (`android` in the manifest), whose libraries no kernel here
    /// can load (they need bionic): `cargo xtask android` proves those.
    pub arch: Option<Arch>,
    /// The file the source serves.
    pub file: String,
    pub sha256: String,
}

impl Artifact {
    /// A short directory name.
    pub fn id(&self) -> String {
        // No `/` (a path) and no `:` (LD_LIBRARY_PATH's separator; Debian epochs).
        format!("{}-{}", self.name.trim_start_matches('@').replace('/', "-"), self.version.replace(':', "_"))
    }
}

pub fn manifest() -> Result<Vec<Artifact>> {
    let path = workspace().join("realworld/manifest.tsv");
    let text = fs_err::read_to_string(&path)?;
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            anyhow::ensure!(f.len() == 6, "{}: bad line {l:?}", path.display());
            Ok(Artifact {
                source: f[0].into(),
                name: f[1].into(),
                version: f[2].into(),
                arch: match f[3] {
                    "android" => None,
                    name => Some(Arch::parse(name).with_context(|| format!("{}: unknown arch in {l:?}", path.display()))?),
                },
                file: f[4].into(),
                sha256: f[5].into(),
            })
        })
        .collect()
}

fn cache() -> PathBuf {
    setup::cache_dir().with_file_name("pagefit-realworld")
}

fn sha256_of(path: &Path) -> Result<String> {
    let mut hasher = Sha256::new();
    let mut file = fs_err::File::open(path)?;
    let mut buffer = vec![0; 1 << 20];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// The wheel's tags as pip's download options: python version, implementation, ABI, platform.
fn wheel_options(file: &str) -> Result<Vec<String>> {
    let stem = file.strip_suffix(".whl").context("not a wheel")?;
    let parts: Vec<&str> = stem.split('-').collect();
    let [.., python, abi, platform] = parts.as_slice() else { bail!("{file}: not a wheel name") };
    // A pure-Python tag (py3) fits any Python 3; pip needs one that meets Requires-Python.
    let mut options = match python.strip_prefix("cp") {
        Some(digits) => {
            let version = format!("{}.{}", &digits[..1], &digits[1..]);
            ["--python-version", &version, "--implementation", "cp", "--abi", abi].map(String::from).to_vec()
        }
        None => ["--python-version", "3.11"].map(String::from).to_vec(),
    };
    for tag in platform.split('.') {
        options.extend(["--platform".into(), tag.to_string()]);
    }
    Ok(options)
}

/// Fetches the artifact into the cache (once) and checks its sha256.
pub fn fetch(artifact: &Artifact) -> Result<PathBuf> {
    let dir = cache().join("downloads");
    fs_err::create_dir_all(&dir)?;
    let path = dir.join(&artifact.file);
    if !path.exists() || sha256_of(&path)? != artifact.sha256 {
        match artifact.source.as_str() {
            "pypi" => {
                let spec = format!("{}=={}", artifact.name, artifact.version);
                run(Command::new("python3")
                    .args(["-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "-d"])
                    .arg(&dir)
                    .args(wheel_options(&artifact.file)?)
                    .arg(spec))?;
            }
            "npm" => {
                run(Command::new("npm")
                    .args(["pack", "--silent", "--pack-destination"])
                    .arg(&dir)
                    .arg(format!("{}@{}", artifact.name, artifact.version))
                    .current_dir(&dir))?;
            }
            // Debian 13 through the machine's (pinned) sources; Debian 12 through a private configuration.
            "deb" | "deb12" => {
                let debian = artifact.arch.with_context(|| format!("{}: a Debian package needs an arch", artifact.file))?.debian();
                let spec = format!("{}:{debian}={}", artifact.name, artifact.version);
                let options = match artifact.source.as_str() {
                    "deb12" => setup::private_apt("bookworm", debian)?,
                    _ => Vec::new(),
                };
                run(Command::new("apt-get").args(&options).args(["download", "-q", &spec]).current_dir(&dir))?;
            }
            other => bail!("{}: unknown source {other}", artifact.file),
        }
    }
    let digest = sha256_of(&path).with_context(|| format!("{}: not fetched", artifact.file))?;
    anyhow::ensure!(digest == artifact.sha256, "{}: sha256 {digest}, the manifest says {}", artifact.file, artifact.sha256);
    Ok(path)
}
