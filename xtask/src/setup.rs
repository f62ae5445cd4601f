//! What the harness needs from the distribution: qemu, the cross compilers
//! and cpio through apt; Debian 13 kernels, busybox and Debian 11's glibc
//! through `apt-get download`. Downloads are cached outside the repository.
//! The mirror is whichever one the machine's apt sources already use.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::Arch;

/// Where kernels, busybox and glibc are cached.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PAGEFIT_REALKERNEL_CACHE") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cache"));
    base.join("pagefit-realkernel")
}

/// Runs a command, failing with its output when it fails.
pub fn run(command: &mut Command) -> Result<String> {
    let output = command.output().with_context(|| format!("cannot run {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn have(program: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {program}")]).output().is_ok_and(|o| o.status.success())
}

/// The Debian mirror the machine's apt sources use (never written into the repository).
fn mirror_uri() -> Result<String> {
    let mut texts = Vec::new();
    if let Ok(dir) = fs_err::read_dir("/etc/apt/sources.list.d") {
        for entry in dir.flatten() {
            texts.push(fs_err::read_to_string(entry.path()).unwrap_or_default());
        }
    }
    texts.push(fs_err::read_to_string("/etc/apt/sources.list").unwrap_or_default());
    for text in &texts {
        for line in text.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            let uri = match words.as_slice() {
                ["URIs:", uri, ..] => *uri,
                ["deb", rest @ ..] => rest.iter().find(|w| w.contains("://")).copied().unwrap_or(""),
                _ => continue,
            };
            if uri.ends_with("/debian") && !uri.contains("security") {
                return Ok(uri.to_string());
            }
        }
    }
    bail!("cannot find a Debian mirror in /etc/apt/sources.list or /etc/apt/sources.list.d")
}

const SOURCES_FILE: &str = "/etc/apt/sources.list.d/pagefit-realkernel.sources";
const PREFERENCES_FILE: &str = "/etc/apt/preferences.d/pagefit-realkernel";

/// Keeps the added trixie suite below the machine's own release, so that the
/// machine's ordinary `apt-get install` keeps taking its own packages (trixie's
/// arm64 index also lists every architecture-independent package). The
/// harness asks for trixie by name where it needs it.
const TRIXIE_PIN: &str = "Explanation: pagefit realkernel: trixie only where asked for by name\n\
                          Package: *\nPin: release n=trixie\nPin-Priority: 100\n";

/// The machine's own release (`VERSION_CODENAME` in /etc/os-release).
fn host_codename() -> String {
    let text = fs_err::read_to_string("/etc/os-release").unwrap_or_default();
    text.lines().find_map(|l| l.strip_prefix("VERSION_CODENAME=")).unwrap_or("").trim_matches('"').to_string()
}

/// Adds arm64 and ppc64el as foreign architectures with Debian 13's suite,
/// pinned below the machine's release, and bookworm-backports for the host's
/// qemu (the plain bookworm qemu conflicts with the installed qemu-utils), once.
fn add_apt_sources() -> Result<()> {
    if host_codename() != "trixie" && fs_err::read_to_string(PREFERENCES_FILE).ok().as_deref() != Some(TRIXIE_PIN) {
        fs_err::create_dir_all("/etc/apt/preferences.d")?;
        fs_err::write(PREFERENCES_FILE, TRIXIE_PIN).context("the apt pin needs root")?;
    }
    let already = fs_err::read_dir("/etc/apt/sources.list.d")?.flatten().any(|e| {
        fs_err::read_to_string(e.path()).is_ok_and(|t| t.contains("Suites: trixie") && t.contains("Architectures: arm64 ppc64el"))
    });
    if already {
        return Ok(());
    }
    eprintln!("realkernel: adding arm64/ppc64el (trixie, pinned to priority 100) and bookworm-backports apt sources");
    let uri = mirror_uri()?;
    run(Command::new("dpkg").args(["--add-architecture", "arm64"]))?;
    run(Command::new("dpkg").args(["--add-architecture", "ppc64el"]))?;
    let keyring = "/usr/share/keyrings/debian-archive-keyring.gpg";
    let text = format!(
        "Types: deb\nURIs: {uri}\nSuites: trixie\nComponents: main\nArchitectures: arm64 ppc64el\nSigned-By: {keyring}\n\n\
         Types: deb\nURIs: {uri}\nSuites: bookworm-backports\nComponents: main\nArchitectures: amd64\nSigned-By: {keyring}\n"
    );
    fs_err::write(SOURCES_FILE, text).context("the apt sources need root")?;
    run(Command::new("apt-get").args(["update", "-q"]))?;
    Ok(())
}

