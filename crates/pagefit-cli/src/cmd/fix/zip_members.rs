//! `pagefit fix` of a zip: a Python wheel, a JAR, a plain zip (Android
//! packages go to `android_package`, which shares the member loop). Every
//! ELF member that is not ok at P goes through the single-file engine and its
//! proof; every other member is copied byte for byte, compressed data
//! included. A wheel's RECORD gets the new sha256 and size of each changed
//! member. One member that cannot be fixed means nothing is written.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use base64::Engine;
use pagefit_core::fix::report::{FixReport, FixStatus};
use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

use super::finish::{finish, keep_backup};
use crate::args::fix::FixArgs;
use crate::engine::{fix_file, FixRequest};
use crate::output::StagedFile;

/// The ELF members of a zip run through the engine.
pub(super) struct MemberFixes {
    /// One per ELF member.
    pub reports: Vec<FixReport>,
    /// Each fixed member's proven output, by its index in the zip.
    pub fixed: BTreeMap<usize, PathBuf>,
}

pub fn run(
    args: &FixArgs,
    input_path: &Path,
    mut archive: ZipArchive<File>,
    destination: Option<&Path>,
    backup: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let shown = input_path.display().to_string();
    let work = tempfile::tempdir().context("cannot create a temporary directory")?;
    let MemberFixes { mut reports, fixed } =
        fix_elf_members(&mut archive, &shown, &args.request(), args.dry_run, work.path(), &|_, _| Ok(()))?;
    write_archive(args, input_path, destination, backup, &mut reports, !fixed.is_empty(), |output| {
        write_zip(&mut archive, &fixed, output)
    })?;
    finish(args, &reports, true)
}

/// Runs every ELF member of `archive` (shown as `shown`) through the engine,
/// extracting each into `work`, where the proven outputs stay. `inspect`
/// sees the file that goes in the archive (the proven output, or the member
/// as it is) with its report. One member at a time: memory holds none of them.
pub(super) fn fix_elf_members(
    archive: &mut ZipArchive<File>,
    shown: &str,
    request: &FixRequest,
    dry_run: bool,
    work: &Path,
    inspect: &dyn Fn(&Path, &mut FixReport) -> anyhow::Result<()>,
) -> anyhow::Result<MemberFixes> {
    let mut fixes = MemberFixes { reports: Vec::new(), fixed: BTreeMap::new() };
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index).with_context(|| format!("{shown}: member {index}"))?;
        if entry.is_dir() {
            continue;
        }
        let name = entry.name().to_string();
        let mut magic = Vec::with_capacity(4);
        (&mut entry).take(4).read_to_end(&mut magic).with_context(|| format!("{shown}!/{name}: cannot read"))?;
        if magic != b"\x7fELF" {
            continue;
        }
        let extracted = work.join(format!("member-{index}"));
        let mut out = File::create(&extracted).with_context(|| format!("{}: cannot write", extracted.display()))?;
        out.write_all(&magic)?;
        std::io::copy(&mut entry, &mut out).with_context(|| format!("{shown}!/{name}: cannot extract"))?;
        drop(out);
        let rewritten = work.join(format!("fixed-{index}"));
        let mut report = fix_file(&extracted, &rewritten, request)?;
        report.path = format!("{shown}!/{name}");
        report.output = None;
        match report.status {
            FixStatus::Fixed => inspect(&rewritten, &mut report)?,
            FixStatus::AlreadyOk => inspect(&extracted, &mut report)?,
            _ => {}
        }
        std::fs::remove_file(&extracted).with_context(|| format!("{}: cannot remove", extracted.display()))?;
        if report.status == FixStatus::Fixed {
            fixes.fixed.insert(index, rewritten);
            if dry_run {
                report.status = FixStatus::Planned;
            }
        }
        fixes.reports.push(report);
    }
    Ok(fixes)
}

