//! `pagefit run`'s arguments.

use std::ffi::OsString;

use clap::Args;
use pagefit_core::page::PageSize;
use pagefit_core::run::plan::GapPolicy;

use crate::args::format::Format;

const RUN_EXAMPLES: &str = "\
Examples:
  pagefit run ./app-4k --flag                 run a 4K program on a 16K or 64K kernel
  pagefit run --page-size 16k ./prog          emulate a 16K kernel on a 4K host (AT_PAGESZ = 16384)
  pagefit run --page-size 16k --as-kernel ./prog   what Linux itself would do at 16K
  pagefit run --report -- ./prog -x           print every mapping and composed page on stderr first
  pagefit run --fix-deps ./app-4k             also fix its 4K libraries (cached) and load those
  pagefit run app.fat ARGS                    a FatELF file: the record for this CPU and page size,
                                              mapped straight from the file (--report says why)

Exit status: the program's. pagefit's own errors exit 2; --as-kernel dies by SIGSEGV
where the kernel would.";

/// `pagefit run` arguments.
#[derive(Args, Debug)]
#[command(after_help = RUN_EXAMPLES)]
pub struct RunArgs {
    /// Plan every mapping with this page size and report it as AT_PAGESZ
    /// (default: the host's). Larger than the host's: emulation.
    #[arg(long, value_name = "P")]
    pub page_size: Option<PageSize>,
    /// Map the program and its interpreter as Linux binfmt_elf would at P,
    /// without the robust fixes (non-congruent segments die with SIGSEGV).
    #[arg(long)]
    pub as_kernel: bool,
    /// What to do with pages between segments: extend the previous file
    /// mapping over them, unmap them (like the kernel), or leave them
    /// reserved PROT_NONE (like glibc). --as-kernel always unmaps them.
    #[arg(long, value_name = "POLICY", default_value = "extend", value_parser = gap_policy)]
    pub gaps: GapPolicy,
    /// Place the program's and interpreter's text on 2 MiB boundaries where
    /// its file offset allows, and ask for transparent huge pages there
    /// (MADV_HUGEPAGE, then MADV_COLLAPSE).
    #[arg(long)]
    pub thp: bool,
    /// --thp, and where the kernel will not back file text with huge pages
    /// (it needs CONFIG_READ_ONLY_THP_FOR_FS), copy those 2 MiB chunks into
    /// anonymous memory that it can: faster text for private memory, which
    /// --report counts.
    #[arg(long)]
    pub thp_copy: bool,
    /// Print every mapping (file-backed or composed), its protection, and
    /// what each composed page costs, on stderr before the program starts.
    #[arg(long)]
    pub report: bool,
    /// The report's format.
    #[arg(long, value_enum, default_value = "text", requires = "report")]
    pub format: Format,
    /// Fix every library of the program's closure that is not ok at P into
    /// $XDG_CACHE_HOME/pagefit (content-addressed) and put those copies first
    /// in the program's LD_LIBRARY_PATH.
    #[arg(long)]
    pub fix_deps: bool,
    /// The program (searched in PATH when it has no slash): an ELF file, or
    /// a FatELF file whose record for this host is loaded.
    pub program: OsString,
    /// Its arguments, passed through verbatim.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<OsString>,
    /// Set when binfmt_misc ran pagefit for a FatELF file: the argv[0] the
    /// file was executed with. The program path is then taken as the kernel
    /// gave it, never searched in PATH.
    #[arg(skip)]
    pub binfmt_argv0: Option<OsString>,
}

fn gap_policy(text: &str) -> Result<GapPolicy, String> {
    match text {
        "extend" => Ok(GapPolicy::Extend),
        "unmap" => Ok(GapPolicy::Unmap),
        "none" => Ok(GapPolicy::None),
        _ => Err(format!("unknown gap policy {text:?}: expected extend, unmap or none")),
    }
}
