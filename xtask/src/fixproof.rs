//! `pagefit fix`, proven on the real kernels: a copy of the fixture corpus in
//! which every file that is not ok at the architecture's large page size is
//! fixed for it (`pagefit fix --in-place`), run in the same boots as the
//! originals. Each fixed program must print what the original printed on
//! the 4K kernel: the same lines, the same probe addresses, and the same
//! page protections except where the fix reported widening them.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use pagefit_core::fix::plan::Strategy;
use pagefit_core::fix::report::{ClosureFixReport, FixReport};

use crate::agreement::{describes_program_headers, healthy, line_differences, observed_summary, parse_runs, Probe, Run};
use crate::corpus::{manifest_entries, Row};
use crate::fixrun::pagefit_fix_one;
use crate::setup::{self, run};
use crate::Arch;

/// Run names of the fixed corpus start with this.
pub const PREFIX: &str = "fixed/";

/// `pagefit fix --closure` writes the closure of `closure/app-4k` (a 4K
/// program with 4K libraries) here, inside the fixed corpus.
const CLOSURE_OUT: &str = "closure-fixed";
const CLOSURE_PROGRAM: &str = "closure/app-4k";

/// The fixed copy of one architecture's corpus.
pub struct FixedCorpus {
    /// Where it is: the VM gets it as /t/fixed.
    pub dir: PathBuf,
    /// `pagefit fix --format json` of every file that was fixed, by MANIFEST name.
    reports: HashMap<String, FixReport>,
}

/// Copies `fixtures` to `out` and fixes there, for the large page size of
/// `arch`, every file pagefit does not call ok at that size.
pub fn prepare(arch: Arch, fixtures: &Path, pagefit: &Path, out: &Path) -> Result<FixedCorpus> {
    let _ = fs_err::remove_dir_all(out);
    fs_err::create_dir_all(out)?;
    run(Command::new("cp").arg("-a").arg(format!("{}/.", fixtures.display())).arg(out))?;
    let mut reports = HashMap::new();
    let mut names: Vec<String> = manifest_entries(out)?.into_iter().map(|(name, _)| name).filter(|n| out.join(n).is_file()).collect();
    names.sort();
    names.dedup();
    for name in names {
        let file = out.join(&name);
        let checked = Command::new(pagefit).args(["check", "--page-size", arch.big_page()]).arg(&file).output()?;
        if checked.status.code() == Some(0) {
            continue;
        }
        let (report, fixed) = pagefit_fix_one(pagefit, arch.big_page(), &[OsStr::new("--in-place"), file.as_os_str()])?;
        anyhow::ensure!(fixed, "pagefit fix {name} for {}: {report:?}", arch.big_page());
        reports.insert(name, report);
    }
    fix_closure(arch, fixtures, pagefit, out)?;
    Ok(FixedCorpus { dir: out.to_path_buf(), reports })
}

/// `pagefit fix --closure` of the 4K program with 4K libraries into the
/// fixed corpus, listed in its MANIFEST so the VM runs it.
fn fix_closure(arch: Arch, fixtures: &Path, pagefit: &Path, out: &Path) -> Result<()> {
    let destination = out.join(CLOSURE_OUT);
    let output = Command::new(pagefit)
        .args(["fix", "--page-size", arch.big_page(), "--format", "json", "--closure"])
        .arg(fixtures.join(CLOSURE_PROGRAM))
        .arg("--out")
        .arg(&destination)
        .arg("--sysroot")
        .arg(setup::vm_sysroot(arch, arch.big_page()))
        .output()
        .with_context(|| format!("cannot run {}", pagefit.display()))?;
    let report: ClosureFixReport = serde_json::from_slice(&output.stdout)
        .with_context(|| format!("pagefit fix --closure {CLOSURE_PROGRAM}: {}", String::from_utf8_lossy(&output.stderr)))?;
    anyhow::ensure!(output.status.code() == Some(0), "pagefit fix --closure {CLOSURE_PROGRAM}: {report:?}");
    let program = CLOSURE_PROGRAM.rsplit('/').next().unwrap_or(CLOSURE_PROGRAM);
    let command = match report.launcher {
        Some(_) => format!("./{CLOSURE_OUT}/{program}.sh"),
        None => format!("./{CLOSURE_OUT}/{program}"),
    };
    let mut manifest = fs_err::read_to_string(out.join("MANIFEST"))?;
    manifest.push_str(&format!("{CLOSURE_OUT}/{program}\texe\t{command}\tpagefit fix --closure {CLOSURE_PROGRAM}\n"));
    fs_err::write(out.join("MANIFEST"), manifest)?;
    Ok(())
}

/// The original run a fixed run is compared with.
fn original_name(fixed_name: &str) -> String {
    match fixed_name.strip_prefix(CLOSURE_OUT) {
        Some(rest) => format!("closure{rest}"),
        None => fixed_name.to_string(),
    }
}

impl FixedCorpus {
    /// How many files were fixed, by strategy.
    pub fn strategies(&self) -> String {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for report in self.reports.values() {
            *counts.entry(report.strategy.map_or("?", Strategy::name)).or_default() += 1;
        }
        let mut counts: Vec<String> = counts.into_iter().map(|(s, n)| format!("{n} {s}")).collect();
        counts.sort();
        counts.join(", ")
    }

    /// How far the fix of `file` moved its addresses (rebase's Δ; 0 otherwise).
    fn delta(&self, file: &str) -> u64 {
        self.reports.get(file).map_or(0, |r| r.delta)
    }

