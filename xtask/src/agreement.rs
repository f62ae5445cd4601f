//! Comparing what a real kernel did with what pagefit predicted.
//!
//! A boot's output is a sequence of runs, each `@@ <name> rc=<status>`
//! followed by the program's stdout and stderr (see fixtures/run-manifest.sh).
//! Fixture programs print `probe <label> <link-time address> <perms>` for their
//! own key places and `lprobe ...` for their library's; the perms come from
//! /proc/self/maps.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use serde_json::Value;

/// One program run in one boot.
#[derive(Clone, Debug)]
pub struct Run {
    /// Manifest name of the run.
    pub name: String,
    /// Exit status; 128 + N for death by signal N.
    pub rc: i32,
    /// stdout and stderr.
    pub output: String,
}

/// The runs of the 4K kernel's boot among `boots` (page size, output), the
/// reference the large-page boots are compared with; empty without one.
pub fn runs_at_4k(boots: &[(String, String)]) -> Vec<Run> {
    boots.iter().find(|(page, _)| page == "4k").map(|(_, output)| parse_runs(output)).unwrap_or_default()
}

/// Splits a boot's output into runs.
pub fn parse_runs(text: &str) -> Vec<Run> {
    let mut runs: Vec<Run> = Vec::new();
    for line in text.lines() {
        if let Some((name, rc)) = line.strip_prefix("@@ ").and_then(|rest| rest.rsplit_once(" rc=")) {
            runs.push(Run { name: name.to_string(), rc: rc.trim().parse().unwrap_or(-1), output: String::new() });
        } else if line.starts_with("@@") {
            continue;
        } else if let Some(run) = runs.last_mut() {
            run.output.push_str(line);
            run.output.push('\n');
        }
    }
    runs
}

/// What `pagefit explain --format json` predicts for one file at one page size.
#[derive(Clone, Debug)]
pub struct Prediction {
    /// ok, degraded, broken or rejected.
    pub outcome: String,
    /// The loader's message or the way the program dies.
    pub message: Option<String>,
    /// start, end, maps-style perms ("r-x").
    pub mappings: Vec<(u64, u64, String)>,
}

impl Prediction {
    fn dies_at_exec(&self) -> bool {
        self.message.as_deref().is_some_and(|m| m.starts_with("killed by SIGSEGV"))
    }

    fn perms_at(&self, address: u64) -> &str {
        self.mappings.iter().find(|(start, end, _)| *start <= address && address < *end).map_or("---", |(_, _, p)| p.as_str())
    }

    fn summary(&self) -> String {
        match &self.message {
            Some(m) => format!("{} ({m})", self.outcome),
            None => self.outcome.clone(),
        }
    }
}

/// Asks the `pagefit` binary for its prediction for `file` (in `dir`) at
/// `page` ("16k"), optionally under a given loader.
pub fn predict(pagefit: &Path, dir: &Path, file: &str, page: &str, loader: Option<&str>) -> Result<Prediction> {
    let mut command = Command::new(pagefit);
    command.args(["explain", file, "--page-size", page, "--format", "json"]).current_dir(dir);
    if let Some(loader) = loader {
        command.args(["--loader", loader]);
    }
    let output = command.output().with_context(|| format!("cannot run {}", pagefit.display()))?;
    let document: Value = serde_json::from_slice(&output.stdout)
        .with_context(|| format!("pagefit explain {file}: {}", String::from_utf8_lossy(&output.stderr)))?;
    let plan = &document["plans"][1];
    let mappings = plan["mappings"]
        .as_array()
        .context("no mappings in the plan")?
        .iter()
        .map(|m| {
            let prot = m["prot"].as_str().unwrap_or("---");
            (m["start"].as_u64().unwrap_or(0), m["end"].as_u64().unwrap_or(0), prot.chars().take(3).collect())
        })
        .collect();
    Ok(Prediction {
        outcome: plan["outcome"].as_str().unwrap_or("?").to_string(),
        message: plan["message"].as_str().map(str::to_string),
        mappings,
    })
}

/// What `pagefit check --closure` predicts for a program at one page size.
#[derive(Clone, Debug)]
pub struct ClosurePrediction {
    /// ld.so's error for the first library that cannot be found.
    pub missing: Option<String>,
    /// The first object in load order that is not ok: its outcome and message.
    pub weakest: Option<(String, Option<String>)>,
}

impl ClosurePrediction {
    /// The predicted column of the table.
    pub fn summary(&self) -> String {
        match (&self.missing, &self.weakest) {
            (Some(missing), _) => format!("closure: {missing}"),
            (None, Some((outcome, Some(message)))) => format!("closure {outcome} ({message})"),
            (None, Some((outcome, None))) => format!("closure {outcome}"),
            (None, None) => "closure ok".to_string(),
        }
    }
}

