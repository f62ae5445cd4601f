//! The whole-root proof, the Raspberry Pi 5 case: every Debian 12 package of
//! an architecture in the manifest unpacked into one root, as an installed
//! system holds them, and a copy fixed by one `pagefit fix --in-place ROOT`.
//! Debian's own programs then run from both roots (chroot) on the 4K and the
//! large-page kernel, and from the original root under `pagefit run
//! --fix-deps` (the static armhf pagefit copied into it). The fixed root,
//! and the original under `pagefit run`, must run every command on both
//! kernels exactly as the original root runs it on the 4K kernel.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use pagefit_core::elf::{parse, ParseOptions};
use pagefit_core::fix::report::{FixReport, FixStatus};
use pagefit_core::page::PageSize;
use pagefit_core::predict::check::{check_file, CheckOptions};
use pagefit_core::predict::effect::Outcome;

use crate::agreement::{parse_runs, Run};
use crate::artifacts::{fetch, manifest};
use crate::corpus::Row;
use crate::fixrun::pagefit_fix;
use crate::setup::run;
use crate::Arch;

/// The commands run from each root: busybox, bash and coreutils, each
/// printing something that does not depend on the boot.
const COMMANDS: &[&str] = &[
    "/bin/busybox echo busybox runs",
    "/bin/bash --version",
    "/bin/bash -c 'echo $((6 * 7))'",
    "/bin/ls --version",
    "/bin/ls /usr",
    "/usr/bin/factor 1234567",
    "/usr/bin/sort --version",
];

/// Both roots, and what fixing the copy did.
pub struct PreparedRoot {
    original: PathBuf,
    fixed: PathBuf,
    reports: Vec<FixReport>,
    /// The root's ELF files with a writable and executable PT_LOAD, as shipped.
    writable_executable_before: usize,
    /// pagefit's verdict, at each page size, for a dynamic program's minimum
    /// (ld.so and libc.so.6), and for each command's program.
    verdicts: Vec<(String, Outcome)>,
}

/// Unpacks `arch`'s Debian 12 packages (when they include libc6, so that the
/// root runs programs) and fixes a copy; `None` when there are none.
pub fn prepare(arch: Arch, pagefit: &Path, out: &Path) -> Result<Option<PreparedRoot>> {
    let packages: Vec<_> = manifest()?.into_iter().filter(|a| a.arch == Some(arch) && a.source == "deb12").collect();
    if !packages.iter().any(|a| a.name == "libc6") {
        return Ok(None);
    }
    let original = out.join("root-original");
    let fixed = out.join("root-fixed");
    for dir in [&original, &fixed] {
        let _ = fs_err::remove_dir_all(dir);
    }
    fs_err::create_dir_all(&original)?;
    for package in &packages {
        run(Command::new("dpkg-deb").arg("-x").arg(fetch(package)?).arg(&original))?;
    }
    run(Command::new("cp").arg("-a").arg(&original).arg(&fixed))?;
    let (reports, fixed_all) = pagefit_fix(pagefit, arch.big_page(), &[OsStr::new("--in-place"), fixed.as_os_str()])?;
    anyhow::ensure!(fixed_all, "pagefit fix {}: {reports:?}", fixed.display());
    let (_, interpreter) = arch.interpreter();
    let minimum = [format!("lib/{interpreter}"), format!("lib/{}/libc.so.6", arch.triple())];
    let programs = COMMANDS.iter().filter_map(|c| c.split(' ').next()).map(|p| p.trim_start_matches('/').to_string());
    let mut verdicts = Vec::new();
    for file in minimum.into_iter().chain(programs) {
        for page in arch.page_sizes() {
            verdicts.push((format!("{page} {file}"), verdict(&original.join(&file), page)?));
        }
    }
    Ok(Some(PreparedRoot { writable_executable_before: count_writable_executable(&original)?, original, fixed, reports, verdicts }))
}

fn verdict(file: &Path, page: &str) -> Result<Outcome> {
    let data = fs_err::read(file)?;
    let elf =
        parse(data.as_slice(), ParseOptions { runtime: true, ..ParseOptions::default() }).with_context(|| file.display().to_string())?;
    let size: PageSize = page.parse().map_err(|e| anyhow::anyhow!("{page}: {e}"))?;
    let options = CheckOptions { page_sizes: vec![size], findings: false, ..CheckOptions::default() };
    Ok(check_file(&elf, "", "", &options).worst().unwrap_or(Outcome::Ok))
}

/// ELF files under `root` with a PT_LOAD that is both writable and executable.
fn count_writable_executable(root: &Path) -> Result<usize> {
    let mut count = 0;
    for entry in walkdir::WalkDir::new(root).follow_links(false) {
        let entry = entry?;
        if !entry.file_type().is_file() {
            continue;
        }
        let data = fs_err::read(entry.path())?;
        if let Ok(elf) = parse(data.as_slice(), ParseOptions::default()) {
            count += usize::from(elf.loads().any(|l| l.prot.is_writable() && l.prot.is_executable()));
        }
    }
    Ok(count)
}

