//! The fix engine: `pagefit fix`'s typed, in-process API. [`fix_file`] is
//! what closure fixing, `run --fix-deps` and the audit module's helper call;
//! the `fix` command uses [`fix_elf`] for its other modes. JSON is only ever
//! written for users.
//!
//! The rewrite is planned in the core, streamed to a temporary file next to
//! the destination, proven, then renamed into place. Untouched ranges are
//! copied with `std::io::copy` between files, which Linux serves with
//! `copy_file_range`; only header tables are held in memory.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::Path;

use anyhow::{bail, Context};
use object::read::ReadCache;
use pagefit_core::elf::{parse, ElfFile, ParseOptions, Role};
use pagefit_core::fat::is_fat;
use pagefit_core::fix::plan::{PieceSource, RewritePlan, Strategy};
use pagefit_core::fix::proof::{compare_contents, image_checks, rebase_expectations, ComparedBytes, ReadAt};
use pagefit_core::fix::report::{FixReport, FixStatus};
use pagefit_core::fix::strategies::{plan_rewrite, target_loaders};
use pagefit_core::page::PageSize;
use pagefit_core::predict::check::{check_file, CheckOptions};
use pagefit_core::predict::effect::Outcome;
use pagefit_core::predict::model::LoaderModel;
use pagefit_core::predict::plan::BASELINE_PAGE;
use pagefit_loader::source::FileSource;

use crate::inputs::file_name;
use crate::output::StagedFile;

/// What a fix must achieve.
#[derive(Clone, Copy, Debug)]
pub struct FixRequest {
    /// The page size the result must load at (at least 4K).
    pub page_size: PageSize,
    /// The strategy, or `auto`.
    pub strategy: Strategy,
    /// Refuse any result with a segment that is both writable and executable.
    pub no_wx: bool,
}

impl FixRequest {
    /// `auto`, W+X allowed where the target loaders accept it.
    pub fn at(page_size: PageSize) -> FixRequest {
        FixRequest { page_size, strategy: Strategy::Auto, no_wx: false }
    }
}

/// One ELF file run through the engine: the report and, when it was fixed,
/// the proven output, still a temporary file.
pub struct ElfFix {
    /// What happened.
    pub report: FixReport,
    /// The proven output, to be persisted by the caller.
    pub written: Option<StagedFile>,
}

/// Fixes the ELF file `input` into `output`: written and proven, or already
/// ok at P and copied unchanged; refused or unproven, nothing is written.
/// Errors are inputs that cannot be read or parsed and outputs that cannot
/// be written; a file that cannot be fixed is a report, not an error.
pub fn fix_file(input: &Path, output: &Path, request: &FixRequest) -> anyhow::Result<FixReport> {
    let shown = input.display().to_string();
    let (source, metadata) = FileSource::open(input).with_context(|| format!("{shown}: cannot read"))?;
    if is_fat(source.prefix()) {
        bail!("{shown}: a FatELF file; fix it with `pagefit fix`, which rewrites its records");
    }
    let ElfFix { mut report, written } = fix_elf(source, &metadata, input, &shown, Some(output), request)?;
    match (report.status, written) {
        (FixStatus::AlreadyOk, _) => {
            std::fs::copy(input, output).with_context(|| format!("{}: cannot write", output.display()))?;
        }
        (FixStatus::Fixed, Some(written)) => written.persist(output, false)?,
        _ => return Ok(report),
    }
    report.output = Some(output.display().to_string());
    Ok(report)
}

/// Fixes one ELF file: plans the rewrite, and unless `destination` is `None`
/// (a dry run), writes it to a temporary file next to `destination` and
/// proves it. The caller renames the proven file into place.
pub fn fix_elf(
    source: FileSource,
    metadata: &std::fs::Metadata,
    input_path: &Path,
    shown: &str,
    destination: Option<&Path>,
    request: &FixRequest,
) -> anyhow::Result<ElfFix> {
    let page = request.page_size;
    if page < BASELINE_PAGE {
        bail!("--page-size {page}: fix makes files load at page sizes from 4K up, so P must be at least 4K");
    }
    let cache = ReadCache::new(source);
    // Symbols are not needed to move bytes, and reading them would hold
    // megabytes of symbol tables in the cache.
    let options = ParseOptions { sections: true, section_names: true, runtime: true, ..ParseOptions::default() };
    let file = parse(&cache, options).with_context(|| shown.to_string())?;
    if file.role == Role::NotLoadable {
        bail!("{shown}: a {:?} file is not loaded by any loader, so there is nothing to fix", file.kind);
    }
    let loaders = target_loaders(&file);
    let mut report = FixReport::new(shown, page);
    report.loaders = loaders.iter().map(|l| l.name().to_string()).collect();
    // Program headers are all fix can change; an allocator's compiled page
    // size is code and constants, which no rewrite can safely move.
    if let Some(runtime) = file.runtime.iter().find(|r| r.aborts_at(page) == Some(true)) {
        report.reason = Some(format!("{}; no rewrite of the program headers can change that", runtime.consequence(page)));
        report.remedy = Some(runtime.remedy());
        return Ok(ElfFix { report, written: None });
    }
    report.warnings.extend(file.runtime.iter().filter(|r| r.page_size.is_none()).map(|r| r.consequence(page)));
    if ok_at(&file, shown, page, &loaders).is_ok() {
        report.status = FixStatus::AlreadyOk;
        return Ok(ElfFix { report, written: None });
    }

    let plan = match plan_rewrite(&cache, &file, page, request.strategy) {
        Ok(plan) => plan,
        Err(refusals) => {
            report.reason = Some(format!("no strategy applies at {page}"));
            report.refused = refusals;
            return Ok(ElfFix { report, written: None });
        }
    };
    report.strategy = Some(plan.strategy);
    report.delta = plan.delta;
    report.costs = plan.costs.clone();
    report.warnings.extend(plan.warnings.iter().cloned());
    report.refused = plan.refused.clone();
    report.writable_executable = plan.writable_executable;
    if request.no_wx && plan.writable_executable {
        report.reason = Some(format!("--no-wx: {} would leave a segment both writable and executable", plan.strategy));
        return Ok(ElfFix { report, written: None });
    }
    let Some(destination) = destination else {
        report.status = FixStatus::Planned;
        report.plan = Some(plan);
        return Ok(ElfFix { report, written: None });
    };

    let input = cache.into_inner().into_file();
    let staged = StagedFile::create(destination, metadata.permissions().mode() & 0o7777)?;
    write_pieces(&input, staged.file(), &plan).with_context(|| format!("{}: cannot write", staged.path().display()))?;
    match prove(&file, input_path, &input, &staged, page, &loaders, &plan)? {
        Err(reason) => {
            report.status = FixStatus::VerificationFailed;
            report.reason = Some(reason);
            Ok(ElfFix { report, written: None })
        }
        Ok(compared) => {
            report.status = FixStatus::Fixed;
            report.verified = Some(compared);
            Ok(ElfFix { report, written: Some(staged) })
        }
    }
}

