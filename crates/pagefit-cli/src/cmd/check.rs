//! `pagefit check`: verdicts for many files and archive members, in parallel.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use object::read::ReadCache;
use pagefit_core::elf::{parse, ParseOptions, Platform};
use pagefit_core::owners::{rank_failing, Owner};
use pagefit_core::predict::check::{apply_zip_alignment, check_file, CheckOptions, FileReport};
use pagefit_core::predict::effect::Outcome;
use pagefit_core::render::report::{write_check_text, CheckDocument, InputError};
use pagefit_core::render::sarif::sarif_log;
use rayon::prelude::*;
use serde::Serialize;

use crate::args::format::CheckFormat;
use crate::args::shard::Shard;
use crate::args::CheckArgs;
use crate::closure;
use crate::inputs::{collect, file_name, walk, Candidate};
use crate::output::progress_bar;
use crate::owners::{file_sha256, OwnerIndex};
use pagefit_archive::image::{self, Container};
use pagefit_archive::{self as archive, Hashing, Member};
use pagefit_loader::source::FileSource;

/// What checking one file or archive member produced.
enum Checked {
    /// The report, kept whole for the formats that print one document.
    Report(Box<FileReport>),
    /// A report already rendered by the worker (text or a JSON line), so a
    /// scan of many files keeps lines, not whole reports, in memory.
    Line {
        text: String,
        tally: Tally,
    },
    /// A path read from stdin that names a directory: walked afterwards.
    Directory,
    NotElf,
    Error(InputError),
}

/// What `--summary` and the exit status need from one report.
struct Tally {
    path: String,
    passes: bool,
    outcomes: Vec<(u64, Outcome)>,
    /// With `--owners`: who ships the file.
    owners: Option<Vec<Owner>>,
}

impl Tally {
    fn of(report: &FileReport, allow_degraded: bool) -> Tally {
        Tally {
            path: report.path.clone(),
            passes: report.passes(allow_degraded) || !report.required,
            outcomes: report.results.iter().map(|r| (r.page_size.bytes(), r.outcome)).collect(),
            owners: report.owners.clone(),
        }
    }
}

/// A file's identity (device, inode), so that one reached twice is reported once.
pub type FileId = (u64, u64);

