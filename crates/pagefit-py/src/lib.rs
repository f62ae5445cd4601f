//! `pagefit._native`: the Rust half of the `pagefit` Python package. It
//! calls `pagefit-cli`'s typed API in process and hands Python each record
//! as the JSON text of the JSON lines contract (`docs/json.md`), so Python
//! sees exactly what `pagefit check --format jsonl` prints. The Python half
//! (`python/pagefit/`) parses the records and raises [`PagefitError`].

use std::ffi::OsString;
use std::path::PathBuf;

use pagefit_cli::{Candidate, FixRequest, Record, Shard};
use pagefit_core::fix::plan::Strategy;
use pagefit_core::page::{parse_page_size_list, PageSize};
use pagefit_core::predict::check::CheckOptions;
use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

create_exception!(pagefit, PagefitError, PyValueError, "An input pagefit could not analyse; the message names the file and the offset.");

/// `check`'s options as `pagefit check --format jsonl` sets them:
/// `page_sizes` and `loaders` are its comma-separated `--page-size` and `--loader`.
fn check_options(page_sizes: &str, loaders: Option<&str>, runtime: bool) -> PyResult<CheckOptions> {
    let page_sizes = parse_page_size_list(page_sizes).map_err(|e| PyValueError::new_err(format!("page_sizes: {e}")))?;
    let loaders = loaders
        .map(|names| names.split(',').map(str::parse).collect::<Result<Vec<_>, _>>())
        .transpose()
        .map_err(|e| PyValueError::new_err(format!("loaders: {e}")))?;
    Ok(CheckOptions { page_sizes, loaders, findings: true, runtime, ..CheckOptions::default() })
}

fn json_lines(records: &[Record]) -> Vec<String> {
    // Serialising plain data into a String cannot fail.
    records.iter().map(|record| serde_json::to_string(record).unwrap_or_default()).collect()
}

/// A checked input: its file identity (device, inode), when it has one, and its records as JSON lines.
type CheckedInput = (Option<(u64, u64)>, Vec<String>);

/// Checks files, directory trees and archives (`pagefit check PATHS`),
/// optionally only `shard` ("I/N"). Returns one JSON text per record.
#[pyfunction]
#[pyo3(signature = (paths, page_sizes, loaders=None, runtime=true, shard=None))]
fn check_paths(
    py: Python<'_>,
    paths: Vec<String>,
    page_sizes: &str,
    loaders: Option<&str>,
    runtime: bool,
    shard: Option<&str>,
) -> PyResult<Vec<String>> {
    let options = check_options(page_sizes, loaders, runtime)?;
    let shard = shard.map(str::parse::<Shard>).transpose().map_err(|e| PyValueError::new_err(format!("shard: {e}")))?;
    Ok(py.detach(|| json_lines(&pagefit_cli::check_paths(&paths, &options, shard))))
}

/// Checks an ELF file held in memory, reported under `name`.
#[pyfunction]
#[pyo3(signature = (data, name, page_sizes, loaders=None, runtime=true))]
fn check_bytes(py: Python<'_>, data: &[u8], name: &str, page_sizes: &str, loaders: Option<&str>, runtime: bool) -> PyResult<String> {
    let options = check_options(page_sizes, loaders, runtime)?;
    Ok(py.detach(|| json_lines(&[pagefit_cli::check_bytes(data, name, &options)]).remove(0)))
}

/// The inputs `pagefit check PATHS` checks, in its order, as (path, named)
/// pairs; and the error records of named paths that do not exist.
#[pyfunction]
fn expand(py: Python<'_>, paths: Vec<String>) -> (Vec<(PathBuf, bool)>, Vec<String>) {
    py.detach(|| {
        let (candidates, missing) = pagefit_cli::expand(&paths);
        let missing: Vec<Record> = missing.into_iter().map(|error| Record::Error { error }).collect();
        (candidates.into_iter().map(|c| (c.path, c.named)).collect(), json_lines(&missing))
    })
}

/// Checks one input of `expand`: its identity (device, inode), by which a
/// file reached twice is reported once, and its records.
#[pyfunction]
#[pyo3(signature = (path, named, page_sizes, loaders=None, runtime=true))]
fn check_input(
    py: Python<'_>,
    path: PathBuf,
    named: bool,
    page_sizes: &str,
    loaders: Option<&str>,
    runtime: bool,
) -> PyResult<CheckedInput> {
    let options = check_options(page_sizes, loaders, runtime)?;
    Ok(py.detach(|| {
        let (id, records) = pagefit_cli::check_input(&Candidate { path, named }, &options);
        (id, json_lines(&records))
    }))
}

/// `pagefit fix --page-size P INPUT -o OUTPUT` for one ELF file: the fix
/// report's JSON text. Unreadable inputs and unwritable outputs raise.
#[pyfunction]
#[pyo3(signature = (input, output, page_size, strategy="auto", no_wx=false))]
fn fix(py: Python<'_>, input: PathBuf, output: PathBuf, page_size: &str, strategy: &str, no_wx: bool) -> PyResult<String> {
    let page_size: PageSize = page_size.parse().map_err(|e| PyValueError::new_err(format!("page_size: {e}")))?;
    let strategy: Strategy = strategy.parse().map_err(|e| PyValueError::new_err(format!("strategy: {e}")))?;
    let request = FixRequest { page_size, strategy, no_wx, platform: None };
    let report = py.detach(|| pagefit_cli::fix_file(&input, &output, &request)).map_err(|e| PagefitError::new_err(format!("{e:#}")))?;
    serde_json::to_string(&report).map_err(|e| PyValueError::new_err(e.to_string()))
}

/// The `pagefit` command line, in this process: `argv[0]` is the program
/// name. Returns the exit status.
#[pyfunction]
fn run_cli(py: Python<'_>, argv: Vec<OsString>) -> u8 {
    py.detach(|| {
        let status = pagefit_cli::run_cli(argv);
        // Python, not Rust, ends this process: nothing else flushes Rust's stdout.
        let _ = std::io::Write::flush(&mut std::io::stdout());
        status
    })
}

#[pymodule]
fn _native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add("PagefitError", module.py().get_type::<PagefitError>())?;
    module.add_function(wrap_pyfunction!(check_paths, module)?)?;
    module.add_function(wrap_pyfunction!(check_bytes, module)?)?;
    module.add_function(wrap_pyfunction!(expand, module)?)?;
    module.add_function(wrap_pyfunction!(check_input, module)?)?;
    module.add_function(wrap_pyfunction!(fix, module)?)?;
    module.add_function(wrap_pyfunction!(run_cli, module)?)?;
    Ok(())
}
