//! `pagefit fat`, `check`/`explain` on FatELF files and `pagefit binfmt`, on
//! real compiled fixtures (x86_64, aarch64, ppc64le from `fixtures/build.sh`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{fixtures, pagefit};
use serde_json::Value;

const ARCHES: [&str; 3] = ["x86_64", "aarch64", "ppc64le"];

fn fixture(arch: &str, name: &str) -> PathBuf {
    fixtures().join(arch).join(name)
}

fn run_ok(args: &[&str], cwd: &Path) -> Output {
    let output = pagefit(args, cwd);
    assert!(output.status.success(), "pagefit {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn info(fat: &Path) -> Value {
    let output = run_ok(&["fat", "info", "--format", "json", fat.to_str().unwrap()], Path::new("."));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// `app.fat` in a new directory: c-pie-bfd-4k for x86_64, aarch64 and ppc64le.
fn glued(extra: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let fat = dir.path().join("app.fat");
    let inputs: Vec<String> = ARCHES.iter().map(|arch| fixture(arch, "c-pie-bfd-4k").display().to_string()).collect();
    let mut args = vec!["fat", "glue", "-o", fat.to_str().unwrap()];
    args.extend(extra);
    args.extend(inputs.iter().map(String::as_str));
    run_ok(&args, dir.path());
    (dir, fat)
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn records(info: &Value) -> &Vec<Value> {
    info["records"].as_array().unwrap()
}

#[test]
fn glue_info_extract_and_every_printed_target_round_trip() {
    let (dir, fat) = glued(&[]);
    let info = info(&fat);
    assert_eq!(info["version"], 1);
    let machines: Vec<&str> = records(&info).iter().map(|r| r["machine"].as_str().unwrap()).collect();
    assert_eq!(machines, ARCHES);
    for (record, arch) in records(&info).iter().zip(ARCHES) {
        assert_eq!(record["offset"].as_u64().unwrap() % 65536, 0, "{record}");
        let target = record["target"].as_str().unwrap();
        let extracted = dir.path().join(format!("by-target-{arch}"));
        run_ok(&["fat", "extract", "-o", extracted.to_str().unwrap(), fat.to_str().unwrap(), target], dir.path());
        assert_eq!(read(&extracted), read(&fixture(arch, "c-pie-bfd-4k")), "{target}");
        let by_index = dir.path().join(format!("by-index-{arch}"));
        let index = record["record"].as_str().unwrap();
        run_ok(&["fat", "extract", "-o", by_index.to_str().unwrap(), fat.to_str().unwrap(), index], dir.path());
        assert_eq!(read(&by_index), read(&extracted));
        run_ok(&["fat", "verify", fat.to_str().unwrap(), target], dir.path());
    }
    // The text form prints the same targets.
    let text = stdout(&run_ok(&["fat", "info", fat.to_str().unwrap()], dir.path()));
    assert!(text.contains("record2  ppc64:64bit:le:sysv:osabiver0"), "{text}");
    // The writes left no temporary file behind.
    let names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().all(|n| !n.starts_with(".pagefit-")), "{names:?}");
}

#[test]
fn split_writes_one_file_per_record_named_by_machine() {
    let (dir, fat) = glued(&[]);
    let out = dir.path().join("split");
    std::fs::create_dir(&out).unwrap();
    run_ok(&["fat", "split", fat.to_str().unwrap(), "-d", out.to_str().unwrap()], dir.path());
    for arch in ARCHES {
        assert_eq!(read(&out.join(format!("app.{arch}"))), read(&fixture(arch, "c-pie-bfd-4k")), "{arch}");
    }
    // Without -d: next to the FatELF file.
    run_ok(&["fat", "split", "app.fat"], dir.path());
    assert!(dir.path().join("app.ppc64le").is_file());
}

#[test]
fn remove_and_replace_copy_from_the_real_offsets_and_keep_trailing_bytes() {
    let (dir, fat) = glued(&["--align", "4k"]);
    let mut bytes = read(&fat);
    bytes.extend_from_slice(b"signature block after the last record");
    std::fs::write(&fat, &bytes).unwrap();

    let removed = dir.path().join("removed.fat");
    run_ok(&["fat", "remove", "-o", removed.to_str().unwrap(), fat.to_str().unwrap(), "aarch64"], dir.path());
    let info_removed = info(&removed);
    let machines: Vec<&str> = records(&info_removed).iter().map(|r| r["machine"].as_str().unwrap()).collect();
    assert_eq!(machines, ["x86_64", "ppc64le"]);
    assert_eq!(info_removed["trailing"]["size"], 37);
    assert!(read(&removed).ends_with(b"signature block after the last record"));
    let ppc = dir.path().join("ppc");
    run_ok(&["fat", "extract", "-o", ppc.to_str().unwrap(), removed.to_str().unwrap(), "ppc64le"], dir.path());
    assert_eq!(read(&ppc), read(&fixture("ppc64le", "c-pie-bfd-4k")));

    let replaced = dir.path().join("replaced.fat");
    let new_x86 = fixture("x86_64", "c-pie-lld-4k");
    run_ok(&["fat", "replace", "-o", replaced.to_str().unwrap(), fat.to_str().unwrap(), new_x86.to_str().unwrap()], dir.path());
    for (target, expected) in [("x86_64", new_x86), ("aarch64", fixture("aarch64", "c-pie-bfd-4k"))] {
        let out = dir.path().join(format!("replaced-{target}"));
        run_ok(&["fat", "extract", "-o", out.to_str().unwrap(), replaced.to_str().unwrap(), target], dir.path());
        assert_eq!(read(&out), read(&expected), "{target}");
    }
    assert!(read(&replaced).ends_with(b"signature block after the last record"));
    // Records of the rewritten files are aligned to 64K, the default.
    assert!(records(&info(&replaced)).iter().all(|r| r["offset"].as_u64().unwrap() % 65536 == 0));

    // Removing the only record would leave an empty file.
    let single = dir.path().join("single.fat");
    let x86 = fixture("x86_64", "c-pie-bfd-4k");
    run_ok(&["fat", "glue", "-o", single.to_str().unwrap(), x86.to_str().unwrap()], dir.path());
    let output = pagefit(&["fat", "remove", "-o", "empty.fat", single.to_str().unwrap(), "record0"], dir.path());
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(!dir.path().join("empty.fat").exists());
}

#[test]
fn verify_exits_1_for_absent_targets_and_out_of_range_records() {
    let (dir, fat) = glued(&[]);
    let fat = fat.to_str().unwrap();
    for (target, code) in [("ppc64le", 0), ("x86_64:64bit", 0), ("record2", 0), ("riscv", 1), ("aarch64:32bit", 1), ("record3", 1)] {
        let output = pagefit(&["fat", "verify", fat, target], dir.path());
        assert_eq!(output.status.code(), Some(code), "{target}: {}", stderr(&output));
    }
    let output = pagefit(&["fat", "verify", fat, "record3"], dir.path());
    assert!(stderr(&output).contains("record0 to record2"), "{}", stderr(&output));
    let output = pagefit(&["fat", "verify", fat, "vax12"], dir.path());
    assert_eq!(output.status.code(), Some(2));
    // Several matches: extract asks for one.
    let output = pagefit(&["fat", "extract", "-o", "x", fat, "64bit"], dir.path());
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("matches 3 records"), "{}", stderr(&output));
}

/// Writes `bytes` as a file in `dir` and runs `fat validate` on it: exit 2,
/// and the message names the file and the offset.
fn assert_invalid(dir: &Path, name: &str, bytes: &[u8], expected: &str) {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    let output = pagefit(&["fat", "validate", path.to_str().unwrap()], dir);
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{name}: {message}");
    assert!(message.contains(path.to_str().unwrap()) && message.contains(expected), "{name}: {message}");
    assert!(!message.contains("panicked"), "{message}");
    // check reports the same error and goes on.
    let output = pagefit(&["check", path.to_str().unwrap()], dir);
    assert_eq!(output.status.code(), Some(2), "check {name}");
    assert!(stderr(&output).contains(expected), "check {name}: {}", stderr(&output));
}

#[test]
fn validate_names_file_and_offset_of_each_problem() {
    let (dir, fat) = glued(&[]);
    let dir = dir.path();
    let good = read(&fat);
    run_ok(&["fat", "validate", fat.to_str().unwrap()], dir);
    let record = |index: usize| 8 + 24 * index;

    assert_invalid(dir, "header.fat", &good[..7], "truncated at offset 0x0");
    assert_invalid(dir, "table.fat", &good[..40], "truncated at offset 0x8");
    assert_invalid(dir, "past-eof.fat", &good[..good.len() - 1], "record past the end of the file at offset 0x40: record2");

    let mut overlap = good.clone();
    overlap[record(1) + 8..record(1) + 16].copy_from_slice(&0x10010u64.to_le_bytes());
    assert_invalid(dir, "overlap.fat", &overlap, "overlapping records at offset 0x28: record1 (0x10010..");

    let mut machine = good.clone();
    machine[record(1)..record(1) + 2].copy_from_slice(&243u16.to_le_bytes());
    assert_invalid(dir, "machine.fat", &machine, "at offset 0x20012: record1 says machine riscv, its ELF header says aarch64");

    let mut order = good.clone();
    order[record(0) + 5] = 0;
    assert_invalid(dir, "order.fat", &order, "at offset 0x10005: record0 says byte order be, its ELF header says le");

    let mut version = good.clone();
    version[4] = 9;
    assert_invalid(dir, "version.fat", &version, "unsupported FatELF version at offset 0x4");
}

/// A minimal big-endian ELF header (ppc64 big-endian, no segments): there
/// is no big-endian cross compiler here, and `glue` only reads the header.
fn big_endian_elf() -> Vec<u8> {
    let mut bytes = vec![0u8; 64];
    bytes[..4].copy_from_slice(b"\x7fELF");
    bytes[4] = 2; // ELFCLASS64
    bytes[5] = 2; // ELFDATA2MSB
    bytes[6] = 1;
    bytes[16..18].copy_from_slice(&2u16.to_be_bytes()); // ET_EXEC
    bytes[18..20].copy_from_slice(&21u16.to_be_bytes()); // EM_PPC64
    bytes[20..24].copy_from_slice(&1u32.to_be_bytes());
    bytes[52..54].copy_from_slice(&64u16.to_be_bytes()); // e_ehsize
    bytes
}

#[test]
fn big_endian_records_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let be = dir.path().join("ppc64-be");
    std::fs::write(&be, big_endian_elf()).unwrap();
    let x86 = fixture("x86_64", "c-pie-bfd-4k");
    run_ok(&["fat", "glue", "-o", "mixed.fat", x86.to_str().unwrap(), be.to_str().unwrap()], dir.path());
    run_ok(&["fat", "validate", "mixed.fat"], dir.path());
    let info = info(&dir.path().join("mixed.fat"));
    assert_eq!(records(&info)[1]["target"], "ppc64:64bit:be:sysv:osabiver0");
    assert_eq!(records(&info)[1]["machine"], "ppc64");
    // FatELF stores big-endian as 0, where EI_DATA says 2.
    let bytes = read(&dir.path().join("mixed.fat"));
    assert_eq!(bytes[8 + 24 + 5], 0);
    run_ok(&["fat", "verify", "mixed.fat", "ppc64:be"], dir.path());
    run_ok(&["fat", "extract", "-o", "be-out", "mixed.fat", "be"], dir.path());
    assert_eq!(read(&dir.path().join("be-out")), big_endian_elf());
}