pub fn run(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    if let Some(jobs) = args.jobs {
        rayon::ThreadPoolBuilder::new().num_threads(jobs.max(1)).build_global().context("cannot start the worker threads")?;
    }
    let options = CheckOptions {
        page_sizes: args.page_size.0.clone(),
        loaders: args.loader.as_ref().map(|l| l.0.clone()),
        findings: args.verbose || !matches!(args.format, CheckFormat::Text),
        all_abis: args.all_abis,
        runtime: !args.no_runtime,
        ..CheckOptions::default()
    };
    if let Some(program) = &args.closure {
        return closure::run(program, args, &options);
    }
    let owners = if args.owners.is_empty() { None } else { Some(owner_index(&args.owners)?) };
    let render = |outcome: Checked| render_in_worker(outcome, args);
    let (checked, missing) = gather(&args.paths, &options, args.shard, owners.as_ref(), &render, true);

    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut document = CheckDocument { errors: missing, ..CheckDocument::default() };
    let mut tallies = Vec::new();
    for item in checked {
        match item {
            Checked::Report(report) => {
                tallies.push(Tally::of(&report, args.allow_degraded));
                document.files.push(*report);
            }
            Checked::Line { text, tally } => {
                out.write_all(text.as_bytes())?;
                tallies.push(tally);
            }
            Checked::Error(error) => document.errors.push(error),
            Checked::NotElf | Checked::Directory => {}
        }
    }
    match args.format {
        CheckFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &document)?;
            writeln!(out)?;
        }
        CheckFormat::Sarif => {
            serde_json::to_writer_pretty(&mut out, &sarif_log(&document.files, &document.errors))?;
            writeln!(out)?;
        }
        CheckFormat::Jsonl => {
            for error in &document.errors {
                serde_json::to_writer(&mut out, &Record::Error { error: error.clone() })?;
                writeln!(out)?;
            }
        }
        CheckFormat::Text => {
            for error in &document.errors {
                eprintln!("pagefit: {}: {}", error.path, error.message);
            }
        }
    }
    if args.summary {
        // Machine-readable output stays parseable: there the summary goes to stderr.
        match args.format {
            CheckFormat::Text => write_summary(&mut out, &tallies, document.errors.len())?,
            CheckFormat::Json | CheckFormat::Jsonl | CheckFormat::Sarif => {
                write_summary(&mut std::io::stderr().lock(), &tallies, document.errors.len())?
            }
        }
    }
    out.flush()?;
    let failed = tallies.iter().any(|t| !t.passes);
    Ok(if !document.errors.is_empty() {
        ExitCode::from(2)
    } else if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The `--owners` index; the copies it could not read are named on stderr.
fn owner_index(dirs: &[String]) -> anyhow::Result<OwnerIndex> {
    let (index, unreadable) = OwnerIndex::build(dirs)?;
    for copy in unreadable {
        eprintln!("pagefit: warning: --owners: {}: {} (skipped)", copy.path, copy.message);
    }
    Ok(index)
}

/// Expands `paths` (as `check` does), keeps `shard`'s share, checks every
/// file in parallel with `render` applied by the workers, and drops a file
/// reached twice. Returns what was checked, in input order, and the named
/// paths that do not exist. With `owners`, each report names who ships it.
fn gather(
    paths: &[String],
    options: &CheckOptions,
    shard: Option<Shard>,
    owners: Option<&OwnerIndex>,
    render: &(dyn Fn(Checked) -> Checked + Sync),
    show_progress: bool,
) -> (Vec<Checked>, Vec<InputError>) {
    let owned = |path: &Path| shard.is_none_or(|shard| shard.owns(path));
    let (mut candidates, missing) = collect(paths);
    candidates.retain(|candidate| owned(&candidate.path));
    let missing = missing.into_iter().filter(|(path, _)| owned(Path::new(path))).map(|(path, message)| InputError { path, message });
    let progress = if show_progress { progress_bar(candidates.len() as u64, "files") } else { indicatif::ProgressBar::hidden() };
    let mut checked = check_all(&candidates, options, owners, render, &progress);
    // Directories named on stdin are only recognised by the workers.
    let mut walked = Vec::new();
    for (candidate, (_, outcomes)) in candidates.iter().zip(&checked) {
        if matches!(outcomes.as_slice(), [Checked::Directory]) {
            walk(candidate.path.clone(), &mut walked);
        }
    }
    walked.retain(|candidate| owned(&candidate.path));
    if !walked.is_empty() {
        progress.inc_length(walked.len() as u64);
        checked.extend(check_all(&walked, options, owners, render, &progress));
    }
    progress.finish_and_clear();
    let mut seen: HashSet<FileId> = HashSet::new();
    let unique = checked.into_iter().filter(|(id, _)| id.is_none_or(|id| seen.insert(id))).flat_map(|(_, items)| items);
    (unique.collect(), missing.collect())
}

/// One record of the JSON lines contract (`docs/json.md`): a file's report,
/// or `{"error": {"path", "message"}}` for an input that could not be analysed.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Record {
    /// A file's verdicts.
    Report(Box<FileReport>),
    /// An input that could not be analysed; the message names the offset when known.
    Error {
        /// The path and the message.
        error: InputError,
    },
}

/// `pagefit check --format jsonl PATHS --shard ...` in process: the same
/// records in the same order, reports first, then errors.
pub fn check_paths(paths: &[String], options: &CheckOptions, shard: Option<Shard>) -> Vec<Record> {
    let (checked, missing) = gather(paths, options, shard, None, &|outcome| outcome, false);
    let mut reports = Vec::new();
    let mut errors: Vec<Record> = missing.into_iter().map(|error| Record::Error { error }).collect();
    for item in checked {
        match item {
            Checked::Report(report) => reports.push(Record::Report(report)),
            Checked::Error(error) => errors.push(Record::Error { error }),
            Checked::Line { .. } | Checked::NotElf | Checked::Directory => {}
        }
    }
    reports.extend(errors);
    reports
}

/// The inputs `check` would check for `paths`, in its order, and an error
/// for each named path that does not exist. For callers that check the
/// inputs one by one ([`check_input`]), on other threads or machines.
pub fn expand(paths: &[String]) -> (Vec<Candidate>, Vec<InputError>) {
    let (candidates, missing) = collect(paths);
    (candidates, missing.into_iter().map(|(path, message)| InputError { path, message }).collect())
}

/// Checks one input of [`expand`]: its records in `check`'s order, and the
/// file's identity, by which `check` reports a file reached twice only once.
/// A directory is walked and checked here, one file after the other.
pub fn check_input(candidate: &Candidate, options: &CheckOptions) -> (Option<FileId>, Vec<Record>) {
    let (id, outcomes) = check_candidate(candidate, options, None);
    let mut records = Vec::new();
    for outcome in outcomes {
        match outcome {
            Checked::Report(report) => records.push(Record::Report(report)),
            Checked::Error(error) => records.push(Record::Error { error }),
            Checked::Directory => {
                let mut walked = Vec::new();
                walk(candidate.path.clone(), &mut walked);
                records.extend(walked.iter().flat_map(|file| check_input(file, options).1));
            }
            Checked::Line { .. } | Checked::NotElf => {}
        }
    }
    (id, records)
}