impl PreparedRoot {
    /// The two roots, for the VM's `/t/rw/`.
    pub fn directories(&self) -> [(&Path, &'static str); 2] {
        [(&self.original, "rw/root-original"), (&self.fixed, "rw/root-fixed")]
    }

    /// What fixing the root did: counts by status and strategy, and W+X before and after.
    pub fn summary(&self) -> String {
        let fixed: Vec<&FixReport> = self.reports.iter().filter(|r| r.status == FixStatus::Fixed).collect();
        let by = |name: &str| fixed.iter().filter(|r| r.strategy.is_some_and(|s| s.name() == name)).count();
        let refused = self.reports.iter().filter(|r| r.status.is_failure()).count();
        let writable_executable: Vec<&str> = fixed.iter().filter(|r| r.writable_executable).map(|r| r.path.as_str()).collect();
        format!(
            "root: {} ELF files, {} fixed ({} rebase, {} relayout, {} merge), {refused} refused; writable and executable: {} before, {} after ({})\n",
            self.reports.len(),
            fixed.len(),
            by("rebase"),
            by("relayout"),
            by("merge"),
            self.writable_executable_before,
            self.writable_executable_before + writable_executable.len(),
            writable_executable.join(", ")
        )
    }
}

/// Where the VM finds the cross-built pagefit (static, so that it runs
/// inside the original root, whose glibc is linked for 4K pages).
pub const PAGEFIT_IN_VM: &str = "rw/pagefit";

/// The VM's commands: each command from each root, then from the original
/// root under `pagefit run --fix-deps`, which fixes the 4K libraries the
/// program loads into a cache and runs the program and its ld.so unmodified.
pub fn script() -> String {
    let mut script = String::new();
    for (index, command) in COMMANDS.iter().enumerate() {
        for root in ["original", "fixed"] {
            script.push_str(&format!(
                "/bin/busybox timeout 60 /bin/busybox chroot /t/rw/root-{root} {command} >/tmp/o 2>&1\n\
                 echo \"@@ root/{root}/{index} rc=$?\"\ncat /tmp/o\n"
            ));
        }
    }
    // pagefit finds itself through /proc/self/exe.
    script.push_str(&format!(
        "cp /t/{PAGEFIT_IN_VM} /t/rw/root-original/pagefit\n\
         /bin/busybox mkdir -p /t/rw/root-original/proc\n\
         /bin/busybox mount -t proc proc /t/rw/root-original/proc\n"
    ));
    for (index, command) in COMMANDS.iter().enumerate() {
        script.push_str(&format!(
            "XDG_CACHE_HOME=/pagefit-cache /bin/busybox timeout 120 /bin/busybox chroot /t/rw/root-original /pagefit run --fix-deps {command} >/tmp/o 2>&1\n\
             echo \"@@ root/run/{index} rc=$?\"\ncat /tmp/o\n"
        ));
    }
    script.push_str("/bin/busybox umount /t/rw/root-original/proc\n");
    script
}

/// Rows: the original root runs every command on the 4K kernel; on the large
/// page kernel it fails wherever pagefit says the program, ld.so or libc is
/// broken or rejected; the fixed root runs every command, on both kernels,
/// as the original root on the 4K kernel.
pub fn compare(arch: Arch, root: &PreparedRoot, boots: &[(String, String)]) -> Vec<Row> {
    let reference = boots.iter().find(|(page, _)| page == "4k").map(|(_, o)| parse_runs(o)).unwrap_or_default();
    let mut rows = Vec::new();
    for (page, output) in boots {
        let runs = parse_runs(output);
        for (index, command) in COMMANDS.iter().enumerate() {
            let find = |runs: &[Run], name: &str| runs.iter().find(|r| r.name == name).cloned();
            let original_4k = find(&reference, &format!("root/original/{index}"));
            let program = command.split(' ').next().unwrap_or_default().trim_start_matches('/');
            let (_, interpreter) = arch.interpreter();
            let needed = [program.to_string(), format!("lib/{interpreter}"), format!("lib/{}/libc.so.6", arch.triple())];
            let fails = root
                .verdicts
                .iter()
                .filter(|(key, _)| needed.iter().any(|file| *key == format!("{page} {file}")))
                .any(|(_, outcome)| matches!(outcome, Outcome::Broken | Outcome::Rejected));
            for which in ["original", "fixed", "run"] {
                let run = find(&runs, &format!("root/{which}/{index}"));
                let same_as_4k = |run: &Run| original_4k.as_ref().is_some_and(|r| r.rc == 0 && r.rc == run.rc && r.output == run.output);
                let (predicted, holds): (&str, bool) = match (which, fails) {
                    ("original", true) => {
                        ("does not run (pagefit: program, ld.so or libc not ok)", run.as_ref().is_some_and(|r| r.rc != 0))
                    }
                    ("original", false) => ("runs as on the 4K kernel", run.as_ref().is_some_and(same_as_4k)),
                    ("run", _) => ("pagefit run: runs as the original on the 4K kernel", run.as_ref().is_some_and(same_as_4k)),
                    _ => ("fixed root: runs as the original on the 4K kernel", run.as_ref().is_some_and(same_as_4k)),
                };
                let observed = match &run {
                    Some(run) => format!("rc {}: {}", run.rc, run.output.lines().next().unwrap_or("").trim()),
                    None => "missing".into(),
                };
                let problems = if holds { Vec::new() } else { vec![format!("`{command}` did not do what was predicted")] };
                rows.push(Row {
                    run: format!("{}/root/{which}/{command}", arch.name()),
                    page: page.clone(),
                    observed,
                    predicted: predicted.into(),
                    problems,
                });
            }
        }
    }
    rows
}