/// Whether `check` calls the file ok under every loader at every page size
/// from 4K to `page` (a file fixed for 64K must still run at 4K); if not, why.
fn ok_at(file: &ElfFile, path: &str, page: PageSize, loaders: &[LoaderModel]) -> Result<(), String> {
    let options = CheckOptions {
        page_sizes: BASELINE_PAGE.up_to(page).collect(),
        loaders: Some(loaders.to_vec()),
        max_ok_limit: PageSize::K4,
        findings: true,
        all_abis: true,
        runtime: true,
    };
    let name = file_name(Path::new(path));
    let report = check_file(file, path, &name, &options);
    match report.results.iter().find(|r| r.outcome != Outcome::Ok) {
        None => Ok(()),
        Some(result) => {
            let why = result.message.clone().or_else(|| result.findings.first().map(|f| f.message.clone())).unwrap_or_default();
            Err(format!("{} under {} at {page}: {why}", result.outcome.name(), result.loader))
        }
    }
}

/// Re-reads the written file and proves it: ok at P, and the same bytes as the input at 4K.
fn prove(
    file: &ElfFile,
    input_path: &Path,
    input: &File,
    staged: &StagedFile,
    page: PageSize,
    loaders: &[LoaderModel],
    plan: &RewritePlan,
) -> anyhow::Result<Result<ComparedBytes, String>> {
    let shown = staged.path().display().to_string();
    let (source, _) = FileSource::open(staged.path()).with_context(|| format!("{shown}: cannot re-read"))?;
    let cache = ReadCache::new(source);
    let options = ParseOptions { sections: true, section_names: true, ..ParseOptions::default() };
    let written = match parse(&cache, options) {
        Ok(written) => written,
        Err(e) => return Ok(Err(format!("the output does not parse: {e}"))),
    };
    if let Err(why) = ok_at(&written, &shown, page, loaders) {
        return Ok(Err(format!("the output is {why}")));
    }
    // What rebase must have changed, predicted from the input's section headers.
    let changes = if plan.delta == 0 {
        Vec::new()
    } else {
        let (source, _) = FileSource::open(input_path).with_context(|| format!("{}: cannot re-read", input_path.display()))?;
        match rebase_expectations(&ReadCache::new(source), plan.delta) {
            Ok(changes) => changes,
            Err(why) => return Ok(Err(format!("the rebased image cannot be predicted: {why}"))),
        }
    };
    let mut checks = Vec::new();
    for size in BASELINE_PAGE.up_to(page) {
        match image_checks(file, &written, size, loaders, &plan.rewritten, plan.delta, &changes) {
            Ok(more) => checks.extend(more),
            Err(why) => return Ok(Err(why)),
        }
    }
    checks.sort_unstable();
    checks.dedup();
    let compared = compare_contents(&checks, &Pread(input), &Pread(staged.file()), &changes).context("comparing the images")?;
    Ok(compared)
}

/// `pread` for the core's comparison.
struct Pread<'a>(&'a File);

impl ReadAt for Pread<'_> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.0.read_exact_at(buf, offset)
    }
}

/// Streams the plan's pieces into `out`, which is new and empty: bytes
/// between pieces and zero pieces are left as holes, which read as zeros.
fn write_pieces(input: &File, mut out: &File, plan: &RewritePlan) -> std::io::Result<()> {
    for piece in &plan.pieces {
        match &piece.source {
            PieceSource::Zeros => {}
            PieceSource::Bytes { bytes, .. } => out.write_all_at(bytes, piece.offset)?,
            PieceSource::Copy { from } => {
                let mut reader = input;
                reader.seek(SeekFrom::Start(*from))?;
                out.seek(SeekFrom::Start(piece.offset))?;
                let copied = std::io::copy(&mut std::io::Read::take(reader, piece.len), &mut out)?;
                if copied != piece.len {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("input ended after {copied} of {} bytes at offset {from:#x}", piece.len),
                    ));
                }
            }
        }
    }
    out.set_len(plan.output_len)
}
