//! What the integration test binaries share: the workspace, the fixture
//! corpus (built once per run by `fixtures/build.sh`) and running `pagefit`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// The fixture corpus, built once per test run with the repo's deterministic script.
pub fn fixtures() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::var_os("PAGEFIT_FIXTURES").map(PathBuf::from).unwrap_or_else(|| workspace().join("target/fixtures"));
        if ["x86_64", "aarch64", "ppc64le", "armhf", "i386", "android"].iter().any(|arch| !dir.join(arch).join("MANIFEST").exists()) {
            let status =
                Command::new("bash").arg(workspace().join("fixtures/build.sh")).arg(&dir).status().expect("bash fixtures/build.sh");
            assert!(
                status.success(),
                "fixtures/build.sh failed: install gcc, clang, lld and the aarch64, ppc64le, armhf and i686 cross compilers (see .ci/run)"
            );
        }
        dir
    })
}

pub fn pagefit(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pagefit")).args(args).current_dir(cwd).output().expect("run pagefit")
}

/// The jemalloc programs (fixtures/jemalloc/build.sh, cached outside the
/// repository by the script): `<dir>/<arch>/jemalloc/LIST` and the programs.
/// Used by the cli and fix binaries, not by the others that share this module.
#[allow(dead_code)]
pub fn jemalloc_fixtures() -> &'static Path {
    static DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = workspace().join("target/jemalloc-fixtures");
        let status = Command::new("bash")
            .arg(workspace().join("fixtures/jemalloc/build.sh"))
            .arg(&dir)
            .status()
            .expect("bash fixtures/jemalloc/build.sh");
        assert!(status.success(), "fixtures/jemalloc/build.sh failed (it needs make and the cross compilers, see .ci/run)");
        dir
    })
}