fn apt_install(packages: &[&str], backports: bool) -> Result<()> {
    eprintln!("realkernel: apt-get install {}", packages.join(" "));
    let mut command = Command::new("apt-get");
    command.env("DEBIAN_FRONTEND", "noninteractive").args(["install", "-y", "-q"]);
    if backports {
        command.args(["-t", "bookworm-backports"]);
    }
    run(command.args(packages))?;
    Ok(())
}

/// Installs qemu, the cross compilers and cpio where missing.
pub fn install_tools() -> Result<()> {
    add_apt_sources()?;
    let on_bookworm = host_codename() == "bookworm";
    for (program, package, backports) in [
        ("qemu-system-aarch64", "qemu-system-arm", on_bookworm),
        ("qemu-system-ppc64", "qemu-system-ppc", on_bookworm),
        ("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu", false),
        ("aarch64-linux-gnu-g++", "g++-aarch64-linux-gnu", false),
        ("powerpc64le-linux-gnu-gcc", "gcc-powerpc64le-linux-gnu", false),
        ("powerpc64le-linux-gnu-g++", "g++-powerpc64le-linux-gnu", false),
        ("arm-linux-gnueabihf-gcc", "gcc-arm-linux-gnueabihf", false),
        ("arm-linux-gnueabihf-g++", "g++-arm-linux-gnueabihf", false),
        ("cpio", "cpio", false),
    ] {
        if !have(program) {
            apt_install(&[package], backports)?;
        }
    }
    Ok(())
}

/// The package names of an `apt-cache search --names-only` listing, newest first.
pub fn newest_first(listing: &str) -> Vec<String> {
    let mut names: Vec<String> = listing.lines().filter_map(|l| l.split_whitespace().next()).map(str::to_string).collect();
    names.sort_by_key(|name| std::cmp::Reverse(version_key(name)));
    names.dedup();
    names
}

/// Orders package names by the numbers in them, like `sort -V`.
fn version_key(name: &str) -> Vec<u64> {
    name.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).filter_map(|s| s.parse().ok()).collect()
}

/// Downloads the first of `candidates` (newest first) that the mirror
/// serves, unpacked into `dir`, and returns its name. A mirror's index can
/// list files it does not serve, so each failure is reported and the next
/// candidate tried; when none downloads, one line names them all.
pub fn fetch_first(candidates: &[String], architecture: &str, dir: &Path) -> Result<String> {
    let mut failures = Vec::new();
    for package in candidates {
        match fetch_deb(&format!("{package}:{architecture}"), dir, &[]) {
            Ok(()) => return Ok(package.clone()),
            Err(e) => {
                let reason = last_error_line(&format!("{e:#}"));
                eprintln!("realkernel: {package}:{architecture} did not download ({reason}); trying the next version");
                failures.push(format!("{package} ({reason})"));
            }
        }
    }
    if failures.is_empty() {
        bail!("no candidate packages for {}: are the trixie sources reachable?", dir.display());
    }
    bail!("none of the {architecture} packages downloaded: {}", failures.join(", "))
}

/// The line of apt's output that says why, such as "404  Not Found".
fn last_error_line(text: &str) -> String {
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let why = lines.iter().rev().find(|l| l.starts_with("E:") || l.starts_with("Err:")).or(lines.last()).copied().unwrap_or("no output");
    why.chars().take(200).collect()
}

