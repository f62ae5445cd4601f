//! `pagefit fix-dep`'s arguments (run by `run --fix-deps`'s audit module).

use std::path::PathBuf;

use pagefit_core::page::PageSize;

/// `pagefit fix-dep`, which the audit module runs for every library ld.so
/// is about to open.
#[derive(clap::Args, Debug)]
pub struct FixDepArgs {
    /// The page size the program runs with.
    #[arg(long, value_name = "P")]
    pub page_size: PageSize,
    /// The library ld.so found.
    pub library: PathBuf,
}
