//! The differential suite: every fixture, on the 4K baseline kernel and on
//! the large-page kernel of its architecture, against pagefit's prediction.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::agreement::{
    closure_disagreements, disagreements, observed_summary, parse_runs, predict, predict_closure, runs_at_4k, Expectation, Prediction, Run,
};
use crate::corpus::{manifest_entries, Row};
use crate::setup::{self, run};
use crate::vm::Initramfs;
use crate::Arch;
use crate::{fixproof, runproof, runtimeproof};

/// Libraries also loaded by Debian 11's glibc 2.31 ld.so (the glibc <= 2.34 model).
const GLIBC231_LIBS: [&str; 4] = ["4k", "16k", "64k", "seed000"];

/// The repository root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Path::new(".")).to_path_buf()
}

/// Cargo's target directory, as `cargo metadata` reports it (it honours
/// `CARGO_TARGET_DIR` and `build.target-dir`).
pub fn target_dir() -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let metadata = run(Command::new(cargo).args(["metadata", "--format-version", "1", "--no-deps"]).current_dir(workspace()))?;
    let metadata: serde_json::Value = serde_json::from_str(&metadata).context("cargo metadata printed no JSON")?;
    let dir = metadata["target_directory"].as_str().context("cargo metadata names no target_directory")?;
    Ok(PathBuf::from(dir))
}

/// Builds the fixture corpus into `out` with fixtures/build.sh, and the
/// jemalloc programs with fixtures/jemalloc/build.sh.
pub fn build_fixtures(out: &Path) -> Result<()> {
    run(Command::new("bash").arg(workspace().join("fixtures/build.sh")).arg(out))?;
    run(Command::new("bash").arg(workspace().join("fixtures/jemalloc/build.sh")).arg(out))?;
    Ok(())
}

/// Builds the `pagefit` binary (release) and returns its path.
pub fn build_pagefit() -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(Command::new(cargo).args(["build", "--release", "--quiet", "-p", "pagefit-cli"]).current_dir(workspace()))?;
    Ok(target_dir()?.join("release/pagefit"))
}

/// Cross-builds `pagefit` (release) for `arch` with Debian's cross gcc as
/// linker and C compiler, so that the VM can run it; returns its path.
pub fn build_pagefit_for(arch: Arch) -> Result<PathBuf> {
    let target = arch.rust_target();
    run(Command::new("rustup").args(["target", "add", target]))?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let env_target = target.replace('-', "_");
    run(Command::new(cargo)
        .args(["build", "--release", "--quiet", "-p", "pagefit-cli", "--target", target])
        .env(format!("CARGO_TARGET_{}_LINKER", env_target.to_uppercase()), format!("{}-gcc", arch.triple()))
        .env(format!("CC_{env_target}"), format!("{}-gcc", arch.triple()))
        .env(format!("AR_{env_target}"), format!("{}-ar", arch.triple()))
        .current_dir(workspace()))?;
    Ok(target_dir()?.join(target).join("release/pagefit"))
}

/// The run in which the VM checks its own fixtures with the cross-built pagefit.
const SELF_CHECK: &str = "pagefit-check";

/// The programs of a fixture directory's MANIFEST that the VM runs.
fn manifest_runs(dir: &Path) -> Result<Vec<String>> {
    Ok(manifest_entries(dir)?.into_iter().filter(|(_, command)| command != "-").map(|(name, _)| name).collect())
}

