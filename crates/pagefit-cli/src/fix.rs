//! `pagefit fix`: plan the rewrite in the core, stream it to a temporary file
//! next to the destination, prove the result, then rename it into place.
//!
//! Untouched ranges are copied with `std::io::copy` between files, which Linux
//! serves with `copy_file_range`; only header tables are held in memory.
//! [`fix_elf`] is that path for one ELF file; a FatELF file's records each
//! take it too (`fat_records`).

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use pagefit_core::fat::is_fat;
use pagefit_core::fix::plan::Strategy;
use pagefit_core::fix::report::{FixReport, FixStatus};
use pagefit_core::page::PageSize;
use pagefit_core::render::fix::write_fix_text;
use pagefit_loader::source::FileSource;

use crate::cli::Format;
use crate::engine::{fix_elf, ElfFix, FixRequest};

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

impl FixArgs {
    /// The engine's request.
    pub fn request(&self) -> FixRequest {
        FixRequest { page_size: self.page_size, strategy: self.strategy, no_wx: self.no_wx }
    }
}

pub fn run(args: &FixArgs) -> anyhow::Result<ExitCode> {
    let input_path = match (&args.input, &args.closure, &args.out) {
        (_, Some(program), Some(out)) => return crate::fix_closure::run(program, out, args),
        (Some(path), _, _) => path,
        _ => bail!("pagefit fix needs a file, or --closure BIN --out DIR"),
    };
    let shown = input_path.display().to_string();
    let (source, metadata) = FileSource::open(input_path).with_context(|| format!("{shown}: cannot read"))?;
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

    let ElfFix { mut report, written } = fix_elf(source, &metadata, input_path, &shown, destination.as_deref(), &args.request())?;
    report.output = args.output.as_ref().map(|o| o.display().to_string());
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
                write_fix_text(&mut out, report)?;
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
