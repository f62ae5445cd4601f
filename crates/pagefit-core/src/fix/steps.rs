//! The steps `pagefit fix` takes for one ELF file, apart from reading and
//! writing: [`decide`] (refuse, already ok, or a plan to write) and, once
//! the plan is written, [`prove`]. The CLI runs them over files;
//! [`fix_in_memory`] runs them over bytes, for the `fix` fuzz target and
//! its regression inputs.

use std::path::Path;

use object::ReadRef;

use crate::elf::{parse, ElfFile, ParseOptions, Role};
use crate::page::PageSize;
use crate::predict::check::{check_file, CheckOptions};
use crate::predict::effect::Outcome;
use crate::predict::model::LoaderModel;
use crate::predict::plan::BASELINE_PAGE;

use super::plan::{RewritePlan, Strategy};
use super::proof::{compare_contents, image_checks, rebase_expectations, ComparedBytes, ReadAt};
use super::report::{FixReport, FixStatus};
use super::strategies::{plan_rewrite, target_loaders};
use super::write::render;

/// What `pagefit fix` parses its input with: sections and their names, and
/// the runtime search. Symbols are not needed to move bytes, and reading
/// them would hold megabytes of symbol tables in memory.
pub fn parse_options() -> ParseOptions {
    ParseOptions { sections: true, section_names: true, runtime: true, ..ParseOptions::default() }
}

/// What fixing one file comes to before anything is written.
#[derive(Debug)]
pub enum Decision {
    /// Nothing to write: refused, or already ok at P (the report's status says which).
    Done(FixReport),
    /// A plan to write and then [`prove`] under `loaders`.
    Rewrite {
        /// The report so far (status `Refused` until the proof passes).
        report: FixReport,
        /// The rewrite.
        plan: Box<RewritePlan>,
        /// The loaders the output must be ok under.
        loaders: Vec<LoaderModel>,
    },
}

/// Decides what to do with `file`, parsed from `data` with section headers
/// and their names and the runtime search, to make it load at `page`.
/// `Err` is a file no loader loads, which nothing can fix.
pub fn decide<'data, R: ReadRef<'data>>(
    data: R,
    file: &ElfFile,
    shown: &str,
    page: PageSize,
    strategy: Strategy,
    no_wx: bool,
) -> Result<Decision, String> {
    if file.role == Role::NotLoadable {
        return Err(format!("{shown}: a {:?} file is not loaded by any loader, so there is nothing to fix", file.kind));
    }
    let loaders = target_loaders(file);
    let mut report = FixReport::new(shown, page);
    report.loaders = loaders.iter().map(|l| l.name().to_string()).collect();
    // Program headers are all fix can change; an allocator's compiled page
    // size is code and constants, which no rewrite can safely move.
    if let Some(runtime) = file.runtime.iter().find(|r| r.aborts_at(page) == Some(true)) {
        report.reason = Some(format!("{}; no rewrite of the program headers can change that", runtime.consequence(page)));
        report.remedy = Some(runtime.remedy());
        return Ok(Decision::Done(report));
    }
    report.warnings.extend(file.runtime.iter().filter(|r| r.page_size.is_none()).map(|r| r.consequence(page)));
    if ok_at(file, shown, page, &loaders).is_ok() {
        report.status = FixStatus::AlreadyOk;
        return Ok(Decision::Done(report));
    }
    let plan = match plan_rewrite(data, file, page, strategy) {
        Ok(plan) => plan,
        Err(refusals) => {
            report.reason = Some(format!("no strategy applies at {page}"));
            report.refused = refusals;
            return Ok(Decision::Done(report));
        }
    };
    report.strategy = Some(plan.strategy);
    report.delta = plan.delta;
    report.costs = plan.costs.clone();
    report.warnings.extend(plan.warnings.iter().cloned());
    report.refused = plan.refused.clone();
    report.writable_executable = plan.writable_executable;
    if no_wx && plan.writable_executable {
        report.reason = Some(format!("--no-wx: {} would leave a segment both writable and executable", plan.strategy));
        return Ok(Decision::Done(report));
    }
    Ok(Decision::Rewrite { report, plan: Box::new(plan), loaders })
}

