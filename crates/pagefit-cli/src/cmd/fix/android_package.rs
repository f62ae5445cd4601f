//! `pagefit fix` of an Android package: an AAR, APK, AAB, or an .apks set
//! of APKs. Each ELF member is fixed as Android's (bionic, whatever its
//! notes say) through the shared member loop; each inner APK of an .apks is
//! fixed the same way and written again before the outer zip. The package
//! is rewritten record by record (`zip_rewrite`): stored libraries start on
//! a page boundary as `zipalign -P` puts them, other stored entries on 4
//! bytes, everything else byte for byte. The rewrite invalidates any
//! signature, so the output is never called ready to install or upload.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use object::read::ReadCache;
use pagefit_core::elf::{parse, ParseOptions, Platform};
use pagefit_core::fix::report::FixReport;
use pagefit_core::page::PageSize;
use pagefit_core::predict::check::{check_file, CheckOptions};
use pagefit_core::predict::finding::FindingKind;
use pagefit_core::predict::model::LoaderModel;
use pagefit_loader::source::FileSource;
use zip::ZipArchive;

use super::finish::finish;
use super::zip_members::{fix_elf_members, write_archive, MemberFixes};
use super::zip_rewrite::{rewrite_zip, RewriteRules};
use crate::args::fix::FixArgs;
use crate::engine::FixRequest;

/// What kind of Android package a zip is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PackageKind {
    /// A library archive (`jni/<abi>/*.so`), not signed.
    Aar,
    /// An installable package (`lib/<abi>/*.so`), signed with apksigner.
    Apk,
    /// An app bundle (`base/lib/<abi>/*.so`, `<feature>/lib/<abi>/*.so`), signed with jarsigner.
    Aab,
    /// A set of APKs, as bundletool builds it.
    ApkSet,
}

/// The kind of Android package `name` is, by its extension, or by the
/// manifest an APK (`AndroidManifest.xml`) or AAB (`base/manifest/…`) holds.
pub fn package_kind(name: &str, has_entry: impl Fn(&str) -> bool) -> Option<PackageKind> {
    let extension = name.rsplit_once('.').map(|(_, extension)| extension.to_ascii_lowercase());
    match extension.as_deref() {
        Some("aar") => Some(PackageKind::Aar),
        Some("apk") => Some(PackageKind::Apk),
        Some("aab") => Some(PackageKind::Aab),
        Some("apks") => Some(PackageKind::ApkSet),
        _ if has_entry("AndroidManifest.xml") => Some(PackageKind::Apk),
        _ if has_entry("base/manifest/AndroidManifest.xml") => Some(PackageKind::Aab),
        _ => None,
    }
}

/// Whether the zip `archive`, shown as `shown`, is an Android package.
pub fn is_android_package(shown: &str, archive: &ZipArchive<File>) -> bool {
    package_kind(shown, |name| archive.index_for_name(name).is_some()).is_some()
}

/// Whether `name` is a JAR signature file (v1 scheme): `META-INF/MANIFEST.MF`,
/// a signature file `*.SF`, or a signature block (`*.RSA`, `*.DSA`, `*.EC`).
pub fn is_signature_entry(name: &str) -> bool {
    let Some(file) = name.strip_prefix("META-INF/") else { return false };
    let upper = file.to_ascii_uppercase();
    !file.contains('/') && (upper == "MANIFEST.MF" || [".SF", ".RSA", ".DSA", ".EC"].iter().any(|ext| upper.ends_with(ext)))
}

/// Whether a stored entry named `name` is a native library, which
/// `zipalign -P` page-aligns (every stored `.so`).
pub fn is_native_library(name: &str) -> bool {
    name.ends_with(".so")
}

/// The magic that ends an APK Signing Block (v2, v3, v3.1 signatures), just
/// before the central directory.
const SIGNING_BLOCK_MAGIC: &[u8; 16] = b"APK Sig Block 42";

