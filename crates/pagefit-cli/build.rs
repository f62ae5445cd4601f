//! Builds the ld.so audit module `run --fix-deps` hands to ld.so
//! (audit/pagefit-audit.c) with the target's C compiler; `fix_deps.rs`
//! embeds it. Also relinks pagefit when `run-path.order` changes.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    // The musl build's linker reads this list (.cargo/config.toml); cargo
    // would not relink when only the list changed.
    println!("cargo:rerun-if-changed=run-path.order");
    let source = "audit/pagefit-audit.c";
    println!("cargo:rerun-if-changed={source}");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("pagefit-audit.so");
    // The module is loaded into the program's glibc ld.so, so a musl pagefit
    // still builds it with the glibc compiler of its architecture. The cc
    // crate knows each target's compiler (aarch64-linux-gnu-gcc, ...) and
    // honours CC_<target>.
    let target = std::env::var("TARGET").expect("cargo sets TARGET");
    let glibc_target = target.replace("-musl", "-gnu");
    let compiler = cc::Build::new().target(&glibc_target).opt_level(2).get_compiler();
    // 128K alignment: ok at every page size up to 64K, and above the
    // emulated page size, so that ld.so aligns its base itself (fix_deps.rs).
    let status = Command::new(compiler.path())
        .args(["-shared", "-fPIC", "-O2", "-Wall", "-Wl,-z,max-page-size=0x20000", "-Wl,-z,noexecstack", "-o"])
        .arg(&out)
        .arg(source)
        .status()
        .unwrap_or_else(|e| panic!("cannot run the C compiler {}: {e}", compiler.path().display()));
    assert!(status.success(), "{} failed to build {source}", compiler.path().display());
}
