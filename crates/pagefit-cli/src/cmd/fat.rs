//! `pagefit fat`: the FatELF tools (glue, info, extract, split, remove,
//! replace, verify, validate) over `pagefit_core::fat`, with atomic writes.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use pagefit_core::fat::{
    is_fat, largest_ok_page, osabi_name, FatFile, FatLayout, FatRecord, Target, TargetSelector, VERSION_PAGE_VARIANTS,
};
use pagefit_core::page::PageSize;
use serde::Serialize;

use crate::args::fat::{FatArgs, FatCommand};
use crate::args::format::Format;
use crate::output::write_atomically;

pub fn run(args: &FatArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        FatCommand::Glue { output, align, page_variants, elves } => glue(output, *align, *page_variants, elves),
        FatCommand::Info { file, format } => info(file, *format),
        FatCommand::Extract { output, file, target } => {
            let fat = FatBytes::read(file)?;
            let record = fat.only_match(target)?;
            write_atomically(output, |out| out.write_all(fat.body(record)))?;
            Ok(ExitCode::SUCCESS)
        }
        FatCommand::Split { file, directory } => split(file, directory.as_deref()),
        FatCommand::Remove { output, file, target, align } => {
            let fat = FatBytes::read(file)?;
            let removed = fat.only_match(target)?;
            if fat.fat.records.len() == 1 {
                bail!("{}: {} is the only record; a FatELF file cannot be empty, nothing written", file.display(), removed.name());
            }
            let kept: Vec<(Target, &[u8])> =
                fat.fat.records.iter().filter(|r| r.index != removed.index).map(|r| (r.target, fat.body(r))).collect();
            fat.rewrite(output, &kept, *align)
        }
        FatCommand::Replace { output, file, elf, align } => {
            let fat = FatBytes::read(file)?;
            let new_bytes = read(elf)?;
            let new_target = elf_target(elf, &new_bytes, fat.fat.version == VERSION_PAGE_VARIANTS)?;
            let Some(replaced) = fat.fat.records.iter().find(|r| r.target == new_target) else {
                bail!("{}: no record holds {new_target} (the target of {}): nothing to replace", file.display(), elf.display());
            };
            let records: Vec<(Target, &[u8])> = fat
                .fat
                .records
                .iter()
                .map(|r| (r.target, if r.index == replaced.index { new_bytes.as_slice() } else { fat.body(r) }))
                .collect();
            fat.rewrite(output, &records, *align)
        }
        FatCommand::Verify { file, target } => {
            let fat = FatBytes::read(file)?;
            let matches = match fat.fat.select(target) {
                Ok(matches) => matches,
                Err(e) => {
                    eprintln!("{}: {e}", file.display());
                    return Ok(ExitCode::from(1));
                }
            };
            if matches.is_empty() {
                eprintln!("{}: no record matches", file.display());
                return Ok(ExitCode::from(1));
            }
            for record in matches {
                println!("{}: {} {}", file.display(), record.name(), record.target);
            }
            Ok(ExitCode::SUCCESS)
        }
        FatCommand::Validate { file } => {
            let fat = FatBytes::read(file)?;
            println!(
                "{}: valid FatELF version {}, {} records, every ELF header agrees with its record",
                file.display(),
                fat.fat.version,
                fat.fat.records.len()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))
}

/// An ELF file's target, with its largest ok page size for version 2.
fn elf_target(path: &Path, bytes: &[u8], page_variants: bool) -> anyhow::Result<Target> {
    let mut target = Target::of_elf(bytes).with_context(|| path.display().to_string())?;
    if page_variants {
        target.max_page = largest_ok_page(bytes).with_context(|| path.display().to_string())?;
    }
    Ok(target)
}