#[test]
fn check_covers_every_record_and_explain_takes_file_bang_record() {
    let (dir, fat) = glued(&[]);
    let fat = fat.to_str().unwrap();
    let output = run_ok(&["check", "--page-size", "4k", fat], dir.path());
    let lines: Vec<String> = stdout(&output).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    for (line, arch) in lines.iter().zip(ARCHES) {
        assert!(line.starts_with(&format!("{fat}!record")) && line.contains(&format!(" ({arch}): dyn {arch} kernel: 4K ok")), "{line}");
    }
    // At 16K the 4K builds are rejected: exit 1, like the same ELF files alone.
    assert_eq!(pagefit(&["check", "--page-size", "16k", fat], dir.path()).status.code(), Some(1));
    // A directory walk finds FatELF files whatever their name.
    let walked = stdout(&pagefit(&["check", "--page-size", "4k", dir.path().to_str().unwrap()], dir.path()));
    assert_eq!(walked.lines().count(), 3, "{walked}");

    let explained = pagefit(&["explain", &format!("{fat}!record1"), "--page-size", "16k", "--format", "json"], dir.path());
    // Exit 1: the 4K build is not ok at 16K.
    assert_eq!(explained.status.code(), Some(1), "{}", stderr(&explained));
    let document: Value = serde_json::from_slice(&explained.stdout).unwrap();
    assert_eq!(document["file"]["machine"], 183);
    let printed = format!("{fat}!record2 (ppc64le)");
    run_ok(&["explain", &printed, "--page-size", "4k"], dir.path());
    run_ok(&["explain", &format!("{fat}!aarch64"), "--page-size", "4k"], dir.path());
    let missing = pagefit(&["explain", &format!("{fat}!record3")], dir.path());
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("record3 does not exist"), "{}", stderr(&missing));
}

