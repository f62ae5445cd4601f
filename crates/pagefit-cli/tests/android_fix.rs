//! `pagefit fix` of Android packages (AAR, APK, AAB, .apks) built here from
//! fixture libraries: fixed libraries pass `check` at 16K, stored libraries
//! start on 16K, other entries keep their compressed bytes and CRCs, a
//! signed package gets the re-signing warning, and the input is untouched.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

mod common;
use common::{fixtures, pagefit};

/// A bionic library rejected at 16K, one already ok, a glibc library
/// (fixed as Android's inside a package) and one no strategy fixes.
fn rejected_android() -> Vec<u8> {
    std::fs::read(fixtures().join("android/libjni-arm64-v8a-4k.so")).unwrap()
}
fn ok_android() -> Vec<u8> {
    std::fs::read(fixtures().join("android/libjni-arm64-v8a-16k.so")).unwrap()
}
fn glibc_library() -> Vec<u8> {
    std::fs::read(fixtures().join("aarch64/liblib-4k.so")).unwrap()
}
fn unfixable() -> Vec<u8> {
    std::fs::read(fixtures().join("aarch64/c-nopie-bfd-4k")).unwrap()
}

/// A zip of `members` (name, bytes, stored) in that order.
fn write_zip(path: &Path, members: &[(&str, Vec<u8>, bool)]) {
    let mut writer = ZipWriter::new(File::create(path).unwrap());
    for (name, bytes, stored) in members {
        let method = if *stored { CompressionMethod::Stored } else { CompressionMethod::Deflated };
        writer.start_file(*name, SimpleFileOptions::default().compression_method(method).unix_permissions(0o640)).unwrap();
        writer.write_all(bytes).unwrap();
    }
    writer.finish().unwrap();
}

/// The other entries of an APK: an odd-sized stored one first, so nothing
/// after it starts aligned by chance, and a fake v1 signature.
fn apk_members(libraries: Vec<(&'static str, Vec<u8>, bool)>) -> Vec<(&'static str, Vec<u8>, bool)> {
    let mut members = vec![
        ("AndroidManifest.xml", b"<manifest package=\"demo\"/>".repeat(9), false),
        ("resources.arsc", vec![7; 1001], true),
        ("classes.dex", b"dex\n035\0".repeat(300), false),
    ];
    members.extend(libraries);
    members.extend([
        ("META-INF/MANIFEST.MF", b"Manifest-Version: 1.0\n".to_vec(), false),
        ("META-INF/CERT.SF", b"Signature-Version: 1.0\n".to_vec(), false),
        ("META-INF/CERT.RSA", vec![0x30; 700], false),
    ]);
    members
}

/// One entry as the zip holds it: where its data starts, its raw
/// (compressed) bytes, CRC, method, time and mode.
#[derive(Debug, PartialEq)]
struct RawEntry {
    name: String,
    data_start: u64,
    raw: Vec<u8>,
    crc: u32,
    stored: bool,
    time: Option<zip::DateTime>,
    mode: Option<u32>,
}

fn raw_entries(path: &Path) -> Vec<RawEntry> {
    let bytes = std::fs::read(path).unwrap();
    let mut archive = ZipArchive::new(File::open(path).unwrap()).unwrap();
    (0..archive.len())
        .map(|index| {
            let entry = archive.by_index_raw(index).unwrap();
            let start = entry.data_start().unwrap();
            let end = start + entry.compressed_size();
            RawEntry {
                name: entry.name().to_string(),
                data_start: start,
                raw: bytes[start as usize..end as usize].to_vec(),
                crc: entry.crc32(),
                stored: entry.compression() == CompressionMethod::Stored,
                time: entry.last_modified(),
                mode: entry.unix_mode(),
            }
        })
        .collect()
}

/// Every stored library on 16K, every other stored entry on 4 bytes.
fn assert_aligned(path: &Path) {
    for entry in raw_entries(path).iter().filter(|e| e.stored) {
        let alignment = if entry.name.ends_with(".so") { 16384 } else { 4 };
        assert_eq!(entry.data_start % alignment, 0, "{}: {} at {:#x}", path.display(), entry.name, entry.data_start);
    }
}

/// Entries other than `changed` kept as they were, all in the same order.
fn assert_kept_except(input: &Path, output: &Path, changed: &[&str]) {
    let (before, after) = (raw_entries(input), raw_entries(output));
    let names = |entries: &[RawEntry]| entries.iter().map(|e| e.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&before), names(&after));
    for (old, new) in before.iter().zip(&after) {
        assert_eq!((old.stored, old.time, old.mode), (new.stored, new.time, new.mode), "{}", old.name);
        if !changed.contains(&old.name.as_str()) {
            assert_eq!((&old.raw, old.crc), (&new.raw, new.crc), "{}", old.name);
        }
    }
}

