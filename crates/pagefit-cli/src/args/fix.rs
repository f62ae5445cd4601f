//! `pagefit fix`'s arguments.

use std::path::PathBuf;
use std::str::FromStr;

use clap::Args;
use pagefit_core::fat::{TargetError, TargetSelector};
use pagefit_core::fix::plan::Strategy;
use pagefit_core::page::PageSize;

use crate::args::format::Format;

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
    /// Required, except for Android packages (AAR, APK, AAB, .apks), where it defaults to 16k.
    #[arg(long)]
    pub page_size: Option<PageSize>,
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
    #[arg(long, value_parser = crate::args::fat::alignment, conflicts_with = "closure")]
    pub align: Option<u64>,
    /// With --closure: resolve the interpreter, ld.so.conf and absolute directories under DIR.
    #[arg(long, value_name = "DIR", requires = "closure")]
    pub sysroot: Option<String>,
}

/// A `--record` target, with the words it was given in for messages.
#[derive(Clone, Debug)]
pub struct RecordSelector {
    /// The words it was given in.
    pub text: String,
    /// What they select.
    pub selector: TargetSelector,
}

impl FromStr for RecordSelector {
    type Err = TargetError;

    fn from_str(text: &str) -> Result<RecordSelector, TargetError> {
        Ok(RecordSelector { text: text.to_string(), selector: text.parse()? })
    }
}