#[test]
fn page_variants_hold_4k_and_64k_builds_of_one_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let k4 = fixture("aarch64", "c-pie-bfd-4k");
    let k64 = fixture("aarch64", "c-pie-bfd-64k");
    let (k4, k64) = (k4.to_str().unwrap(), k64.to_str().unwrap());
    let refused = pagefit(&["fat", "glue", "-o", "v1.fat", k4, k64], dir.path());
    assert_eq!(refused.status.code(), Some(2));
    assert!(stderr(&refused).contains("--page-variants") && stderr(&refused).contains(k64), "{}", stderr(&refused));
    assert!(!dir.path().join("v1.fat").exists());

    run_ok(&["fat", "glue", "--page-variants", "-o", "v2.fat", k4, k64], dir.path());
    let info = info(&dir.path().join("v2.fat"));
    assert_eq!(info["version"], 2);
    let targets: Vec<&str> = records(&info).iter().map(|r| r["target"].as_str().unwrap()).collect();
    assert_eq!(targets, ["aarch64:64bit:le:sysv:osabiver0:maxpage4k", "aarch64:64bit:le:sysv:osabiver0:maxpage64k"]);
    // The 4K build is only chosen on 4K hosts: 4K alignment is enough for it.
    assert_eq!(records(&info)[0]["offset"], 4096);
    assert_eq!(records(&info)[1]["offset"].as_u64().unwrap() % 65536, 0);
    run_ok(&["fat", "extract", "-o", "small", "v2.fat", "aarch64:maxpage4k"], dir.path());
    assert_eq!(read(&dir.path().join("small")), read(Path::new(k4)));
    run_ok(&["fat", "split", "v2.fat"], dir.path());
    assert_eq!(read(&dir.path().join("v2.aarch64-64k")), read(Path::new(k64)));
    // Version-1 readers refuse the file at the version field rather than misread it.
    let bytes = read(&dir.path().join("v2.fat"));
    assert_eq!(&bytes[4..6], &[2, 0]);
}