/// Builds `b31-uselib-<lib>` for each library against Debian 11's glibc 2.31,
/// so that it needs nothing newer; they go beside the fixtures.
fn build_glibc231_programs(sysroot: &Path, fixtures: &Path) -> Result<()> {
    let src = workspace().join("fixtures/src");
    let libdir = sysroot.join("usr/lib/aarch64-linux-gnu");
    for lib in GLIBC231_LIBS {
        let out = fixtures.join(format!("b31-uselib-{lib}"));
        run(Command::new("aarch64-linux-gnu-gcc")
            .current_dir(&src)
            .arg(format!("--sysroot={}", sysroot.display()))
            .arg(format!("-B{}/", libdir.display()))
            .arg(format!("-L{}", libdir.display()))
            .arg(format!("-L{}", sysroot.join("lib/aarch64-linux-gnu").display()))
            .args(["-O1", "-g0", "-I.", "-fPIE", "-pie", "-Wl,--build-id=none"])
            .args(["-Wl,-z,max-page-size=65536", "-Wl,-z,common-page-size=65536", "-Wl,-rpath,$ORIGIN", "uselib.c"])
            .arg(fixtures.join(format!("liblib-{lib}.so")))
            .arg("-o")
            .arg(&out))?;
    }
    Ok(())
}

/// The shell script the VM runs: every fixture, every fixed fixture, every
/// fixture started by `pagefit run` (where its loader runs the
/// architecture), pagefit checking the fixtures itself, then the glibc 2.31 runs.
fn work_script(arch: Arch) -> String {
    let mut script = format!("sh /t/run-manifest.sh /t/fx\nsh /t/run-manifest.sh /t/fixed {}\n", fixproof::PREFIX);
    if arch.has_loader() {
        script.push_str(&format!("sh /t/run-manifest.sh /t/fx {} /t/pagefit run\n", runproof::PREFIX));
        script.push_str(&runproof::fix_deps_script());
        script.push_str(&runproof::fat_script());
        script.push_str(&runtimeproof::script());
    }
    script.push_str(&format!(
        "/t/pagefit check --format jsonl --page-size 4k,16k,64k /t/fx >/tmp/o 2>&1\necho \"@@ {SELF_CHECK} rc=$?\"\ncat /tmp/o\n"
    ));
    if arch == Arch::Aarch64 {
        script.push_str("cd /t/fx\n");
        for lib in GLIBC231_LIBS {
            script.push_str(&format!(
                "/bin/busybox timeout 60 /t/b31/ld-linux-aarch64.so.1 --library-path /t/b31 ./b31-uselib-{lib} >/tmp/o 2>&1\n\
                 echo \"@@ glibc231-uselib-{lib} rc=$?\"\ncat /tmp/o\n"
            ));
        }
    }
    script
}

/// Boots the 4K and the large-page kernel of `arch` with the fixtures, their
/// fixed copies and `pagefit` built for it, and returns their outputs, by page size.
pub fn boot_arch(
    arch: Arch,
    fixtures: &Path,
    fixed: &Path,
    pagefit: &Path,
    scratch: &Path,
    timeout: Duration,
) -> Result<Vec<(String, String)>> {
    let busybox = setup::busybox(arch)?;
    let initramfs = Initramfs::new(&scratch.join(format!("{}-root", arch.name())), arch, &busybox)?;
    initramfs.add(fixtures, "fx")?;
    initramfs.add(fixed, "fixed")?;
    initramfs.add(pagefit, "pagefit")?;
    initramfs.add(&workspace().join("fixtures/run-manifest.sh"), "run-manifest.sh")?;
    if arch == Arch::Aarch64 {
        let glibc = setup::bullseye_glibc()?;
        let lib = glibc.join("lib/aarch64-linux-gnu");
        initramfs.add(&lib.join("ld-2.31.so"), "b31/ld-linux-aarch64.so.1")?;
        for name in ["libc.so.6", "libdl.so.2"] {
            initramfs.add(&fs_err::canonicalize(lib.join(name))?, &format!("b31/{name}"))?;
        }
    }
    let mut outputs = Vec::new();
    for page in arch.page_sizes() {
        let kernel = setup::kernel(arch, page)?;
        let started = Instant::now();
        let output = initramfs.boot(arch, &kernel, &work_script(arch), timeout)?;
        eprintln!(
            "realkernel: {} {page} kernel: {} runs in {:.1} s",
            arch.name(),
            parse_runs(&output).len(),
            started.elapsed().as_secs_f64()
        );
        outputs.push((page.to_string(), output));
    }
    Ok(outputs)
}

