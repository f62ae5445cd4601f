//! Command-line arguments, parsed into plain values before anything touches
//! the system. Every clap type lives here, and nothing here imports a command.

pub mod binfmt;
pub mod fat;
pub mod fix;
pub mod fix_dep;
pub mod format;
pub mod run;
pub mod shard;

use clap::{Args, Parser, Subcommand};

use format::{CheckFormat, Format};
use pagefit_core::page::{parse_page_size_list, PageSize};
use pagefit_core::predict::model::LoaderModel;

/// Check, explain, fix and run ELF binaries at any memory page size.
#[derive(Parser, Debug)]
#[command(name = "pagefit", version, about, long_about = None, after_help = EXAMPLES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

const EXAMPLES: &str = "\
Examples:
  pagefit check                          scan the system's binaries and libraries at 16K and 64K
  pagefit check -v --page-size 16k app/  explain every problem in a tree at 16K
  pagefit check --format json lib.so     machine-readable verdicts
  find / -name '*.so' | pagefit check -  check paths read from stdin
  pagefit explain ./prog --page-size 64k memory map at 4K and 64K side by side, in words

Exit status: 0 every file ok, 1 some file is not ok, 2 some input could not be analysed.";

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Give a verdict per page size and loader for files and directory trees.
    #[command(after_help = CHECK_EXAMPLES)]
    Check(CheckArgs),
    /// Show the predicted memory map at 4K and at P side by side, and every finding in words.
    #[command(after_help = EXPLAIN_EXAMPLES)]
    Explain(ExplainArgs),
    /// Make, inspect, take apart and validate FatELF files (several ELF builds in one file).
    Fat(fat::FatArgs),
    /// Register (or remove) a binfmt_misc handler that runs FatELF files with pagefit.
    Binfmt(binfmt::BinfmtArgs),
    /// Rewrite a file so that it loads at a larger page size exactly as at 4K, and prove it.
    #[command(after_help = fix::FIX_EXAMPLES)]
    Fix(fix::FixArgs),
    /// Load a program with pagefit's own loader at any page size and become it.
    Run(run::RunArgs),
    /// For `run --fix-deps`'s ld.so audit module: print the copy of LIBRARY to load at P.
    #[command(hide = true)]
    FixDep(fix_dep::FixDepArgs),
    /// Print a shell completion script.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    Man,
}

const CHECK_EXAMPLES: &str = "\
Examples:
  pagefit check /usr/lib/x86_64-linux-gnu
  pagefit check --page-size 4k,16k,64k --loader glibc-2.34 libQt5Core.so.5
  pagefit check --allow-degraded --format json build/ > verdicts.json
  pagefit check --format sarif app.apk > pagefit.sarif
  pagefit check --page-size 16k app-release.apk        # every lib/*/*.so, zip alignment too
  pagefit check --summary --format jsonl *.deb > scan.jsonl
  pagefit check --closure ./app --page-size 16k         # app, its ld.so and every library it loads
  pagefit check --closure rootfs/usr/bin/foo --sysroot rootfs
  find / -xdev -name '*.so*' | pagefit check -
  pagefit check --shard 0/4 --format jsonl debs/ > part0.jsonl   # one of 4 workers
  pagefit check --summary app.apk --owners ~/.gradle/caches node_modules   # who ships each library

Outcomes: ok (mapped exactly as at 4K), degraded (some bytes get weaker protections),
broken (code loses execute, bytes clobbered or writes fault), rejected (the loader refuses).
Exit status: 0 all ok, 1 some file not ok, 2 some input could not be analysed.";

const EXPLAIN_EXAMPLES: &str = "\
Examples:
  pagefit explain ./prog --page-size 16k
  pagefit explain libfoo.so --page-size 64k --loader glibc-2.34
  pagefit explain ./prog --page-size 16k,64k --format json
  pagefit explain 'app.fat!record1' --page-size 64k   # one record of a FatELF file";

/// A comma-separated list of page sizes.
#[derive(Clone, Debug)]
pub struct PageSizes(pub Vec<PageSize>);

