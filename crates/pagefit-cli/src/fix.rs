//! `pagefit fix`: plan the rewrite in the core, stream it to a temporary file
//! next to the destination, prove the result, then rename it into place.
//!
//! Untouched ranges are copied with `std::io::copy` between files, which Linux
//! serves with `copy_file_range`; only header tables are held in memory.
//! [`fix_elf`] is that path for one ELF file; a FatELF file's records each
//! take it too (`fat_records`).

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use object::read::ReadCache;
use pagefit_core::check::{check_file, CheckOptions};
use pagefit_core::elf::{parse, ElfFile, ParseOptions, Prot, Role};
use pagefit_core::fat::is_fat;
use pagefit_core::page::PageSize;
use pagefit_core::plan::{Outcome, BASELINE_PAGE};
use pagefit_core::rewrite::{plan_rewrite, program_type_name, target_loaders, PermissionCost, PieceSource, Refusal, RewritePlan, Strategy};
use pagefit_core::verify::{compare_contents, image_checks, rebase_expectations, ComparedBytes, ReadAt};
use serde::Serialize;

use crate::check::file_name;
use crate::cli::Format;
use pagefit_loader::source::FileSource;

mod fat_records;

pub use fat_records::RecordSelector;

pub const FIX_EXAMPLES: &str = "\
Examples:
  pagefit fix --page-size 16k ./prog -o ./prog-16k
  pagefit fix --page-size 64k libfoo.so --in-place --backup     # keeps libfoo.so.bak
  pagefit fix --page-size 16k libfoo.so --dry-run               # print the plan, write nothing
  pagefit fix --page-size 16k ./prog -o out --no-wx --format json
  pagefit fix --page-size 16k --closure ./app --out app-16k/   # app and every library it needs fixed
  pagefit fix --page-size 16k app.fat -o app-16k.fat            # every FatELF record not ok at 16K
  pagefit fix --page-size 16k app.fat -o out.fat --record aarch64 --record record2

Strategies (auto tries them in this order):
  relayout  move file contents so p_offset = p_vaddr (mod P); no permission changes
  rebase    shift an ET_DYN image by Δ so code and data fall on different
            pages; every address it holds moves by Δ (never writable and executable)
  merge     merge PT_LOADs that share a P-page into one with the union of their flags

Every output is re-read and proven before it is kept: `check` calls it ok at P
under the target loaders, and its memory image at P holds the same bytes as the
input's at 4K (for rebase: shifted by Δ, with every moved address predicted
from the input's relocations, symbols and dynamic section). Otherwise it is deleted.
Exit status: 0 fixed (or already ok), 1 refused or verification failed, 2 error.";

/// `pagefit fix` arguments.
#[derive(Args, Debug)]
pub struct FixArgs {
    /// The ELF file to fix.
    #[arg(required_unless_present = "closure")]
    pub input: Option<PathBuf>,
    /// The page size the result must load at: 16k, 64k, 2m or a number of bytes.
    #[arg(long)]
    pub page_size: PageSize,
    /// Where to write the fixed file.
    #[arg(short, long, conflicts_with = "in_place", required_unless_present_any = ["in_place", "dry_run", "closure"])]
    pub output: Option<PathBuf>,
    /// Replace the input atomically (temporary file, fsync, rename), keeping its mode bits.
    /// (-o also writes a temporary file and renames it, but does not fsync, as cp does not.)
    #[arg(long)]
    pub in_place: bool,
    /// With --in-place, keep the original as INPUT.bak.
    #[arg(long, requires = "in_place")]
    pub backup: bool,
    /// auto, relayout, rebase or merge.
    #[arg(long, default_value = "auto")]
    pub strategy: Strategy,
    /// Refuse any result with a segment that is both writable and executable.
    #[arg(long)]
    pub no_wx: bool,
    /// Print the plan and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Fix a program and every library it loads that is not ok at P into --out DIR,
    /// where the program finds them (see `pagefit check --closure`).
    #[arg(long, value_name = "BIN", conflicts_with_all = ["input", "output", "in_place", "dry_run"], requires = "out")]
    pub closure: Option<PathBuf>,
    /// With --closure: the directory to write the program and the fixed libraries into.
    #[arg(long, value_name = "DIR", requires = "closure")]
    pub out: Option<PathBuf>,
    /// FatELF input: fix only the records this target names (recordN, or fields such as
    /// aarch64:64bit:le, as `pagefit fat` takes them); repeatable. Default: every record not ok at P.
    #[arg(long, value_name = "TARGET", conflicts_with = "closure")]
    pub record: Vec<RecordSelector>,
    /// FatELF input: record alignment of the rewritten file (a power of two, at least P; default 64k as glue, or P if larger).
    #[arg(long, value_parser = crate::fat::alignment, conflicts_with = "closure")]
    pub align: Option<u64>,
    /// With --closure: resolve the interpreter, ld.so.conf and absolute directories under DIR.
    #[arg(long, value_name = "DIR", requires = "closure")]
    pub sysroot: Option<String>,
}

