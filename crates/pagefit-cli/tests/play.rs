//! Google Play's verdict (`play`) next to the device's (`bionic`): both for
//! every member of an Android package, each counting towards the exit status,
//! and `explain` naming Play's rule and what to do about it.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Output;

use common::{fixtures, pagefit};
use serde_json::Value;
use zip::write::SimpleFileOptions;

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stdout)))
}

fn android_fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixtures().join("android").join(name)).unwrap()
}

/// The 16 KB fixture with PT_GNU_RELRO cut to its first 0x20 bytes: rounded to
/// 16 KB pages it protects what it did before, so bionic loads it the same,
/// but it now ends inside .dynamic, neither at its LOAD's end nor on 16 KB.
fn with_short_relro() -> Vec<u8> {
    let mut elf = android_fixture("libjni-arm64-v8a-16k.so");
    let word = |elf: &[u8], at: usize, len: usize| elf[at..at + len].iter().rev().fold(0u64, |value, &b| value << 8 | u64::from(b));
    let (phoff, phentsize, phnum) = (word(&elf, 0x20, 8) as usize, word(&elf, 0x36, 2) as usize, word(&elf, 0x38, 2) as usize);
    let relro = (0..phnum).map(|i| phoff + i * phentsize).find(|&at| word(&elf, at, 4) == 0x6474_e552).expect("PT_GNU_RELRO");
    for field in [0x20, 0x28] {
        elf[relro + field..relro + field + 8].copy_from_slice(&0x20u64.to_le_bytes());
    }
    elf
}

enum Storage {
    /// Stored, its data aligned to 16 KB.
    Aligned,
    /// Stored, its data 4 KB but not 16 KB aligned.
    Aligned4k,
    Deflated,
}

/// An APK holding `members`; returns each stored member's data offset.
fn build_apk(path: &Path, members: &[(&str, Vec<u8>, Storage)]) -> Vec<(String, Option<u64>)> {
    let stored = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    zip.start_file("AndroidManifest.xml", SimpleFileOptions::default()).unwrap();
    zip.write_all(b"<manifest/>").unwrap();
    for (name, data, storage) in members {
        match storage {
            Storage::Aligned => zip.start_file(*name, stored.with_alignment(16384)).unwrap(),
            Storage::Deflated => zip.start_file(*name, SimpleFileOptions::default()).unwrap(),
            Storage::Aligned4k => {
                // A 16 KB aligned pad sized so that the member's data lands 4 KB past a 16 KB boundary.
                zip.start_file(format!("assets/pad-{}", name.len()), stored.with_alignment(16384)).unwrap();
                zip.write_all(&vec![0u8; 4096 - 30 - name.len()]).unwrap();
                zip.start_file(*name, stored.with_alignment(4096)).unwrap();
            }
        }
        zip.write_all(data).unwrap();
    }
    zip.finish().unwrap();
    let mut archive = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    (0..archive.len())
        .map(|i| {
            let entry = archive.by_index(i).unwrap();
            let stored = entry.compression() == zip::CompressionMethod::Stored;
            (entry.name().to_string(), entry.data_start().filter(|_| stored))
        })
        .collect()
}

/// A member's report in a `check --format json` document.
fn member<'d>(document: &'d Value, name: &str) -> &'d Value {
    let path = format!("app.apk!/{name}");
    document["files"].as_array().unwrap().iter().find(|f| f["path"] == path).unwrap_or_else(|| panic!("{path} missing"))
}

/// The result of `loader` in a report checked at one page size.
fn verdict<'r>(report: &'r Value, loader: &str) -> &'r Value {
    report["results"].as_array().unwrap().iter().find(|r| r["loader"] == loader).unwrap_or_else(|| panic!("no {loader} result: {report}"))
}

fn finding_kinds(result: &Value) -> Vec<&str> {
    result["findings"].as_array().unwrap().iter().map(|f| f["kind"].as_str().unwrap()).collect()
}

