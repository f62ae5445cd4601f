//! Inputs the cargo-fuzz targets (`fuzz/`) crashed on, replayed as those
//! targets run them. `fuzz_regressions/fix/`: `pagefit fix` in memory must
//! end refused or with an output its proof accepts. The `layout-*` inputs
//! were fixed by refusals in `fix/layout.rs`: a section whose bytes are past
//! the end of the file, a read-only segment with bss (with file bytes or
//! none), header tables that would move over the ELF header.
//!
//! The `rebase-*` inputs, mangled so that the dynamic section and the
//! section headers name different tables, are refused by rebase before
//! anything is written (`rebase::agree_with_sections`); before, their
//! outputs failed the proof. `rebase-symbols-over-elf-header` names a symbol
//! table over the ELF header (`rebase::patches_clear_of_headers`).

use std::path::Path;

use pagefit_core::closure::{resolve, Opened, SearchOptions, TargetFiles, TargetPath};
use pagefit_core::elf::{parse, ParseOptions};
use pagefit_core::fix::plan::Strategy;
use pagefit_core::fix::steps::{fix_in_memory, parse_options, InMemoryFix};
use pagefit_core::page::PageSize;

/// Every rejection of `data`, at 16K and 64K with each strategy.
fn rejections(data: &[u8]) -> Vec<String> {
    let Ok(file) = parse(data, parse_options()) else { return Vec::new() };
    let mut rejected = Vec::new();
    for page in [PageSize::K16, PageSize::K64] {
        for strategy in [Strategy::Relayout, Strategy::Rebase, Strategy::Merge] {
            if let Ok(InMemoryFix::Rejected(why)) = fix_in_memory(data, &file, page, strategy, 64 << 20) {
                rejected.push(why);
            }
        }
    }
    rejected
}

#[test]
fn fix_regressions_end_refused_or_proven() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions/fix");
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let rejected = rejections(&std::fs::read(&path).unwrap());
        assert!(rejected.is_empty(), "{name}: {rejected:?}");
        replayed += 1;
    }
    assert!(replayed >= 20, "{dir:?} holds {replayed} inputs");
}

/// The closure target's files: one ELF file (the program, at every path, 16
/// identities by path length) and one ld.so.conf text that every include
/// reads, in directories that each list two `.conf` files.
struct FuzzFiles<'a> {
    program: &'a [u8],
    conf: String,
}

impl TargetFiles for FuzzFiles<'_> {
    fn open_elf(&mut self, path: &TargetPath) -> Opened {
        match parse(self.program, ParseOptions::everything()) {
            Ok(file) => Opened::Elf { file: Box::new(file), identity: (0, path.path.len() as u64 % 16), host_path: path.path.clone() },
            Err(_) => Opened::NotFound,
        }
    }
    fn read_text(&mut self, _path: &str) -> Option<String> {
        Some(self.conf.clone())
    }
    fn list_dir(&mut self, _dir: &str) -> Vec<String> {
        vec!["a.conf".into(), "b.conf".into()]
    }
}

/// `fuzz_regressions/closure/`: inputs the closure target ran out of memory
/// on. `ld-so-conf-includes-doubling` includes `*.conf` relative to each
/// file's directory, so every level names two new files; the resolver reads
/// at most 256 ld.so.conf files.
#[test]
fn closure_regressions_resolve() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions/closure");
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        let mut parts = data.rsplitn(3, |&b| b == 0xff);
        let library_path = String::from_utf8_lossy(parts.next().unwrap_or_default()).split(':').map(str::to_string).collect();
        let conf = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
        let mut files = FuzzFiles { program: parts.next().unwrap_or_default(), conf };
        let root = TargetPath { path: "/usr/bin/program".into(), in_sysroot: true };
        let closure = resolve(root, &mut files, &SearchOptions { library_path });
        assert!(closure.is_ok_and(|c| !c.objects.is_empty()));
        replayed += 1;
    }
    assert!(replayed >= 1);
}
