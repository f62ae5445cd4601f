//! `pagefit run`, proven on the real kernels: every fixture program is also
//! started by pagefit's userspace loader (pagefit cross-built for the VM),
//! on the 4K and on the large-page kernel. Each must print what the program
//! printed when the 4K kernel started it: the same exit status, the same
//! lines, the same probe addresses, and at least the same page protections
//! (pages the loader composes from several segments get the union of their
//! protections, by design). Two exceptions, both by design: libraries are
//! still mapped by ld.so under its own rules, so a program whose library
//! ld.so rejects on this kernel must fail exactly as it does natively; and a
//! program the 4K kernel cannot run either (lld's RELRO over a hole) must
//! run to the end with intact bytes.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::agreement::{
    check_closure, describes_program_headers, healthy, line_differences, observed_summary, parse_runs, runs_at_4k, Probe, Run,
};
use crate::corpus::{manifest_entries, Row};
use crate::Arch;

/// Run names of the programs started by `pagefit run` start with this.
pub const PREFIX: &str = "run/";

/// Run name prefix of `pagefit run --fix-deps`.
pub const FIX_DEPS_PREFIX: &str = "fixdeps/";

/// One `run --fix-deps` row: its name, the fixture run it must print the
/// same as, and the VM's command (a subshell's working directory and
/// command line, pagefit as `$PF`).
pub struct FixDepsRun {
    /// The row's name, after [`FIX_DEPS_PREFIX`].
    pub name: &'static str,
    /// The fixture run whose 4K kernel output it must print.
    pub reference: &'static str,
    /// The working directory.
    pub directory: &'static str,
    /// The command line.
    pub command: &'static str,
}

/// 4K-linked libraries the big-page kernels' ld.so refuses, as MANIFEST
/// names the runs and the VM starts them: `uselib-4k` needs one (DT_NEEDED),
/// `closure/app-4k` (itself 4K-linked) one that needs another, and
/// `dlopen-4k` opens one by path, which only the audit module sees.
pub const FIX_DEPS_RUNS: [FixDepsRun; 4] = [
    FixDepsRun { name: "uselib-4k", reference: "uselib-4k", directory: "/t/fx", command: "/t/pagefit run --fix-deps ./uselib-4k" },
    FixDepsRun {
        name: "closure/app-4k",
        reference: "closure/app-4k",
        directory: "/t/fx",
        command: "/t/pagefit run --fix-deps ./closure/app-4k",
    },
    FixDepsRun {
        name: "dlopen-4k",
        reference: "dlopen-4k",
        directory: "/t/fx",
        command: "/t/pagefit run --fix-deps ./dlopen ./liblib-4k.so",
    },
    // Started as ./pagefit from its own directory, the library found through
    // LD_LIBRARY_PATH: fix runs in process, so no pagefit need be on PATH.
    FixDepsRun {
        name: "own-directory/uselib-4k",
        reference: "uselib-4k",
        directory: "/t",
        command: "/bin/busybox env LD_LIBRARY_PATH=/t/fx XDG_CACHE_HOME=/tmp/pagefit-cache-own ./pagefit run --fix-deps fx/uselib-4k",
    },
];

/// The VM's commands for the `--fix-deps` runs, from /t/fx.
pub fn fix_deps_script() -> String {
    FIX_DEPS_RUNS
        .iter()
        .map(|FixDepsRun { name, directory, command, .. }| {
            format!(
                "(cd {directory} && XDG_CACHE_HOME=/tmp/pagefit-cache /bin/busybox timeout 120 {command}) >/tmp/o 2>&1\n\
                 echo \"@@ {FIX_DEPS_PREFIX}{name} rc=$?\"\ncat /tmp/o\n"
            )
        })
        .collect()
}

/// `--fix-deps` rows, on the large-page kernel: each run must print the 4K
/// kernel's lines apart from the probes (a rebased library's link-time
/// addresses move by its Δ). On the 4K kernel nothing needs fixing.
pub fn compare_fix_deps(arch: Arch, boots: &[(String, String)]) -> Vec<Row> {
    let small = runs_at_4k(boots);
    let mut rows = Vec::new();
    for (page, output) in boots.iter().filter(|(page, _)| page != "4k") {
        let runs = parse_runs(output);
        for FixDepsRun { name, reference, .. } in FIX_DEPS_RUNS {
            let run = runs.iter().find(|r| r.name == format!("{FIX_DEPS_PREFIX}{name}"));
            let reference = small.iter().find(|r| r.name == reference);
            let without_probes = |line: &str| {
                (!line.starts_with("probe ") && !line.starts_with("lprobe ") && !line.starts_with("auxv pagesz")).then(|| line.to_string())
            };
            let problems = match (run, reference) {
                (Some(run), Some(reference)) => line_differences(run, reference, without_probes, |_, _| None),
                (Some(_), None) => vec!["no 4K kernel run to compare with".into()],
                (None, _) => vec!["the VM printed no result for this run".into()],
            };
            rows.push(Row {
                run: format!("{}/{FIX_DEPS_PREFIX}{name}", arch.name()),
                page: page.clone(),
                observed: run.map_or_else(|| "missing".into(), observed_summary),
                predicted: "libraries fixed: as the 4K kernel ran it (probes aside)".into(),
                problems,
            });
        }
    }
    rows
}

