//! `cargo xtask realkernel`: boot real 4K, 16K and 64K kernels, run every
//! fixture, and compare with pagefit's predictions.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::{Parser, Subcommand};
use xtask::realkernel::{
    boot_arch, build_fixtures, build_pagefit, build_pagefit_for, compare, prepare_fixtures, print_rows, read_recorded, target_dir,
};
use xtask::{android, fixproof, realworld, rootproof, runproof, runtimeproof, setup, Arch};

#[derive(Parser)]
#[command(name = "xtask", about = "pagefit project automation")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Prove pagefit's predictions on real kernels: installs qemu, the cross
    /// compilers and cpio (apt), fetches Debian 13's 4K, 16K and 64K kernels,
    /// builds the fixtures, boots each kernel once and runs every fixture.
    /// The last line is `real-kernel agreement: X/Y`; exit 0 only if X = Y.
    Realkernel {
        /// Only this architecture (aarch64, ppc64le or armhf).
        #[arg(long, value_parser = parse_arch)]
        arch: Option<Arch>,
        /// Compare recorded boot outputs (DIR/<arch>-<page>.txt) instead of booting.
        #[arg(long, value_name = "DIR")]
        recorded: Option<PathBuf>,
        /// Also write each boot's raw output to DIR/<arch>-<page>.txt.
        #[arg(long, value_name = "DIR", conflicts_with = "recorded")]
        record: Option<PathBuf>,
        /// Give up on a VM after this many seconds.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
    /// Prove pagefit on third-party software: fetches the artifacts of
    /// realworld/manifest.tsv (checked against their sha256) into a cache,
    /// runs every ELF file in them on the real kernels as shipped and fixed,
    /// and compares with pagefit's verdicts. The last line is `real-world
    /// agreement: X/Y`; exit 0 only if X = Y.
    Realworld {
        /// Only this architecture (aarch64, ppc64le or armhf).
        #[arg(long, value_parser = parse_arch)]
        arch: Option<Arch>,
        /// Compare recorded boot outputs (DIR/<arch>-<page>.txt) instead of booting.
        #[arg(long, value_name = "DIR")]
        recorded: Option<PathBuf>,
        /// Also write each boot's raw output to DIR/<arch>-<page>.txt.
        #[arg(long, value_name = "DIR", conflicts_with = "recorded")]
        record: Option<PathBuf>,
        /// Give up on a VM after this many seconds.
        #[arg(long, default_value_t = 900)]
        timeout: u64,
    },
    /// Prove pagefit on real Android libraries: fetches the packages of
    /// realworld/manifest.tsv whose arch is `android` (checked against their
    /// sha256), judges every library in them at 16K under `bionic` and
    /// `play`, fixes those that are not ok (one by one, and each AAR whole)
    /// and proves every fixed library ok under both. Prints the README's
    /// table; exit 0 only if every fix that was written is proven.
    Android,
}

fn parse_arch(name: &str) -> Result<Arch, String> {
    Arch::parse(name).ok_or_else(|| format!("unknown arch {name} (aarch64, ppc64le or armhf)"))
}

