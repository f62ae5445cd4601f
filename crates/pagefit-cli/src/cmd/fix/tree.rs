//! `pagefit fix --in-place DIR`: every ELF file under a directory tree (a
//! chroot, a container root) that is not ok at P, fixed in place, in
//! parallel, with one summary.
//!
//! Symbolic links are not followed, so each file is reached by its own name.
//! A hard-linked file is fixed once, and every other name of it is then
//! linked to the fixed file, so all its names keep sharing one inode.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use pagefit_core::elf::Role;
use pagefit_core::fix::report::{FixReport, FixStatus};
use pagefit_loader::source::FileSource;
use rayon::prelude::*;

use super::finish::{backup_path, finish, keep_backup};
use crate::args::fix::FixArgs;
use crate::args::format::Format;
use crate::engine::{fix_parsed, ElfFix, ParsedElf};
use crate::output::{progress_bar, StagedFile};

/// One file's ending: its report, or why it was not fixed.
enum Ending {
    Report(Box<FixReport>),
    /// Relocatable objects, core files: no loader maps them.
    NotLoadable,
    Error(String),
}

pub fn run(args: &FixArgs, root: &Path) -> anyhow::Result<ExitCode> {
    if !args.in_place && !args.dry_run {
        bail!("{}: a directory is fixed in place: add --in-place (or --dry-run)", root.display());
    }
    // Each inode once, under its first name; its other names follow it.
    let mut inodes: BTreeMap<(u64, u64), Vec<PathBuf>> = BTreeMap::new();
    for entry in walkdir::WalkDir::new(root).follow_links(false).sort_by_file_name() {
        let entry = entry.with_context(|| format!("{}: cannot walk", root.display()))?;
        if entry.file_type().is_file() && is_elf(entry.path()) {
            let metadata = entry.metadata()?;
            inodes.entry((metadata.dev(), metadata.ino())).or_default().push(entry.into_path());
        }
    }
    let files: Vec<Vec<PathBuf>> = inodes.into_values().collect();
    let progress = progress_bar(files.len() as u64, "ELF files");
    let endings: Vec<(String, Ending)> = files
        .par_iter()
        .map(|names| {
            let ending = fix_one(args, names).unwrap_or_else(|error| Ending::Error(format!("{error:#}")));
            progress.inc(1);
            (names[0].display().to_string(), ending)
        })
        .collect();
    progress.finish_and_clear();

    let mut reports = Vec::new();
    let mut not_loadable = 0;
    let mut errors = Vec::new();
    for (path, ending) in endings {
        match ending {
            Ending::Report(report) => reports.push(*report),
            Ending::NotLoadable => not_loadable += 1,
            Ending::Error(error) => errors.push(format!("{path}: {error}")),
        }
    }
    for error in &errors {
        eprintln!("pagefit: {error}");
    }
    let shown: Vec<FixReport> = match args.format {
        Format::Json => reports.clone(),
        Format::Text => reports.iter().filter(|r| r.status != FixStatus::AlreadyOk).cloned().collect(),
    };
    let status = finish(args, &shown, true)?;
    if args.format == Format::Text {
        println!("{}", summary(root, &reports, not_loadable, errors.len()));
    }
    Ok(if errors.is_empty() { status } else { ExitCode::from(2) })
}

fn is_elf(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic)).is_ok() && magic == *b"\x7fELF"
}

/// Fixes the file `names[0]` in place, then links its other names to the result.
fn fix_one(args: &FixArgs, names: &[PathBuf]) -> anyhow::Result<Ending> {
    let path = &names[0];
    let shown = path.display().to_string();
    let (source, metadata) = FileSource::open(path).with_context(|| format!("{shown}: cannot read"))?;
    let request = args.request();
    let parsed = ParsedElf::parse(source, &shown, &request)?;
    if parsed.role() == Role::NotLoadable {
        return Ok(Ending::NotLoadable);
    }
    let destination = (!args.dry_run).then_some(path.as_path());
    let ElfFix { report, written } = fix_parsed(parsed, &metadata, path, &shown, destination, &request)?;
    if let (FixStatus::Fixed, Some(written)) = (report.status, written) {
        let backup = args.backup.then(|| backup_path(path));
        keep_backup(path, backup.as_deref())?;
        written.persist(path, true)?;
        for other in &names[1..] {
            relink(path, other)?;
        }
    }
    Ok(Ending::Report(Box::new(report)))
}

/// Points `other` at `fixed`'s inode, atomically (a link beside it, renamed over it).
fn relink(fixed: &Path, other: &Path) -> anyhow::Result<()> {
    let staged = StagedFile::create(other, 0o600)?;
    let temporary = staged.path().to_path_buf();
    drop(staged);
    std::fs::hard_link(fixed, &temporary).with_context(|| format!("{}: cannot link", other.display()))?;
    std::fs::rename(&temporary, other).with_context(|| format!("{}: cannot replace", other.display()))
}

/// `N ELF files: a fixed (merge b, rebase c, relayout d), e already ok, f refused, ...`.
fn summary(root: &Path, reports: &[FixReport], not_loadable: usize, errors: usize) -> String {
    let count = |status: FixStatus| reports.iter().filter(|r| r.status == status).count();
    let mut strategies: BTreeMap<String, usize> = BTreeMap::new();
    for report in reports.iter().filter(|r| matches!(r.status, FixStatus::Fixed | FixStatus::Planned)) {
        *strategies.entry(report.strategy.map(|s| s.to_string()).unwrap_or_default()).or_default() += 1;
    }
    let by_strategy: Vec<String> = strategies.iter().map(|(strategy, n)| format!("{strategy} {n}")).collect();
    let writable_executable = reports.iter().filter(|r| r.writable_executable && r.status == FixStatus::Fixed).count();
    format!(
        "{}: {} ELF files at {}: {} fixed ({}), {} planned, {} already ok, {} refused, {} failed verification, {} not loadable, {} errors; {} fixed files have a writable and executable segment",
        root.display(),
        reports.len() + not_loadable + errors,
        reports.first().map(|r| r.page_size.to_string()).unwrap_or_default(),
        count(FixStatus::Fixed),
        by_strategy.join(", "),
        count(FixStatus::Planned),
        count(FixStatus::AlreadyOk),
        count(FixStatus::Refused),
        count(FixStatus::VerificationFailed),
        not_loadable,
        errors,
        writable_executable,
    )
}