/// Reads the boots of `arch` recorded in `dir` by `--record` (`<arch>-<page>.txt`).
pub fn read_recorded(dir: &Path, arch: Arch) -> Result<Vec<(String, String)>> {
    arch.page_sizes()
        .iter()
        .map(|page| {
            let path = dir.join(format!("{}-{page}.txt", arch.name()));
            let text = fs_err::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
            Ok((page.to_string(), text))
        })
        .collect()
}

/// Prepares the glibc 2.31 programs for `arch` (aarch64 only) in its fixture directory.
pub fn prepare_fixtures(arch: Arch, fixtures: &Path) -> Result<()> {
    if arch == Arch::Aarch64 {
        build_glibc231_programs(&setup::bullseye_glibc()?, fixtures)?;
    }
    Ok(())
}

/// What one run's program and library are, and which loader maps them.
fn subjects(name: &str) -> (String, Option<&'static str>, Option<String>) {
    if let Some(lib) = name.strip_prefix("glibc231-uselib-") {
        // ld.so run as a command maps the program itself.
        return (format!("b31-uselib-{lib}"), Some("glibc-2.34"), Some(format!("liblib-{lib}.so")));
    }
    if let Some(lib) = name.strip_prefix("uselib-") {
        return (name.to_string(), None, Some(format!("liblib-{lib}.so")));
    }
    if let Some(lib) = name.strip_prefix("dlopen-") {
        return ("dlopen".to_string(), None, Some(format!("liblib-{lib}.so")));
    }
    (name.to_string(), None, None)
}

/// The exit status of a run that goes as its source intends: 0, except for
/// the bare `dlopen` run, whose library is deliberately absent (build.sh).
fn intended_status(name: &str) -> i32 {
    i32::from(name == "dlopen")
}

/// Compares the boots of `arch` (page size, output) with pagefit's
/// predictions: every fixture of the MANIFEST and, with `glibc231`, the runs
/// under Debian 11's ld.so (which need its glibc to build).
pub fn compare(arch: Arch, fixtures: &Path, pagefit: &Path, boots: &[(String, String)], glibc231: bool) -> Result<Vec<Row>> {
    let mut expected_runs = manifest_runs(fixtures)?;
    if arch == Arch::Aarch64 && glibc231 {
        expected_runs.extend(GLIBC231_LIBS.iter().map(|l| format!("glibc231-uselib-{l}")));
    }
    let mut cache: HashMap<(String, String, Option<&str>), Prediction> = HashMap::new();
    let mut rows = Vec::new();
    let baseline_runs = runs_at_4k(boots);
    for (page, output) in boots {
        // The VM states which kernel it booted; a wrong one must not pass as proof.
        let banner = format!("@@ kernel {} page size {} kB", arch.kernel_arch().name(), page.trim_end_matches('k'));
        anyhow::ensure!(output.starts_with(&banner), "the {page} {} boot ran another kernel: {:?}", arch.name(), output.lines().next());
        let runs = parse_runs(output);
        for name in &expected_runs {
            let run = runs.iter().find(|r: &&Run| &r.name == name);
            let baseline = baseline_runs.iter().find(|r| &r.name == name);
            if name.starts_with("closure/") {
                let expected = predict_closure(pagefit, fixtures, name, page, &arch.vm_sysroot())?;
                let (observed, problems) = match run {
                    Some(run) => (observed_summary(run), closure_disagreements(run, baseline, &expected)),
                    None => missing_run(),
                };
                rows.push(Row {
                    run: format!("{}/{name}", arch.name()),
                    page: page.clone(),
                    observed,
                    predicted: expected.summary(),
                    problems,
                });
                continue;
            }
            let (program, loader, library) = subjects(name);
            let mut prediction = |file: &str| -> Result<Prediction> {
                let key = (file.to_string(), page.clone(), loader);
                if let Some(p) = cache.get(&key) {
                    return Ok(p.clone());
                }
                let p = predict(pagefit, fixtures, file, page, loader)?;
                cache.insert(key, p.clone());
                Ok(p)
            };
            let program_prediction = prediction(&program)?;
            let library_prediction = library.as_deref().map(&mut prediction).transpose()?;
            let expectation = Expectation { program: &program_prediction, library: library_prediction.as_ref() };
            let (observed, problems) = match run {
                Some(run) => (observed_summary(run), disagreements(run, baseline, &expectation, intended_status(name))),
                None => missing_run(),
            };
            rows.push(Row {
                run: format!("{}/{name}", arch.name()),
                page: page.clone(),
                observed,
                predicted: expectation.summary(),
                problems,
            });
        }
        let (observed, problems) = match runs.iter().find(|r| r.name == SELF_CHECK) {
            Some(run) => self_check_disagreements(run, &host_verdicts(pagefit, fixtures)?),
            None => missing_run(),
        };
        let predicted = "same verdicts as on the host".to_string();
        rows.push(Row { run: format!("{}/{SELF_CHECK}", arch.name()), page: page.clone(), observed, predicted, problems });
    }
    Ok(rows)
}