fn main() -> ExitCode {
    let (task, result) = match Cli::parse().command {
        Task::Realkernel { arch, recorded, record, timeout } => {
            ("realkernel", realkernel(arch, recorded, record, Duration::from_secs(timeout)))
        }
        Task::Realworld { arch, recorded, record, timeout } => {
            ("realworld", realworld(arch, recorded, record, Duration::from_secs(timeout)))
        }
        Task::Android => {
            ("android", build_pagefit().and_then(|pagefit| android::prove(&pagefit, &target_dir()?.join("android"))).map(|()| true))
        }
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("{task}: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn realworld(only: Option<Arch>, recorded: Option<PathBuf>, record: Option<PathBuf>, timeout: Duration) -> Result<bool> {
    if recorded.is_none() {
        setup::install_tools()?;
    }
    let pagefit = build_pagefit()?;
    let out = target_dir()?.join("realworld");
    let mut rows = Vec::new();
    for arch in Arch::ALL.into_iter().filter(|a| only.is_none_or(|o| o == *a)) {
        let out = out.join(arch.name());
        setup::prepare_vm_sysroot(arch, &pagefit)?;
        let prepared = realworld::prepare(arch, &pagefit, &out)?;
        let root = rootproof::prepare(arch, &pagefit, &out)?;
        let boots = match &recorded {
            Some(recorded) => read_recorded(recorded, arch)?,
            None => realworld::boot(arch, &out, &prepared, root.as_ref(), timeout)?,
        };
        if let Some(record) = &record {
            fs_err::create_dir_all(record)?;
            for (page, text) in &boots {
                fs_err::write(record.join(format!("{}-{page}.txt", arch.name())), text)?;
            }
        }
        rows.extend(realworld::compare(arch, &prepared, &boots));
        print!("{}", realworld::fix_summary(&prepared));
        if let Some(root) = &root {
            rows.extend(rootproof::compare(arch, root, &boots));
            print!("{} {}", arch.name(), root.summary());
        }
        let (agreed, total, passed_but_fail, failed_but_map) = realworld::peer_rule(&prepared, &boots, arch.big_page());
        println!(
            "{} {}: the p_align rule other checkers use agrees on {agreed}/{total}: it passes {} that fail ({}) and fails {failed_but_map} that map",
            arch.name(),
            arch.big_page(),
            passed_but_fail.len(),
            passed_but_fail.join(", ")
        );
    }
    let (agreed, total) = print_rows(&rows, "real-world");
    Ok(agreed == total && total > 0)
}

fn realkernel(only: Option<Arch>, recorded: Option<PathBuf>, record: Option<PathBuf>, timeout: Duration) -> Result<bool> {
    let started = Instant::now();
    if recorded.is_none() {
        setup::install_tools()?;
    }
    let out = target_dir()?.join("realkernel");
    let fixtures = out.join("fixtures");
    build_fixtures(&fixtures)?;
    let pagefit = build_pagefit()?;
    let mut rows = Vec::new();
    for arch in Arch::ALL.into_iter().filter(|a| only.is_none_or(|o| o == *a)) {
        let dir = fixtures.join(arch.name());
        prepare_fixtures(arch, &dir)?;
        setup::prepare_vm_sysroot(arch, &pagefit)?;
        let fixed = fixproof::prepare(arch, &dir, &pagefit, &out.join(format!("fixed/{}", arch.name())))?;
        runproof::prepare_fat(&dir, &pagefit, &fixed.dir)?;
        eprintln!("realkernel: {} fixtures fixed for {}: {}", arch.name(), arch.big_page(), fixed.strategies());
        let boots = match &recorded {
            Some(recorded) => read_recorded(recorded, arch)?,
            None => boot_arch(arch, &dir, &fixed.dir, &build_pagefit_for(arch)?, &out, timeout)?,
        };
        if let Some(record) = &record {
            fs_err::create_dir_all(record)?;
            for (page, text) in &boots {
                fs_err::write(record.join(format!("{}-{page}.txt", arch.name())), text)?;
            }
        }
        rows.extend(compare(arch, &dir, &pagefit, &boots, true)?);
        rows.extend(fixproof::compare(arch, &fixed, &boots)?);
        let (run_rows, not_comparable) = runproof::compare(arch, &dir, &pagefit, &boots)?;
        rows.extend(run_rows);
        rows.extend(runproof::compare_fix_deps(arch, &boots));
        rows.extend(runproof::compare_fat(arch, &boots));
        if arch.has_jemalloc_fixtures() {
            rows.extend(runtimeproof::compare(arch, &dir, &boots)?);
        }
        eprintln!("realkernel: not compared under pagefit run (they read /proc/self/exe themselves): {}", not_comparable.join(" "));
    }
    eprintln!("realkernel: {:.0} s in all", started.elapsed().as_secs_f64());
    let (agreed, total) = print_rows(&rows, "real-kernel");
    Ok(agreed == total && total > 0)
}
