//! `pagefit check` on archives inside archives: an npm-like tarball holding
//! an AAR, whose libraries are Android's (the bionic model), and an archive
//! nested past the limit, an error (exit 2) naming it and its offset while
//! the rest is still checked.

mod common;

use std::io::Write;
use std::path::Path;

use common::{fixtures, pagefit};
use serde_json::Value;

/// A zip of `(name, bytes)` entries, stored, libraries at 16K-aligned
/// offsets (as zipalign puts them).
fn zip_bytes(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, bytes) in entries {
        let alignment = if name.ends_with(".so") { 16384 } else { 1 };
        zip.start_file(*name, stored.with_alignment(alignment)).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

/// A gzip-compressed tar of `(name, bytes)` regular files, as `npm pack` makes.
fn tgz_bytes(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o755);
        builder.append_data(&mut header, name, *bytes).unwrap();
    }
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(&builder.into_inner().unwrap()).unwrap();
    encoder.finish().unwrap()
}

fn read(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap()
}

#[test]
fn an_npm_tarball_holding_an_aar_gets_its_libraries_checked_as_androids() {
    let dir = tempfile::tempdir().unwrap();
    let android = fixtures().join("android");
    let (jni4k, jni16k) = (read(&android, "libjni-arm64-v8a-4k.so"), read(&android, "libjni-arm64-v8a-16k.so"));
    let host = read(&fixtures().join("x86_64"), "c-pie-lld-4k");
    let aar = zip_bytes(&[
        ("AndroidManifest.xml", b"<manifest/>"),
        ("jni/arm64-v8a/libengine.so", &jni4k),
        ("jni/arm64-v8a/libengine16k.so", &jni16k),
    ]);
    let tgz =
        tgz_bytes(&[("package/package.json", b"{}"), ("package/android/engine-release.aar", &aar), ("package/linux64-bin/enginec", &host)]);
    std::fs::write(dir.path().join("engine-1.0.0.tgz"), tgz).unwrap();

    let output = pagefit(&["check", "--page-size", "16k", "--format", "json", "engine-1.0.0.tgz"], dir.path());
    assert_eq!(output.status.code(), Some(1), "{}", String::from_utf8_lossy(&output.stderr));
    let document: Value = serde_json::from_slice(&output.stdout).unwrap();
    let files = document["files"].as_array().unwrap();
    let file = |member: &str| {
        let path = format!("engine-1.0.0.tgz!/{member}");
        files.iter().find(|f| f["path"] == path).unwrap_or_else(|| panic!("{path} missing from {document}")).clone()
    };
    let aar_member = "package/android/engine-release.aar!/jni/arm64-v8a";
    for (library, outcome) in [("libengine.so", "rejected"), ("libengine16k.so", "ok")] {
        let checked = file(&format!("{aar_member}/{library}"));
        assert_eq!(checked["platform"], "android", "{checked}");
        assert_eq!((checked["results"][0]["loader"].as_str(), checked["results"][0]["outcome"].as_str()), (Some("bionic"), Some(outcome)));
    }
    assert_ne!(file("package/linux64-bin/enginec")["platform"], "android");
    assert_eq!(files.len(), 3);
}

#[test]
fn an_archive_nested_past_the_limit_exits_2_naming_it_and_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let jni16k = read(&fixtures().join("android"), "libjni-arm64-v8a-16k.so");
    // Five zips, one inside the other, in a tarball: the fifth is level 5.
    let mut nested = zip_bytes(&[("lib/deepest.so", &jni16k)]);
    for level in (1..=4).rev() {
        nested = zip_bytes(&[("README", b"level"), (&format!("level{level}.zip"), &nested)]);
    }
    let tgz = tgz_bytes(&[("package/lib/libtop.so", &jni16k), ("package/level0.zip", &nested)]);
    std::fs::write(dir.path().join("deep.tgz"), tgz).unwrap();

    let output = pagefit(&["check", "--page-size", "16k", "deep.tgz"], dir.path());
    assert_eq!(output.status.code(), Some(2));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("deep.tgz!/package/lib/libtop.so: "), "{stdout}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let chain = "deep.tgz!/package/level0.zip!/level1.zip!/level2.zip!/level3.zip";
    let offset = 30 + "README".len() + "level".len();
    assert!(
        stderr.contains(&format!(
            "{chain}!/level4.zip: an archive nested deeper than 4 levels (zip local header at offset {offset:#x}); not opened"
        )),
        "{stderr}"
    );
}