/// `pagefit run --report --format json` of `args`: the report (printed
/// before the program starts) and the program's own output.
fn run_reported(args: &[&str], cwd: &Path) -> (Value, Output) {
    let output = pagefit(&[&["run", "--report", "--format", "json"][..], args].concat(), cwd);
    let report = stderr(&output).lines().next().map(|line| serde_json::from_str(line).unwrap()).unwrap_or_default();
    (report, output)
}

/// The file offsets the report says the program's pages are mapped from.
fn mapped_file_offsets(report: &Value) -> Vec<u64> {
    let mappings = report["objects"][0]["plan"]["mappings"].as_array().unwrap();
    mappings.iter().filter(|m| m["source"]["kind"] == "file").map(|m| m["source"]["offset"].as_u64().unwrap()).collect()
}

#[test]
fn run_maps_the_hosts_record_straight_from_the_fat_file() {
    let (dir, fat) = glued(&[]);
    let fat = fat.to_str().unwrap();
    let native = Command::new(fixture("x86_64", "c-pie-bfd-4k")).args(["one", "--two"]).output().unwrap();
    let plain = pagefit(&["run", fat, "one", "--two"], dir.path());
    assert_eq!((plain.status.code(), &plain.stdout), (native.status.code(), &native.stdout), "{}", stderr(&plain));
    let (report, loaded) = run_reported(&[fat, "one", "--two"], dir.path());
    assert_eq!(loaded.stdout, native.stdout);
    let selection = &report["fat_record"];
    assert_eq!((selection["chosen"].as_u64(), selection["decided_by"].as_str()), (Some(0), Some("only_candidate")));
    assert_eq!(selection["records"][0]["fit"], "candidate");
    assert_eq!(selection["records"][1]["mismatches"][0]["record"], "aarch64");
    // No extraction: the program is the fat file, mapped from record0's offset on.
    assert_eq!(report["objects"][0]["path"], fat);
    let record0 = info(Path::new(fat))["records"][0]["offset"].as_u64().unwrap();
    let offsets = mapped_file_offsets(&report);
    assert!(!offsets.is_empty() && offsets.iter().all(|&o| o >= record0), "{offsets:x?} against {record0:#x}");
    let text = pagefit(&["run", "--report", fat], dir.path());
    assert!(stderr(&text).contains(" *record0 x86_64:64bit:le:sysv:osabiver0 at 0x10000"), "{}", stderr(&text));
    assert!(stderr(&text).contains("chosen: record0, the only record for this host"), "{}", stderr(&text));
}