/// What happened, in the order a script asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum FixStatus {
    /// Written and proven.
    Fixed,
    /// Nothing to do: the input is already ok at P (copied to the output unchanged).
    AlreadyOk,
    /// `--dry-run`: the plan, nothing written.
    Planned,
    /// No strategy applies (or `--no-wx` refused the only one that does).
    Refused,
    /// The written file did not pass the proof and was deleted.
    VerificationFailed,
    /// A FatELF record `--record` did not select: copied unchanged.
    NotSelected,
    /// A FatELF record fixed and proven, but not written because another
    /// record was refused or failed its proof.
    NotWritten,
}

impl FixStatus {
    /// Refused or failed: nothing may be written.
    fn is_failure(self) -> bool {
        matches!(self, FixStatus::Refused | FixStatus::VerificationFailed)
    }
}

/// `pagefit fix --format json` (for a FatELF file, one per record).
#[derive(Serialize)]
struct FixReport {
    path: String,
    output: Option<String>,
    /// FatELF only: `recordN`.
    #[serde(skip_serializing_if = "Option::is_none")]
    record: Option<String>,
    /// FatELF only: the record's target after the fix (version 2: with its
    /// largest ok page size, measured on the fixed file).
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<String>,
    page_size: PageSize,
    status: FixStatus,
    strategy: Option<Strategy>,
    /// How far rebase moved every address (0 otherwise).
    delta: u64,
    /// Why it was refused or failed verification.
    reason: Option<String>,
    costs: Vec<PermissionCost>,
    warnings: Vec<String>,
    refused: Vec<Refusal>,
    writable_executable: bool,
    /// The loaders the output was proven `ok` under.
    loaders: Vec<String>,
    verified: Option<ComparedBytes>,
    plan: Option<RewritePlan>,
}

impl FixReport {
    /// A report on `path` that says nothing was done yet.
    fn new(path: &str, args: &FixArgs) -> FixReport {
        FixReport {
            path: path.to_string(),
            output: None,
            record: None,
            target: None,
            page_size: args.page_size,
            status: FixStatus::Refused,
            strategy: None,
            delta: 0,
            reason: None,
            costs: Vec::new(),
            warnings: Vec::new(),
            refused: Vec::new(),
            writable_executable: false,
            loaders: Vec::new(),
            verified: None,
            plan: None,
        }
    }
}

/// One ELF file run through the engine: the report and, when it was fixed,
/// the proven output, still a temporary file.
struct ElfFix {
    report: FixReport,
    written: Option<TempFile>,
}

