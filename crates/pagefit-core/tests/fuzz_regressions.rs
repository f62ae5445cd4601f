//! Inputs the cargo-fuzz targets (`fuzz/`) crashed on, replayed as those
//! targets run them. `fuzz_regressions/fix/`: `pagefit fix` in memory must
//! end refused or with an output its proof accepts. The `layout-*` inputs
//! were fixed by refusals in `fix/layout.rs`: a section whose bytes are past
//! the end of the file, a read-only segment with bss (with file bytes or
//! none), header tables that would move over the ELF header, and a PT_LOAD
//! with no memory size that bionic still maps a page for
//! (`layout-empty-segment-bionic-maps`: its p_offset is not page-aligned).
//!
//! The `rebase-*` inputs, mangled so that the dynamic section and the
//! section headers name different tables, are refused by rebase before
//! anything is written (`rebase::agree_with_sections`); before, their
//! outputs failed the proof. `rebase-symbols-over-elf-header` names a symbol
//! table over the ELF header (`rebase::patches_clear_of_headers`);
//! `rebase-phdr-table-under-relocations` has a PT_PHDR whose address holds
//! the relocations, where the rewrite writes the new program header table.
//! `rebase-phdr-over-loaded-elf-header` has a PT_PHDR at address 0, so the
//! new program header table would go over the loaded copy of the ELF header
//! that rebase moves off offset 0 (`layout::header_tables_apart`).
//! `rebase-relro-only-reader-of-write-only-segment` has a PF_W-only data
//! segment that only PT_GNU_RELRO's mprotect made readable; rebase must trim
//! RELRO there, which would take reading away (`layout::relro_costs`).

use std::path::Path;

use pagefit_core::elf::parse;
use pagefit_core::fix::plan::Strategy;
use pagefit_core::fix::steps::{fix_in_memory, parse_options, InMemoryFix};
use pagefit_core::page::PageSize;

#[path = "fuzz_input/closure.rs"]
mod closure_input;

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
        let closure = closure_input::resolve_input(&data);
        assert!(closure.is_ok_and(|c| !c.objects.is_empty()));
        replayed += 1;
    }
    assert!(replayed >= 1);
}