/// The 64K build is chosen under 64K emulation and the smaller 4K build on
/// this 4K host, with page variants (maxpage recorded) and without (two
/// version-1 targets that differ by OS ABI, each measured). Static builds:
/// this host's dynamic libc is not ok at 64K.
#[test]
fn run_prefers_the_record_ok_at_the_page_size() {
    let dir = tempfile::tempdir().unwrap();
    let static4 = fixture("x86_64", "c-static-bfd-4k");
    let static64 = fixture("x86_64", "c-static-bfd-64k");
    let pie4 = fixture("x86_64", "c-pie-bfd-4k");
    let arm = fixture("aarch64", "c-static-bfd-64k");
    let path = |p: &PathBuf| p.to_str().unwrap().to_string();
    run_ok(&["fat", "glue", "--page-variants", "-o", "v2.fat", &path(&static4), &path(&static64), &path(&arm)], dir.path());
    run_ok(&["fat", "glue", "-o", "v1.fat", &path(&pie4), &path(&static64), &path(&arm)], dir.path());
    for (file, small, source) in [("v2.fat", &static4, "recorded"), ("v1.fat", &pie4, "measured")] {
        let (report, at_64k) = run_reported(&["--page-size", "64k", file], dir.path());
        let selection = &report["fat_record"];
        assert_eq!((selection["chosen"].as_u64(), selection["decided_by"].as_str()), (Some(1), Some("ok_at_page")), "{file}");
        assert_eq!(selection["records"][0]["source"], source);
        assert_eq!(selection["records"][0]["ok_at_page"], false);
        let extracted = pagefit(&["run", "--page-size", "64k", &path(&static64)], dir.path());
        assert_eq!((at_64k.status.code(), &at_64k.stdout), (Some(0), &extracted.stdout), "{file}: {}", stderr(&at_64k));
        let (report, at_4k) = run_reported(&[file], dir.path());
        let selection = &report["fat_record"];
        assert_eq!((selection["chosen"].as_u64(), selection["decided_by"].as_str()), (Some(0), Some("closer_fit")), "{file}");
        assert_eq!(at_4k.stdout, Command::new(small).output().unwrap().stdout, "{file}");
    }
}

