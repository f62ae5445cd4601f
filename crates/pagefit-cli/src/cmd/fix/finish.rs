//! What every mode of `pagefit fix` does last: keep a backup, print the reports.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use pagefit_core::fix::report::FixReport;
use pagefit_core::render::fix::write_fix_text;

use crate::args::fix::FixArgs;
use crate::args::format::Format;

/// Where `--backup` keeps the original: `INPUT.bak`.
pub fn backup_path(input_path: &Path) -> PathBuf {
    let mut name = input_path.as_os_str().to_owned();
    name.push(".bak");
    PathBuf::from(name)
}

/// With `--backup`, links (or copies) the input to INPUT.bak before it is replaced.
pub fn keep_backup(input_path: &Path, backup: Option<&Path>) -> anyhow::Result<()> {
    if let Some(backup) = backup {
        // A hard link keeps the original's inode, mode and times; a copy where links are not possible.
        std::fs::hard_link(input_path, backup)
            .or_else(|_| std::fs::copy(input_path, backup).map(|_| ()))
            .with_context(|| format!("{}: cannot keep a backup", backup.display()))?;
    }
    Ok(())
}

/// Prints the reports: one JSON object for an ELF file, an array with one
/// per record for a FatELF file.
pub fn finish(args: &FixArgs, reports: &[FixReport], fat: bool) -> anyhow::Result<ExitCode> {
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
