//! `pagefit binfmt`'s arguments.

use std::path::PathBuf;

use clap::{Args, Subcommand};

#[derive(Args, Debug)]
#[command(after_help = BINFMT_EXAMPLES)]
pub struct BinfmtArgs {
    #[command(subcommand)]
    pub command: BinfmtCommand,
}

const BINFMT_EXAMPLES: &str = "\
Examples:
  sudo pagefit binfmt install                 register this pagefit binary for the FatELF magic
  sudo pagefit binfmt install --interpreter /usr/local/bin/pagefit
  pagefit binfmt status                       exit 0 registered, 1 not registered, 2 binfmt_misc missing
  sudo pagefit binfmt uninstall

Needs root (or root in a user namespace with its own binfmt_misc, Linux 6.7+) and binfmt_misc
mounted at /proc/sys/fs/binfmt_misc. Then `./app.fat ARGS...` runs: the kernel runs
`pagefit ./app.fat ARGV0 ARGS...`, and pagefit loads the record for this CPU and page size
(see `pagefit run --help`).";

#[derive(Subcommand, Debug)]
pub enum BinfmtCommand {
    /// Register pagefit as the interpreter of files starting with the FatELF magic.
    Install {
        /// The pagefit binary to register (default: this one).
        #[arg(long)]
        interpreter: Option<PathBuf>,
    },
    /// Remove the registration.
    Uninstall,
    /// Show whether the handler is registered, and with what.
    Status,
}
