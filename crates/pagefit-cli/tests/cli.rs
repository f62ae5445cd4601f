//! End-to-end tests of the `pagefit` binary on real compiled fixtures
//! (built by `fixtures/build.sh`), recorded real-kernel runs, golden files
//! and mangled inputs. One test binary, as ripgrep does, for all but the
//! FatELF commands (`fat.rs`); the two share `common`.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{fixtures, pagefit, workspace};
use pagefit_core::predict::finding::FindingKind;
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
    assert!(
        text.contains("bundle.apks!/splits/base.apk!/lib/arm64-v8a/libaligned.so: dyn aarch64 bionic+play: 16K bionic ok, 16K play ok"),
        "{text}"
    );

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

fn closure_json(args: &[&str]) -> (Option<i32>, Value) {
    let mut full = vec!["check", "--format", "json", "--sysroot", "/usr/aarch64-linux-gnu", "--closure"];
    full.extend(args);
    let output = pagefit(&full, &fixtures().join("aarch64"));
    (output.status.code(), json(&output))
}

fn object_names(document: &Value) -> Vec<String> {
    document["closure"]["objects"].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap().to_string()).collect()
}

#[test]
fn closures_follow_runpath_rpath_and_origin_as_ld_so_does() {
    let dir = fixtures().join("aarch64");
    // The text names the weakest link, with how ld.so reached it.
    let text = pagefit(&["check", "--closure", "closure/app", "--sysroot", "/usr/aarch64-linux-gnu", "--page-size", "16k"], &dir);
    assert_eq!(text.status.code(), Some(1));
    let stdout = String::from_utf8(text.stdout).unwrap();
    assert!(
        stdout.contains("libb.so, needed by liba.so via $ORIGIN/sub, is the reason app cannot run with 16K pages (rejected)"),
        "{stdout}"
    );
    assert!(stdout.contains("error while loading shared libraries: libb.so: ELF load command address/offset not page-aligned"), "{stdout}");

    // Every resolved file is in the JSON, in load order, with a report each.
    let (code, document) = closure_json(&["closure/app", "--page-size", "16k"]);
    assert_eq!(code, Some(1));
    let names = object_names(&document);
    assert_eq!(names[1..], ["/lib/ld-linux-aarch64.so.1", "liba.so", "libc.so.6", "libb.so"]);
    assert_eq!(document["files"].as_array().unwrap().len(), names.len());
    let objects = document["closure"]["objects"].as_array().unwrap();
    assert_eq!(objects[4]["via"], serde_json::json!({"kind": "runpath", "entry": "$ORIGIN/sub"}));
    assert_eq!(objects[4]["needed_by"], 2);
    assert!(objects[4]["host_path"].as_str().unwrap().ends_with("closure/lib/sub/libb.so"));
    assert_eq!(objects[3]["host_path"], "/usr/aarch64-linux-gnu/lib/libc.so.6");
    let link = &document["closure"]["weakest_links"][0];
    assert_eq!((link["object"].as_u64(), link["outcome"].as_str()), (Some(4), Some("rejected")));
    // libc.so.6 names ld-linux-aarch64.so.1, loaded as the interpreter: found by its soname, not searched.
    let libc_deps = objects[3]["dependencies"].as_array().unwrap();
    assert_eq!((libc_deps[0]["object"].as_u64(), libc_deps[0]["first"].as_bool()), (Some(1), Some(false)));

    // At 4K the whole closure loads.
    assert_eq!(closure_json(&["closure/app", "--page-size", "4k"]).0, Some(0));

    // The program's DT_RPATH serves its libraries' needs too...
    let (_, document) = closure_json(&["closure/app-rpath", "--page-size", "4k"]);
    let libb = &document["closure"]["objects"][4];
    assert_eq!(libb["via"], serde_json::json!({"kind": "rpath", "owner": 0, "entry": "$ORIGIN/lib/sub"}));
    // ...its DT_RUNPATH does not: libb.so is missing, as ld.so says on the real kernels.
    let (code, document) = closure_json(&["closure/app-runpath-missing", "--page-size", "4k"]);
    assert_eq!(code, Some(1));
    let unresolved = &document["closure"]["unresolved"][0];
    assert_eq!(unresolved["name"], "libb.so");
    assert_eq!(unresolved["reason"], "cannot open shared object file: No such file or directory");
    let searched: Vec<&str> = unresolved["searched"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    assert_eq!(searched, ["/lib/aarch64-linux-gnu/libb.so", "/usr/lib/aarch64-linux-gnu/libb.so", "/lib/libb.so", "/usr/lib/libb.so"]);
}

#[test]
fn closure_sysroots_follow_ld_so_conf_includes_and_absolute_symlinks_inside_the_root() {
    let dir = fixtures().join("aarch64");
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    for sub in ["etc/ld.so.conf.d", "usr/lib", "opt/chain"] {
        std::fs::create_dir_all(r.join(sub)).unwrap();
    }
    std::fs::write(r.join("etc/ld.so.conf"), "# comment\ninclude /etc/ld.so.conf.d/*.conf\n").unwrap();
    std::fs::write(r.join("etc/ld.so.conf.d/chain.conf"), "/opt/chain\n").unwrap();
    std::fs::write(r.join("etc/ld.so.conf.d/.hidden.conf"), "/nowhere\n").unwrap();
    // /lib is an absolute symlink: it must resolve inside the sysroot, not on this machine.
    std::os::unix::fs::symlink("/usr/lib", r.join("lib")).unwrap();
    for lib in ["ld-linux-aarch64.so.1", "libc.so.6"] {
        std::fs::copy(Path::new("/usr/aarch64-linux-gnu/lib").join(lib), r.join("usr/lib").join(lib)).unwrap();
    }
    std::fs::copy(dir.join("closure/lib/sub/libb.so"), r.join("opt/chain/libb.so")).unwrap();
    let output = pagefit(
        &["check", "--format", "json", "--page-size", "4k", "--sysroot", r.to_str().unwrap(), "--closure", "closure/app-runpath-missing"],
        &dir,
    );
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stdout));
    let document = json(&output);
    let objects = document["closure"]["objects"].as_array().unwrap();
    assert_eq!(objects[1]["host_path"].as_str().unwrap(), r.join("usr/lib/ld-linux-aarch64.so.1").to_str().unwrap());
    let libb = objects.iter().find(|o| o["name"] == "libb.so").unwrap();
    assert_eq!(libb["via"], serde_json::json!({"kind": "ld-so-conf", "entry": "/opt/chain"}));
    // Nothing here is run: a program for another machine resolves all the same.
    assert_eq!(objects[0]["path"]["in_sysroot"], false);

    // LD_LIBRARY_PATH (a directory of the target system) comes before ld.so.conf.
    std::fs::create_dir_all(r.join("opt/other")).unwrap();
    std::fs::copy(dir.join("closure/lib/sub/libb.so"), r.join("opt/other/libb.so")).unwrap();
    let output = pagefit(
        &["check", "--format", "json", "--page-size", "4k", "--sysroot", r.to_str().unwrap(), "--library-path", "/opt/other"]
            .into_iter()
            .chain(["--closure", "closure/app-runpath-missing"])
            .collect::<Vec<_>>(),
        &dir,
    );
    let document = json(&output);
    let libb = document["closure"]["objects"].as_array().unwrap().iter().find(|o| o["name"] == "libb.so").unwrap().clone();
    assert_eq!(libb["via"], serde_json::json!({"kind": "library-path", "entry": "/opt/other"}));
}

