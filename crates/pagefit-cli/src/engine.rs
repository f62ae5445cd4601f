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
use pagefit_core::elf::{parse, ElfFile, Platform, Role};
use pagefit_core::fat::is_fat;
use pagefit_core::fix::plan::{RewritePlan, Strategy};
use pagefit_core::fix::proof::{ComparedBytes, ReadAt};
use pagefit_core::fix::report::{FixReport, FixStatus};
use pagefit_core::fix::steps::{decide, parse_options, prove, Decision, Readers};
use pagefit_core::fix::write::{write_plan, PieceSink};
use pagefit_core::page::PageSize;
use pagefit_core::predict::model::LoaderModel;
use pagefit_core::predict::plan::BASELINE_PAGE;
use pagefit_loader::source::FileSource;

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
    /// The platform the file is built for whatever its notes say (a library
    /// inside an Android package is Android's); `None` reads it from the file.
    pub platform: Option<Platform>,
}

impl FixRequest {
    /// `auto`, W+X allowed where the target loaders accept it.
    pub fn at(page_size: PageSize) -> FixRequest {
        FixRequest { page_size, strategy: Strategy::Auto, no_wx: false, platform: None }
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
    fix_parsed(ParsedElf::parse(source, shown, request)?, metadata, input_path, shown, destination, request)
}

/// An ELF file read for fixing: its headers parsed once, its bytes behind a cache.
pub struct ParsedElf {
    cache: ReadCache<FileSource>,
    file: ElfFile,
}

impl ParsedElf {
    /// Parses `source`, with the platform the request imposes (Android's, inside an Android package).
    pub fn parse(source: FileSource, shown: &str, request: &FixRequest) -> anyhow::Result<ParsedElf> {
        let cache = ReadCache::new(source);
        let mut file = parse(&cache, parse_options()).with_context(|| shown.to_string())?;
        if let Some(platform) = request.platform {
            file.platform = platform;
        }
        Ok(ParsedElf { cache, file })
    }

    /// Executable, interpreter, shared object, or nothing any loader maps.
    pub fn role(&self) -> Role {
        self.file.role
    }
}

/// [`fix_elf`] of a file already parsed.
pub fn fix_parsed(
    parsed: ParsedElf,
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
    let ParsedElf { cache, file } = parsed;
    let (mut report, plan, loaders) =
        match decide(&cache, &file, shown, page, request.strategy, request.no_wx).map_err(anyhow::Error::msg)? {
            Decision::Done(report) => return Ok(ElfFix { report, written: None }),
            Decision::Rewrite { report, plan, loaders } => (report, plan, loaders),
        };
    let Some(destination) = destination else {
        report.status = FixStatus::Planned;
        report.plan = Some(*plan);
        return Ok(ElfFix { report, written: None });
    };

    let input = cache.into_inner().into_file();
    let staged = StagedFile::create(destination, metadata.permissions().mode() & 0o7777)?;
    write_plan(&plan, &mut FileSink { input: &input, out: staged.file() })
        .with_context(|| format!("{}: cannot write", staged.path().display()))?;
    match prove_written(&file, input_path, &input, &staged, &loaders, &plan)? {
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

/// Re-reads the written file and proves it: ok at P, and the same bytes as the input at 4K.
fn prove_written(
    file: &ElfFile,
    input_path: &Path,
    input: &File,
    staged: &StagedFile,
    loaders: &[LoaderModel],
    plan: &RewritePlan,
) -> anyhow::Result<Result<ComparedBytes, String>> {
    let shown = staged.path().display().to_string();
    let (written, _) = FileSource::open(staged.path()).with_context(|| format!("{shown}: cannot re-read"))?;
    let (source, _) = FileSource::open(input_path).with_context(|| format!("{}: cannot re-read", input_path.display()))?;
    let (written, source) = (ReadCache::new(written), ReadCache::new(source));
    let input = Readers { data: &source, at: &Pread(input) };
    let written = Readers { data: &written, at: &Pread(staged.file()) };
    prove(file, plan, loaders, input, written, &shown).context("comparing the images")
}

/// `pread` for the core's comparison.
struct Pread<'a>(&'a File);

impl ReadAt for Pread<'_> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.0.read_exact_at(buf, offset)
    }
}

/// The plan's output streamed to a new, empty file: zeros are holes, and
/// untouched ranges are copied between files by the kernel.
struct FileSink<'a> {
    input: &'a File,
    out: &'a File,
}

impl PieceSink for FileSink<'_> {
    fn write_at(&mut self, bytes: &[u8], offset: u64) -> std::io::Result<()> {
        self.out.write_all_at(bytes, offset)
    }

    fn copy_at(&mut self, from: u64, len: u64, offset: u64) -> std::io::Result<()> {
        let (mut reader, mut out) = (self.input, self.out);
        reader.seek(SeekFrom::Start(from))?;
        out.seek(SeekFrom::Start(offset))?;
        let copied = std::io::copy(&mut std::io::Read::take(reader, len), &mut out)?;
        if copied != len {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("input ended after {copied} of {len} bytes at offset {from:#x}"),
            ));
        }
        Ok(())
    }

    fn set_len(&mut self, len: u64) -> std::io::Result<()> {
        self.out.set_len(len)
    }
}