pub fn run(args: &FixArgs) -> anyhow::Result<ExitCode> {
    let input_path = match (&args.input, &args.closure, &args.out) {
        (_, Some(program), Some(out)) => return crate::fix_closure::run(program, out, args),
        (Some(path), _, _) => path,
        _ => bail!("pagefit fix needs a file, or --closure BIN --out DIR"),
    };
    let shown = input_path.display().to_string();
    let (source, metadata) = FileSource::open(input_path).with_context(|| format!("{shown}: cannot read"))?;
    let page = args.page_size;
    if page < BASELINE_PAGE {
        bail!("--page-size {page}: fix makes files load at page sizes from 4K up, so P must be at least 4K");
    }
    let backup = args.backup.then(|| with_suffix(input_path, ".bak"));
    if let Some(backup) = backup.as_ref().filter(|b| b.symlink_metadata().is_ok()) {
        bail!("{shown}: the backup {} already exists", backup.display());
    }
    if let Some(output) = &args.output {
        if is_same_file(&metadata, output) {
            bail!("{shown}: the output {} is the input; use --in-place to replace it", output.display());
        }
    }
    let destination = (!args.dry_run).then(|| args.output.clone().unwrap_or_else(|| input_path.clone()));
    if is_fat(source.prefix()) {
        return fat_records::run(args, input_path, source.into_file(), &metadata, destination.as_deref(), backup.as_deref());
    }
    if !args.record.is_empty() || args.align.is_some() {
        bail!("{shown}: --record and --align are for FatELF files, and this is not one");
    }

    let ElfFix { mut report, written } = fix_elf(source, &metadata, input_path, &shown, destination.as_deref(), args)?;
    match (report.status, written, &destination) {
        (FixStatus::AlreadyOk, _, Some(destination)) if args.output.is_some() => {
            std::fs::copy(input_path, destination).with_context(|| format!("{}: cannot write", destination.display()))?;
        }
        (FixStatus::Fixed, Some(written), Some(destination)) => {
            keep_backup(input_path, backup.as_deref())?;
            written.persist(destination, args.in_place)?;
            report.output = Some(destination.display().to_string());
        }
        _ => {}
    }
    finish(args, &[report], false)
}