#[test]
fn android_members_get_bionics_and_plays_verdicts_and_both_decide_the_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    let aligned = android_fixture("libjni-arm64-v8a-16k.so");
    let offsets = build_apk(
        &dir.path().join("app.apk"),
        &[
            ("lib/arm64-v8a/libok.so", aligned.clone(), Storage::Aligned),
            ("lib/arm64-v8a/librelro.so", with_short_relro(), Storage::Aligned),
            ("lib/arm64-v8a/libzip.so", aligned, Storage::Aligned4k),
            ("lib/arm64-v8a/libdeflated.so", android_fixture("libjni-arm64-v8a-4k.so"), Storage::Deflated),
            ("lib/armeabi-v7a/libold.so", android_fixture("libjni-armeabi-v7a-4k.so"), Storage::Aligned4k),
        ],
    );
    let zip_offset = offsets.iter().find(|(name, _)| name == "lib/arm64-v8a/libzip.so").and_then(|(_, offset)| *offset).unwrap();
    assert_eq!((zip_offset % 4096 == 0, zip_offset % 16384 == 0), (true, false));

    let output = pagefit(&["check", "--page-size", "16k", "--format", "json", "app.apk"], dir.path());
    assert_eq!(output.status.code(), Some(1), "{}", String::from_utf8_lossy(&output.stderr));
    let document = json(&output);
    let outcomes = |name: &str| {
        let report = member(&document, name);
        (verdict(report, "bionic")["outcome"].as_str().unwrap(), verdict(report, "play")["outcome"].as_str().unwrap())
    };
    assert_eq!(outcomes("lib/arm64-v8a/libok.so"), ("ok", "ok"));
    // The device loads it; Play refuses the upload (duckduckgo/Android #9308).
    assert_eq!(outcomes("lib/arm64-v8a/librelro.so"), ("ok", "rejected"));
    let relro = verdict(member(&document, "lib/arm64-v8a/librelro.so"), "play");
    assert_eq!(finding_kinds(relro), ["AndroidRelro"]);
    let message = relro["message"].as_str().unwrap();
    assert!(
        message.starts_with(
            "RELRO is not a suffix and its end is not 16 KB aligned: PT_GNU_RELRO start: 0x000083d8 end: 0x000083f8 align: 0x00000001"
        ),
        "{message}"
    );
    assert_eq!(outcomes("lib/arm64-v8a/libzip.so"), ("rejected", "rejected"));
    let zip = verdict(member(&document, "lib/arm64-v8a/libzip.so"), "play");
    assert_eq!(finding_kinds(zip), ["ZipAlignment"]);
    assert!(zip["message"].as_str().unwrap().starts_with("4 KB zip alignment, but 16 KB is required"), "{zip}");
    // Compressed members are extracted at install: their LOAD alignment counts, their zip offset does not.
    let deflated = verdict(member(&document, "lib/arm64-v8a/libdeflated.so"), "play");
    assert_eq!((deflated["outcome"].as_str(), finding_kinds(deflated)), (Some("rejected"), vec!["AlignBelowPage"]));
    assert!(deflated["message"].as_str().unwrap().starts_with("4 KB LOAD section alignment, but 16 KB is required"), "{deflated}");
    // Play does not check 32-bit ABIs, not even their zip alignment.
    let old = member(&document, "lib/armeabi-v7a/libold.so");
    assert_eq!((old["bits"].as_u64(), old["required"].as_bool()), (Some(32), Some(false)));
    assert_eq!(outcomes("lib/armeabi-v7a/libold.so"), ("rejected", "ok"));
    assert_eq!(verdict(old, "play")["findings"], serde_json::json!([]));
    // Play's verdict has no page size: only the device's answer gets a largest ok one.
    assert_eq!(member(&document, "lib/arm64-v8a/libok.so")["max_ok_page_size"], serde_json::json!({ "bionic": 16384 }));

    let text = pagefit(&["check", "--page-size", "16k", "app.apk"], dir.path());
    let stdout = String::from_utf8(text.stdout).unwrap();
    assert!(stdout.contains("app.apk!/lib/arm64-v8a/librelro.so: dyn aarch64 bionic+play: 16K bionic ok, 16K play rejected;"), "{stdout}");

    let sarif = json(&pagefit(&["check", "--page-size", "16k", "--format", "sarif", "app.apk"], dir.path()));
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    let play_relro = results
        .iter()
        .find(|r| r["ruleId"] == "AndroidRelro" && r["properties"]["loader"] == "play")
        .expect("a SARIF result for Play's RELRO rule");
    assert_eq!(play_relro["level"], "error");
    assert!(play_relro["message"]["text"].as_str().unwrap().contains("librelro.so at 16K under play: rejected: RELRO is not a suffix"));
}

#[test]
fn plays_verdict_alone_fails_the_exit_status_and_32_bit_abis_never_do() {
    let dir = tempfile::tempdir().unwrap();
    let aligned = android_fixture("libjni-arm64-v8a-16k.so");
    let old = android_fixture("libjni-armeabi-v7a-4k.so");
    build_apk(
        &dir.path().join("app.apk"),
        &[("lib/arm64-v8a/libok.so", aligned.clone(), Storage::Aligned), ("lib/armeabi-v7a/libold.so", old.clone(), Storage::Aligned4k)],
    );
    let output = pagefit(&["check", "--page-size", "16k", "app.apk"], dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stdout));
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains("libold.so: dyn arm bionic+play (not required): 16K bionic rejected, 16K play ok;"), "{stdout}");

    build_apk(
        &dir.path().join("app.apk"),
        &[("lib/arm64-v8a/libok.so", aligned, Storage::Aligned), ("lib/arm64-v8a/librelro.so", with_short_relro(), Storage::Aligned)],
    );
    let output = pagefit(&["check", "--page-size", "16k", "--loader", "bionic", "app.apk"], dir.path());
    assert_eq!(output.status.code(), Some(0), "bionic alone loads both: {}", String::from_utf8_lossy(&output.stdout));
    let output = pagefit(&["check", "--page-size", "16k", "app.apk"], dir.path());
    assert_eq!(output.status.code(), Some(1), "{}", String::from_utf8_lossy(&output.stdout));
}

#[test]
fn explain_names_plays_rule_the_segment_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("librelro.so"), with_short_relro()).unwrap();
    let output = pagefit(&["explain", "--loader", "bionic,play", "--page-size", "16k", "librelro.so"], dir.path());
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains("librelro.so at 16K under bionic: ok"), "{stdout}");
    assert!(stdout.contains("librelro.so at 16K under play: rejected"), "{stdout}");
    assert!(
        stdout.contains("AndroidRelro [rejected]: RELRO is not a suffix and its end is not 16 KB aligned: PT_GNU_RELRO start: 0x000083d8 end: 0x000083f8 align: 0x00000001 ends 0xc0 before the end of PT_LOAD[3] (RW) (0x000084b8)"),
        "{stdout}"
    );
    assert!(stdout.contains("relink with -Wl,-z,max-page-size=16384"), "{stdout}");

    let old = fixtures().join("android/libjni-armeabi-v7a-4k.so");
    let output = pagefit(&["explain", "--loader", "play", "--page-size", "16k", old.to_str().unwrap()], dir.path());
    assert_eq!(output.status.code(), Some(0), "Play does not check 32-bit ABIs: {}", String::from_utf8_lossy(&output.stdout));
}