#[test]
fn sarif_is_valid_against_the_sarif_2_1_0_schema_with_a_rule_per_finding_kind() {
    let schema_path = workspace().join("crates/pagefit-cli/tests/data/sarif-schema-2.1.0.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(schema_path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the SARIF schema compiles");
    let dir = tempfile::tempdir().unwrap();
    let apk = dir.path().join("app.apk");
    build_apk(&apk, &fixtures().join("aarch64"));
    let libs = fixtures().join("aarch64");
    let mut args = vec!["check", "--format", "sarif", "--page-size", "16k,64k", apk.to_str().unwrap()];
    args.extend(GOLDEN_FIXTURES);
    let output = pagefit(&args, &libs);
    assert_eq!(output.status.code(), Some(1));
    let log = json(&output);
    let problems: Vec<String> = validator.iter_errors(&log).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(problems.is_empty(), "invalid SARIF: {problems:#?}");
    let mut broken = log.clone();
    broken["runs"][0]["results"][0]["level"] = "fatal".into();
    assert!(!validator.is_valid(&broken), "the schema check must be able to fail");

    let run = &log["runs"][0];
    let rules: Vec<&str> = run["tool"]["driver"]["rules"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(rules.len(), FindingKind::ALL.len());
    let results = run["results"].as_array().unwrap();
    for result in results {
        assert_eq!(rules[result["ruleIndex"].as_u64().unwrap() as usize], result["ruleId"].as_str().unwrap());
    }
    // Every failing (file, page size, loader) of the JSON output has at least one SARIF result.
    let json_args: Vec<&str> = args.iter().map(|a| if *a == "sarif" { "json" } else { a }).collect();
    let document = json(&pagefit(&json_args, &libs));
    for file in document["files"].as_array().unwrap() {
        for verdict in file["results"].as_array().unwrap().iter().filter(|r| r["outcome"] != "ok") {
            let found = results.iter().any(|r| {
                let path = r["locations"][0]["logicalLocations"][0]["fullyQualifiedName"]
                    .as_str()
                    .unwrap_or_else(|| r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].as_str().unwrap());
                path == file["path"]
                    && r["properties"]["pageSize"] == verdict["page_size"]
                    && r["properties"]["loader"] == verdict["loader"]
            });
            assert!(found, "no SARIF result for {} at {}", file["path"], verdict["page_size"]);
        }
    }
    // APK members point at the package, and name the member.
    let zip_result = results
        .iter()
        .find(|r| r["ruleId"] == "ZipAlignment" && r["properties"]["pageSize"] == 16384)
        .expect("a ZipAlignment result at 16K");
    let location = &zip_result["locations"][0];
    assert!(location["physicalLocation"]["artifactLocation"]["uri"].as_str().unwrap().ends_with("/app.apk"));
    assert_eq!(location["logicalLocations"][0]["name"], "lib/arm64-v8a/libmisaligned.so");
    assert_eq!(zip_result["level"], "error");
}