/// With 1 KiB alignment the x86_64 record starts inside a page: its pages
/// cannot be mapped from the file at the right offsets, so the robust
/// planner composes them, and the program still runs as natively. At 64K,
/// a 64K build 4K-aligned is composed the same way.
#[test]
fn run_composes_the_pages_of_a_record_not_aligned_to_the_page_size() {
    let dir = tempfile::tempdir().unwrap();
    let pie4 = fixture("x86_64", "c-pie-bfd-4k");
    let static64 = fixture("x86_64", "c-static-bfd-64k");
    let arm = fixture("aarch64", "c-pie-bfd-4k");
    run_ok(&["fat", "glue", "--align", "1k", "-o", "odd.fat", arm.to_str().unwrap(), pie4.to_str().unwrap()], dir.path());
    let offset = records(&info(&dir.path().join("odd.fat")))[1]["offset"].as_u64().unwrap();
    assert_ne!(offset % 4096, 0);
    let (report, loaded) = run_reported(&["odd.fat", "x"], dir.path());
    let native = Command::new(&pie4).arg("x").output().unwrap();
    assert_eq!((loaded.status.code(), &loaded.stdout), (Some(0), &native.stdout), "{}", stderr(&loaded));
    assert!(mapped_file_offsets(&report).is_empty(), "{report}");
    assert!(!report["objects"][0]["plan"]["composed"].as_array().unwrap().is_empty());

    run_ok(&["fat", "glue", "--align", "4k", "-o", "k4.fat", arm.to_str().unwrap(), static64.to_str().unwrap()], dir.path());
    let offset = records(&info(&dir.path().join("k4.fat")))[1]["offset"].as_u64().unwrap();
    assert_ne!(offset % 65536, 0);
    let (report, loaded) = run_reported(&["--page-size", "64k", "k4.fat"], dir.path());
    let extracted = pagefit(&["run", "--page-size", "64k", static64.to_str().unwrap()], dir.path());
    assert_eq!((loaded.status.code(), &loaded.stdout), (Some(0), &extracted.stdout), "{}", stderr(&loaded));
    assert!(!report["objects"][0]["plan"]["composed"].as_array().unwrap().is_empty());
}

#[test]
fn run_of_a_fat_file_without_a_record_for_this_host_exits_2_naming_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let inputs: Vec<String> = ["aarch64", "ppc64le"].iter().map(|arch| fixture(arch, "c-pie-bfd-4k").display().to_string()).collect();
    run_ok(&["fat", "glue", "-o", "foreign.fat", &inputs[0], &inputs[1]], dir.path());
    let output = pagefit(&["run", "foreign.fat"], dir.path());
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(err.contains("foreign.fat: no record runs on this host (x86_64:64bit:le:sysv|linux with 4K pages)"), "{err}");
    assert!(err.contains("record0 aarch64:64bit:le:sysv:osabiver0 at 0x10000, 22152 bytes: not for this host: machine aarch64"), "{err}");
    assert!(err.contains("record1 ppc64:64bit:le:sysv:osabiver0 at 0x20000"), "{err}");
}

