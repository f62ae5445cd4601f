//! `pagefit run` on real programs: smoke tests, refusals, and the x86_64
//! fixture corpus emulated at 16K and 64K, compared with `pagefit check`'s
//! predictions, with the real 16K (aarch64) and 64K (ppc64le) kernels'
//! recorded runs, and with each fixture's native 4K run.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use common::{fixtures, pagefit, workspace};
use serde_json::Value;

fn status_of(output: &Output) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    output.status.code().unwrap_or_else(|| 128 + output.status.signal().unwrap_or(0))
}

fn combined(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

#[test]
fn runs_system_programs_like_the_kernel_does() {
    let dir = std::env::temp_dir();
    assert_eq!(status_of(&pagefit(&["run", "/bin/true"], &dir)), 0);
    assert_eq!(status_of(&pagefit(&["run", "/bin/false"], &dir)), 1);
    // Files that do not change while the test runs (unlike /proc's link count in `ls -l /`).
    let listed = ["-l", "/bin/true", "/bin/ls", "/etc/passwd"];
    let native = Command::new("/bin/ls").args(listed).output().unwrap();
    let loaded = pagefit(&[&["run", "/bin/ls"][..], &listed].concat(), &dir);
    assert!(!native.stdout.is_empty());
    assert_eq!(loaded.stdout, native.stdout);
    // Trailing arguments pass through verbatim, dashes and all; `--` ends pagefit's options.
    let echo = pagefit(&["run", "--", "echo", "--report", "-n", "x"], &dir);
    assert_eq!(String::from_utf8_lossy(&echo.stdout), "--report -n x\n");
    let exit = pagefit(&["run", "/bin/sh", "-c", "exit 7"], &dir);
    assert_eq!(status_of(&exit), 7);
    // The environment and argv[0] are the program's.
    let env = Command::new(env!("CARGO_BIN_EXE_pagefit"))
        .args(["run", "/bin/sh", "-c", "echo $0 $PAGEFIT_PROBE"])
        .env("PAGEFIT_PROBE", "seen")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&env.stdout), "/bin/sh seen\n");
}

/// The program sees the descriptors it inherited, as after execve, and
/// none of pagefit's: `ls` lists its own directory descriptor as 3 either way.
#[test]
fn the_program_gets_the_descriptors_it_inherited_and_none_of_pagefits() {
    let pagefit = env!("CARGO_BIN_EXE_pagefit");
    let listing = |command: &str| {
        let output = Command::new("/bin/sh").arg("-c").arg(format!("exec 7</dev/null; {command} /proc/self/fd")).output().unwrap();
        assert!(output.status.success(), "{}", combined(&output));
        String::from_utf8(output.stdout).unwrap()
    };
    let native = listing("/bin/ls");
    assert!(native.lines().any(|fd| fd == "7"), "{native}");
    assert_eq!(listing(&format!("{pagefit} run /bin/ls")), native);
}

/// The program's glibc registers its own rseq area, as after execve: the
/// loader unregistered pagefit's.
#[test]
fn the_program_gets_rseq_as_after_execve() {
    let scratch = tempfile::tempdir().unwrap();
    let source = scratch.path().join("rseq.c");
    std::fs::write(
        &source,
        "#include <stdio.h>\nextern const unsigned int __rseq_size;\nint main(void) { printf(\"%u\\n\", __rseq_size); return 0; }\n",
    )
    .unwrap();
    let program = scratch.path().join("rseq");
    assert!(Command::new("gcc").arg("-o").arg(&program).arg(&source).status().expect("gcc").success());
    let native = Command::new(&program).output().unwrap();
    let loaded = pagefit(&["run", program.to_str().unwrap()], scratch.path());
    assert_eq!(String::from_utf8_lossy(&loaded.stdout), String::from_utf8_lossy(&native.stdout));
    assert_ne!(String::from_utf8_lossy(&native.stdout).trim(), "0", "this host's glibc registers rseq");
}

