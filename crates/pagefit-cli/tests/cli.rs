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

/// One program's run in a recorded VM boot: `@@ name rc=N`, then its output.
struct Run {
    rc: i32,
    output: String,
}

fn parse_runs(text: &str) -> Vec<(String, Run)> {
    let mut runs: Vec<(String, Run)> = Vec::new();
    for line in text.lines() {
        if let Some((name, rc)) = line.strip_prefix("@@ ").and_then(|rest| rest.split_once(" rc=")) {
            runs.push((name.to_string(), Run { rc: rc.trim().parse().unwrap(), output: String::new() }));
        } else if let Some((_, run)) = runs.last_mut() {
            run.output.push_str(line);
            run.output.push('\n');
        }
    }
    runs
}

struct Prediction {
    outcome: String,
    message: Option<String>,
    mappings: Vec<(u64, u64, String)>,
}

fn predict(dir: &Path, file: &str, page: &str) -> Prediction {
    let output = pagefit(&["explain", file, "--page-size", page, "--format", "json"], dir);
    let document = json(&output);
    let plan = &document["plans"][1];
    let mappings = plan["mappings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["start"].as_u64().unwrap(), m["end"].as_u64().unwrap(), m["prot"].as_str().unwrap().to_string()))
        .collect();
    Prediction { outcome: plan["outcome"].as_str().unwrap().to_string(), message: plan["message"].as_str().map(str::to_string), mappings }
}

/// Compares every recorded probe (`probe label 0xADDR perms`) with the predicted map.
fn probe_mismatches(run: &Run, prediction: &Prediction) -> Vec<String> {
    let mut wrong = Vec::new();
    for line in run.output.lines().filter(|l| l.starts_with("probe ")) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (label, address, perms) = (fields[1], u64::from_str_radix(fields[2].trim_start_matches("0x"), 16).unwrap(), &fields[3][..3]);
        let predicted = prediction.mappings.iter().find(|(s, e, _)| *s <= address && address < *e).map_or("---", |(_, _, p)| p.as_str());
        if predicted != perms {
            wrong.push(format!("{label} {address:#x}: kernel {perms}, predicted {predicted}"));
        }
    }
    wrong
}

/// The verdicts and maps pagefit predicts for every fixture agree with what
/// Debian 13's 16K (aarch64) and 64K (ppc64le) kernels did, as recorded in
/// `fixtures/observed/` (produced by booting them; see SUMMARY.md there).
#[test]
fn predictions_agree_with_recorded_real_kernel_runs() {
    let observed = workspace().join("fixtures/observed");
    let mut rows = Vec::new();
    let mut agreed = 0;
    for (arch, page) in [("aarch64", "16k"), ("ppc64le", "64k")] {
        let dir = fixtures().join(arch);
        let baseline: Vec<(String, Run)> = parse_runs(&std::fs::read_to_string(observed.join(format!("{arch}-4k.txt"))).unwrap());
        let big = parse_runs(&std::fs::read_to_string(observed.join(format!("{arch}-{page}.txt"))).unwrap());
        for (name, run) in &big {
            let base = &baseline.iter().find(|(n, _)| n == name).unwrap().1;
            // A program using a library is decided by the library under glibc.
            let library = name.strip_prefix("uselib-").or_else(|| name.strip_prefix("dlopen-")).map(|v| format!("liblib-{v}.so"));
            let subject = library.clone().unwrap_or_else(|| name.clone());
            let prediction = predict(&dir, &subject, page);
            let mut problems = Vec::new();
            match (prediction.outcome.as_str(), prediction.message.as_deref()) {
                ("rejected" | "broken", Some(message)) if message.starts_with("killed by SIGSEGV") => {
                    if run.rc != 139 {
                        problems.push(format!("predicted SIGSEGV, kernel rc {}", run.rc));
                    }
                }
                ("rejected", Some(message)) => {
                    let loader_text = message.rsplit(": ").next().unwrap();
                    if run.rc == 0 || !run.output.contains(loader_text) {
                        problems.push(format!("predicted {message:?}, kernel rc {} output {:?}", run.rc, run.output.trim()));
                    }
                    if library.is_some() && !run.output.contains(message.trim_start_matches("error while loading shared libraries: ")) {
                        problems.push(format!("ld.so message differs: {:?}", run.output.trim()));
                    }
                }
                ("ok" | "degraded", _) => {
                    // It runs as its source intends: as on the 4K kernel, unless a loader refused it there.
                    let intended = if base.output.contains("error while loading") { 0 } else { base.rc };
                    if run.rc != intended {
                        problems.push(format!("predicted it runs (rc {intended}), kernel rc {}", run.rc));
                    }
                    if run.rc == 0 && library.is_none() {
                        problems.extend(probe_mismatches(run, &prediction));
                    }
                }
                (outcome, message) => {
                    problems.push(format!("prediction {outcome} {message:?} has no observable counterpart (kernel rc {})", run.rc))
                }
            }
            if run.output.contains("BAD") && prediction.outcome != "broken" {
                problems.push("kernel run saw clobbered bytes".into());
            }
            if problems.is_empty() {
                agreed += 1;
            }
            rows.push(format!(
                "{arch:8} {name:28} {page:4} kernel rc {:3}  predicted {:9} {}",
                run.rc,
                prediction.outcome,
                problems.join("; ")
            ));
        }
    }
    println!("{}", rows.join("\n"));
    println!("recorded real-kernel agreement: {agreed}/{}", rows.len());
    assert!(rows.len() >= 80, "expected the whole recorded corpus, got {} runs", rows.len());
    assert_eq!(
        agreed,
        rows.len(),
        "disagreements:\n{}",
        rows.iter().filter(|r| r.contains(':') && !r.ends_with(' ')).cloned().collect::<Vec<_>>().join("\n")
    );
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
