//! `pagefit check`: verdicts for many files, in parallel.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use object::read::ReadCache;
use pagefit_core::check::{check_file, CheckOptions, FileReport};
use pagefit_core::elf::{parse, ParseOptions};
use pagefit_core::report::{write_check_text, CheckDocument, InputError};
use rayon::prelude::*;

use crate::cli::{CheckArgs, Format};
use crate::inputs::{collect, Candidate};
use crate::source::FileSource;

/// What checking one candidate produced.
enum Checked {
    Report(Box<FileReport>),
    NotElf,
    Error(InputError),
}

pub fn run(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    if let Some(jobs) = args.jobs {
        rayon::ThreadPoolBuilder::new().num_threads(jobs.max(1)).build_global().context("cannot start the worker threads")?;
    }
    let options = CheckOptions {
        page_sizes: args.page_size.0.clone(),
        loaders: args.loader.as_ref().map(|l| l.0.clone()),
        ..CheckOptions::default()
    };
    let (candidates, missing) = collect(&args.paths);
    let progress = progress_bar(candidates.len() as u64);
    let checked: Vec<Checked> = candidates
        .par_iter()
        .map(|candidate| {
            let outcome = check_candidate(candidate, &options);
            progress.inc(1);
            outcome
        })
        .collect();
    progress.finish_and_clear();

    let mut document = CheckDocument::default();
    document.errors.extend(missing.into_iter().map(|(path, message)| InputError { path, message }));
    for item in checked {
        match item {
            Checked::Report(report) => document.files.push(*report),
            Checked::Error(error) => document.errors.push(error),
            Checked::NotElf => {}
        }
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match args.format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &document)?;
            writeln!(out)?;
        }
        Format::Text => {
            for report in &document.files {
                write_check_text(&mut out, report, args.verbose)?;
            }
            for error in &document.errors {
                eprintln!("pagefit: {}: {}", error.path, error.message);
            }
        }
    }
    out.flush()?;
    let failed = document.files.iter().any(|r| r.required && !r.passes(args.allow_degraded));
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

fn check_candidate(candidate: &Candidate, options: &CheckOptions) -> Checked {
    let path = candidate.path.display().to_string();
    let error = |message: String| Checked::Error(InputError { path: path.clone(), message });
    let source = match FileSource::open(&candidate.path, candidate.len) {
        Ok(source) => source,
        Err(e) if candidate.named => return error(format!("cannot read: {e}")),
        Err(_) => return Checked::NotElf,
    };
    if !source.is_elf() && !candidate.named {
        return Checked::NotElf;
    }
    let cache = ReadCache::new(source);
    let name = file_name(&candidate.path);
    match parse(&cache, ParseOptions::default()) {
        Err(e) => error(e.to_string()),
        Ok(file) => {
            let report = check_file(&file, &path, &name, options);
            if report.passes(false) {
                return Checked::Report(Box::new(report));
            }
            // Section headers only matter when there is something to explain:
            // they tell code from data and padding, which can only soften a verdict.
            match parse(&cache, ParseOptions { sections: true, ..ParseOptions::default() }) {
                Ok(file) => Checked::Report(Box::new(check_file(&file, &path, &name, options))),
                Err(e) => error(e.to_string()),
            }
        }
    }
}

/// The name loaders print for an object: its file name.
pub fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}
