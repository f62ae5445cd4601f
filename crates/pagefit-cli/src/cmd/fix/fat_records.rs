//! `pagefit fix` of a FatELF file. Each selected record that is not ok at P
//! is copied out as an ELF file of its own and goes through the single-file
//! engine and proof (`fix_elf`). Only when every record passes is the FatELF
//! file laid out again (`FatLayout`, same version, trailing bytes kept), read
//! back, and renamed into place. The records are held in memory, as the
//! `pagefit fat` verbs hold them.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context};
use pagefit_core::fat::{largest_ok_page, FatFile, FatLayout, FatRecord, Target, DEFAULT_ALIGN, VERSION_PAGE_VARIANTS};
use pagefit_core::page::PageSize;

use pagefit_core::fix::report::{FixReport, FixStatus};

use super::finish::{finish, keep_backup};
use crate::args::fix::{FixArgs, RecordSelector};
use crate::engine::{fix_elf, ElfFix};
use crate::output::StagedFile;
use pagefit_loader::source::FileSource;

/// Fixes the FatELF file `input` into `destination` (`None`: a dry run).
pub(super) fn run(
    args: &FixArgs,
    input_path: &Path,
    mut input: File,
    metadata: &std::fs::Metadata,
    destination: Option<&Path>,
    backup: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let shown = input_path.display().to_string();
    // A record is mapped straight from the file only if it starts on a page
    // boundary: a record fixed for P must start on a P boundary.
    let page = args.page().bytes();
    let align = args.align.unwrap_or(DEFAULT_ALIGN.max(page));
    if align < page {
        let shown_align = PageSize::new(align).map_or(align.to_string(), |a| a.to_string());
        bail!("--align {shown_align} is below --page-size {}: records fixed for it could not be mapped from the file", args.page());
    }
    let mut bytes = Vec::new();
    input.read_to_end(&mut bytes).with_context(|| format!("{shown}: cannot read"))?;
    let fat = FatFile::parse(bytes.as_slice()).with_context(|| shown.clone())?;
    let selected = selected_records(&fat, &args.record).with_context(|| shown.clone())?;
    // `FatFile::parse` checked that every record lies inside the file.
    let body_of = |record: &FatRecord| &bytes[record.offset as usize..record.range().end as usize];

    // The extracted records and their fixed copies; next to the destination,
    // where there is room for the output anyway.
    let work = match destination.map(|d| d.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))) {
        Some(directory) => tempfile::Builder::new().prefix(".pagefit-fix-").tempdir_in(directory),
        None => tempfile::Builder::new().prefix("pagefit-fix-").tempdir(),
    }
    .context("cannot create a temporary directory for the records")?;

    let mut reports = Vec::with_capacity(fat.records.len());
    let mut fixed_bodies: Vec<Option<Vec<u8>>> = Vec::with_capacity(fat.records.len());
    let mut targets = Vec::with_capacity(fat.records.len());
    for record in &fat.records {
        let name = format!("{shown}!{} ({})", record.name(), record.target.machine_label());
        let (mut report, fixed) = if selected.contains(&record.index) {
            fix_record(args, work.path(), record, body_of(record), &name, destination.is_some())?
        } else {
            let mut report = FixReport::new(&name, args.page());
            report.status = FixStatus::NotSelected;
            (report, None)
        };
        let target = match &fixed {
            // A page-size variant says how far it loads as at 4K: measure the fixed file.
            Some(fixed) if fat.version == VERSION_PAGE_VARIANTS => {
                Target { max_page: largest_ok_page(fixed.as_slice()).with_context(|| name.clone())?, ..record.target }
            }
            _ => record.target,
        };
        // Set once the FatELF file is written.
        report.output = None;
        report.record = Some(record.name());
        report.target = Some(target.to_string());
        reports.push(report);
        fixed_bodies.push(fixed);
        targets.push(target);
    }

    let failed: Vec<String> = reports.iter().filter(|r| r.status.is_failure()).filter_map(|r| r.record.clone()).collect();
    if !failed.is_empty() {
        let why = format!("nothing written, because {} could not be fixed", failed.join(" and "));
        for report in reports.iter_mut().filter(|r| r.status == FixStatus::Fixed) {
            report.status = FixStatus::NotWritten;
            report.reason = Some(why.clone());
        }
    }
    let (Some(destination), true) = (destination, failed.is_empty()) else {
        return finish(args, &reports, true);
    };
    if fixed_bodies.iter().all(Option::is_none) {
        // Nothing changed: the output is the input, byte for byte.
        if let Some(output) = &args.output {
            std::fs::copy(input_path, output).with_context(|| format!("{}: cannot write", output.display()))?;
            for (report, record) in reports.iter_mut().zip(&fat.records) {
                report.output = Some(format!("{}!{}", output.display(), record.name()));
            }
        }
        return finish(args, &reports, true);
    }
    check_distinct_targets(&shown, &fat, &targets, &fixed_bodies, args.page())?;

    let bodies: Vec<&[u8]> =
        fat.records.iter().zip(&fixed_bodies).map(|(record, fixed)| fixed.as_deref().unwrap_or_else(|| body_of(record))).collect();
    let trailing_range = fat.trailing();
    let trailing = &bytes[trailing_range.start as usize..trailing_range.end as usize];
    let planned: Vec<(Target, u64)> = targets.iter().zip(&bodies).map(|(target, body)| (*target, body.len() as u64)).collect();
    let layout = FatLayout::plan(&planned, align, fat.version == VERSION_PAGE_VARIANTS).with_context(|| shown.clone())?;
    let temp = StagedFile::create(destination, metadata.permissions().mode() & 0o7777)?;
    {
        let mut out = BufWriter::new(temp.file());
        layout
            .write(&mut out, &bodies, trailing)
            .and_then(|()| out.flush())
            .with_context(|| format!("{}: cannot write", temp.path().display()))?;
    }
    check_written(&temp, &bodies, trailing)?;
    keep_backup(input_path, backup)?;
    temp.persist(destination, args.in_place)?;
    for (report, record) in reports.iter_mut().zip(&fat.records) {
        report.output = Some(format!("{}!{}", destination.display(), record.name()));
    }
    finish(args, &reports, true)
}