pub fn run(
    args: &FixArgs,
    input_path: &Path,
    mut archive: ZipArchive<File>,
    destination: Option<&Path>,
    backup: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let shown = input_path.display().to_string();
    let kind = package_kind(&shown, |name| archive.index_for_name(name).is_some()).unwrap_or(PackageKind::Apk);
    let request = FixRequest { platform: Some(Platform::Android), ..args.request() };
    let input = File::open(input_path).with_context(|| format!("{shown}: cannot read"))?;
    let work = tempfile::tempdir().context("cannot create a temporary directory")?;
    let mut fixes = fix_package(&mut archive, &shown, kind, &request, args.dry_run, work.path())?;
    let changed = !fixes.fixed.is_empty() || misaligned_libraries(&mut archive, args.page())? > 0;
    let signed = is_signed(&input, &mut archive)?;
    let alignment = stored_alignment(args.page());
    let rules = RewriteRules { replaced: &fixes.fixed, stored_alignment: &alignment };
    let written = write_archive(args, input_path, destination, backup, &mut fixes.reports, changed, |output| {
        rewrite_zip(&input, &mut archive, &shown, &rules, output)
    })?;
    if let (true, Some(destination)) = (written, destination) {
        warn_signature(kind, signed, destination, args.page())?;
    }
    finish(args, &fixes.reports, true)
}

/// The alignment rules for a package: stored libraries on `page`, other stored entries on 4 bytes.
fn stored_alignment(page: PageSize) -> impl Fn(&str) -> u64 {
    let page = page.bytes();
    move |name: &str| if is_native_library(name) { page } else { 4 }
}

/// Fixes the ELF members of `archive` and, in an .apks, each inner APK.
fn fix_package(
    archive: &mut ZipArchive<File>,
    shown: &str,
    kind: PackageKind,
    request: &FixRequest,
    dry_run: bool,
    work: &Path,
) -> anyhow::Result<MemberFixes> {
    let page = request.page_size;
    let mut fixes = fix_elf_members(archive, shown, request, dry_run, work, &|path, report| android_relro_warnings(path, page, report))?;
    if kind != PackageKind::ApkSet {
        return Ok(fixes);
    }
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index).with_context(|| format!("{shown}: member {index}"))?;
        let name = entry.name().to_string();
        if !entry.is_file() || !name.ends_with(".apk") {
            continue;
        }
        let inner_shown = format!("{shown}!/{name}");
        let extracted = work.join(format!("apk-{index}"));
        let mut out = File::create(&extracted).with_context(|| format!("{}: cannot write", extracted.display()))?;
        std::io::copy(&mut entry, &mut out).with_context(|| format!("{inner_shown}: cannot extract"))?;
        drop(out);
        let inner_file = File::open(&extracted).with_context(|| format!("{}: cannot read", extracted.display()))?;
        let mut inner = ZipArchive::new(inner_file.try_clone()?).with_context(|| format!("{inner_shown}: not a readable zip"))?;
        let inner_work = work.join(format!("apk-{index}.members"));
        std::fs::create_dir(&inner_work).with_context(|| format!("{}: cannot create", inner_work.display()))?;
        let inner_fixes = fix_package(&mut inner, &inner_shown, PackageKind::Apk, request, dry_run, &inner_work)?;
        let refused = inner_fixes.reports.iter().any(|r| r.status.is_failure());
        let changed = !inner_fixes.fixed.is_empty() || misaligned_libraries(&mut inner, page)? > 0;
        if changed && !refused && !dry_run {
            let rewritten = work.join(format!("apk-{index}.fixed"));
            let output = File::create(&rewritten).with_context(|| format!("{}: cannot write", rewritten.display()))?;
            let alignment = stored_alignment(page);
            let rules = RewriteRules { replaced: &inner_fixes.fixed, stored_alignment: &alignment };
            rewrite_zip(&inner_file, &mut inner, &inner_shown, &rules, &output)?;
            fixes.fixed.insert(index, rewritten);
        }
        fixes.reports.extend(inner_fixes.reports);
    }
    Ok(fixes)
}

/// How many stored libraries of `archive` do not start on a `page` boundary.
fn misaligned_libraries(archive: &mut ZipArchive<File>, page: PageSize) -> anyhow::Result<usize> {
    let mut misaligned = 0;
    for index in 0..archive.len() {
        let entry = archive.by_index_raw(index)?;
        let stored = entry.compression() == zip::CompressionMethod::Stored;
        if stored && is_native_library(entry.name()) && entry.data_start().is_none_or(|start| !page.divides(start)) {
            misaligned += 1;
        }
    }
    Ok(misaligned)
}

