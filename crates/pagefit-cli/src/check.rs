//! `pagefit check`: verdicts for many files, in parallel.

use std::collections::HashSet;
use std::io::{IsTerminal, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use object::read::ReadCache;
use pagefit_core::check::{check_file, CheckOptions, FileReport};
use pagefit_core::elf::{parse, ParseOptions};
use pagefit_core::report::{write_check_text, CheckDocument, InputError};
use rayon::prelude::*;

use crate::cli::{CheckArgs, Format};
use crate::inputs::{collect, walk, Candidate};
use crate::source::FileSource;

/// What checking one candidate produced.
enum Checked {
    Report(Box<FileReport>),
    /// A report already rendered as text by the worker, so that a scan of
    /// thousands of files keeps lines, not whole reports, in memory.
    Line {
        text: String,
        passes: bool,
    },
    /// A path read from stdin that names a directory: walked afterwards.
    Directory,
    NotElf,
    Error(InputError),
}

/// A file's identity, so that one reached twice is reported once.
type FileId = (u64, u64);

pub fn run(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    if let Some(jobs) = args.jobs {
        rayon::ThreadPoolBuilder::new().num_threads(jobs.max(1)).build_global().context("cannot start the worker threads")?;
    }
    let options = CheckOptions {
        page_sizes: args.page_size.0.clone(),
        loaders: args.loader.as_ref().map(|l| l.0.clone()),
        findings: args.verbose || args.format != Format::Text,
        ..CheckOptions::default()
    };
    let (candidates, missing) = collect(&args.paths);
    let progress = progress_bar(candidates.len() as u64);
    let mut checked = check_all(&candidates, &options, args, &progress);
    // Directories named on stdin are only recognised by the workers.
    let mut walked = Vec::new();
    for (candidate, (_, outcome)) in candidates.iter().zip(&checked) {
        if matches!(outcome, Checked::Directory) {
            walk(candidate.path.clone(), &mut walked);
        }
    }
    if !walked.is_empty() {
        progress.inc_length(walked.len() as u64);
        checked.extend(check_all(&walked, &options, args, &progress));
    }
    progress.finish_and_clear();

    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut document = CheckDocument::default();
    document.errors.extend(missing.into_iter().map(|(path, message)| InputError { path, message }));
    let mut failed = false;
    let mut seen: HashSet<FileId> = HashSet::new();
    for (id, item) in checked {
        if id.is_some_and(|id| !seen.insert(id)) {
            continue;
        }
        match item {
            Checked::Report(report) => {
                failed |= report.required && !report.passes(args.allow_degraded);
                document.files.push(*report);
            }
            Checked::Line { text, passes } => {
                failed |= !passes;
                out.write_all(text.as_bytes())?;
            }
            Checked::Error(error) => document.errors.push(error),
            Checked::NotElf | Checked::Directory => {}
        }
    }
    match args.format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &document)?;
            writeln!(out)?;
        }
        Format::Text => {
            for error in &document.errors {
                eprintln!("pagefit: {}: {}", error.path, error.message);
            }
        }
    }
    out.flush()?;
    Ok(if !document.errors.is_empty() {
        ExitCode::from(2)
    } else if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn progress_bar(len: u64) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() || len < 64 {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} files {elapsed}") {
        bar.set_style(style);
    }
    bar
}

/// Checks `candidates` in parallel, in order; text reports are rendered by the workers.
fn check_all(
    candidates: &[Candidate],
    options: &CheckOptions,
    args: &CheckArgs,
    progress: &indicatif::ProgressBar,
) -> Vec<(Option<FileId>, Checked)> {
    candidates
        .par_iter()
        .map(|candidate| {
            let (id, outcome) = check_candidate(candidate, options);
            let outcome = match outcome {
                Checked::Report(report) if args.format == Format::Text => {
                    let mut text = Vec::new();
                    // Writing into a Vec cannot fail.
                    let _ = write_check_text(&mut text, &report, args.verbose);
                    let passes = report.passes(args.allow_degraded) || !report.required;
                    Checked::Line { text: String::from_utf8_lossy(&text).into_owned(), passes }
                }
                other => other,
            };
            progress.inc(1);
            (id, outcome)
        })
        .collect()
}

fn check_candidate(candidate: &Candidate, options: &CheckOptions) -> (Option<FileId>, Checked) {
    let path = candidate.path.display().to_string();
    let error = |message: String| (None, Checked::Error(InputError { path: path.clone(), message }));
    let (source, metadata) = match FileSource::open(&candidate.path) {
        Ok(opened) => opened,
        Err(e) if e.kind() == std::io::ErrorKind::IsADirectory => return (None, Checked::Directory),
        Err(e) if candidate.named => return error(format!("cannot read: {e}")),
        Err(_) => return (None, Checked::NotElf),
    };
    let id = Some((metadata.dev(), metadata.ino()));
    if metadata.is_dir() {
        return (None, Checked::Directory);
    }
    if !source.is_elf() && !candidate.named {
        return (id, Checked::NotElf);
    }
    let cache = ReadCache::new(source);
    let name = file_name(&candidate.path);
    // Section headers tell code from data and padding, which can soften a
    // verdict; reading them costs one more `pread` at most (see `source`).
    // Their names only matter where findings are shown.
    let parse_options = ParseOptions { sections: true, section_names: options.findings, ..ParseOptions::default() };
    match parse(&cache, parse_options) {
        Ok(file) => (id, Checked::Report(Box::new(check_file(&file, &path, &name, options)))),
        Err(e) => (id, Checked::Error(InputError { path, message: e.to_string() })),
    }
}

/// The name loaders print for an object: its file name.
pub fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}