fn run(args: &[&str], dir: &Path) -> (i32, String, String) {
    let out = pagefit(args, dir);
    (out.status.code().unwrap(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn an_apk_gets_its_libraries_fixed_and_aligned_and_must_be_signed_again() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("app.apk");
    write_zip(
        &input,
        &apk_members(vec![
            ("lib/arm64-v8a/libjni.so", rejected_android(), true),
            ("lib/arm64-v8a/libok.so", ok_android(), true),
            ("lib/arm64-v8a/liblib.so", glibc_library(), false),
        ]),
    );
    let original = std::fs::read(&input).unwrap();

    let (code, stdout, stderr) = run(&["fix", "--page-size", "16k", "app.apk", "-o", "out.apk"], tmp.path());
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("app.apk!/lib/arm64-v8a/libjni.so: fixed for 16K"), "{stdout}");
    assert!(stdout.contains("app.apk!/lib/arm64-v8a/liblib.so: fixed for 16K"), "{stdout}");
    assert!(stdout.contains("app.apk!/lib/arm64-v8a/libok.so: already ok at 16K"), "{stdout}");
    assert!(stderr.contains("no longer matches") && stderr.contains("not ready to install or upload"), "{stderr}");
    assert!(stderr.contains("apksigner sign --ks <keystore> out.apk"), "{stderr}");
    assert!(stderr.contains("zipalign -c -P 16 -v 4 out.apk"), "{stderr}");
    assert_eq!(std::fs::read(&input).unwrap(), original, "the input was modified");

    let output = tmp.path().join("out.apk");
    let (code, stdout, _) = run(&["check", "--page-size", "16k", "out.apk"], tmp.path());
    assert_eq!(code, 0, "{stdout}");
    assert_eq!(stdout.matches(": 16K bionic ok, 16K play ok").count(), 3, "{stdout}");
    assert_aligned(&output);
    assert_kept_except(&input, &output, &["lib/arm64-v8a/libjni.so", "lib/arm64-v8a/liblib.so"]);
    // A zip other readers take: every CRC matches its data.
    let mut archive = ZipArchive::new(File::open(&output).unwrap()).unwrap();
    for index in 0..archive.len() {
        std::io::copy(&mut archive.by_index(index).unwrap(), &mut std::io::sink()).unwrap();
    }
}

#[test]
fn an_aar_is_fixed_without_a_signing_warning_and_dry_run_and_in_place_behave() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("lib.aar");
    let members = vec![
        ("AndroidManifest.xml", b"<manifest package=\"demo\"/>".to_vec(), false),
        ("classes.jar", vec![1; 333], true),
        ("jni/arm64-v8a/libjni.so", rejected_android(), false),
        ("R.txt", Vec::new(), false),
    ];
    write_zip(&input, &members);
    let original = std::fs::read(&input).unwrap();

    // Android packages default to 16K pages.
    let (code, stdout, stderr) = run(&["fix", "lib.aar", "--dry-run"], tmp.path());
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("lib.aar!/jni/arm64-v8a/libjni.so: plan for 16K"), "{stdout}");
    assert_eq!(std::fs::read(&input).unwrap(), original);

    let (code, stdout, stderr) = run(&["fix", "--page-size", "16k", "lib.aar", "--in-place", "--backup"], tmp.path());
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(!stderr.contains("warning"), "an AAR is not signed: {stderr}");
    assert_eq!(std::fs::read(tmp.path().join("lib.aar.bak")).unwrap(), original);
    let (code, stdout, _) = run(&["check", "--page-size", "16k", "lib.aar"], tmp.path());
    assert_eq!(code, 0, "{stdout}");
    assert_kept_except(&tmp.path().join("lib.aar.bak"), &input, &["jni/arm64-v8a/libjni.so"]);
    assert_aligned(&input);
}