/// `--thp` puts a text segment that is congruent mod 2 MiB on a 2 MiB
/// boundary and offers its whole 2 MiB chunks to transparent huge pages.
/// Whether the kernel backs them with huge pages depends on its
/// configuration (CONFIG_READ_ONLY_THP_FOR_FS); the outcome is reported.
#[test]
fn thp_places_text_on_2m_boundaries() {
    let scratch = tempfile::tempdir().unwrap();
    let source = scratch.path().join("big.c");
    // 5 MiB of text: at least one whole, aligned 2 MiB chunk whatever the layout.
    std::fs::write(
        &source,
        "__attribute__((section(\".text\"))) const char padding[5 << 20] = {1};\nint main(void) { return padding[0] - 1; }\n",
    )
    .unwrap();
    let program = scratch.path().join("big");
    assert!(Command::new("gcc").arg("-o").arg(&program).arg(&source).status().expect("gcc").success());
    let output = pagefit(&["run", "--thp", "--report", "--format", "json", program.to_str().unwrap()], scratch.path());
    assert_eq!(status_of(&output), 0, "{}", combined(&output));
    let document: Value = serde_json::from_slice(&output.stderr).unwrap();
    let huge = document["objects"][0]["huge_pages"].as_array().unwrap();
    assert!(!huge.is_empty(), "{document}");
    for range in huge {
        let (start, end) = (range["range"]["start"].as_u64().unwrap(), range["range"]["end"].as_u64().unwrap());
        assert!(start % (2 << 20) == 0 && end % (2 << 20) == 0 && end > start, "{range}");
        assert!(range["outcome"].as_str().is_some_and(|o| !o.is_empty()));
    }
    let without = pagefit(&["run", "--report", "--format", "json", program.to_str().unwrap()], scratch.path());
    let document: Value = serde_json::from_slice(&without.stderr).unwrap();
    assert!(document["objects"][0]["huge_pages"].as_array().unwrap().is_empty());
}

/// `--thp-copy` gets text huge pages even where the kernel cannot back file
/// text with them: the program counts its own in /proc/self/smaps.
#[test]
fn thp_copy_gets_huge_pages_for_text() {
    let scratch = tempfile::tempdir().unwrap();
    let source = scratch.path().join("huge.c");
    std::fs::write(
        &source,
        r#"#include <stdio.h>
__attribute__((section(".text"))) const char padding[5 << 20] = {1};
int main(void) {
  FILE *smaps = fopen("/proc/self/smaps", "r");
  char line[256];
  long kb, total = 0;
  while (fgets(line, sizeof line, smaps))
    if (sscanf(line, "AnonHugePages: %ld kB", &kb) == 1 || sscanf(line, "FilePmdMapped: %ld kB", &kb) == 1) total += kb;
  printf("%ld\n", total);
  return padding[0] - 1;
}
"#,
    )
    .unwrap();
    let program = scratch.path().join("huge");
    assert!(Command::new("gcc").arg("-o").arg(&program).arg(&source).status().expect("gcc").success());
    let output = pagefit(&["run", "--thp-copy", "--report", "--format", "json", program.to_str().unwrap()], scratch.path());
    assert_eq!(status_of(&output), 0, "{}", combined(&output));
    let huge_kb: u64 = String::from_utf8_lossy(&output.stdout).trim().parse().unwrap();
    let document: Value = serde_json::from_slice(&output.stderr).unwrap();
    let offered = document["objects"][0]["huge_pages"].as_array().unwrap();
    let offered_kb: u64 = offered.iter().map(|r| (r["range"]["end"].as_u64().unwrap() - r["range"]["start"].as_u64().unwrap()) >> 10).sum();
    assert!(offered_kb >= 2048, "{document}");
    // Private memory is reported exactly where the text was copied.
    for range in offered {
        let copied = range["outcome"].as_str().unwrap().contains("copied");
        let private = range["private_bytes"].as_u64().unwrap();
        assert_eq!(private > 0, copied, "{range}");
    }
    let thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
    if thp.contains("[never]") {
        assert_eq!(huge_kb, 0);
    } else {
        assert!(huge_kb >= offered_kb, "{huge_kb} kB of huge pages for {offered_kb} kB of text offered: {document}");
    }
}