fn glue(output: &Path, align: u64, page_variants: bool, elves: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let bodies = elves.iter().map(|path| read(path)).collect::<anyhow::Result<Vec<_>>>()?;
    let mut targets = Vec::with_capacity(elves.len());
    for (path, bytes) in elves.iter().zip(&bodies) {
        targets.push((elf_target(path, bytes, page_variants)?, bytes.len() as u64));
    }
    let layout = FatLayout::plan(&targets, align, page_variants).map_err(|e| {
        // The layout names inputs by position; the user named them by path.
        let mut message = e.to_string();
        for (index, path) in elves.iter().enumerate().rev() {
            message = message.replace(&format!("input {index}"), &path.display().to_string());
        }
        anyhow::anyhow!(message)
    })?;
    let slices: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
    write_atomically(output, |out| layout.write(out, &slices, &[]))?;
    Ok(ExitCode::SUCCESS)
}

/// A FatELF file read whole and validated.
struct FatBytes {
    path: PathBuf,
    bytes: Vec<u8>,
    fat: FatFile,
}

impl FatBytes {
    fn read(path: &Path) -> anyhow::Result<FatBytes> {
        FatBytes::parse(path, read(path)?)
    }

    fn parse(path: &Path, bytes: Vec<u8>) -> anyhow::Result<FatBytes> {
        let fat = FatFile::parse(bytes.as_slice()).with_context(|| path.display().to_string())?;
        Ok(FatBytes { path: path.to_path_buf(), bytes, fat })
    }

    /// A record's ELF file, from its real offset (the reference tools' remove
    /// and replace copied from the wrong one).
    fn body(&self, record: &FatRecord) -> &[u8] {
        // `FatFile::parse` checked that every record lies inside the file.
        &self.bytes[record.offset as usize..record.range().end as usize]
    }

    fn trailing(&self) -> &[u8] {
        let range = self.fat.trailing();
        &self.bytes[range.start as usize..range.end as usize]
    }

    /// The one record `selector` names: none, or several, is an error.
    fn only_match(&self, selector: &TargetSelector) -> anyhow::Result<&FatRecord> {
        let matches = self.fat.select(selector).with_context(|| self.path.display().to_string())?;
        match matches.as_slice() {
            [one] => Ok(one),
            [] => bail!("{}: no record matches", self.path.display()),
            several => {
                let names: Vec<String> = several.iter().map(|r| format!("{} ({})", r.name(), r.target)).collect();
                bail!("{}: the target matches {} records, name one: {}", self.path.display(), several.len(), names.join(", "))
            }
        }
    }

    /// Writes `records` as a new file of the same version, keeping the trailing bytes.
    fn rewrite(&self, output: &Path, records: &[(Target, &[u8])], align: u64) -> anyhow::Result<ExitCode> {
        let targets: Vec<(Target, u64)> = records.iter().map(|(target, body)| (*target, body.len() as u64)).collect();
        let layout = FatLayout::plan(&targets, align, self.fat.version == VERSION_PAGE_VARIANTS)?;
        let bodies: Vec<&[u8]> = records.iter().map(|(_, body)| *body).collect();
        write_atomically(output, |out| layout.write(out, &bodies, self.trailing()))?;
        Ok(ExitCode::SUCCESS)
    }
}

/// `pagefit fat info --format json`.
#[derive(Serialize)]
struct InfoDocument {
    path: String,
    version: u16,
    records: Vec<RecordInfo>,
    /// Bytes after the last record, kept by every rewrite.
    trailing: ByteRange,
}

#[derive(Serialize)]
struct RecordInfo {
    /// `recordN`.
    record: String,
    /// Every field, parseable back as a target.
    target: String,
    /// `x86_64`, `ppc64le`, as `pagefit check` prints it.
    machine: String,
    e_machine: u16,
    bits: u8,
    byte_order: &'static str,
    osabi: String,
    osabi_version: u8,
    /// Version 2: the largest page size (bytes) the record loads correctly at.
    max_page_size: Option<u64>,
    offset: u64,
    size: u64,
}

#[derive(Serialize)]
struct ByteRange {
    offset: u64,
    size: u64,
}