/// Whether the package carries a signature: v1 files under META-INF, or
/// an APK Signing Block before the central directory.
fn is_signed(input: &File, archive: &mut ZipArchive<File>) -> anyhow::Result<bool> {
    if archive.file_names().any(is_signature_entry) {
        return Ok(true);
    }
    let mut magic = [0; 16];
    let end = archive.central_directory_start();
    Ok(end >= 16 && std::os::unix::fs::FileExt::read_exact_at(input, &mut magic, end - 16).is_ok() && &magic == SIGNING_BLOCK_MAGIC)
}

/// Android's RELRO rule (a prefix or suffix of its LOAD, or its ends on
/// `page`), which bionic does not enforce and Play does: kept as warnings
/// on the library's report, read from the file that goes in the package.
fn android_relro_warnings(path: &Path, page: PageSize, report: &mut FixReport) -> anyhow::Result<()> {
    let shown = report.path.clone();
    let (source, _) = FileSource::open(path).with_context(|| format!("{shown}: cannot re-read"))?;
    let cache = ReadCache::new(source);
    let options = ParseOptions { sections: true, section_names: true, ..ParseOptions::default() };
    let mut file = parse(&cache, options).with_context(|| shown.clone())?;
    file.platform = Platform::Android;
    let check = CheckOptions {
        page_sizes: vec![page],
        loaders: Some(vec![LoaderModel::Bionic]),
        findings: true,
        all_abis: true,
        ..CheckOptions::default()
    };
    let name = shown.rsplit('/').next().unwrap_or_default().to_string();
    let checked = check_file(&file, &shown, &name, &check);
    let relro = checked.results.iter().flat_map(|r| &r.findings).filter(|f| f.kind == FindingKind::AndroidRelro);
    report.warnings.extend(relro.map(|f| format!("Play: {}", f.message)));
    Ok(())
}

/// Tells the user the package must be signed again, and how.
fn warn_signature(kind: PackageKind, signed: bool, output: &Path, page: PageSize) -> anyhow::Result<()> {
    let out = output.display();
    let kb = page.bytes() / 1024;
    let lost = if signed { "its signature (v1 META-INF files, v2/v3 APK Signing Block) no longer matches" } else { "it is not signed" };
    let text = match kind {
        PackageKind::Aar => return Ok(()),
        PackageKind::Apk => format!(
            "{out}: {lost}; it is not ready to install or upload. Sign it, then check its alignment:\n  apksigner sign --ks <keystore> {out}\n  zipalign -c -P {kb} -v 4 {out}\n"
        ),
        PackageKind::Aab => format!(
            "{out}: {lost}; it is not ready to upload. Sign it with your upload key:\n  jarsigner -keystore <keystore> {out} <key-alias>\n"
        ),
        PackageKind::ApkSet => format!(
            "{out}: the APKs inside it are no longer signed; it is not ready to install. Sign each with `apksigner sign --ks <keystore>`, or build the set again with bundletool from a fixed .aab\n"
        ),
    };
    let stderr = std::io::stderr();
    let mut err = stderr.lock();
    err.write_all(format!("warning: {text}").as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_are_known_by_extension_or_manifest() {
        let none = |_: &str| false;
        assert_eq!(package_kind("a/b.aar", none), Some(PackageKind::Aar));
        assert_eq!(package_kind("b.APK", none), Some(PackageKind::Apk));
        assert_eq!(package_kind("b.aab", none), Some(PackageKind::Aab));
        assert_eq!(package_kind("b.apks", none), Some(PackageKind::ApkSet));
        assert_eq!(package_kind("b.zip", none), None);
        assert_eq!(package_kind("b.zip", |n| n == "AndroidManifest.xml"), Some(PackageKind::Apk));
        assert_eq!(package_kind("b.zip", |n| n == "base/manifest/AndroidManifest.xml"), Some(PackageKind::Aab));
    }

    #[test]
    fn v1_signature_files_are_recognised() {
        for name in ["META-INF/MANIFEST.MF", "META-INF/CERT.SF", "META-INF/CERT.RSA", "META-INF/KEY.ec", "META-INF/A.DSA"] {
            assert!(is_signature_entry(name), "{name}");
        }
        for name in ["META-INF/services/x.SF", "lib/META-INF/CERT.RSA", "META-INF/com/android/build/gradle/app-metadata.properties"] {
            assert!(!is_signature_entry(name), "{name}");
        }
    }
}