#[test]
fn report_lists_every_mapping_and_composed_page() {
    let dir = fixtures().join("x86_64");
    let output = pagefit(&["run", "--page-size", "16k", "--report", "./c-pie-bfd-4k"], &dir);
    let report = String::from_utf8_lossy(&output.stderr);
    assert_eq!(status_of(&output), 0, "{report}");
    assert!(report.starts_with("pagefit run: robust load at 16K (AT_PAGESZ 16384)\n"), "{report}");
    assert!(report.contains("file offset 0x0"), "{report}");
    assert!(report.contains("composed:"), "{report}");
    assert!(report.contains("composed pages: "), "{report}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("auxv pagesz 16384"), "AT_PAGESZ is the emulated page size");
    let json = pagefit(&["run", "--page-size", "16k", "--report", "--format", "json", "./c-pie-bfd-4k"], &dir);
    let document: Value = serde_json::from_slice(&json.stderr).expect("one JSON document on stderr");
    assert_eq!(document["mode"], "robust");
    assert_eq!(document["page_size"], 16384);
    let plan = &document["objects"][0]["plan"];
    assert!(plan["composed"].as_array().is_some_and(|pages| !pages.is_empty()));
    assert!(plan["mappings"].as_array().unwrap().iter().all(|m| m["range"]["start"].as_u64().unwrap() % 16384 == 0));
}

#[test]
fn refuses_what_a_userspace_loader_cannot_honour() {
    let scratch = tempfile::tempdir().unwrap();
    let setuid = scratch.path().join("true-setuid");
    std::fs::copy("/bin/true", &setuid).unwrap();
    std::fs::set_permissions(&setuid, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let output = pagefit(&["run", setuid.to_str().unwrap()], scratch.path());
    assert_eq!(status_of(&output), 2);
    assert!(combined(&output).contains("refusing a setuid/setgid program"), "{}", combined(&output));

    let foreign = fixtures().join("aarch64/c-static-bfd-4k");
    let output = pagefit(&["run", foreign.to_str().unwrap()], scratch.path());
    assert_eq!(status_of(&output), 2);
    assert!(
        combined(&output).contains("the program is for aarch64 (64-bit), this loader runs x86_64 programs only"),
        "{}",
        combined(&output)
    );

    let missing = pagefit(&["run", "/nonexistent/program"], scratch.path());
    assert_eq!(status_of(&missing), 2);
    assert!(combined(&missing).contains("cannot open the program"));
}

/// A non-PIE program linked at the address where pagefit itself is mapped
/// (its fixed address, or under ASLR off a PIE's) must be refused, not
/// mapped over pagefit.
#[test]
fn refuses_fixed_addresses_that_collide_with_pagefit() {
    let scratch = tempfile::tempdir().unwrap();
    let source = scratch.path().join("fixed.c");
    // No libc and no relocations: only the fixed address matters.
    std::fs::write(&source, "void _start(void) { __asm__ volatile(\"mov $60, %eax; xor %edi, %edi; syscall\"); }\n").unwrap();
    let program = scratch.path().join("fixed");
    let built = Command::new("gcc")
        .args(["-nostdlib", "-static", "-no-pie", "-fno-pie", &format!("-Wl,-Ttext-segment={:#x}", pagefit_first_page()), "-o"])
        .arg(&program)
        .arg(&source)
        .status()
        .expect("gcc (fixtures/build.sh needs it too)");
    assert!(built.success());
    let output =
        Command::new("setarch").args(["-R", env!("CARGO_BIN_EXE_pagefit"), "run"]).arg(&program).output().expect("setarch (util-linux)");
    assert_eq!(status_of(&output), 2, "{}", combined(&output));
    assert!(combined(&output).contains("collide with pagefit's own mapping"), "{}", combined(&output));
}

/// Where pagefit's first page is mapped with ASLR off: its own first PT_LOAD
/// when it is a fixed-address executable (the musl build), or where
/// `setarch -R` puts a PIE.
fn pagefit_first_page() -> u64 {
    use object::read::elf::{FileHeader, ProgramHeader};
    let bytes = std::fs::read(env!("CARGO_BIN_EXE_pagefit")).unwrap();
    let header = object::elf::FileHeader64::<object::Endianness>::parse(&*bytes).unwrap();
    let endian = header.endian().unwrap();
    if header.e_type(endian) == object::elf::ET_DYN {
        return 0x5555_5555_4000;
    }
    let headers = header.program_headers(endian, &*bytes).unwrap();
    headers.iter().find(|ph| ph.p_type(endian) == object::elf::PT_LOAD).map(|ph| ph.p_vaddr(endian)).unwrap()
}

/// `--as-kernel` where binfmt_elf would fail: the reason, then death by SIGSEGV.
#[test]
fn as_kernel_dies_by_sigsegv_with_the_reason() {
    let output = pagefit(&["run", "--page-size", "16k", "--as-kernel", "./c-pie-bfd-4k"], &fixtures().join("x86_64"));
    assert_eq!(status_of(&output), 139);
    assert!(combined(&output)
        .contains("killed by SIGSEGV at exec: PT_LOAD[5] p_offset 0x3dc8 is not congruent to p_vaddr 0x4dc8 modulo 0x4000"));
}

struct Fixture {
    name: String,
    run: Vec<String>,
}

fn manifest(dir: &Path) -> Vec<Fixture> {
    std::fs::read_to_string(dir.join("MANIFEST"))
        .unwrap()
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            (fields.get(1) == Some(&"exe"))
                .then(|| Fixture { name: fields[0].into(), run: fields[2].split_whitespace().map(String::from).collect() })
        })
        .collect()
}