#[test]
fn help_lists_the_verbs_with_examples() {
    let help = stdout(&run_ok(&["fat", "--help"], Path::new(".")));
    for verb in ["glue", "info", "extract", "split", "remove", "replace", "verify", "validate", "Examples:"] {
        assert!(help.contains(verb), "{verb}: {help}");
    }
    let help = stdout(&run_ok(&["binfmt", "--help"], Path::new(".")));
    assert!(help.contains("install") && help.contains("Examples:"), "{help}");
}

/// binfmt_misc can be mounted in a user and mount namespace on Linux 6.7+:
/// the test registers pagefit there, checks the kernel's view of the
/// registration, and executes FatELF files, which the kernel hands to
/// pagefit: the fixture prints what it prints natively, and a FatELF file
/// holding this system's `/bin/sh` sees the argv[0] it was executed with and
/// exits with its own status. Where namespaces are not allowed, it says so
/// and checks nothing.
#[test]
fn binfmt_install_status_uninstall_in_a_user_namespace() {
    let (dir, fat) = glued(&[]);
    run_ok(&["fat", "glue", "-o", "sh.fat", "/bin/sh", fixture("aarch64", "c-pie-bfd-4k").to_str().unwrap()], dir.path());
    let pagefit_bin = env!("CARGO_BIN_EXE_pagefit");
    let script = format!(
        r#"set -u
p={pagefit_bin}
umount /proc/sys/fs/binfmt_misc 2>/dev/null
$p binfmt status; echo "unmounted-rc=$?"
mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || exit 77
$p binfmt status; echo "before-rc=$?"
$p binfmt install || exit 1
$p binfmt status; echo "after-rc=$?"
{fat} > fat-output.txt; echo "exec-rc=$?"
echo 'echo "argv0=$0"; exit 7' | bash -c 'exec -a custom-argv0 ./sh.fat'; echo "sh-rc=$?"
$p binfmt uninstall || exit 1
$p binfmt status; echo "removed-rc=$?"
"#,
        fat = fat.display()
    );
    let output =
        Command::new("unshare").args(["--user", "--map-root-user", "--mount", "sh", "-c", &script]).current_dir(dir.path()).output();
    let output = match output {
        Ok(output) if output.status.code() != Some(77) && !stderr(&output).starts_with("unshare:") => output,
        other => {
            eprintln!("skipped: no user+mount namespace with binfmt_misc here ({other:?})");
            return;
        }
    };
    let out = stdout(&output);
    let err = stderr(&output);
    assert!(output.status.success(), "{out}\n{err}");
    assert!(err.contains("binfmt_misc is not mounted at /proc/sys/fs/binfmt_misc"), "{err}");
    assert!(
        out.contains("unmounted-rc=2") && out.contains("before-rc=1") && out.contains("after-rc=0") && out.contains("removed-rc=1"),
        "{out}"
    );
    assert!(out.contains("interpreter ") && out.contains("flags: PF") && out.contains("magic fa700e1f"), "{out}");
    // The kernel ran `pagefit PATH ARGV0`, and pagefit ran the x86_64 record.
    let native = Command::new(fixture("x86_64", "c-pie-bfd-4k")).output().unwrap();
    assert!(out.contains("exec-rc=0"), "{out}\n{err}");
    assert_eq!(read(&dir.path().join("fat-output.txt")), native.stdout);
    assert!(out.contains("argv0=custom-argv0\nsh-rc=7"), "{out}\n{err}");
}

#[test]
fn non_elf_and_non_fat_inputs_exit_2_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not an ELF file").unwrap();
    let x86 = fixture("x86_64", "c-pie-bfd-4k");
    let output = pagefit(&["fat", "glue", "-o", "out.fat", x86.to_str().unwrap(), "notes.txt"], dir.path());
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("notes.txt: not an ELF file at offset 0x0"), "{}", stderr(&output));
    let output = pagefit(&["fat", "info", x86.to_str().unwrap()], dir.path());
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("not a FatELF file at offset 0x0"), "{}", stderr(&output));
    let names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["notes.txt"]);
}