/// Downloads `package` with `apt-get download` (extra `apt_options` select a
/// private configuration) and unpacks it into `dir`, unless already there.
fn fetch_deb(package: &str, dir: &Path, apt_options: &[String]) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    eprintln!("realkernel: apt-get download {package}");
    let download = dir.with_extension("download");
    let _ = fs_err::remove_dir_all(&download);
    fs_err::create_dir_all(&download)?;
    run(Command::new("apt-get").args(apt_options).args(["download", package]).current_dir(&download))?;
    let unpacked = dir.with_extension("part");
    let _ = fs_err::remove_dir_all(&unpacked);
    for deb in fs_err::read_dir(&download)?.flatten() {
        run(Command::new("dpkg-deb").arg("-x").arg(deb.path()).arg(&unpacked))?;
    }
    fs_err::rename(&unpacked, dir)?;
    fs_err::remove_dir_all(&download)?;
    Ok(())
}

/// The kernel image for `arch` at `page_size` ("4k", "16k" or "64k"), downloading it when missing.
pub fn kernel(arch: Arch, page_size: &str) -> Result<PathBuf> {
    let arch = arch.kernel_arch();
    let flavour = match (arch, page_size) {
        (Arch::Aarch64, "16k") => "arm64-16k-unsigned",
        (Arch::Aarch64, "4k") => "arm64-unsigned",
        (Arch::Ppc64le, "64k") => "powerpc64le-64k",
        (Arch::Ppc64le, "4k") => "powerpc64le",
        _ => bail!("no {page_size} kernel for {}", arch.name()),
    };
    let dir = cache_dir().join(arch.name()).join(format!("kernel-{page_size}"));
    if !dir.is_dir() {
        let pattern = format!("^linux-image-[0-9.]+\\+deb13-{flavour}$");
        let listing = run(Command::new("apt-cache").args(["search", "--names-only", &pattern]))?;
        let package = fetch_first(&newest_first(&listing), arch.debian(), &dir)?;
        eprintln!("realkernel: {} {page_size} kernel: {package}", arch.name());
    }
    let boot = dir.join("boot");
    let image = fs_err::read_dir(&boot)
        .with_context(|| format!("{} has no boot/", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("vmlinu")));
    image.with_context(|| format!("no kernel image in {}", boot.display()))
}

/// Debian 13's static busybox for `arch`, asked for by release: the pin
/// would otherwise take bookworm's, which lives in /bin.
pub fn busybox(arch: Arch) -> Result<PathBuf> {
    let arch = arch.kernel_arch();
    let dir = cache_dir().join(arch.name()).join("busybox");
    fetch_deb(&format!("busybox-static:{}/trixie", arch.debian()), &dir, &[])?;
    Ok(dir.join("usr/bin/busybox"))
}

/// Libraries of the cross glibc (and the C++ runtime) the VM's programs need.
pub const GLIBC_LIBS: &[&str] = &["libc.so.6", "libm.so.6", "libgcc_s.so.1", "libstdc++.so.6", "libpthread.so.0", "libdl.so.2"];

/// Fills [`Arch::vm_sysroot`] for armhf: Debian's armhf glibc, each file
/// that is not ok at the big page fixed by `pagefit` (the dynamic linker by
/// merge, since it relocates itself; the libraries by rebase or relayout).
pub fn prepare_vm_sysroot(arch: Arch, pagefit: &Path) -> Result<()> {
    if arch.vm_sysroot() == arch.sysroot() {
        return Ok(());
    }
    let lib = arch.vm_sysroot().join("lib");
    let _ = fs_err::remove_dir_all(&lib);
    fs_err::create_dir_all(&lib)?;
    for name in GLIBC_LIBS.iter().copied().chain([arch.interpreter().1]) {
        let source = arch.sysroot().join("lib").join(name);
        fs_err::copy(fs_err::canonicalize(&source)?, lib.join(name))?;
        let checked = Command::new(pagefit).args(["check", "--page-size", arch.big_page()]).arg(lib.join(name)).output()?;
        if checked.status.code() == Some(1) {
            run(Command::new(pagefit).args(["fix", "--page-size", arch.big_page(), "--in-place"]).arg(lib.join(name)))?;
        }
    }
    Ok(())
}