/// A tar of directories (names ending in `/`) and files, in order.
fn tar_bytes(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, bytes) in entries {
        let mut header = tar::Header::new_gnu();
        if name.ends_with('/') {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            header.set_size(0);
        } else {
            header.set_mode(0o755);
            header.set_size(bytes.len() as u64);
        }
        header.set_mtime(1_700_000_000);
        builder.append_data(&mut header, name, bytes.as_slice()).unwrap();
    }
    builder.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn sha256(bytes: &[u8], scratch: &Path) -> String {
    let file = scratch.join("to-hash");
    std::fs::write(&file, bytes).unwrap();
    let output = Command::new("sha256sum").arg(&file).output().unwrap();
    String::from_utf8(output.stdout).unwrap().split_whitespace().next().unwrap().to_string()
}

/// Two layers: the upper one deletes liblib-4k.so (`.wh.`), hides /opt/old
/// (an opaque /opt) and replaces liblib-16k.so with 64K-linked bytes.
fn image_layers(libs: &Path) -> (Vec<u8>, Vec<u8>) {
    let read = |name: &str| std::fs::read(libs.join(name)).unwrap();
    let lower = tar_bytes(&[
        ("usr/", vec![]),
        ("usr/lib/", vec![]),
        ("usr/lib/liblib-4k.so", read("liblib-4k.so")),
        ("usr/lib/liblib-16k.so", read("liblib-16k.so")),
        ("usr/bin/", vec![]),
        ("usr/bin/c-pie-bfd-4k", read("c-pie-bfd-4k")),
        ("opt/old/liblib-4k.so", read("liblib-4k.so")),
    ]);
    let upper = tar_bytes(&[
        ("usr/lib/.wh.liblib-4k.so", vec![]),
        ("usr/lib/liblib-16k.so", read("liblib-64k.so")),
        ("opt/", vec![]),
        ("opt/.wh..wh..opq", vec![]),
        ("opt/new/liblib-seed000.so", read("liblib-seed000.so")),
    ]);
    (gzip(&lower), upper)
}

/// An OCI image layout directory holding the two layers.
fn write_oci_layout(dir: &Path, lower: &[u8], upper: &[u8]) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| -> (String, usize) {
        let digest = sha256(bytes, dir);
        std::fs::write(blobs.join(&digest), bytes).unwrap();
        (format!("sha256:{digest}"), bytes.len())
    };
    let (config, config_len) = put(b"{}");
    let (lower_digest, lower_len) = put(lower);
    let (upper_digest, upper_len) = put(upper);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": config_len },
        "layers": [
            { "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": lower_digest, "size": lower_len },
            { "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": upper_digest, "size": upper_len },
        ],
    });
    let (manifest_digest, manifest_len) = put(manifest.to_string().as_bytes());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{ "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest, "size": manifest_len }],
    });
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::remove_file(dir.join("to-hash")).unwrap();
}

