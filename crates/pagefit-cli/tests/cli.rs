//! End-to-end tests of the `pagefit` binary on real compiled fixtures
//! (built by `fixtures/build.sh`), recorded real-kernel runs, golden files
//! and mangled inputs. One test binary, as ripgrep does.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// The fixture corpus, built once per test run with the repo's deterministic script.
fn fixtures() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::var_os("PAGEFIT_FIXTURES").map(PathBuf::from).unwrap_or_else(|| workspace().join("target/fixtures"));
        if !dir.join("aarch64/MANIFEST").exists() || !dir.join("ppc64le/MANIFEST").exists() {
            let status =
                Command::new("bash").arg(workspace().join("fixtures/build.sh")).arg(&dir).status().expect("bash fixtures/build.sh");
            assert!(
                status.success(),
                "fixtures/build.sh failed: install gcc, clang, lld and the aarch64/ppc64le cross compilers (see .ci/run)"
            );
        }
        dir
    })
}

fn pagefit(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pagefit")).args(args).current_dir(cwd).output().expect("run pagefit")
}

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