/// Run name of `pagefit run` of a FatELF file.
pub const FAT_RUN: &str = "fatrun/variants";

/// The FatELF file's records: one program linked for 4K and for 64K pages,
/// glued as page-size variants (version 2).
const FAT_VARIANTS: [&str; 2] = ["c-pie-bfd-4k", "c-pie-bfd-64k"];

/// Glues the variants of `fixtures` into `out/variants.fat` with the host's pagefit.
pub fn prepare_fat(fixtures: &Path, pagefit: &Path, out: &Path) -> Result<()> {
    let status = Command::new(pagefit)
        .args(["fat", "glue", "--page-variants", "-o"])
        .arg(out.join("variants.fat"))
        .args(FAT_VARIANTS.iter().map(|name| fixtures.join(name)))
        .status()
        .with_context(|| format!("cannot run {}", pagefit.display()))?;
    if !status.success() {
        bail!("pagefit fat glue --page-variants failed for {}", fixtures.display());
    }
    Ok(())
}

/// The VM's command: run the fat file (in /t/fixed) and print the chosen
/// record's line of the report after the program's output.
pub fn fat_script() -> String {
    format!(
        "(cd /t/fx && /bin/busybox timeout 60 /t/pagefit run --report /t/fixed/variants.fat) >/tmp/o 2>/tmp/r\n\
         echo \"@@ {FAT_RUN} rc=$?\"\ncat /tmp/o\ngrep '^ \\*record' /tmp/r\n"
    )
}

/// The FatELF row of each boot: pagefit must choose the 4K build on the 4K
/// kernel and the 64K build on the large-page one, and the chosen record,
/// mapped from inside the fat file, must print what that build printed when
/// the 4K kernel ran it.
pub fn compare_fat(arch: Arch, boots: &[(String, String)]) -> Vec<Row> {
    let small = runs_at_4k(boots);
    boots
        .iter()
        .map(|(page, output)| {
            let (record, build) = if page == "4k" { (0, FAT_VARIANTS[0]) } else { (1, FAT_VARIANTS[1]) };
            let runs = parse_runs(output);
            let run = runs.iter().find(|r| r.name == FAT_RUN);
            let reference = small.iter().find(|r| r.name == build);
            let problems = match (run, reference) {
                (Some(run), Some(reference)) => {
                    let chosen = run.output.lines().find(|line| line.starts_with(" *record")).unwrap_or("");
                    let program_output: String =
                        run.output.lines().filter(|line| !line.starts_with(" *record")).map(|l| format!("{l}\n")).collect();
                    let mut problems = differences(&Run { output: program_output, ..run.clone() }, reference);
                    if !chosen.starts_with(&format!(" *record{record} ")) {
                        problems.push(format!("expected record{record} ({build}) to be chosen, the report says {chosen:?}"));
                    }
                    problems
                }
                (Some(_), None) => vec![format!("no 4K kernel run of {build} to compare with")],
                (None, _) => vec!["the VM printed no result for this run".into()],
            };
            Row {
                run: format!("{}/{FAT_RUN}", arch.name()),
                page: page.clone(),
                observed: run.map_or_else(|| "missing".into(), observed_summary),
                predicted: format!("record{record} ({build}) chosen, runs as the 4K kernel ran {build}"),
                problems,
            }
        })
        .collect()
}

/// Runs that look for a library next to /proc/self/exe themselves: `dlopen`
/// without an argument (fixtures/src/dlopen.c). Under a userspace loader
/// /proc/self/exe stays pagefit (PR_SET_MM_EXE_FILE is refused while
/// pagefit's image is mapped); `$ORIGIN` in RPATH/RUNPATH needs no such
/// exception, the loader expands it (pagefit_core::run::origin).
const SELF_EXE_RUNS: &[&str] = &["./dlopen"];

/// ld.so refused a library the program needs or opens.
fn library_failure(run: &Run) -> bool {
    run.output.lines().any(|line| {
        line.starts_with("dlopen failed")
            || line
                .split("error while loading shared libraries: ")
                .nth(1)
                .is_some_and(|rest| rest.split(':').next().is_some_and(|l| l.contains(".so")))
    })
}