/// The records `--record` names (every record without it), by index. A
/// selector that names a record past the last one, or no record, is an error.
fn selected_records(fat: &FatFile, selectors: &[RecordSelector]) -> anyhow::Result<BTreeSet<usize>> {
    if selectors.is_empty() {
        return Ok(fat.records.iter().map(|r| r.index).collect());
    }
    let mut selected = BTreeSet::new();
    for RecordSelector { text, selector } in selectors {
        let matches = fat.select(selector).with_context(|| format!("--record {text}"))?;
        if matches.is_empty() {
            let held: Vec<String> = fat.records.iter().map(|r| format!("{} ({})", r.name(), r.target)).collect();
            bail!("--record {text} matches no record; the file holds {}", held.join(", "));
        }
        selected.extend(matches.iter().map(|r| r.index));
    }
    Ok(selected)
}

/// Copies `record` out and runs it through the single-file engine and proof;
/// returns the report and, when it was fixed, the proven bytes.
fn fix_record(
    args: &FixArgs,
    work: &Path,
    record: &FatRecord,
    body: &[u8],
    name: &str,
    write: bool,
) -> anyhow::Result<(FixReport, Option<Vec<u8>>)> {
    let extracted = work.join(record.name());
    std::fs::write(&extracted, body).with_context(|| format!("{}: cannot write", extracted.display()))?;
    let (source, metadata) = FileSource::open(&extracted).with_context(|| format!("{}: cannot read", extracted.display()))?;
    let fixed_path = work.join(format!("{}.fixed", record.name()));
    let ElfFix { report, written } = fix_elf(source, &metadata, &extracted, name, write.then_some(fixed_path.as_path()), &args.request())?;
    let fixed = match written {
        Some(temp) => Some(std::fs::read(temp.path()).with_context(|| format!("{}: cannot re-read", temp.path().display()))?),
        None => None,
    };
    Ok((report, fixed))
}

/// Version 2 records carry their largest ok page size, and a fix can raise
/// it to that of another variant of the same build (a 4K record fixed for
/// 64K next to a 64K record): the file cannot hold both, and nothing could
/// choose between them. That is an error, not a silent drop of either.
fn check_distinct_targets(shown: &str, fat: &FatFile, targets: &[Target], fixed: &[Option<Vec<u8>>], page: PageSize) -> anyhow::Result<()> {
    for (later, target) in targets.iter().enumerate() {
        let Some(earlier) = targets[..later].iter().position(|t| t.conflicts_with(target)) else { continue };
        let (changed, other) = if fixed[later].is_some() { (later, earlier) } else { (earlier, later) };
        let (changed_name, other_name) = (fat.records[changed].name(), fat.records[other].name());
        bail!(
            "{shown}: {changed_name} fixed for {page} would become {}, the target {other_name} already has, and a FatELF file \
             cannot hold two records of one target; {other_name} already serves those page sizes, so leave {changed_name} out \
             (fix the others with --record) or drop one with `pagefit fat remove`; nothing written",
            targets[changed]
        );
    }
    Ok(())
}

/// Reads the written FatELF file back: it must parse (every record's ELF
/// header agreeing with its record) and hold exactly the proven bytes.
fn check_written(temp: &StagedFile, bodies: &[&[u8]], trailing: &[u8]) -> anyhow::Result<()> {
    let shown = temp.path().display().to_string();
    let written = std::fs::read(temp.path()).with_context(|| format!("{shown}: cannot re-read"))?;
    let fat = FatFile::parse(written.as_slice()).with_context(|| format!("{shown}: the written FatELF file"))?;
    let trailing_range = fat.trailing();
    let same_records = fat.records.len() == bodies.len()
        && fat.records.iter().zip(bodies).all(|(record, body)| &written[record.offset as usize..record.range().end as usize] == *body);
    if !same_records || &written[trailing_range.start as usize..trailing_range.end as usize] != trailing {
        bail!("{shown}: the written FatELF file does not hold the proven records; nothing written");
    }
    Ok(())
}