#[test]
fn container_images_are_scanned_layer_by_layer_with_whiteouts_applied() {
    let libs = fixtures().join("aarch64");
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let (lower, upper) = image_layers(&libs);

    // `docker save`: manifest.json names the layer tars; also gzip-compressed as a whole.
    let manifest = r#"[{"Config":"config.json","RepoTags":["pagefit/test:1"],"Layers":["aaa/layer.tar","bbb/layer.tar"]}]"#;
    let saved = tar_bytes(&[
        ("aaa/", vec![]),
        ("aaa/layer.tar", lower.clone()),
        ("bbb/", vec![]),
        ("bbb/layer.tar", upper.clone()),
        ("config.json", b"{}".to_vec()),
        ("manifest.json", manifest.as_bytes().to_vec()),
    ]);
    std::fs::write(s.join("saved.tar"), &saved).unwrap();
    std::fs::write(s.join("saved.tar.gz"), gzip(&saved)).unwrap();
    // An OCI layout, as a directory and as a tar.
    let layout = s.join("layout");
    write_oci_layout(&layout, &lower, &upper);
    let mut oci_entries: Vec<(String, Vec<u8>)> = vec![("blobs/".into(), vec![]), ("blobs/sha256/".into(), vec![])];
    for entry in std::fs::read_dir(layout.join("blobs/sha256")).unwrap() {
        let entry = entry.unwrap();
        oci_entries.push((format!("blobs/sha256/{}", entry.file_name().to_string_lossy()), std::fs::read(entry.path()).unwrap()));
    }
    for name in ["index.json", "oci-layout"] {
        oci_entries.push((name.into(), std::fs::read(layout.join(name)).unwrap()));
    }
    let oci_refs: Vec<(&str, Vec<u8>)> = oci_entries.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
    std::fs::write(s.join("oci.tar"), tar_bytes(&oci_refs)).unwrap();

    let output = pagefit(&["check", "--format", "json", "--page-size", "64k", "saved.tar", "saved.tar.gz", "layout", "oci.tar"], s);
    let document = json(&output);
    assert_eq!(document["errors"], serde_json::json!([]));
    for image in ["saved.tar", "saved.tar.gz", "layout", "oci.tar"] {
        let mut verdicts: Vec<(String, String)> = document["files"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|f| {
                let path = f["path"].as_str().unwrap().strip_prefix(&format!("{image}!/"))?.to_string();
                Some((path, f["results"][0]["outcome"].as_str().unwrap().to_string()))
            })
            .collect();
        verdicts.sort();
        let expected = [
            ("opt/new/liblib-seed000.so", "ok"),
            ("usr/bin/c-pie-bfd-4k", "rejected"),
            // The upper layer's 64K build, not the lower layer's 16K one.
            ("usr/lib/liblib-16k.so", "ok"),
        ];
        let expected: Vec<(String, String)> = expected.iter().map(|(p, o)| (p.to_string(), o.to_string())).collect();
        assert_eq!(verdicts, expected, "{image}");
    }
}

/// Each jemalloc program of fixtures/jemalloc: (arch directory, program,
/// the file jemalloc is in, its compiled page size in bytes).
fn jemalloc_programs() -> Vec<(std::path::PathBuf, String, String, u64)> {
    let mut programs = Vec::new();
    for arch in ["aarch64", "ppc64le", "x86_64"] {
        let dir = common::jemalloc_fixtures().join(arch).join("jemalloc");
        let list = std::fs::read_to_string(dir.join("LIST")).unwrap_or_else(|e| panic!("{}/LIST: {e}", dir.display()));
        for line in list.lines() {
            let fields: Vec<&str> = line.split('\t').collect();
            let page: u64 = fields[1].trim_end_matches('k').parse::<u64>().unwrap() * 1024;
            let allocator = if fields[2] == "shared" { format!("je-{}/libjemalloc.so.2", fields[1]) } else { fields[0].to_string() };
            programs.push((dir.clone(), fields[0].to_string(), allocator, page));
        }
    }
    programs
}