#[test]
fn an_aab_has_its_base_and_feature_libraries_fixed() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("app.aab");
    let members = vec![
        ("base/manifest/AndroidManifest.xml", b"manifest".to_vec(), false),
        ("base/lib/arm64-v8a/libjni.so", rejected_android(), true),
        ("camera/lib/arm64-v8a/libcam.so", rejected_android(), false),
        ("BundleConfig.pb", vec![3; 77], true),
        ("META-INF/UPLOAD.SF", b"Signature-Version: 1.0\n".to_vec(), false),
    ];
    write_zip(&input, &members);
    let (code, stdout, stderr) = run(&["fix", "--page-size", "16k", "app.aab", "-o", "out.aab"], tmp.path());
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(stdout.matches("fixed for 16K").count(), 2, "{stdout}");
    assert!(stderr.contains("jarsigner") && stderr.contains("out.aab"), "{stderr}");
    let (code, stdout, _) = run(&["check", "--page-size", "16k", "out.aab"], tmp.path());
    assert_eq!(code, 0, "{stdout}");
    assert_aligned(&tmp.path().join("out.aab"));
    assert_kept_except(&input, &tmp.path().join("out.aab"), &["base/lib/arm64-v8a/libjni.so", "camera/lib/arm64-v8a/libcam.so"]);
}

#[test]
fn an_apk_set_has_each_inner_apk_fixed_and_aligned() {
    let tmp = tempfile::tempdir().unwrap();
    let (base, split) = (tmp.path().join("base-master.apk"), tmp.path().join("base-arm64_v8a.apk"));
    write_zip(&base, &apk_members(Vec::new()));
    write_zip(&split, &apk_members(vec![("lib/arm64-v8a/libjni.so", rejected_android(), true)]));
    let input = tmp.path().join("app.apks");
    write_zip(
        &input,
        &[
            ("toc.pb", vec![9; 41], false),
            ("splits/base-master.apk", std::fs::read(&base).unwrap(), true),
            ("splits/base-arm64_v8a.apk", std::fs::read(&split).unwrap(), true),
        ],
    );
    let (code, stdout, stderr) = run(&["fix", "--page-size", "16k", "app.apks", "-o", "out.apks"], tmp.path());
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("app.apks!/splits/base-arm64_v8a.apk!/lib/arm64-v8a/libjni.so: fixed for 16K"), "{stdout}");
    assert!(stdout.contains("-> out.apks!/splits/base-arm64_v8a.apk!/lib/arm64-v8a/libjni.so"), "{stdout}");
    assert!(stderr.contains("no longer signed"), "{stderr}");
    let (code, stdout, _) = run(&["check", "--page-size", "16k", "out.apks"], tmp.path());
    assert_eq!(code, 0, "{stdout}");
    let output = tmp.path().join("out.apks");
    assert_aligned(&output);
    assert_kept_except(&input, &output, &["splits/base-arm64_v8a.apk"]);
    let inner = raw_entries(&output).into_iter().find(|e| e.name == "splits/base-arm64_v8a.apk").unwrap();
    let inner_path = tmp.path().join("inner.apk");
    std::fs::write(&inner_path, inner.raw).unwrap();
    assert_aligned(&inner_path);
    assert_kept_except(&split, &inner_path, &["lib/arm64-v8a/libjni.so"]);
}

#[test]
fn one_library_that_cannot_be_fixed_means_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("app.apk");
    write_zip(
        &input,
        &apk_members(vec![("lib/arm64-v8a/libjni.so", rejected_android(), true), ("lib/arm64-v8a/libnopie.so", unfixable(), true)]),
    );
    let (code, stdout, stderr) = run(&["fix", "--page-size", "16k", "app.apk", "-o", "out.apk"], tmp.path());
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stdout.contains("app.apk!/lib/arm64-v8a/libnopie.so: refused at 16K"), "{stdout}");
    assert!(stdout.contains("another member could not be fixed, so the archive was not written"), "{stdout}");
    assert!(!tmp.path().join("out.apk").exists());
    assert!(!stderr.contains("apksigner"), "{stderr}");
}

#[test]
fn a_broken_package_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("bad.apk"), b"PK\x03\x04 not really a zip").unwrap();
    let (code, _, stderr) = run(&["fix", "--page-size", "16k", "bad.apk", "-o", "out.apk"], tmp.path());
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("bad.apk"), "{stderr}");
    std::fs::write(tmp.path().join("lib.so"), rejected_android()).unwrap();
    let (code, _, stderr) = run(&["fix", "lib.so", "-o", "out.so"], tmp.path());
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--page-size is required"), "{stderr}");
}