fn info(path: &Path, format: Format) -> anyhow::Result<ExitCode> {
    let fat = FatBytes::read(path)?.fat;
    let trailing = fat.trailing();
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    match format {
        Format::Text => {
            writeln!(
                out,
                "{}: FatELF version {}, {} records, {} trailing bytes",
                path.display(),
                fat.version,
                fat.records.len(),
                trailing.end - trailing.start
            )?;
            for record in &fat.records {
                writeln!(out, "  {:<8} {:<44} offset {:#x} size {}", record.name(), record.target.to_string(), record.offset, record.size)?;
            }
        }
        Format::Json => {
            let records = fat
                .records
                .iter()
                .map(|r| RecordInfo {
                    record: r.name(),
                    target: r.target.to_string(),
                    machine: r.target.machine_label(),
                    e_machine: r.target.machine,
                    bits: r.target.word_size.bits(),
                    byte_order: r.target.byte_order.name(),
                    osabi: osabi_name(r.target.osabi),
                    osabi_version: r.target.osabi_version,
                    max_page_size: r.target.max_page.map(PageSize::bytes),
                    offset: r.offset,
                    size: r.size,
                })
                .collect();
            let document = InfoDocument {
                path: path.display().to_string(),
                version: fat.version,
                records,
                trailing: ByteRange { offset: trailing.start, size: trailing.end - trailing.start },
            };
            serde_json::to_writer_pretty(&mut out, &document)?;
            writeln!(out)?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn split(path: &Path, directory: Option<&Path>) -> anyhow::Result<ExitCode> {
    let fat = FatBytes::read(path)?;
    let directory = directory.map(Path::to_path_buf).unwrap_or_else(|| path.parent().unwrap_or(Path::new("")).to_path_buf());
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let stem = file_name.strip_suffix(".fat").unwrap_or(&file_name);
    for (record, label) in fat.fat.records.iter().zip(split_labels(&fat.fat.records)) {
        let output = directory.join(format!("{stem}.{label}"));
        write_atomically(&output, |out| out.write_all(fat.body(record)))?;
        println!("{}: {} {}", output.display(), record.name(), record.target);
    }
    Ok(ExitCode::SUCCESS)
}

/// File name suffixes for `split`: the machine as `uname -m` says it
/// (`x86_64`, `ppc64le`), plus the page size for page-size variants, and the
/// whole target when that is still not unique.
fn split_labels(records: &[FatRecord]) -> Vec<String> {
    let short = |record: &FatRecord| match record.target.max_page {
        Some(page) => format!("{}-{}", record.target.machine_label(), page.to_string().to_ascii_lowercase()),
        None => record.target.machine_label(),
    };
    records
        .iter()
        .map(|record| {
            let label = short(record);
            if records.iter().filter(|other| short(other) == label).count() == 1 {
                label
            } else {
                record.target.to_string().replace(':', "-")
            }
        })
        .collect()
}

/// For `pagefit explain FILE!recordN`: the ELF file a `FILE!TARGET` path
/// names inside a FatELF file, or `None` when `spec` is a plain path. The
/// form `pagefit check` prints, `app.fat!record0 (x86_64)`, is accepted too.
pub fn record_named_by(spec: &str) -> anyhow::Result<Option<Vec<u8>>> {
    let Some((outer, selector)) = spec.rsplit_once('!') else { return Ok(None) };
    if Path::new(spec).exists() || !Path::new(outer).is_file() {
        return Ok(None);
    }
    let selector = match selector.split_once(" (") {
        Some((record, label)) if label.ends_with(')') => record,
        _ => selector,
    };
    let bytes = read(Path::new(outer))?;
    if !is_fat(&bytes) {
        return Ok(None);
    }
    let selector: TargetSelector = selector.parse().with_context(|| spec.to_string())?;
    let fat = FatBytes::parse(Path::new(outer), bytes)?;
    let record = fat.only_match(&selector)?;
    Ok(Some(fat.body(record).to_vec()))
}