/// `pagefit check --closure --format json` of `program` (in `dir`) at
/// `page`, resolving system libraries in `sysroot`.
pub fn check_closure(pagefit: &Path, dir: &Path, program: &str, page: &str, sysroot: &Path) -> Result<Value> {
    let output = Command::new(pagefit)
        .args(["check", "--closure", program, "--page-size", page, "--format", "json", "--sysroot"])
        .arg(sysroot)
        .current_dir(dir)
        .output()
        .with_context(|| format!("cannot run {}", pagefit.display()))?;
    serde_json::from_slice(&output.stdout)
        .with_context(|| format!("pagefit check --closure {program}: {}", String::from_utf8_lossy(&output.stderr)))
}

/// Asks `pagefit check --closure` about `program` (in `dir`) at `page`,
/// resolving system libraries in `sysroot`.
pub fn predict_closure(pagefit: &Path, dir: &Path, program: &str, page: &str, sysroot: &Path) -> Result<ClosurePrediction> {
    let document = check_closure(pagefit, dir, program, page, sysroot)?;
    let closure = &document["closure"];
    let missing = closure["unresolved"].as_array().and_then(|u| u.first()).map(|u| {
        format!("error while loading shared libraries: {}: {}", u["name"].as_str().unwrap_or("?"), u["reason"].as_str().unwrap_or("?"))
    });
    let weakest = closure["weakest_links"]
        .as_array()
        .and_then(|w| w.first())
        .map(|w| (w["outcome"].as_str().unwrap_or("?").to_string(), w["message"].as_str().map(str::to_string)));
    Ok(ClosurePrediction { missing, weakest })
}

/// Every way a closure run contradicts the prediction; empty when they agree.
pub fn closure_disagreements(run: &Run, baseline: Option<&Run>, expected: &ClosurePrediction) -> Vec<String> {
    let mut problems = Vec::new();
    let failure = expected
        .missing
        .as_deref()
        .or(expected.weakest.as_ref().and_then(|(outcome, message)| (outcome == "rejected").then_some(message.as_deref().unwrap_or("?"))));
    match (failure, &expected.weakest) {
        (Some(message), _) if message.starts_with("killed by SIGSEGV") => {
            if run.rc != 139 {
                problems.push(format!("predicted death by SIGSEGV at exec, observed rc {}", run.rc));
            }
        }
        (Some(message), _) => {
            if run.rc != 127 || !run.output.contains(message) {
                problems.push(format!("predicted ld.so to say {message:?}, observed rc {} with {:?}", run.rc, run.output.trim()));
            }
        }
        (None, Some((outcome, _))) if outcome == "broken" => {
            if run.rc == 0 && baseline.is_some_and(|b| page_independent_output(run) == page_independent_output(b)) {
                problems.push("predicted broken, but it ran exactly as on 4K".into());
            }
        }
        (None, _) => {
            if run.rc != 0 {
                problems.push(format!("predicted it runs, observed rc {}", run.rc));
            }
            if baseline.is_some_and(|b| page_independent_output(run) != page_independent_output(b)) {
                problems.push("predicted it runs, but the output differs from the 4K run".into());
            }
        }
    }
    problems
}

/// The observation in a few words, for the table.
pub fn observed_summary(run: &Run) -> String {
    let mut summary = match run.rc {
        139 => "SIGSEGV".to_string(),
        rc => format!("rc {rc}"),
    };
    if let Some(line) = run.output.lines().find(|l| l.contains("error while loading") || l.starts_with("dlopen failed")) {
        summary.push_str(&format!(" ({})", line.trim()));
    }
    if run.output.contains("BAD") {
        summary.push_str(" BAD bytes");
    }
    summary
}

/// A line a fixture prints about one of its addresses:
/// `probe|lprobe LABEL 0xADDRESS PERMS` (link-time address, /proc/self/maps perms).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe<'l> {
    /// `probe` (the program) or `lprobe` (its library).
    pub kind: &'l str,
    /// What the address is (`text_end`, `relro_ptr`, ...).
    pub label: &'l str,
    /// The link-time address.
    pub address: u64,
    /// `r-x` and the like.
    pub perms: &'l str,
}

/// Parses a probe line.
pub fn probe(line: &str) -> Option<Probe<'_>> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [kind @ ("probe" | "lprobe"), label, address, perms] = fields.as_slice() else { return None };
    let address = u64::from_str_radix(address.trim_start_matches("0x"), 16).ok()?;
    Some(Probe { kind, label, address, perms: &perms[..perms.len().min(3)] })
}

/// Probe lines that describe the program headers (`load0_last`, `relro_seg`,
/// `relro_seg absent`): a fix or the robust loader changes those on purpose.
pub fn describes_program_headers(line: &str) -> bool {
    let mut words = line.split_whitespace();
    matches!(words.next(), Some("probe" | "lprobe"))
        && words.next().is_some_and(|label| label.starts_with("load") || label.starts_with("relro_seg"))
}