/// Each fixture's verdicts (`results` and `max_ok_page_size` of
/// `pagefit check --format jsonl`), by path relative to the fixture directory.
type Verdicts = HashMap<String, serde_json::Value>;

fn verdicts_of(jsonl: &str, prefix: &str) -> Verdicts {
    jsonl
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|report| {
            let path = report["path"].as_str()?.strip_prefix(prefix)?.to_string();
            Some((path, serde_json::json!([report["results"], report["max_ok_page_size"]])))
        })
        .collect()
}

/// The host's pagefit on the same fixtures.
fn host_verdicts(pagefit: &Path, fixtures: &Path) -> Result<Verdicts> {
    let output = Command::new(pagefit)
        .args(["check", "--format", "jsonl", "--page-size", "4k,16k,64k"])
        .arg(fixtures)
        .output()
        .with_context(|| format!("cannot run {}", pagefit.display()))?;
    Ok(verdicts_of(&String::from_utf8_lossy(&output.stdout), &format!("{}/", fixtures.display())))
}

/// pagefit, run by the kernel under test, must give every fixture the
/// verdicts the host's pagefit gives it.
fn self_check_disagreements(run: &Run, host: &Verdicts) -> (String, Vec<String>) {
    let in_vm = verdicts_of(&run.output, "/t/fx/");
    let mut problems: Vec<String> = host
        .iter()
        .filter(|(path, verdict)| in_vm.get(*path) != Some(verdict))
        .map(|(path, _)| format!("{path}: the VM's pagefit says otherwise"))
        .collect();
    if host.is_empty() {
        problems.push("the host's pagefit checked no fixture".into());
    }
    problems.sort();
    (format!("{} files checked in the VM", in_vm.len()), problems)
}

fn missing_run() -> (String, Vec<String>) {
    ("missing".to_string(), vec!["the VM printed no result for this run".to_string()])
}

/// Prints the table; the last line is `LABEL agreement: X/Y`.
pub fn print_rows(rows: &[Row], label: &str) -> (usize, usize) {
    println!("{:<36} {:<4} {:<40} predicted", "run", "page", "observed");
    for row in rows {
        let verdict = if row.problems.is_empty() { String::new() } else { format!("  DISAGREE: {}", row.problems.join("; ")) };
        println!("{:<36} {:<4} {:<40} {}{verdict}", row.run, row.page, row.observed, row.predicted);
    }
    let agreed = rows.iter().filter(|r| r.problems.is_empty()).count();
    println!("{label} agreement: {agreed}/{}", rows.len());
    (agreed, rows.len())
}