/// `@@ name rc=N` records of a recorded boot.
fn observed(file: &str) -> BTreeMap<String, i32> {
    let text = std::fs::read_to_string(workspace().join("fixtures/observed").join(file)).unwrap();
    text.lines()
        .filter_map(|line| {
            let (name, rc) = line.strip_prefix("@@ ")?.split_once(" rc=")?;
            Some((name.to_string(), rc.parse().ok()?))
        })
        .collect()
}

/// What the program itself prints about its own run, without the lines that
/// legitimately differ with the page size: the probes' page protections and AT_PAGESZ.
fn behaviour(output: &Output) -> String {
    combined(output)
        .lines()
        .filter(|l| !l.starts_with("probe ") && !l.starts_with("lprobe ") && !l.starts_with("auxv pagesz"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn runs(outcome: &str) -> bool {
    matches!(outcome, "ok" | "degraded")
}

/// `pagefit check --closure`'s outcomes at `page`: the program's (kernel
/// model), the interpreter's, and the worst of the libraries ld.so loads.
/// Libraries named on the command line (the dlopen fixtures) count as libraries too.
fn predictions(dir: &Path, run: &[String], page: &str) -> (String, String, String) {
    let program = &run[0];
    let output = pagefit(&["check", "--closure", program, "--page-size", page, "--format", "json"], dir);
    let document: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    let outcome = |file: &Value| file["results"][0]["outcome"].as_str().unwrap_or("?").to_string();
    let files = document["files"].as_array().cloned().unwrap_or_default();
    let program_outcome = files.first().map_or("?".into(), outcome);
    let interpreter = files.iter().find(|f| f["role"] == "interpreter").map_or("none".into(), outcome);
    let rank = |o: &str| ["ok", "degraded", "broken", "rejected"].iter().position(|r| *r == o).unwrap_or(4);
    let mut libraries: Vec<String> = files.iter().skip(1).filter(|f| f["role"] != "interpreter").map(outcome).collect();
    for library in run[1..].iter().filter(|arg| arg.ends_with(".so")) {
        let output = pagefit(&["check", library, "--page-size", page, "--format", "json"], dir);
        let document: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
        libraries.push(outcome(&document["files"][0]));
    }
    let libraries = libraries.into_iter().max_by_key(|o| rank(o)).unwrap_or("none".into());
    (program_outcome, interpreter, libraries)
}

/// The emulation proof: each x86_64 fixture at 16K and 64K.
/// - `--as-kernel` must fail exactly when `pagefit check --closure` predicts
///   that the program, its interpreter or a library breaks or is rejected;
/// - where the aarch64 (16K) or ppc64le (64K) build of the same source and
///   flags gets the same prediction for the program, the emulated outcome
///   must be the real kernel's;
/// - robust mode must run every fixture that runs natively, with the same
///   behaviour, unless a library that ld.so itself loads at P is predicted to
///   fail ("libs": ld.so applies its real P rules to them, which is the point
///   of emulation).
///
/// Columns: predictions for the program, its interpreter and its libraries;
/// the `--as-kernel` exit status; whether the other architecture's build gets
/// the same prediction and its recorded real-kernel status; the robust exit
/// status and how its output compares with the native 4K run.
#[test]
fn emulation_matches_predictions_real_kernels_and_native_runs() {
    let dir = fixtures().join("x86_64");
    let real = [("16k", "aarch64", observed("aarch64-16k.txt")), ("64k", "ppc64le", observed("ppc64le-64k.txt"))];
    let mut failures = Vec::new();
    let mut agree_real = (0, 0);
    println!(
        "{:<26} {:>3} | {:<9} {:<9} {:<9} | {:>6} | {:<8} {:>4} {:>4} | {:>6} {:<6}",
        "fixture", "P", "program", "interp", "libs", "kernel", "real", "pred", "rc", "robust", "output"
    );
    for fixture in manifest(&dir) {
        let native = Command::new(&fixture.run[0]).args(&fixture.run[1..]).current_dir(&dir).output().unwrap();
        let program = &fixture.run[0];
        for (page, arch, recorded) in &real {
            let (program_outcome, interpreter, libraries) = predictions(&dir, &fixture.run, page);
            let args = |mode: &[&'static str]| {
                let mut args: Vec<&str> = vec!["run", "--page-size", page];
                args.extend(mode);
                args.extend(fixture.run.iter().map(String::as_str));
                args
            };
            let as_kernel = pagefit(&args(&["--as-kernel"]), &dir);
            let robust = pagefit(&args(&[]), &dir);
            let predicted_to_run = [&program_outcome, &interpreter, &libraries].iter().all(|o| *o == "none" || runs(o));
            let kernel_rc = status_of(&as_kernel);
            if predicted_to_run != (kernel_rc == 0) {
                failures.push(format!(
                    "{} at {page}: predicted {program_outcome}/{interpreter}/{libraries}, --as-kernel exit {kernel_rc}: {}",
                    fixture.name,
                    combined(&as_kernel)
                ));
            }
            // The other architecture's prediction for its own build of the fixture.
            let foreign_dir = fixtures().join(arch);
            let (foreign_program, real_rc) = match recorded.get(&fixture.name) {
                Some(rc) if foreign_dir.join(program).exists() => (predictions(&foreign_dir, &fixture.run[..1], page).0, Some(*rc)),
                _ => ("-".into(), None),
            };
            let comparable = real_rc.is_some() && foreign_program == program_outcome && predicted_to_run == runs(&program_outcome);
            if let (true, Some(rc)) = (comparable, real_rc) {
                agree_real.1 += 1;
                if (rc == 0) == (kernel_rc == 0) {
                    agree_real.0 += 1;
                } else {
                    failures.push(format!("{} at {page}: --as-kernel exit {kernel_rc}, the real {arch} kernel {rc}", fixture.name));
                }
            }
            let robust_rc = status_of(&robust);
            let same = robust_rc == status_of(&native) && behaviour(&robust) == behaviour(&native);
            let libraries_load = libraries == "none" || runs(&libraries);
            if status_of(&native) == 0 && libraries_load && !same {
                failures.push(format!(
                    "{} at {page}: robust exit {robust_rc}, native {}:\n{}",
                    fixture.name,
                    status_of(&native),
                    combined(&robust)
                ));
            }
            println!(
                "{:<26} {:>3} | {:<9} {:<9} {:<9} | {:>6} | {:<8} {:>4} {:>4} | {:>6} {:<6}",
                fixture.name,
                page,
                program_outcome,
                interpreter,
                libraries,
                kernel_rc,
                arch,
                if comparable { "same" } else { "diff" },
                real_rc.map_or("-".into(), |rc| rc.to_string()),
                robust_rc,
                match (same, status_of(&native), robust_rc) {
                    (true, _, _) => "same".to_string(),
                    (false, 0, _) if !libraries_load => "libs".to_string(),
                    (false, 0, _) => "DIFF".to_string(),
                    (false, native, 0) => format!("fixed (native {native})"),
                    (false, native, _) => format!("native {native}"),
                }
            );
        }
    }
    println!("emulated --as-kernel vs real kernel, where both builds get the same prediction: {}/{}", agree_real.0, agree_real.1);
    assert!(agree_real.1 > 0, "no comparable fixture");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `--fix-deps`: programs whose 4K libraries ld.so refuses at 16K and 64K
/// (this host's libc included, at 64K) run under emulation once those are
/// fixed into the cache, with the native run's output; a second run reuses
/// the cache. `c-pie-bfd-4k` loads only libc: under emulation its copy must
/// carry a p_align past P, or ld.so, placed on a 4K boundary by this host's
/// kernel, clears libc's bss up to the wrong 64K boundary. `dlopen` opens
/// its 4K library by path, which no closure names: the audit module has it
/// fixed as ld.so is about to open it.
#[test]
fn fix_deps_runs_a_4k_program_with_4k_libraries_at_16k_and_64k() {
    if std::env::consts::ARCH != "x86_64" {
        return;
    }
    let dir = fixtures().join("x86_64");
    let cache = tempfile::tempdir().unwrap();
    let every_page = &["16k", "64k"][..];
    // This host's libc is ok at 16K, so c-pie-bfd-4k needs no fixed library there.
    let programs: [(&[&str], &[&str]); 4] = [
        (&["./uselib-4k"], every_page),
        (&["./closure/app-4k"], every_page),
        (&["./c-pie-bfd-4k"], &["64k"]),
        (&["./dlopen", "./liblib-4k.so"], every_page),
    ];
    for (program, pages) in programs {
        let native = Command::new(dir.join(program[0])).args(&program[1..]).current_dir(&dir).output().unwrap();
        assert_eq!(native.status.code(), Some(0));
        for &page in pages {
            let run = |fix_deps: bool| {
                let mut args = vec!["run", "--page-size", page];
                args.extend(fix_deps.then_some("--fix-deps"));
                args.extend(program);
                Command::new(env!("CARGO_BIN_EXE_pagefit"))
                    .args(&args)
                    .current_dir(&dir)
                    .env("XDG_CACHE_HOME", cache.path())
                    .output()
                    .unwrap()
            };
            let without = run(false);
            assert_ne!(status_of(&without), 0, "{program:?} at {page} should need its libraries fixed: {}", combined(&without));
            let with = run(true);
            assert_eq!(status_of(&with), 0, "{program:?} at {page}: {}", combined(&with));
            assert_eq!(behaviour(&with), behaviour(&native), "{program:?} at {page}");
            let cached: Vec<_> = std::fs::read_dir(cache.path().join("pagefit")).unwrap().collect();
            let again = run(true);
            assert_eq!((status_of(&again), std::fs::read_dir(cache.path().join("pagefit")).unwrap().count()), (0, cached.len()));
        }
    }
}

/// `--fix-deps` of a FatELF file resolves the chosen record's closure, with
/// the fat file's directory as its `$ORIGIN`: the 4K `uselib-4k`, glued with
/// its aarch64 build, runs at 64K with its 4K library (beside the fat file) fixed.
#[test]
fn fix_deps_resolves_the_closure_of_a_fat_files_record() {
    if std::env::consts::ARCH != "x86_64" {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixtures().join("x86_64/liblib-4k.so"), dir.path().join("liblib-4k.so")).unwrap();
    let records = ["x86_64", "aarch64"].map(|arch| fixtures().join(arch).join("uselib-4k").display().to_string());
    let glued = pagefit(&["fat", "glue", "-o", "app.fat", &records[0], &records[1]], dir.path());
    assert_eq!(glued.status.code(), Some(0), "{}", combined(&glued));
    let native = Command::new(fixtures().join("x86_64/uselib-4k")).output().unwrap();
    let run = |fix_deps: bool| {
        let mut args = vec!["run", "--page-size", "64k"];
        args.extend(fix_deps.then_some("--fix-deps"));
        args.push("./app.fat");
        Command::new(env!("CARGO_BIN_EXE_pagefit"))
            .args(&args)
            .current_dir(dir.path())
            .env("XDG_CACHE_HOME", dir.path().join("cache"))
            .output()
            .unwrap()
    };
    let without = run(false);
    assert!(combined(&without).contains("liblib-4k.so: ELF load command address/offset not page-aligned"), "{}", combined(&without));
    let with = run(true);
    assert_eq!(status_of(&with), 0, "{}", combined(&with));
    assert_eq!(behaviour(&with), behaviour(&native));
}