/// Whether `check` calls the file ok under every loader at every page size
/// from 4K to `page` (a file fixed for 64K must still run at 4K); if not, why.
pub fn ok_at(file: &ElfFile, path: &str, page: PageSize, loaders: &[LoaderModel]) -> Result<(), String> {
    let options = CheckOptions {
        page_sizes: BASELINE_PAGE.up_to(page).collect(),
        loaders: Some(loaders.to_vec()),
        max_ok_limit: PageSize::K4,
        findings: true,
        all_abis: true,
        runtime: true,
    };
    let path_name = Path::new(path);
    let name = path_name.file_name().map_or_else(|| path.to_string(), |n| n.to_string_lossy().into_owned());
    let report = check_file(file, path, &name, &options);
    match report.results.iter().find(|r| r.outcome != Outcome::Ok) {
        None => Ok(()),
        Some(result) => {
            let why = result.message.clone().or_else(|| result.findings.first().map(|f| f.message.clone())).unwrap_or_default();
            Err(format!("{} under {} at {page}: {why}", result.outcome.name(), result.loader))
        }
    }
}

/// One file as the proof reads it: parsed through `object`, and compared by
/// positioned reads.
pub struct Readers<'a, R, A: ReadAt + ?Sized> {
    /// For parsing.
    pub data: R,
    /// For comparing bytes.
    pub at: &'a A,
}

/// Proves a written plan: the output (shown as `shown`) parses, is ok at
/// every page size up to `page` under `loaders`, and its image at P holds
/// the input's 4K image byte for byte. `Ok(Err(why))` is a rejection; `Err`
/// a read error.
pub fn prove<'i, 'w, I: ReadRef<'i>, W: ReadRef<'w>, IA: ReadAt + ?Sized, WA: ReadAt + ?Sized>(
    file: &ElfFile,
    plan: &RewritePlan,
    loaders: &[LoaderModel],
    input: Readers<'_, I, IA>,
    written: Readers<'_, W, WA>,
    shown: &str,
) -> std::io::Result<Result<ComparedBytes, String>> {
    let page = plan.page_size;
    let options = ParseOptions { sections: true, section_names: true, ..ParseOptions::default() };
    let parsed = match parse(written.data, options) {
        Ok(parsed) => parsed,
        Err(e) => return Ok(Err(format!("the output does not parse: {e}"))),
    };
    if let Err(why) = ok_at(&parsed, shown, page, loaders) {
        return Ok(Err(format!("the output is {why}")));
    }
    // What rebase must have changed, predicted from the input's section headers.
    let changes = if plan.delta == 0 {
        Vec::new()
    } else {
        match rebase_expectations(input.data, plan.delta) {
            Ok(changes) => changes,
            Err(why) => return Ok(Err(format!("the rebased image cannot be predicted: {why}"))),
        }
    };
    let mut checks = Vec::new();
    for size in BASELINE_PAGE.up_to(page) {
        match image_checks(file, &parsed, size, loaders, &plan.rewritten, plan.delta, &changes) {
            Ok(more) => checks.extend(more),
            Err(why) => return Ok(Err(why)),
        }
    }
    checks.sort_unstable();
    checks.dedup();
    compare_contents(&checks, input.at, written.at, &changes)
}

/// How [`fix_in_memory`] ended.
#[derive(Debug)]
pub enum InMemoryFix {
    /// Refused, or already ok at P: nothing written.
    Done(Box<FixReport>),
    /// Written and proven.
    Proven(Vec<u8>),
    /// The output would be longer than the limit given, so it was not written.
    TooLarge,
    /// Written, and the proof rejects it, or the plan cannot be written (the
    /// CLI deletes such an output): a bug in the planner or in the proof.
    Rejected(String),
}

/// `pagefit fix` of `data` (parsed into `file` with [`parse_options`]) at
/// `page` with `strategy`, in memory: [`decide`], [`render`] (up to
/// `max_output` bytes) and [`prove`]. `Err` is an input `pagefit fix` stops
/// at with an error (one no loader loads).
pub fn fix_in_memory(data: &[u8], file: &ElfFile, page: PageSize, strategy: Strategy, max_output: u64) -> Result<InMemoryFix, String> {
    let (plan, loaders) = match decide(data, file, "input", page, strategy, false)? {
        Decision::Done(report) => return Ok(InMemoryFix::Done(Box::new(report))),
        Decision::Rewrite { plan, loaders, .. } => (plan, loaders),
    };
    let output = match render(&plan, data, max_output) {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::FileTooLarge => return Ok(InMemoryFix::TooLarge),
        Err(e) => return Ok(InMemoryFix::Rejected(format!("{} at {page}: the plan cannot be written: {e}", plan.strategy))),
    };
    let input = Readers { data, at: data };
    let written = Readers { data: output.as_slice(), at: output.as_slice() };
    Ok(match prove(file, &plan, &loaders, input, written, "output") {
        Ok(Ok(_)) => InMemoryFix::Proven(output),
        Ok(Err(why)) => InMemoryFix::Rejected(format!("{} at {page}: the proof rejects the output: {why}", plan.strategy)),
        Err(e) => InMemoryFix::Rejected(format!("{} at {page}: reading memory failed: {e}", plan.strategy)),
    })
}
