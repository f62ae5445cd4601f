//! `pagefit fix` of a zip: a Python wheel, a JAR or AAR, a plain zip. Every
//! ELF member that is not ok at P goes through the single-file engine and its
//! proof; every other member is copied byte for byte, compressed data
//! included. A wheel's RECORD gets the new sha256 and size of each changed
//! member. One member that cannot be fixed means nothing is written.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context};
use base64::Engine;
use pagefit_core::fix::report::FixStatus;
use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

use super::finish::{finish, keep_backup};
use crate::args::fix::FixArgs;
use crate::engine::fix_file;
use crate::output::StagedFile;

/// Zips whose members must also keep their offsets and signature (Android
/// packages): fixing those is a different job.
const ANDROID_PACKAGES: [&str; 3] = [".apk", ".aab", ".apks"];

/// A member rewritten by the engine.
struct FixedMember {
    bytes: Vec<u8>,
}

pub fn run(args: &FixArgs, input_path: &Path, file: File, destination: Option<&Path>, backup: Option<&Path>) -> anyhow::Result<ExitCode> {
    let shown = input_path.display().to_string();
    if ANDROID_PACKAGES.iter().any(|ext| shown.ends_with(ext)) {
        bail!("{shown}: an Android package, whose stored libraries, alignment and signature a plain zip rewrite would break");
    }
    if !args.record.is_empty() || args.align.is_some() {
        bail!("{shown}: --record and --align are for FatELF files, and this is a zip");
    }
    let mut archive = ZipArchive::new(file).with_context(|| format!("{shown}: not a readable zip"))?;
    let work = tempfile::tempdir().context("cannot create a temporary directory")?;
    let mut reports = Vec::new();
    let mut fixed: HashMap<usize, FixedMember> = HashMap::new();
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
        let extracted = work.path().join(format!("member-{index}"));
        let mut out = File::create(&extracted).with_context(|| format!("{}: cannot write", extracted.display()))?;
        out.write_all(&magic)?;
        std::io::copy(&mut entry, &mut out).with_context(|| format!("{shown}!/{name}: cannot extract"))?;
        drop(out);
        let rewritten = work.path().join(format!("fixed-{index}"));
        let mut report = fix_file(&extracted, &rewritten, &args.request())?;
        report.path = format!("{shown}!/{name}");
        report.output = None;
        if report.status == FixStatus::Fixed {
            let bytes = std::fs::read(&rewritten).with_context(|| format!("{}: cannot read", rewritten.display()))?;
            fixed.insert(index, FixedMember { bytes });
            if args.dry_run {
                report.status = FixStatus::Planned;
            }
        }
        reports.push(report);
    }
    let refused = reports.iter().any(|r| r.status.is_failure());
    match destination {
        Some(destination) if !refused && !args.dry_run => {
            if fixed.is_empty() && args.output.is_some() {
                std::fs::copy(input_path, destination).with_context(|| format!("{}: cannot write", destination.display()))?;
            } else if !fixed.is_empty() {
                let mode = std::fs::metadata(input_path)?.permissions().mode() & 0o7777;
                let staged = StagedFile::create(destination, mode)?;
                write_zip(&mut archive, &fixed, staged.file()).with_context(|| format!("{}: cannot write", staged.path().display()))?;
                keep_backup(input_path, backup)?;
                staged.persist(destination, args.in_place)?;
                let output = destination.display().to_string();
                for report in reports.iter_mut().filter(|r| r.status == FixStatus::Fixed) {
                    report.output = Some(format!("{output}!/{}", report.path.rsplit("!/").next().unwrap_or_default()));
                }
            }
        }
        _ => {}
    }
    if refused {
        for report in reports.iter_mut().filter(|r| r.status == FixStatus::Fixed) {
            report.status = FixStatus::NotWritten;
            report.reason = Some("another member could not be fixed, so the archive was not written".into());
        }
    }
    finish(args, &reports, true)
}

/// Writes the archive again: fixed members with their original compression,
/// mode and time; RECORD with their new hashes; everything else raw.
fn write_zip(archive: &mut ZipArchive<File>, fixed: &HashMap<usize, FixedMember>, output: &File) -> anyhow::Result<()> {
    let mut names: HashMap<String, &FixedMember> = HashMap::new();
    for (&index, member) in fixed {
        names.insert(archive.by_index_raw(index)?.name().to_string(), member);
    }
    let mut writer = ZipWriter::new(output);
    for index in 0..archive.len() {
        let is_record = archive.by_index_raw(index)?.name().ends_with(".dist-info/RECORD");
        if let Some(member) = fixed.get(&index) {
            let entry = archive.by_index_raw(index)?;
            let name = entry.name().to_string();
            writer.start_file(name, options_like(&entry))?;
            writer.write_all(&member.bytes)?;
        } else if is_record {
            let mut entry = archive.by_index(index)?;
            let mut record = String::new();
            entry.read_to_string(&mut record)?;
            let name = entry.name().to_string();
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
fn updated_record(record: &str, fixed: &HashMap<String, &FixedMember>) -> String {
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
        let fixed: HashMap<String, &FixedMember> = [("pkg/lib.so".to_string(), &member)].into_iter().collect();
        let record = "pkg/__init__.py,sha256=abc,10\npkg/lib.so,sha256=old,99\npkg-1.0.dist-info/RECORD,,\n";
        let expected_digest = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(b"fixed"));
        assert_eq!(
            updated_record(record, &fixed),
            format!("pkg/__init__.py,sha256=abc,10\npkg/lib.so,sha256={expected_digest},5\npkg-1.0.dist-info/RECORD,,\n")
        );
    }
}