    /// Whether the fix of `file` reported giving `address` (of the fixed file) the permission `wanted` (r, w or x).
    fn widened(&self, file: &str, address: u64, wanted: char) -> bool {
        let Some(report) = self.reports.get(file) else { return false };
        report.costs.iter().any(|cost| cost.range.start <= address && address < cost.range.end && cost.after.maps_string().contains(wanted))
    }
}

/// The files behind a run: the program and the library its probes call `lprobe`.
fn files_of(name: &str, command: &str) -> (String, Option<String>) {
    let words: Vec<&str> = command.split_whitespace().collect();
    let program = words.first().map_or(name, |w| w.trim_start_matches("./")).to_string();
    let library = match words.get(1) {
        Some(argument) => Some(argument.trim_start_matches("./").to_string()),
        None => name.strip_prefix("uselib-").map(|lib| format!("liblib-{lib}.so")),
    };
    (program, library)
}

/// Every way the fixed run differs from the reference run beyond what the
/// fix reported. `reference_moved`: the reference is itself a fixed run, whose
/// addresses have already moved by Δ.
fn differences(
    corpus: &FixedCorpus,
    program: &str,
    library: Option<&str>,
    fixed: &Run,
    reference: &Run,
    reference_moved: bool,
) -> Vec<String> {
    let normalize = |line: &str| {
        // The fixed corpus runs from its own directory.
        (!line.starts_with("auxv pagesz") && !describes_program_headers(line)).then(|| line.replace("/t/fixed/", "/t/fx/"))
    };
    let judge = |have: &Probe<'_>, had: &Probe<'_>| {
        let file = if have.kind == "lprobe" { library.unwrap_or(program) } else { program };
        // A rebased file's link-time addresses are the original's plus Δ.
        let moved = if reference_moved { had.address } else { had.address.wrapping_add(corpus.delta(file)) };
        if have.address != moved {
            return Some(format!(
                "{} {} at {:#x}, expected {moved:#x} ({:#x} moved by the fix)",
                have.kind, have.label, have.address, had.address
            ));
        }
        let wrong = have.perms.chars().zip(had.perms.chars()).any(|(now, before)| {
            let lost = before != '-' && now == '-';
            let unreported_gain = now != '-' && before == '-' && !corpus.widened(file, have.address, now);
            lost || unreported_gain
        });
        wrong.then(|| {
            format!("{} {} {:#x}: {}, reference {}, not reported by the fix", have.kind, have.label, have.address, have.perms, had.perms)
        })
    };
    line_differences(fixed, reference, normalize, judge)
}

/// One row per fixed program and boot. The reference is the original's run
/// on the 4K kernel or, where that failed because of the layout the fix
/// repairs (lld's RELRO over a hole kills some programs even at 4K), its run
/// on the large-page kernel; where both failed, the fixed program's run on
/// the 4K kernel, which must itself run to the end with intact bytes.
pub fn compare(arch: Arch, corpus: &FixedCorpus, boots: &[(String, String)]) -> Result<Vec<Row>> {
    let programs: Vec<(String, String)> = manifest_entries(&corpus.dir)?.into_iter().filter(|(_, command)| command != "-").collect();
    let runs_of = |page: &str| boots.iter().find(|(p, _)| p == page).map(|(_, output)| parse_runs(output)).unwrap_or_default();
    let (small, large) = (runs_of("4k"), runs_of(arch.big_page()));
    let mut rows = Vec::new();
    for (page, output) in boots {
        let runs = parse_runs(output);
        for (name, command) in &programs {
            let (program, library) = files_of(name, command);
            let find = |runs: &[Run], name: &str| runs.iter().find(|r| r.name == name).cloned();
            let fixed_name = format!("{PREFIX}{name}");
            let by_closure_mode = name.starts_with(CLOSURE_OUT);
            let name = &original_name(name);
            let program_fixed = by_closure_mode || corpus.reports.contains_key(&program);
            let touched = program_fixed
                || library.as_ref().is_some_and(|l| corpus.reports.contains_key(l))
                || (name.starts_with("closure/") && corpus.reports.keys().any(|k| k.starts_with("closure/")));
            let (reference, reference_moved) = match (find(&small, name), find(&large, name)) {
                // Unchanged files must do exactly what the originals did on the same kernel.
                _ if !touched => (find(&runs, name), false),
                (Some(original), _) if original.rc == 0 || !program_fixed => (Some(original), false),
                (_, Some(original)) if original.rc == 0 => (Some(original), false),
                _ if page != "4k" => (find(&small, &fixed_name), true),
                _ => (None, false),
            };
            let predicted = match (by_closure_mode, touched) {
                (true, _) => format!("fix --closure for {}: runs as at 4K", arch.big_page()),
                (false, true) => format!("fixed for {}: runs as at 4K", arch.big_page()),
                (false, false) => "unchanged".into(),
            };
            let (observed, problems) = match (runs.iter().find(|r| r.name == fixed_name), reference) {
                (Some(fixed), Some(reference)) => {
                    (observed_summary(fixed), differences(corpus, &program, library.as_deref(), fixed, &reference, reference_moved))
                }
                (Some(fixed), None) => (observed_summary(fixed), healthy(fixed)),
                (None, _) => ("missing".into(), vec!["the VM printed no result for this run".into()]),
            };
            rows.push(Row { run: format!("{}/{fixed_name}", arch.name()), page: page.clone(), observed, predicted, problems });
        }
    }
    Ok(rows)
}