/// Checks an ELF file held in memory, reported as `name`. Archives are read
/// from files only ([`check_input`]): their readers seek.
pub fn check_bytes(data: &[u8], name: &str, options: &CheckOptions) -> Record {
    match parse(data, parse_options(options)) {
        Ok(file) => Record::Report(Box::new(check_file(&file, name, &file_name(Path::new(name)), options))),
        Err(e) => Record::Error { error: InputError { path: name.to_string(), message: e.to_string() } },
    }
}

/// How many files the summary names as the worst offenders.
const WORST_SHOWN: usize = 10;

/// Counts per page size and outcome, then the files that fail at the smallest page size.
fn write_summary(out: &mut dyn Write, tallies: &[Tally], errors: usize) -> std::io::Result<()> {
    let mut counts: BTreeMap<u64, BTreeMap<Outcome, usize>> = BTreeMap::new();
    for tally in tallies {
        let mut worst_per_page: BTreeMap<u64, Outcome> = BTreeMap::new();
        for &(page, outcome) in &tally.outcomes {
            let worst = worst_per_page.entry(page).or_insert(outcome);
            *worst = (*worst).max(outcome);
        }
        for (page, outcome) in worst_per_page {
            *counts.entry(page).or_default().entry(outcome).or_default() += 1;
        }
    }
    let tallies_with_owners: Vec<&Tally> = tallies.iter().filter(|t| t.owners.is_some()).collect();
    writeln!(out, "summary: {} files, {} failing, {errors} unreadable", tallies.len(), tallies.iter().filter(|t| !t.passes).count())?;
    for (page, by_outcome) in &counts {
        let cells: Vec<String> = by_outcome.iter().map(|(outcome, n)| format!("{n} {}", outcome.name())).collect();
        writeln!(out, "  {}K: {}", page / 1024, cells.join(", "))?;
    }
    // Worst offenders: rejected before broken before degraded, at the smallest page size first.
    let mut offenders: Vec<(&Tally, (std::cmp::Reverse<Outcome>, u64))> = tallies
        .iter()
        .filter(|t| !t.passes)
        .filter_map(|t| t.outcomes.iter().filter(|(_, o)| *o != Outcome::Ok).map(|&(p, o)| (std::cmp::Reverse(o), p)).min().map(|k| (t, k)))
        .collect();
    offenders.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.path.cmp(&b.0.path)));
    if !offenders.is_empty() {
        writeln!(out, "worst offenders:")?;
        for (tally, (std::cmp::Reverse(outcome), page)) in offenders.iter().take(WORST_SHOWN) {
            writeln!(out, "  {}: {} at {}K", tally.path, outcome.name(), page / 1024)?;
        }
    }
    if !tallies_with_owners.is_empty() {
        let failing = tallies_with_owners.iter().filter(|t| !t.passes).filter_map(|t| t.owners.as_deref());
        let ranking = rank_failing(failing);
        if !ranking.owners.is_empty() || ranking.unowned > 0 {
            writeln!(out, "failing owners:")?;
        }
        for (label, count) in &ranking.owners {
            writeln!(out, "  {label}: {count} failing {}", if *count == 1 { "library" } else { "libraries" })?;
        }
        if ranking.unowned > 0 {
            writeln!(out, "  no owner found: {} failing {}", ranking.unowned, if ranking.unowned == 1 { "library" } else { "libraries" })?;
        }
    }
    Ok(())
}

/// Checks `candidates` in parallel, in order; line formats are rendered by the workers.
fn check_all(
    candidates: &[Candidate],
    options: &CheckOptions,
    owners: Option<&OwnerIndex>,
    render: &(dyn Fn(Checked) -> Checked + Sync),
    progress: &indicatif::ProgressBar,
) -> Vec<(Option<FileId>, Vec<Checked>)> {
    candidates
        .par_iter()
        .map(|candidate| {
            let (id, outcomes) = check_candidate(candidate, options, owners);
            let outcomes = outcomes.into_iter().map(render).collect();
            progress.inc(1);
            (id, outcomes)
        })
        .collect()
}

fn render_in_worker(outcome: Checked, args: &CheckArgs) -> Checked {
    let Checked::Report(report) = outcome else { return outcome };
    let mut text = Vec::new();
    // Writing into a Vec cannot fail.
    match args.format {
        CheckFormat::Text => {
            let _ = write_check_text(&mut text, &report, args.verbose);
        }
        CheckFormat::Jsonl => {
            let _ = serde_json::to_writer(&mut text, &report);
            text.push(b'\n');
        }
        CheckFormat::Json | CheckFormat::Sarif => return Checked::Report(report),
    }
    Checked::Line { text: String::from_utf8_lossy(&text).into_owned(), tally: Tally::of(&report, args.allow_degraded) }
}