/// The error ld.so gives for the first library of `command`'s closure that
/// it refuses at `page` (`pagefit check --closure`), the program and its
/// interpreter aside: pagefit maps those.
fn library_refusal(pagefit: &Path, fixtures: &Path, command: &str, page: &str, sysroot: &Path) -> Result<Option<String>> {
    let program = command.split_whitespace().next().unwrap_or(command);
    let document = check_closure(pagefit, fixtures, program, page, sysroot)?;
    let files = document["files"].as_array().into_iter().flatten();
    let libraries = files.skip(1).filter(|file| file["role"] != "interpreter");
    let refusal = libraries
        .flat_map(|file| file["results"].as_array().into_iter().flatten())
        .find(|result| result["outcome"] == "rejected")
        .and_then(|result| result["message"].as_str().map(String::from));
    Ok(refusal)
}

/// Every way the run under pagefit differs from the 4K kernel's run.
fn differences(under_pagefit: &Run, reference: &Run) -> Vec<String> {
    // The loader hands the program a copy of its program headers with RELRO
    // trimmed where rounding it at P would cover other bytes, so the probes
    // that describe the headers describe that copy.
    let normalize = |line: &str| (!line.starts_with("auxv pagesz") && !describes_program_headers(line)).then(|| line.to_string());
    let judge = |have: &Probe<'_>, had: &Probe<'_>| {
        let lost = have.perms.chars().zip(had.perms.chars()).any(|(now, before)| before != '-' && now == '-');
        let moved = have.address != had.address;
        (lost || moved).then(|| {
            format!("{} {} {:#x} {}: the 4K kernel gave {:#x} {}", have.kind, have.label, have.address, have.perms, had.address, had.perms)
        })
    };
    line_differences(under_pagefit, reference, normalize, judge)
}

/// One row per program and boot; programs that read /proc/self/exe
/// themselves are listed in the returned note instead (it names pagefit).
pub fn compare(arch: Arch, fixtures: &Path, pagefit: &Path, boots: &[(String, String)]) -> Result<(Vec<Row>, Vec<String>)> {
    let small = runs_at_4k(boots);
    let mut rows = Vec::new();
    let mut not_comparable = Vec::new();
    let programs: Vec<(String, String)> = manifest_entries(fixtures)?.into_iter().filter(|(_, command)| command != "-").collect();
    for (name, command) in &programs {
        if SELF_EXE_RUNS.contains(&command.as_str()) {
            not_comparable.push(format!("{}/{name}", arch.name()));
            continue;
        }
        for (page, output) in boots {
            let runs = parse_runs(output);
            let under_pagefit = runs.iter().find(|r| r.name == format!("{PREFIX}{name}"));
            let native = runs.iter().find(|r| &r.name == name);
            let at_4k = small.iter().find(|r| &r.name == name);
            // Killed at exec natively: once pagefit maps the program, ld.so
            // meets its libraries, and may refuse one the kernel never got to.
            let killed_at_exec = native.is_some_and(|n| n.rc == 139);
            let refused_library = match killed_at_exec {
                true => library_refusal(pagefit, fixtures, command, page, &arch.vm_sysroot())?,
                false => None,
            };
            let (predicted, problems) = match (under_pagefit, native.filter(|n| library_failure(n)), at_4k) {
                (None, ..) => ("-", vec!["the VM printed no result for this run".to_string()]),
                (Some(run), Some(native), _) => ("ld.so rejects a library, as natively", differences(run, native)),
                (Some(run), None, _) if refused_library.is_some() => {
                    let message = refused_library.as_deref().unwrap_or_default();
                    let said = run.rc == 127 && run.output.lines().any(|line| line.ends_with(message));
                    let problems =
                        if said { Vec::new() } else { vec![format!("predicted ld.so to say {message:?}, observed rc {}", run.rc)] };
                    ("ld.so rejects a library (check --closure)", problems)
                }
                (Some(run), None, Some(reference)) if reference.rc == 0 || library_failure(reference) => {
                    let rescued = native.is_some_and(|n| n.rc != reference.rc);
                    (if rescued { "rescued: as the 4K kernel ran it" } else { "as the 4K kernel ran it" }, differences(run, reference))
                }
                (Some(run), None, _) => ("runs to the end (the 4K kernel cannot)", healthy(run)),
            };
            let observed = under_pagefit.map_or_else(|| "missing".to_string(), observed_summary);
            rows.push(Row {
                run: format!("{}/{PREFIX}{name}", arch.name()),
                page: page.clone(),
                observed,
                predicted: predicted.into(),
                problems,
            });
        }
    }
    Ok((rows, not_comparable))
}