/// Unless a member was refused or this is a dry run: writes the archive
/// with `write` when `changed` (keeping the backup, then renaming it into
/// place), or copies the input to -o when not. Reports of fixed members get
/// their output path, or say why nothing was written. Returns whether the
/// archive was rewritten.
pub(super) fn write_archive(
    args: &FixArgs,
    input_path: &Path,
    destination: Option<&Path>,
    backup: Option<&Path>,
    reports: &mut [FixReport],
    changed: bool,
    write: impl FnOnce(&File) -> anyhow::Result<()>,
) -> anyhow::Result<bool> {
    let refused = reports.iter().any(|r| r.status.is_failure());
    if refused {
        for report in reports.iter_mut().filter(|r| r.status == FixStatus::Fixed) {
            report.status = FixStatus::NotWritten;
            report.reason = Some("another member could not be fixed, so the archive was not written".into());
        }
        return Ok(false);
    }
    let Some(destination) = destination.filter(|_| !args.dry_run) else { return Ok(false) };
    if !changed {
        if args.output.is_some() {
            std::fs::copy(input_path, destination).with_context(|| format!("{}: cannot write", destination.display()))?;
        }
        return Ok(false);
    }
    let mode = std::fs::metadata(input_path)?.permissions().mode() & 0o7777;
    let staged = StagedFile::create(destination, mode)?;
    write(staged.file()).with_context(|| format!("{}: cannot write", staged.path().display()))?;
    keep_backup(input_path, backup)?;
    staged.persist(destination, args.in_place)?;
    let shown = input_path.display().to_string();
    let output = destination.display().to_string();
    for report in reports.iter_mut().filter(|r| r.status == FixStatus::Fixed) {
        report.output = Some(format!("{output}{}", report.path.strip_prefix(&shown).unwrap_or_default()));
    }
    Ok(true)
}

/// A member rewritten by the engine, read back for RECORD and the zip writer.
struct FixedMember {
    bytes: Vec<u8>,
}

/// Writes the archive again: fixed members with their original compression,
/// mode and time; RECORD with their new hashes; everything else raw.
fn write_zip(archive: &mut ZipArchive<File>, fixed: &BTreeMap<usize, PathBuf>, output: &File) -> anyhow::Result<()> {
    let mut names: HashMap<String, FixedMember> = HashMap::new();
    for (&index, path) in fixed {
        let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
        names.insert(archive.by_index_raw(index)?.name().to_string(), FixedMember { bytes });
    }
    let mut writer = ZipWriter::new(output);
    for index in 0..archive.len() {
        let name = archive.by_index_raw(index)?.name().to_string();
        if let Some(member) = names.get(&name).filter(|_| fixed.contains_key(&index)) {
            let entry = archive.by_index_raw(index)?;
            writer.start_file(name, options_like(&entry))?;
            writer.write_all(&member.bytes)?;
        } else if name.ends_with(".dist-info/RECORD") {
            let mut entry = archive.by_index(index)?;
            let mut record = String::new();
            entry.read_to_string(&mut record)?;
            let options = options_like(&entry);
            drop(entry);
            writer.start_file(name, options)?;
            writer.write_all(updated_record(&record, &names).as_bytes())?;
        } else {
            writer.raw_copy_file(archive.by_index_raw(index)?)?;
        }
    }
    writer.finish()?;
    Ok(())
}

fn options_like<R: Read>(entry: &zip::read::ZipFile<'_, R>) -> SimpleFileOptions {
    let mut options = SimpleFileOptions::default().compression_method(match entry.compression() {
        CompressionMethod::Stored => CompressionMethod::Stored,
        _ => CompressionMethod::Deflated,
    });
    if let Some(mode) = entry.unix_mode() {
        options = options.unix_permissions(mode);
    }
    if let Some(time) = entry.last_modified() {
        options = options.last_modified_time(time);
    }
    options.large_file(entry.size() >= u64::from(u32::MAX))
}

/// RECORD (PEP 376/427: `path,sha256=<urlsafe base64, no padding>,size`)
/// with the hash and size of each fixed member.
fn updated_record(record: &str, fixed: &HashMap<String, FixedMember>) -> String {
    record
        .lines()
        .map(|line| {
            let path = line.rsplitn(3, ',').nth(2).unwrap_or(line);
            match fixed.get(path.trim_matches('"')) {
                Some(member) => {
                    let digest = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(&member.bytes));
                    format!("{path},sha256={digest},{}\n", member.bytes.len())
                }
                None => format!("{line}\n"),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_lines_of_fixed_members_get_their_new_hash_and_size() {
        let member = FixedMember { bytes: b"fixed".to_vec() };
        let fixed: HashMap<String, FixedMember> = [("pkg/lib.so".to_string(), member)].into_iter().collect();
        let record = "pkg/__init__.py,sha256=abc,10\npkg/lib.so,sha256=old,99\npkg-1.0.dist-info/RECORD,,\n";
        let expected_digest = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(b"fixed"));
        assert_eq!(
            updated_record(record, &fixed),
            format!("pkg/__init__.py,sha256=abc,10\npkg/lib.so,sha256={expected_digest},5\npkg-1.0.dist-info/RECORD,,\n")
        );
    }
}