/// A comma-separated list of loader models.
#[derive(Clone, Debug)]
pub struct Loaders(pub Vec<LoaderModel>);

fn page_sizes(text: &str) -> Result<PageSizes, String> {
    parse_page_size_list(text).map(PageSizes).map_err(|e| e.to_string())
}

fn loaders(text: &str) -> Result<Loaders, String> {
    text.split(',').map(str::parse).collect::<Result<Vec<_>, _>>().map(Loaders)
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Files or directories (walked recursively; non-ELF files skipped). `-` reads paths from stdin.
    /// Default: the system's binary and library directories.
    pub paths: Vec<String>,
    /// Page sizes to check, comma-separated: 4k, 16k, 64k, 2m or a number of bytes.
    #[arg(long, default_value = "16k,64k", value_parser = page_sizes)]
    pub page_size: PageSizes,
    /// Loader model(s) to use instead of each file's default (kernel for executables,
    /// glibc or musl for shared objects, bionic and play on Android):
    /// kernel, glibc, glibc-2.34, musl, bionic, bionic-compat, play (Google Play's 16 KB verdict).
    #[arg(long, value_parser = loaders)]
    pub loader: Option<Loaders>,
    /// Count degraded results as acceptable for the exit status.
    #[arg(long)]
    pub allow_degraded: bool,
    /// Output format: text (a line per file), json (one document), jsonl (a JSON object per file, for huge scans),
    /// sarif (SARIF 2.1.0 for code-scanning tools: a result per finding).
    #[arg(long, value_enum, default_value = "text")]
    pub format: CheckFormat,
    /// Show the findings behind every result that is not ok.
    #[arg(short, long)]
    pub verbose: bool,
    /// After the files: counts per page size and outcome, and the worst offenders
    /// (on stderr with --format json or jsonl).
    #[arg(long)]
    pub summary: bool,
    /// Count 32-bit libraries in Android packages towards the exit status
    /// (Play requires 16 KB pages only for 64-bit ABIs).
    #[arg(long)]
    pub all_abis: bool,
    /// Read only the headers: skip the runtime check (jemalloc's compiled
    /// page size), which reads each file's read-only segments.
    #[arg(long)]
    pub no_runtime: bool,
    /// Worker threads (default: one per CPU).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Check only shard I of N (0 <= I < N): the inputs whose path hashes to I
    /// modulo N, so that N workers given the same paths check each input exactly once.
    #[arg(long, value_name = "I/N", conflicts_with = "closure")]
    pub shard: Option<shard::Shard>,
    /// Check a program and everything it loads: its interpreter and every
    /// DT_NEEDED, found as ld.so would (nothing is executed).
    #[arg(long, value_name = "BIN", conflicts_with = "paths")]
    pub closure: Option<String>,
    /// Name the dependencies that ship each library, found by content (SHA-256) in
    /// DIRs: Gradle caches, Maven repositories, node_modules, pub caches. Takes
    /// several DIRs: put the paths to check first, or after `--`.
    #[arg(long, value_name = "DIR", num_args = 1.., conflicts_with = "closure")]
    pub owners: Vec<String>,
    /// With --closure: resolve the interpreter, ld.so.conf and absolute search
    /// directories under DIR instead of /.
    #[arg(long, value_name = "DIR", requires = "closure")]
    pub sysroot: Option<String>,
    /// With --closure: the LD_LIBRARY_PATH to assume (default: the environment's,
    /// or none with --sysroot).
    #[arg(long, value_name = "DIRS", requires = "closure")]
    pub library_path: Option<String>,
}

#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// The ELF file, or a record of a FatELF file: `app.fat!record1`.
    pub file: String,
    /// Page size(s) to explain, comma-separated.
    #[arg(long, default_value = "16k", value_parser = page_sizes)]
    pub page_size: PageSizes,
    /// Loader model(s) instead of the file's default.
    #[arg(long, value_parser = loaders)]
    pub loader: Option<Loaders>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}