/// apt options for a private configuration that reads one Debian `suite`
/// for one architecture, so the suite stays out of the machine's sources and
/// pins; its package lists are fetched once.
pub fn private_apt(suite: &str, debian_arch: &str) -> Result<Vec<String>> {
    let apt = cache_dir().join(format!("apt-{suite}-{debian_arch}"));
    for sub in ["lists/partial", "cache/archives/partial"] {
        fs_err::create_dir_all(apt.join(sub))?;
    }
    let sources = apt.join("sources.list");
    fs_err::write(
        &sources,
        format!("deb [arch={debian_arch} signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {} {suite} main\n", mirror_uri()?),
    )?;
    let options: Vec<String> = [
        format!("Dir::Etc::sourcelist={}", sources.display()),
        "Dir::Etc::sourceparts=-".into(),
        format!("Dir::State::Lists={}", apt.join("lists").display()),
        format!("Dir::Cache={}", apt.join("cache").display()),
        // An architecture dpkg has not been told of (armhf) is still listed.
        format!("APT::Architectures::={debian_arch}"),
    ]
    .into_iter()
    .flat_map(|option| ["-o".to_string(), option])
    .collect();
    let listed = fs_err::read_dir(apt.join("lists"))?.flatten().any(|e| e.file_name().to_string_lossy().ends_with("_Packages"));
    if !listed {
        run(Command::new("apt-get").args(&options).args(["update", "-q"]))?;
    }
    Ok(options)
}

/// Debian 11's arm64 glibc 2.31 (libc6 and libc6-dev), unpacked, for the
/// glibc <= 2.34 model.
pub fn bullseye_glibc() -> Result<PathBuf> {
    let dir = cache_dir().join("aarch64").join("glibc-2.31");
    if dir.is_dir() {
        return Ok(dir);
    }
    let options = private_apt("bullseye", "arm64")?;
    let libc = cache_dir().join("aarch64").join("libc6-2.31");
    let dev = cache_dir().join("aarch64").join("libc6-dev-2.31");
    fetch_deb("libc6:arm64", &libc, &options)?;
    fetch_deb("libc6-dev:arm64", &dev, &options)?;
    // One sysroot holding both.
    let part = dir.with_extension("part");
    let _ = fs_err::remove_dir_all(&part);
    run(Command::new("cp").arg("-a").arg(format!("{}/.", libc.display())).arg(&part))?;
    run(Command::new("cp").arg("-a").arg(format!("{}/.", dev.display())).arg(&part))?;
    fs_err::rename(&part, &dir)?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::newest_first;

    /// `apt-cache search --names-only '^linux-image-[0-9.]+\+deb13-powerpc64le$'`
    /// on a mirror that listed 6.12.117 without serving it.
    const RECORDED_LISTING: &str = "\
linux-image-6.12.107+deb13-powerpc64le - Linux 6.12 for Little-endian 64-bit PowerPC (signed)
linux-image-6.12.117+deb13-powerpc64le - Linux 6.12 for Little-endian 64-bit PowerPC (signed)
linux-image-6.12.41+deb13-powerpc64le - Linux 6.12 for Little-endian 64-bit PowerPC (signed)
linux-image-6.12.9+deb13-powerpc64le - Linux 6.12 for Little-endian 64-bit PowerPC (signed)
";

    #[test]
    fn candidates_are_ordered_by_version_not_by_text() {
        assert_eq!(
            newest_first(RECORDED_LISTING),
            [
                "linux-image-6.12.117+deb13-powerpc64le",
                "linux-image-6.12.107+deb13-powerpc64le",
                "linux-image-6.12.41+deb13-powerpc64le",
                "linux-image-6.12.9+deb13-powerpc64le",
            ]
        );
    }

    #[test]
    fn an_empty_listing_has_no_candidates() {
        assert!(newest_first("").is_empty());
    }
}