/// Members are hashed only when they are matched to owners by content.
fn hashing(owners: Option<&OwnerIndex>) -> Hashing {
    if owners.is_some() {
        Hashing::Sha256
    } else {
        Hashing::Off
    }
}

fn check_candidate(candidate: &Candidate, options: &CheckOptions, owners: Option<&OwnerIndex>) -> (Option<FileId>, Vec<Checked>) {
    let path = candidate.path.display().to_string();
    let error = |message: String| (None, vec![Checked::Error(InputError { path: path.clone(), message })]);
    if candidate.named && image::is_oci_layout(&candidate.path) {
        let layout = Container::Directory(candidate.path.clone());
        return (None, check_members(&candidate.path, options, owners, &mut |visit| image::scan(&layout, &path, hashing(owners), visit)));
    }
    let (source, metadata) = match FileSource::open(&candidate.path) {
        Ok(opened) => opened,
        Err(e) if e.kind() == std::io::ErrorKind::IsADirectory => return (None, vec![Checked::Directory]),
        Err(e) if candidate.named => return error(format!("cannot read: {e}")),
        Err(_) => return (None, vec![Checked::NotElf]),
    };
    let id = Some((metadata.dev(), metadata.ino()));
    if !source.is_elf() {
        // FatELF's magic is unambiguous and cheap to follow, whatever the file's name.
        let follow = |kind: &archive::ArchiveKind| {
            candidate.named || *kind == archive::ArchiveKind::Fat || archive::has_archive_name(&candidate.path)
        };
        match archive::detect(source.prefix()).filter(follow) {
            Some(kind) => {
                return (
                    id,
                    check_members(&candidate.path, options, owners, &mut |visit| {
                        archive::scan(&candidate.path, kind, hashing(owners), visit)
                    }),
                );
            }
            // A named file that is neither gets the parser's error, with its offset.
            None if !candidate.named => return (id, vec![Checked::NotElf]),
            None => {}
        }
    }
    let cache = ReadCache::new(source);
    let name = file_name(&candidate.path);
    let mut report = match parse(&cache, parse_options(options)) {
        Ok(file) => check_file(&file, &path, &name, options),
        Err(e) => return (id, vec![Checked::Error(InputError { path, message: e.to_string() })]),
    };
    if let Some(index) = owners {
        match file_sha256(&candidate.path) {
            Ok(hash) => report.owners = Some(index.owners_of(&hash)),
            Err(e) => return (id, vec![Checked::Error(InputError { path, message: format!("cannot read for --owners: {e}") })]),
        }
    }
    (id, vec![Checked::Report(Box::new(report))])
}

/// Section headers tell code from data and padding, which can soften a
/// verdict; reading them costs one more `pread` at most (see `source`).
/// Their names only matter where findings are shown.
fn parse_options(options: &CheckOptions) -> ParseOptions {
    ParseOptions { sections: true, section_names: options.findings, runtime: options.runtime, ..ParseOptions::default() }
}

/// Checks the members an archive or image scan visits.
fn check_members(
    path: &Path,
    options: &CheckOptions,
    owners: Option<&OwnerIndex>,
    scan: &mut dyn FnMut(archive::Visitor<'_>) -> Result<(), archive::ArchiveError>,
) -> Vec<Checked> {
    let mut checked = Vec::new();
    let result = scan(&mut |member| checked.push(check_member(member, options, owners)));
    if let Err(error) = result {
        checked.push(Checked::Error(InputError { path: path.display().to_string(), message: error.to_string() }));
    }
    checked
}

fn check_member(member: Member, options: &CheckOptions, owners: Option<&OwnerIndex>) -> Checked {
    let mut file = match parse(&member.data, parse_options(options)) {
        Ok(file) => file,
        Err(e) => return Checked::Error(InputError { path: member.path, message: e.to_string() }),
    };
    let name = file_name(Path::new(&member.path));
    if member.android {
        // Inside an Android package: bionic and Android's rules, whatever the notes say.
        file.platform = Platform::Android;
    }
    let mut report = check_file(&file, &member.path, &name, options);
    if let (true, Some(offset)) = (member.android, member.zip_data_offset) {
        apply_zip_alignment(&mut report, &name, offset, options.findings);
    }
    // The index turned hashing on before any member was read.
    report.owners = owners.zip(member.data.sha256()).map(|(index, hash)| index.owners_of(&hash));
    Checked::Report(Box::new(report))
}
