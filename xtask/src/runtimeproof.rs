//! The jemalloc proof: programs whose allocator was built for 4K, 16K and
//! 64K pages (fixtures/jemalloc/build.sh), run natively and under `pagefit
//! run` on every kernel.
//!
//! pagefit's prediction is read in process from `pagefit_core`: the page size
//! it reads from each build's code, and the verdict at the kernel's page
//! size. Each row checks that
//! - the program prints the page size jemalloc reports for itself
//!   (`arenas.page`) and pagefit read, wherever it runs;
//! - above that page size its allocations fail with jemalloc's message and it
//!   does not run (the Rust build aborts, C code gets NULL; measured), and
//!   `pagefit run` refuses to start it, with the same message (a program
//!   whose jemalloc is a shared library starts, and aborts as natively:
//!   `run` reads the program, `check --closure` its libraries);
//! - at or below it, it runs, natively and under `pagefit run`.

use std::path::Path;

use anyhow::{Context, Result};
use pagefit_core::elf::{parse, ParseOptions};
use pagefit_core::page::PageSize;
use pagefit_core::predict::check::{check_file, CheckOptions};
use pagefit_core::predict::effect::Outcome;
use pagefit_core::runtime::JEMALLOC_MESSAGE;

use crate::agreement::{observed_summary, parse_runs, Run};
use crate::corpus::Row;
use crate::Arch;

/// Run names: `jemalloc/NAME` natively, `jemalloc-run/NAME` under `pagefit run`.
const NATIVE: &str = "jemalloc/";
const UNDER_RUN: &str = "jemalloc-run/";

/// The VM's commands: every program of /t/fx/jemalloc/LIST, natively and
/// under `pagefit run`.
pub fn script() -> String {
    format!(
        "if [ -f /t/fx/jemalloc/LIST ]; then cd /t/fx/jemalloc\n\
         while IFS=\"$(printf '\\t')\" read -r name page kind; do\n\
         /bin/busybox timeout 60 ./$name >/tmp/o 2>&1; echo \"@@ {NATIVE}$name rc=$?\"; cat /tmp/o\n\
         /bin/busybox timeout 60 /t/pagefit run ./$name >/tmp/o 2>&1; echo \"@@ {UNDER_RUN}$name rc=$?\"; cat /tmp/o\n\
         done < LIST\ncd /\nfi\n"
    )
}

/// One program of the LIST.
struct Program {
    name: String,
    /// Where jemalloc is: the program, or its libjemalloc.so.2.
    allocator: String,
    /// jemalloc is in a shared library, which `pagefit run` leaves to ld.so.
    shared: bool,
}

fn programs(dir: &Path) -> Result<Vec<Program>> {
    let list = fs_err::read_to_string(dir.join("LIST"))?;
    Ok(list
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            let (name, page, kind) = (fields.first()?, fields.get(1)?, fields.get(2)?);
            let allocator = if *kind == "shared" { format!("je-{page}/libjemalloc.so.2") } else { name.to_string() };
            Some(Program { name: name.to_string(), allocator, shared: *kind == "shared" })
        })
        .collect())
}

/// What pagefit says about the allocator at `page`: the compiled page size it
/// read, and the verdict.
fn predict(file: &Path, page: PageSize) -> Result<(Option<PageSize>, Outcome)> {
    let data = fs_err::read(file)?;
    let elf =
        parse(data.as_slice(), ParseOptions { runtime: true, ..ParseOptions::default() }).with_context(|| file.display().to_string())?;
    let compiled = elf.runtime.first().context("pagefit finds no jemalloc")?.page_size;
    let options = CheckOptions { page_sizes: vec![page], findings: false, ..CheckOptions::default() };
    let report = check_file(&elf, "", "", &options);
    Ok((compiled, report.worst().unwrap_or(Outcome::Ok)))
}

/// The rows of `arch`'s jemalloc programs, from its boots (page size, output).
pub fn compare(arch: Arch, fixtures: &Path, boots: &[(String, String)]) -> Result<Vec<Row>> {
    let dir = fixtures.join("jemalloc");
    let mut rows = Vec::new();
    for program in programs(&dir)? {
        for (page, output) in boots {
            let page_size: PageSize = page.parse().map_err(|e| anyhow::anyhow!("{page}: {e}"))?;
            let (compiled, outcome) = predict(&dir.join(&program.allocator), page_size)?;
            let shown = compiled.map_or("unknown".to_string(), |c| c.to_string());
            let runs = parse_runs(output);
            for prefix in [NATIVE, UNDER_RUN] {
                let run = runs.iter().find(|r| r.name == format!("{prefix}{}", program.name));
                let (observed, problems) = match run {
                    Some(run) => {
                        let refused_by_run = prefix == UNDER_RUN && !program.shared;
                        (observed_summary(run), disagreements(run, refused_by_run, compiled, outcome))
                    }
                    None => ("missing".into(), vec!["the VM printed no result for this run".into()]),
                };
                rows.push(Row {
                    run: format!("{}/{prefix}{}", arch.name(), program.name),
                    page: page.clone(),
                    observed,
                    predicted: format!("jemalloc built for {shown}: {}", outcome.name()),
                    problems,
                });
            }
        }
    }
    Ok(rows)
}

fn disagreements(run: &Run, refused_by_run: bool, compiled: Option<PageSize>, outcome: Outcome) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(compiled) = compiled else { return vec!["pagefit could not read the compiled page size".into()] };
    let reported = format!("arenas.page {}", compiled.bytes());
    match (outcome, refused_by_run) {
        (Outcome::Ok, _) => {
            if run.rc != 0 || !run.output.contains(&reported) {
                problems.push(format!("predicted to run and report {reported}"));
            }
        }
        (Outcome::Broken, false) => {
            if run.rc == 0 || !run.output.contains(JEMALLOC_MESSAGE) || run.output.contains("jemalloc fixture:") {
                problems.push(format!("predicted to fail with `{JEMALLOC_MESSAGE}`"));
            }
        }
        (Outcome::Broken, true) => {
            if run.rc != 2 || !run.output.contains("not started") || !run.output.contains(JEMALLOC_MESSAGE) {
                problems.push("predicted: pagefit run refuses to start it, naming jemalloc's message".into());
            }
            if run.output.contains("jemalloc fixture:") {
                problems.push("the program started".into());
            }
        }
        (other, _) => problems.push(format!("unexpected prediction {}", other.name())),
    }
    problems
}
