//! End-to-end tests of the `pagefit` binary on real compiled fixtures
//! (built by `fixtures/build.sh`), recorded real-kernel runs, golden files
//! and mangled inputs. One test binary, as ripgrep does, for all but the
//! FatELF commands (`fat.rs`); the two share `common`.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{fixtures, pagefit, workspace};
use serde_json::Value;

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("bad JSON ({e}): {}", String::from_utf8_lossy(&output.stdout)))
}

fn golden(name: &str, actual: &str) {
    let path = workspace().join("crates/pagefit-cli/tests/golden").join(name);
    if std::env::var_os("PAGEFIT_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("missing {}: run with PAGEFIT_BLESS=1", path.display()));
    assert_eq!(actual, expected, "{name} differs from the golden file (PAGEFIT_BLESS=1 regenerates it)");
}

const GOLDEN_FIXTURES: &[&str] = &[
    "c-pie-bfd-4k",
    "c-static-bfd-4k",
    "cxx-static-bfd-4k",
    "c-pie-lld-4k-seploadable",
    "c-pie-lld-16k-c4k",
    "liblib-4k.so",
    "liblib-seed000.so",
    "c-pie-bfd-64k",
];

#[test]
fn check_text_and_json_match_golden_files() {
    let dir = fixtures().join("aarch64");
    let mut args = vec!["check", "-v", "--page-size", "16k,64k"];
    args.extend(GOLDEN_FIXTURES);
    let text = pagefit(&args, &dir);
    assert_eq!(text.status.code(), Some(1));
    golden("check-aarch64.txt", &String::from_utf8(text.stdout).unwrap());
    args.extend(["--format", "json"]);
    let json = pagefit(&args, &dir);
    golden("check-aarch64.json", &String::from_utf8(json.stdout).unwrap());
}

#[test]
fn explain_text_matches_golden_file() {
    let dir = fixtures().join("ppc64le");
    let output = pagefit(&["explain", "c-static-bfd-4k", "--page-size", "64k"], &dir);
    assert_eq!(output.status.code(), Some(1));
    golden("explain-ppc64le-static.txt", &String::from_utf8(output.stdout).unwrap());
}

#[test]
fn json_contract_fields_are_present() {
    let dir = fixtures().join("aarch64");
    let output = pagefit(&["check", "--format", "json", "liblib-4k.so", "c-pie-bfd-64k"], &dir);
    let document = json(&output);
    let file = &document["files"][0];
    for field in ["path", "kind", "machine", "required", "results", "max_ok_page_size"] {
        assert!(!file[field].is_null(), "missing {field}");
    }
    let result = &file["results"][0];
    assert_eq!(result["page_size"], 16384);
    assert_eq!(result["loader"], "glibc");
    assert_eq!(result["outcome"], "rejected");
    assert_eq!(result["message"], "error while loading shared libraries: liblib-4k.so: ELF load command address/offset not page-aligned");
    assert_eq!(result["findings"][0]["kind"], "NonCongruent");
    assert_eq!(file["max_ok_page_size"]["glibc"], 4096);
    assert_eq!(document["files"][1]["max_ok_page_size"]["kernel"], 65536);
    assert!(document["errors"].as_array().unwrap().is_empty());
}

#[test]
fn directories_are_walked_once_and_non_elf_files_skipped() {
    let tree = tempfile::tempdir().unwrap();
    let lib = fixtures().join("aarch64/liblib-64k.so");
    std::fs::copy(&lib, tree.path().join("liblib.so")).unwrap();
    std::fs::write(tree.path().join("README"), "not an ELF file, long enough to be looked at by the walker").unwrap();
    std::os::unix::fs::symlink("liblib.so", tree.path().join("liblib.so.1")).unwrap();
    let output = pagefit(&["check", "."], tree.path());
    let text = String::from_utf8(output.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert_eq!(output.status.code(), Some(0), "{text}");
    let stdin_paths = Command::new(env!("CARGO_BIN_EXE_pagefit"))
        .args(["check", "-", "--format", "json"])
        .current_dir(tree.path())
        .stdin(
            std::fs::File::open({
                let list = tree.path().join("list");
                std::fs::write(&list, "liblib.so\nliblib.so.1\n").unwrap();
                list
            })
            .unwrap(),
        )
        .output()
        .unwrap();
    assert_eq!(json(&stdin_paths)["files"].as_array().unwrap().len(), 1);
}

#[test]
fn bad_inputs_exit_2_naming_file_and_offset_and_the_rest_still_checked() {
    let tree = tempfile::tempdir().unwrap();
    let good = std::fs::read(fixtures().join("x86_64/liblib-64k.so")).unwrap();
    let write = |name: &str, bytes: &[u8]| std::fs::write(tree.path().join(name), bytes).unwrap();
    write("truncated.so", &good[..100]);
    write("notelf.so", b"#!/bin/sh\necho this is a script, not an ELF file at all\n");
    let mut absurd = good.clone();
    absurd[56..58].copy_from_slice(&0xfff0u16.to_le_bytes()); // e_phnum
    write("absurd.so", &absurd);
    let mut overlapping = good.clone();
    // Make PT_LOAD[1] start where PT_LOAD[0] starts.
    let loads: Vec<usize> = (0..u16::from_le_bytes([good[56], good[57]]) as usize)
        .map(|i| 64 + i * 56)
        .filter(|&at| u32::from_le_bytes(good[at..at + 4].try_into().unwrap()) == 1)
        .collect();
    overlapping[loads[1] + 16..loads[1] + 24].copy_from_slice(&0u64.to_le_bytes());
    write("overlap.so", &overlapping);
    write("good.so", &good);
    let output = pagefit(&["check", "truncated.so", "notelf.so", "absurd.so", "overlap.so", "missing.so", "good.so"], tree.path());
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("truncated.so: truncated at offset 0x40"), "{stderr}");
    assert!(stderr.contains("notelf.so: not an ELF file at offset 0x0"), "{stderr}");
    assert!(stderr.contains("absurd.so: absurd count at offset 0x40"), "{stderr}");
    assert!(stderr.contains("overlap.so: overlapping PT_LOAD segments at offset 0x78"), "{stderr}");
    assert!(stderr.contains("missing.so: cannot read"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.starts_with("good.so: dyn x86_64 glibc"), "{stdout}");
}

#[test]
fn help_has_examples_and_man_page_and_completions_render() {
    let dir = workspace();
    let help = String::from_utf8(pagefit(&["check", "--help"], &dir).stdout).unwrap();
    assert!(help.contains("Examples:") && help.contains("--page-size"), "{help}");
    let man = pagefit(&["man"], &dir);
    assert!(String::from_utf8(man.stdout).unwrap().contains(".TH pagefit"));
    let completions = pagefit(&["completions", "bash"], &dir);
    assert!(String::from_utf8(completions.stdout).unwrap().contains("_pagefit"));
}

/// An APK-like zip: AndroidManifest.xml, an aarch64 16K library stored at a
/// 16K-aligned offset, the same library stored 4K-aligned but not 16K, and
/// a 4K library deflated.
fn build_apk(path: &Path, libs: &Path) -> Vec<(String, Option<u64>)> {
    use std::io::Write;
    use zip::write::SimpleFileOptions;
    let stored = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let deflated = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    zip.start_file("AndroidManifest.xml", deflated).unwrap();
    zip.write_all(b"<manifest/>").unwrap();
    let lib16k = std::fs::read(libs.join("liblib-16k.so")).unwrap();
    zip.start_file("lib/arm64-v8a/libaligned.so", stored.with_alignment(16384)).unwrap();
    zip.write_all(&lib16k).unwrap();
    // 4K alignment, plus a 4K pad when that happens to be 16K-aligned too.
    zip.start_file("assets/pad", stored.with_alignment(16384)).unwrap();
    zip.write_all(&[0u8; 4096 - 30 - "lib/arm64-v8a/libmisaligned.so".len()]).unwrap();
    zip.start_file("lib/arm64-v8a/libmisaligned.so", stored.with_alignment(4096)).unwrap();
    zip.write_all(&lib16k).unwrap();
    zip.start_file("lib/arm64-v8a/libdeflated4k.so", deflated).unwrap();
    zip.write_all(&std::fs::read(libs.join("liblib-4k.so")).unwrap()).unwrap();
    zip.finish().unwrap();
    // Where each stored entry's data really starts, read back independently of pagefit.
    let mut archive = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    (0..archive.len())
        .map(|i| {
            let entry = archive.by_index(i).unwrap();
            let stored = entry.compression() == zip::CompressionMethod::Stored;
            (entry.name().to_string(), entry.data_start().filter(|_| stored))
        })
        .collect()
}

#[test]
fn apk_members_get_bionic_android_rules_and_zip_alignment() {
    let dir = tempfile::tempdir().unwrap();
    let libs = fixtures().join("aarch64");
    let apk = dir.path().join("app.apk");
    let entries = build_apk(&apk, &libs);
    let offset_of = |name: &str| entries.iter().find(|(n, _)| n == name).and_then(|(_, o)| *o).unwrap();
    assert_eq!(offset_of("lib/arm64-v8a/libaligned.so") % 16384, 0);
    assert_eq!(offset_of("lib/arm64-v8a/libmisaligned.so") % 4096, 0);
    assert_ne!(offset_of("lib/arm64-v8a/libmisaligned.so") % 16384, 0);

    let output = pagefit(&["check", "--page-size", "16k", "--format", "json", "app.apk"], dir.path());
    assert_eq!(output.status.code(), Some(1), "{}", String::from_utf8_lossy(&output.stderr));
    let document = json(&output);
    let files = document["files"].as_array().unwrap();
    let result = |member: &str| {
        let file = files.iter().find(|f| f["path"] == format!("app.apk!/{member}")).unwrap_or_else(|| panic!("{member} missing"));
        assert_eq!(file["platform"], "android");
        file["results"][0].clone()
    };
    let aligned = result("lib/arm64-v8a/libaligned.so");
    assert_eq!((aligned["loader"].as_str(), aligned["outcome"].as_str()), (Some("bionic"), Some("ok")));
    let misaligned = result("lib/arm64-v8a/libmisaligned.so");
    assert_eq!(misaligned["outcome"], "rejected");
    assert_eq!(
        misaligned["message"],
        format!(
            "dlopen failed: file offset for the library \"libmisaligned.so\" is not page-aligned: {}",
            offset_of("lib/arm64-v8a/libmisaligned.so")
        )
    );
    let zip_finding = misaligned["findings"].as_array().unwrap().iter().find(|f| f["kind"] == "ZipAlignment").unwrap();
    assert!(zip_finding["message"].as_str().unwrap().starts_with("4 KB zip alignment, but 16 KB is required"), "{zip_finding}");
    // Deflated entries are decompressed in memory; no zip rule, but the 4K library's own alignment fails.
    let deflated = result("lib/arm64-v8a/libdeflated4k.so");
    assert_eq!(deflated["outcome"], "rejected");
    let messages: Vec<&str> = deflated["findings"].as_array().unwrap().iter().filter_map(|f| f["message"].as_str()).collect();
    assert!(messages.iter().any(|m| m.contains("4 KB LOAD section alignment, but 16 KB is required")), "{messages:?}");
    assert!(!messages.iter().any(|m| m.contains("zip alignment")));
}

#[test]
fn nested_apks_debs_and_tarballs_are_scanned_without_extracting() {
    let dir = tempfile::tempdir().unwrap();
    let libs = fixtures().join("aarch64");
    // An .apks holding an APK (one level of nesting).
    build_apk(&dir.path().join("base.apk"), &libs);
    {
        use std::io::Write;
        let mut zip = zip::ZipWriter::new(std::fs::File::create(dir.path().join("bundle.apks")).unwrap());
        zip.start_file("splits/base.apk", zip::write::SimpleFileOptions::default()).unwrap();
        zip.write_all(&std::fs::read(dir.path().join("base.apk")).unwrap()).unwrap();
        zip.finish().unwrap();
    }
    let output = pagefit(&["check", "--page-size", "16k", "bundle.apks"], dir.path());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("bundle.apks!/splits/base.apk!/lib/arm64-v8a/libaligned.so: dyn aarch64 bionic: 16K ok"), "{text}");

    // A real .deb built by dpkg-deb (xz data), and tarballs made by tar.
    let root = dir.path().join("pkg");
    std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(root.join("usr/lib/aarch64-linux-gnu")).unwrap();
    std::fs::write(root.join("DEBIAN/control"), "Package: fx\nVersion: 1\nArchitecture: arm64\nMaintainer: t <t@t>\nDescription: t\n")
        .unwrap();
    for lib in ["liblib-4k.so", "liblib-64k.so"] {
        std::fs::copy(libs.join(lib), root.join("usr/lib/aarch64-linux-gnu").join(lib)).unwrap();
    }
    std::fs::write(root.join("usr/lib/aarch64-linux-gnu/README"), "not ELF").unwrap();
    let status = Command::new("dpkg-deb")
        .args(["-Zxz", "--build", "--root-owner-group"])
        .arg(&root)
        .arg(dir.path().join("fx.deb"))
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    for (name, flag) in [("fx.tar.gz", "-czf"), ("fx.tar.zst", "--zstd -cf"), ("fx.tar", "-cf")] {
        let mut command = Command::new("tar");
        command.args(flag.split(' ')).arg(dir.path().join(name)).arg("-C").arg(&root).arg("usr");
        assert!(command.status().unwrap().success(), "tar {name}");
    }
    let output = pagefit(&["check", "--page-size", "64k", "--summary", "fx.deb", "fx.tar.gz", "fx.tar.zst", "fx.tar"], dir.path());
    let text = String::from_utf8_lossy(&output.stdout);
    for archive in ["fx.deb", "fx.tar.gz", "fx.tar.zst", "fx.tar"] {
        assert!(text.contains(&format!("{archive}!/usr/lib/aarch64-linux-gnu/liblib-64k.so: dyn aarch64 glibc: 64K ok")), "{text}");
        assert!(text.contains(&format!("{archive}!/usr/lib/aarch64-linux-gnu/liblib-4k.so: dyn aarch64 glibc: 64K rejected")), "{text}");
    }
    assert!(text.contains("summary: 8 files, 4 failing, 0 unreadable"), "{text}");
    assert!(text.contains("  64K: 4 ok, 4 rejected"), "{text}");
    assert_eq!(output.status.code(), Some(1));

    // jsonl: one parseable object per file.
    let output = pagefit(&["check", "--page-size", "64k", "--format", "jsonl", "fx.deb"], dir.path());
    let lines: Vec<Value> = String::from_utf8_lossy(&output.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert!(lines.iter().all(|l| l["results"][0]["page_size"] == 65536));

    // A broken zip is an error naming the file, exit 2.
    std::fs::write(dir.path().join("broken.apk"), b"PK\x03\x04 this is not really a zip").unwrap();
    let output = pagefit(&["check", "broken.apk"], dir.path());
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("broken.apk: not a readable zip"));
}

#[test]
fn thirty_two_bit_android_libraries_do_not_count_unless_all_abis() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let android = fixtures().join("android");
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored).with_alignment(16384);
    let mut zip = zip::ZipWriter::new(std::fs::File::create(dir.path().join("app.apk")).unwrap());
    for (member, fixture) in
        [("lib/arm64-v8a/libjni.so", "libjni-arm64-v8a-16k.so"), ("lib/armeabi-v7a/libjni.so", "libjni-armeabi-v7a-4k.so")]
    {
        zip.start_file(member, options).unwrap();
        zip.write_all(&std::fs::read(android.join(fixture)).unwrap()).unwrap();
    }
    zip.finish().unwrap();

    let output = pagefit(&["check", "--page-size", "16k", "--format", "json", "app.apk"], dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stdout));
    let document = json(&output);
    let old = document["files"].as_array().unwrap().iter().find(|f| f["path"] == "app.apk!/lib/armeabi-v7a/libjni.so").unwrap().clone();
    assert_eq!((old["bits"].as_u64(), old["required"].as_bool()), (Some(32), Some(false)));
    assert_eq!(old["results"][0]["outcome"], "rejected");
    let output = pagefit(&["check", "--page-size", "16k", "--all-abis", "app.apk"], dir.path());
    assert_eq!(output.status.code(), Some(1));
}