/// Fixes one ELF file with the engine: plans the rewrite, and unless
/// `destination` is `None` (a dry run), writes it to a temporary file next to
/// `destination` and proves it. The caller renames the proven file into place.
fn fix_elf(
    source: FileSource,
    metadata: &std::fs::Metadata,
    input_path: &Path,
    shown: &str,
    destination: Option<&Path>,
    args: &FixArgs,
) -> anyhow::Result<ElfFix> {
    let cache = ReadCache::new(source);
    // Symbols are not needed to move bytes, and reading them would hold
    // megabytes of symbol tables in the cache.
    let options = ParseOptions { sections: true, section_names: true, symbols: false, dynamic_strings: false };
    let file = parse(&cache, options).with_context(|| shown.to_string())?;
    if file.role == Role::NotLoadable {
        bail!("{shown}: a {:?} file is not loaded by any loader, so there is nothing to fix", file.kind);
    }
    let page = args.page_size;
    let loaders = target_loaders(&file);
    let mut report = FixReport::new(shown, args);
    report.output = args.output.as_ref().map(|o| o.display().to_string());
    report.loaders = loaders.iter().map(|l| l.name().to_string()).collect();
    if ok_at(&file, shown, page, &loaders).is_ok() {
        report.status = FixStatus::AlreadyOk;
        return Ok(ElfFix { report, written: None });
    }

    let plan = match plan_rewrite(&cache, &file, page, args.strategy) {
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
    report.warnings = plan.warnings.clone();
    report.refused = plan.refused.clone();
    report.writable_executable = plan.writable_executable;
    if args.no_wx && plan.writable_executable {
        report.reason = Some(format!("--no-wx: {} would leave a segment both writable and executable", plan.strategy));
        return Ok(ElfFix { report, written: None });
    }
    let Some(destination) = destination else {
        report.status = FixStatus::Planned;
        report.plan = Some(plan);
        return Ok(ElfFix { report, written: None });
    };

    let input = cache.into_inner().into_file();
    let temp = TempFile::create(destination, metadata.permissions().mode() & 0o7777)?;
    write_pieces(&input, &temp.file, &plan).with_context(|| format!("{}: cannot write", temp.path.display()))?;
    match prove(&file, input_path, &input, &temp, page, &loaders, &plan)? {
        Err(reason) => {
            report.status = FixStatus::VerificationFailed;
            report.reason = Some(reason);
            Ok(ElfFix { report, written: None })
        }
        Ok(compared) => {
            report.status = FixStatus::Fixed;
            report.verified = Some(compared);
            Ok(ElfFix { report, written: Some(temp) })
        }
    }
}

/// With `--backup`, links (or copies) the input to INPUT.bak before it is replaced.
fn keep_backup(input_path: &Path, backup: Option<&Path>) -> anyhow::Result<()> {
    if let Some(backup) = backup {
        // A hard link keeps the original's inode, mode and times; a copy where links are not possible.
        std::fs::hard_link(input_path, backup)
            .or_else(|_| std::fs::copy(input_path, backup).map(|_| ()))
            .with_context(|| format!("{}: cannot keep a backup", backup.display()))?;
    }
    Ok(())
}

/// Whether `check` calls the file ok under every loader at every page size
/// from 4K to `page` (a file fixed for 64K must still run at 4K); if not, why.
fn ok_at(file: &ElfFile, path: &str, page: PageSize, loaders: &[pagefit_core::model::LoaderModel]) -> Result<(), String> {
    let options = CheckOptions {
        page_sizes: BASELINE_PAGE.up_to(page).collect(),
        loaders: Some(loaders.to_vec()),
        max_ok_limit: PageSize::K4,
        findings: true,
        all_abis: true,
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
    temp: &TempFile,
    page: PageSize,
    loaders: &[pagefit_core::model::LoaderModel],
    plan: &RewritePlan,
) -> anyhow::Result<Result<ComparedBytes, String>> {
    let (source, _) = FileSource::open(&temp.path).with_context(|| format!("{}: cannot re-read", temp.path.display()))?;
    let cache = ReadCache::new(source);
    let options = ParseOptions { sections: true, section_names: true, symbols: false, dynamic_strings: false };
    let written = match parse(&cache, options) {
        Ok(written) => written,
        Err(e) => return Ok(Err(format!("the output does not parse: {e}"))),
    };
    if let Err(why) = ok_at(&written, &temp.path.display().to_string(), page, loaders) {
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
    let compared = compare_contents(&checks, &Pread(input), &Pread(&temp.file), &changes).context("comparing the images")?;
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

/// A file being written next to its destination; removed unless persisted.
struct TempFile {
    path: PathBuf,
    file: File,
    kept: bool,
}

impl TempFile {
    fn create(destination: &Path, mode: u32) -> anyhow::Result<TempFile> {
        let name = destination.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let path = destination.with_file_name(format!(".{name}.pagefit-{}", std::process::id()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .with_context(|| format!("{}: cannot create", path.display()))?;
        // The umask may have cleared bits the input had.
        file.set_permissions(std::fs::Permissions::from_mode(mode)).with_context(|| format!("{}: chmod", path.display()))?;
        Ok(TempFile { path, file, kept: false })
    }

    /// Renames the file over `destination`. With `durable` the file is synced
    /// first and the directory after: replacing a file must survive a crash
    /// (either the old or the new file). A new output is as durable as `cp`
    /// makes it, which is much faster on big files.
    fn persist(mut self, destination: &Path, durable: bool) -> anyhow::Result<()> {
        if durable {
            self.file.sync_all().with_context(|| format!("{}: fsync", self.path.display()))?;
        }
        std::fs::rename(&self.path, destination).with_context(|| format!("{}: cannot rename into place", destination.display()))?;
        self.kept = true;
        if durable {
            let directory = destination.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            File::open(directory).and_then(|d| d.sync_all()).with_context(|| format!("{}: fsync", directory.display()))?;
        }
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn is_same_file(input: &std::fs::Metadata, output: &Path) -> bool {
    std::fs::metadata(output).is_ok_and(|o| o.dev() == input.dev() && o.ino() == input.ino())
}

/// Prints the reports: one JSON object for an ELF file, an array with one
/// per record for a FatELF file.
fn finish(args: &FixArgs, reports: &[FixReport], fat: bool) -> anyhow::Result<ExitCode> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match (args.format, reports) {
        (Format::Json, [report]) if !fat => serde_json::to_writer_pretty(&mut out, report)?,
        (Format::Json, _) => serde_json::to_writer_pretty(&mut out, reports)?,
        (Format::Text, _) => {
            for report in reports {
                write_text(&mut out, report)?;
            }
        }
    }
    if args.format == Format::Json {
        writeln!(out)?;
    }
    out.flush()?;
    let failed = reports.iter().any(|r| r.status.is_failure());
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn write_text(out: &mut dyn Write, report: &FixReport) -> std::io::Result<()> {
    let page = report.page_size;
    let strategy = match report.strategy {
        Some(Strategy::Rebase) => format!("rebase (Δ {:#x})", report.delta),
        Some(strategy) => strategy.name().to_string(),
        None => "-".to_string(),
    };
    match report.status {
        FixStatus::Fixed => {
            writeln!(out, "{}: fixed for {page} by {strategy} -> {}", report.path, report.output.as_deref().unwrap_or("?"))?
        }
        FixStatus::AlreadyOk => writeln!(out, "{}: already ok at {page}; nothing to fix", report.path)?,
        FixStatus::NotSelected => writeln!(out, "{}: not selected by --record; kept as it is", report.path)?,
        FixStatus::NotWritten => {
            writeln!(out, "{}: fixed and proven for {page} by {strategy}; {}", report.path, report.reason.as_deref().unwrap_or(""))?
        }
        FixStatus::Planned => writeln!(out, "{}: plan for {page} by {strategy} (dry run, nothing written)", report.path)?,
        FixStatus::Refused => {
            writeln!(out, "{}: refused at {page}: {}", report.path, report.reason.as_deref().unwrap_or("no strategy applies"))?
        }
        FixStatus::VerificationFailed => writeln!(
            out,
            "{}: verification failed at {page} ({strategy}); output deleted: {}",
            report.path,
            report.reason.as_deref().unwrap_or("")
        )?,
    }
    for refusal in &report.refused {
        writeln!(out, "  {} refused: {}", refusal.strategy, refusal.reason)?;
    }
    for cost in &report.costs {
        writeln!(out, "  cost: {}", cost.message)?;
    }
    for warning in &report.warnings {
        writeln!(out, "  warning: {warning}")?;
    }
    if let Some(plan) = &report.plan {
        writeln!(out, "  program headers (e_phoff {:#x}):", plan.phoff)?;
        writeln!(out, "    {:<13} {:>10} {:>18} {:>10} {:>10} flg align", "type", "offset", "vaddr", "filesz", "memsz")?;
        for ph in &plan.program_headers {
            writeln!(
                out,
                "    {:<13} {:#010x} {:#018x} {:#010x} {:#010x} {} {:#x}",
                program_type_name(ph.p_type),
                ph.p_offset,
                ph.p_vaddr,
                ph.p_filesz,
                ph.p_memsz,
                Prot::from_p_flags(ph.p_flags).readelf_string(),
                ph.p_align
            )?;
        }
        writeln!(out, "  output: {} bytes in {} pieces:", plan.output_len, plan.pieces.len())?;
        for piece in &plan.pieces {
            let what = match &piece.source {
                PieceSource::Copy { from } => format!("copy input {from:#x}–{:#x}", from + piece.len),
                PieceSource::Zeros => "zeros".to_string(),
                PieceSource::Bytes { what, .. } => format!("new {what}"),
            };
            writeln!(out, "    {:#010x}–{:#010x} {what}", piece.offset, piece.offset + piece.len)?;
        }
    }
    if let Some(compared) = report.verified {
        writeln!(
            out,
            "  verified: ok at 4K to {page} under {}; its image equals the input's 4K image{} over {} ranges ({} bytes compared)",
            report.loaders.join(", "),
            if report.delta == 0 { String::new() } else { format!(" shifted by {:#x}, moved addresses as predicted,", report.delta) },
            compared.ranges,
            compared.bytes
        )?;
    }
    Ok(())
}