#[test]
fn jemalloc_page_size_is_read_from_every_build_and_breaks_every_loader_above_it() {
    let programs = jemalloc_programs();
    assert_eq!(programs.len(), 3 * 3 * 2 + 3 + 1, "every arch, page size and link kind, and the Rust build");
    for (dir, name, allocator, page) in &programs {
        let output = pagefit(&["check", "--format", "json", "--page-size", "4k,16k,64k", allocator], dir);
        let file = &json(&output)["files"][0];
        assert_eq!(file["runtime"][0]["runtime"], "jemalloc", "{name}");
        assert_eq!(file["runtime"][0]["page_size"], *page, "{name}: the compiled page size");
        for result in file["results"].as_array().unwrap() {
            let at = result["page_size"].as_u64().unwrap();
            let outcome = result["outcome"].as_str().unwrap();
            if at > *page {
                assert_eq!(outcome, "broken", "{name} at {at}");
                assert_eq!(result["message"], "<jemalloc>: Unsupported system page size");
                assert!(result["findings"].as_array().unwrap().iter().any(|f| f["kind"] == "RuntimePageSize"), "{name} at {at}");
            } else {
                assert_eq!(outcome, "ok", "{name} at {at}: linked for 64K pages, and jemalloc covers {at}");
            }
        }
        assert_eq!(output.status.code(), Some(if *page < 65536 { 1 } else { 0 }), "{name}");
    }
}

#[test]
fn jemalloc_in_a_shared_library_is_the_weakest_link_of_the_closure() {
    let dir = common::jemalloc_fixtures().join("aarch64/jemalloc");
    let output = pagefit(&["check", "--page-size", "16k", "--sysroot", "/usr/aarch64-linux-gnu", "--closure", "je-shared-4k"], &dir);
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("libjemalloc.so.2"), "{text}");
    let sixteen = pagefit(&["check", "--page-size", "16k", "--sysroot", "/usr/aarch64-linux-gnu", "--closure", "je-shared-16k"], &dir);
    assert_eq!(sixteen.status.code(), Some(0), "{}", String::from_utf8_lossy(&sixteen.stdout));
}

#[test]
fn fix_refuses_jemalloc_built_for_smaller_pages_and_names_the_remedy() {
    let dir = common::jemalloc_fixtures().join("aarch64/jemalloc");
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("fixed");
    let output = pagefit(&["fix", "--page-size", "16k", "je-static-4k", "-o", target.to_str().unwrap(), "--format", "json"], &dir);
    assert_eq!(output.status.code(), Some(1));
    let report = json(&output);
    assert_eq!(report["status"], "refused");
    assert!(report["reason"].as_str().unwrap().contains("jemalloc was built for 4K pages"), "{report}");
    assert!(report["remedy"].as_str().unwrap().contains("--with-lg-page=16"), "{report}");
    assert!(!target.exists(), "nothing is written");
    // Built for 64K, the same program needs nothing.
    let output = pagefit(&["fix", "--page-size", "16k", "je-static-64k", "-o", target.to_str().unwrap()], &dir);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stdout));
}

#[test]
fn run_refuses_to_start_jemalloc_built_for_smaller_pages() {
    let dir = common::jemalloc_fixtures().join("x86_64/jemalloc");
    let output = pagefit(&["run", "--page-size", "16k", "./je-dynamic-4k"], &dir);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not started") && stderr.contains("<jemalloc>: Unsupported system page size"), "{stderr}");
    assert!(output.stdout.is_empty(), "the program must not start");
    let native = pagefit(&["run", "./je-dynamic-4k"], &dir);
    assert_eq!(String::from_utf8_lossy(&native.stdout), "jemalloc fixture: allocated 1048576 bytes; arenas.page 4096\n");
}

/// `check --shard I/N`: the N shards of a tree hold every record of the
/// whole check exactly once; a bad I/N is a usage error.
#[test]
fn shards_cover_every_input_exactly_once() {
    let tree = fixtures().to_str().expect("UTF-8 fixture path");
    let whole = pagefit(&["check", "--format", "jsonl", tree], fixtures());
    let mut expected: Vec<&[u8]> = whole.stdout.split_inclusive(|&b| b == b'\n').collect();
    assert!(expected.len() > 100, "the fixture corpus is checked whole");
    let shards: Vec<Output> =
        (0..3).map(|i| pagefit(&["check", "--format", "jsonl", "--shard", &format!("{i}/3"), tree], fixtures())).collect();
    let mut union: Vec<&[u8]> = shards.iter().flat_map(|shard| shard.stdout.split_inclusive(|&b| b == b'\n')).collect();
    assert!(shards.iter().all(|shard| !shard.stdout.is_empty()), "every shard gets some files");
    expected.sort();
    union.sort();
    assert_eq!(union, expected);
    for bad in ["3/3", "1/0", "x"] {
        let output = pagefit(&["check", "--shard", bad, tree], fixtures());
        assert_eq!(output.status.code(), Some(2), "--shard {bad}: {}", String::from_utf8_lossy(&output.stderr));
    }
}