/// How a run differs from a reference run of the same program: the exit
/// status, then line by line, after `normalize` drops or rewrites lines;
/// `judge` says what is wrong with a probe line given the reference's probe
/// with the same kind and label (any other differing line is a problem).
pub fn line_differences(
    run: &Run,
    reference: &Run,
    normalize: impl Fn(&str) -> Option<String>,
    judge: impl Fn(&Probe<'_>, &Probe<'_>) -> Option<String>,
) -> Vec<String> {
    let lines = |run: &Run| -> Vec<String> { run.output.lines().filter_map(&normalize).collect() };
    let (got, want) = (lines(run), lines(reference));
    let mut problems = Vec::new();
    if run.rc != reference.rc {
        problems.push(format!("rc {} where the reference run had {}", run.rc, reference.rc));
    }
    if got.len() != want.len() {
        problems.push(format!("{} lines where the reference run printed {}: {:?}", got.len(), want.len(), run.output.trim()));
        return problems;
    }
    for (got, want) in got.iter().zip(&want) {
        match (probe(got), probe(want)) {
            (Some(have), Some(had)) if (have.kind, have.label) == (had.kind, had.label) => problems.extend(judge(&have, &had)),
            _ if got != want => problems.push(format!("printed {got:?} where the reference run printed {want:?}")),
            _ => {}
        }
    }
    problems
}

/// Probe lines (`probe` or `lprobe`) whose perms differ from the prediction's map.
fn probe_mismatches(run: &Run, prefix: &str, prediction: &Prediction) -> Vec<String> {
    run.output
        .lines()
        .filter_map(probe)
        .filter(|p| p.kind == prefix)
        .filter_map(|p| {
            let predicted = prediction.perms_at(p.address);
            (predicted != p.perms).then(|| format!("{} {} {:#x}: kernel {}, predicted {predicted}", p.kind, p.label, p.address, p.perms))
        })
        .collect()
}

/// What was predicted for one run: the program, and the library it loads
/// (through DT_NEEDED or dlopen), if any.
pub struct Expectation<'p> {
    /// The program itself, under the loader that maps it.
    pub program: &'p Prediction,
    /// The library, under the dynamic loader.
    pub library: Option<&'p Prediction>,
}

impl Expectation<'_> {
    /// The predicted column of the table.
    pub fn summary(&self) -> String {
        match self.library {
            Some(library) => format!("{}; lib {}", self.program.summary(), library.summary()),
            None => self.program.summary(),
        }
    }
}

/// The output with the page size line left out: what must not change between
/// a 4K run and an `ok` run at a larger page size.
fn page_independent_output(run: &Run) -> Vec<&str> {
    run.output.lines().filter(|l| !l.starts_with("auxv pagesz")).collect()
}

/// Every way `run` contradicts `expected`; empty when they agree.
/// `intended_rc` is what the program returns when it runs as its source
/// intends (0 for the fixtures); `baseline` is the same program's run on the
/// 4K kernel: an `ok` run must print exactly what it printed, probes included.
pub fn disagreements(run: &Run, baseline: Option<&Run>, expected: &Expectation<'_>, intended_rc: i32) -> Vec<String> {
    let mut problems = Vec::new();
    let program = expected.program;
    let reached_main = run.output.contains("auxv pagesz");
    if program.dies_at_exec() {
        if run.rc != 139 {
            problems.push(format!("predicted death by SIGSEGV at exec, observed rc {}", run.rc));
        }
        return problems;
    }
    for (prediction, is_library) in std::iter::once((program, false)).chain(expected.library.map(|l| (l, true))) {
        if prediction.outcome == "rejected" {
            // The part after the last ": " is the loader's own words.
            let message = prediction.message.as_deref().unwrap_or("");
            let loader_text = message.rsplit(": ").next().unwrap_or(message);
            if run.rc == 0 || !run.output.contains(loader_text) {
                problems.push(format!("predicted {message:?}, observed rc {} with {:?}", run.rc, run.output.trim()));
            }
            if is_library && !run.output.contains(message.trim_start_matches("error while loading shared libraries: ")) {
                problems.push(format!("ld.so's message differs from the predicted {message:?}"));
            }
            return problems;
        }
    }
    let broken = program.outcome == "broken" || expected.library.is_some_and(|l| l.outcome == "broken");
    let ok = program.outcome == "ok" && expected.library.is_none_or(|l| l.outcome == "ok");
    if let Some(baseline) = baseline.filter(|b| ok && b.rc == intended_rc) {
        if page_independent_output(run) != page_independent_output(baseline) || run.rc != baseline.rc {
            problems.push("predicted ok, but the output differs from the 4K run".into());
        }
    }
    if !broken && run.rc != intended_rc {
        problems.push(format!("predicted it runs (rc {intended_rc}), observed rc {}", run.rc));
    }
    if run.output.contains("BAD") && !broken {
        problems.push("the run saw clobbered bytes, but nothing broken was predicted".into());
    }
    if reached_main {
        problems.extend(probe_mismatches(run, "probe", program));
        if let Some(library) = expected.library {
            problems.extend(probe_mismatches(run, "lprobe", library));
        }
    } else if broken && run.rc == intended_rc {
        problems.push("predicted broken, but it ran without printing its probes".into());
    }
    problems
}

/// A run with nothing to compare with must at least finish, with intact bytes.
pub fn healthy(run: &Run) -> Vec<String> {
    if run.rc == 0 && run.output.lines().any(|l| l == "done") && !run.output.contains("BAD") {
        Vec::new()
    } else {
        vec![format!("rc {} without a clean finish: {:?}", run.rc, run.output.trim())]
    }
}
