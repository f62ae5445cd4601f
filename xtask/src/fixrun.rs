//! Runs the host pagefit's `fix` with JSON output and reads its reports, as
//! every proof that fixes files does.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use pagefit_core::fix::report::FixReport;

/// `pagefit fix --page-size PAGE --format json ARGS...`: the reports (one
/// for an ELF file, one per member, record or file for an archive, a FatELF
/// file or a tree) and whether pagefit exited 0.
pub fn pagefit_fix<I: AsRef<OsStr>>(pagefit: &Path, page: &str, args: &[I]) -> Result<(Vec<FixReport>, bool)> {
    let shown = args.iter().map(|a| a.as_ref().to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ");
    let output = Command::new(pagefit)
        .args(["fix", "--page-size", page, "--format", "json"])
        .args(args)
        .output()
        .with_context(|| format!("cannot run {}", pagefit.display()))?;
    let value: serde_json::Value = serde_json::from_slice(&output.stdout)
        .with_context(|| format!("pagefit fix {shown}: {}", String::from_utf8_lossy(&output.stderr)))?;
    let reports = match value {
        serde_json::Value::Array(items) => items,
        single => vec![single],
    };
    let reports =
        reports.into_iter().map(serde_json::from_value).collect::<Result<_, _>>().with_context(|| format!("pagefit fix {shown}"))?;
    Ok((reports, output.status.success()))
}

/// [`pagefit_fix`] of one ELF file: its one report.
pub fn pagefit_fix_one<I: AsRef<OsStr>>(pagefit: &Path, page: &str, args: &[I]) -> Result<(FixReport, bool)> {
    let (mut reports, success) = pagefit_fix(pagefit, page, args)?;
    anyhow::ensure!(reports.len() == 1, "pagefit fix printed {} reports for one file", reports.len());
    Ok((reports.remove(0), success))
}
