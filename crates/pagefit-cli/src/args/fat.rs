//! `pagefit fat`'s arguments.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use pagefit_core::fat::{TargetSelector, DEFAULT_ALIGN};
use pagefit_core::page::PageSize;

use crate::args::format::Format;

#[derive(Args, Debug)]
#[command(after_help = FAT_EXAMPLES)]
pub struct FatArgs {
    #[command(subcommand)]
    pub command: FatCommand,
}

const FAT_EXAMPLES: &str = "\
Examples:
  pagefit fat glue -o app.fat build/x86_64/app build/aarch64/app build/ppc64le/app
  pagefit fat glue --page-variants -o app.fat app-aarch64-4k app-aarch64-64k
  pagefit fat info app.fat --format json
  pagefit fat extract -o app.arm app.fat aarch64      # or record1, or aarch64:64bit:le:linux:osabiver0
  pagefit fat split app.fat -d out/
  pagefit fat verify app.fat ppc64le && echo present
  pagefit check app.fat                               # every record, as app.fat!record0 (x86_64)
  pagefit explain 'app.fat!record1' --page-size 16k

Targets: recordN (from 0), or any of a machine (x86_64, aarch64, ppc64le, riscv, ...),
32bit/64bit, le/be, an OS ABI (sysv, linux, ...), osabiverN and maxpageNk, joined by ':'.
Every target `fat info` prints is accepted back.
Exit status: 0 done, 1 `verify` found no such record, 2 bad input (file and offset named).";

/// A target given on the command line.
fn target(text: &str) -> Result<TargetSelector, String> {
    text.parse().map_err(|e: pagefit_core::fat::TargetError| e.to_string())
}

/// A record alignment: a power of two of at least 1K, written like a page size.
pub(crate) fn alignment(text: &str) -> Result<u64, String> {
    text.parse::<PageSize>().map(PageSize::bytes).map_err(|e| e.to_string())
}

#[derive(Subcommand, Debug)]
pub enum FatCommand {
    /// Glue ELF files into one FatELF file, each record aligned for 16K and 64K kernels.
    Glue {
        /// The FatELF file to write.
        #[arg(short, long)]
        output: PathBuf,
        /// Record alignment (a power of two): 64k lets 4K, 16K and 64K kernels map records from the file.
        #[arg(long, default_value_t = DEFAULT_ALIGN, value_parser = alignment)]
        align: u64,
        /// Allow builds of one CPU that differ only in page size (writes FatELF version 2, which
        /// version-1 readers refuse); each record is tagged with its largest ok page size.
        #[arg(long)]
        page_variants: bool,
        /// The ELF files.
        #[arg(required = true)]
        elves: Vec<PathBuf>,
    },
    /// List the records: target, offset and size.
    Info {
        /// The FatELF file.
        file: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Copy one record out as an ELF file.
    Extract {
        /// The ELF file to write.
        #[arg(short, long)]
        output: PathBuf,
        /// The FatELF file.
        file: PathBuf,
        /// The record: recordN or target fields.
        #[arg(value_parser = target)]
        target: TargetSelector,
    },
    /// Write every record as its own ELF file, named after the FatELF file and the record's machine.
    Split {
        /// The FatELF file.
        file: PathBuf,
        /// Where to write (default: next to the FatELF file).
        #[arg(short = 'd', long)]
        directory: Option<PathBuf>,
    },
    /// Write a copy without one record.
    Remove {
        /// The FatELF file to write.
        #[arg(short, long)]
        output: PathBuf,
        /// The FatELF file.
        file: PathBuf,
        /// The record: recordN or target fields.
        #[arg(value_parser = target)]
        target: TargetSelector,
        /// Record alignment of the copy.
        #[arg(long, default_value_t = DEFAULT_ALIGN, value_parser = alignment)]
        align: u64,
    },
    /// Write a copy with the record of the ELF file's target replaced by it.
    Replace {
        /// The FatELF file to write.
        #[arg(short, long)]
        output: PathBuf,
        /// The FatELF file.
        file: PathBuf,
        /// The new ELF file.
        elf: PathBuf,
        /// Record alignment of the copy.
        #[arg(long, default_value_t = DEFAULT_ALIGN, value_parser = alignment)]
        align: u64,
    },
    /// Exit 0 if a record matches the target, 1 if none does.
    Verify {
        /// The FatELF file.
        file: PathBuf,
        /// The record: recordN or target fields.
        #[arg(value_parser = target)]
        target: TargetSelector,
    },
    /// Check the header, every record and every embedded ELF header; exit 2 with the offset of the first problem.
    Validate {
        /// The FatELF file.
        file: PathBuf,
    },
}
