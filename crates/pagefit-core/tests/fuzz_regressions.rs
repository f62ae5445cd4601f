//! Inputs the cargo-fuzz targets (`fuzz/`) crashed on, replayed as those
//! targets run them. `fuzz_regressions/fix/`: `pagefit fix` in memory must
//! end refused or with an output its proof accepts. The `layout-*` inputs
//! were fixed by refusals in `fix/layout.rs` (a section whose bytes are past
//! the end of the file; a read-only segment with bss); the `rebase-*` ones
//! are listed below.

use std::path::Path;

use pagefit_core::elf::parse;
use pagefit_core::fix::plan::Strategy;
use pagefit_core::fix::steps::{fix_in_memory, parse_options, InMemoryFix};
use pagefit_core::page::PageSize;

/// Inputs whose rebased output the proof still rejects (so `pagefit fix`
/// reports `verification failed` and writes nothing). rebase finds the
/// tables it patches through PT_DYNAMIC, the proof through the section
/// headers; where the two disagree, rebase must refuse instead of writing.
/// Fixing that empties this list, and this test then fails until it is.
const REBASE_DISAGREES_WITH_THE_PROOF: &[(&str, &str)] = &[
    ("rebase-dynamic-emptied-16k", "the dynamic section starts with DT_NULL; .rela.dyn still has a section header"),
    ("rebase-dynamic-emptied-64k", "the dynamic section starts with DT_NULL; .rela.dyn still has a section header"),
    ("rebase-got-header-mangled", ".got's section header has size 0 and a mangled sh_link"),
    ("rebase-dynamic-header-mangled", ".dynamic's section header has type SHT_NULL; PT_DYNAMIC still names it"),
    ("rebase-dynamic-address-mangled", ".dynamic's section header says 0x3518, PT_DYNAMIC 0x3018"),
];

#[test]
fn fix_regressions_end_refused_or_proven() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions/fix");
    let mut rejected = Vec::new();
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let data = std::fs::read(&path).unwrap();
        names.push(name.clone());
        let Ok(file) = parse(data.as_slice(), parse_options()) else { continue };
        for page in [PageSize::K16, PageSize::K64] {
            for strategy in [Strategy::Relayout, Strategy::Rebase, Strategy::Merge] {
                if let Ok(InMemoryFix::Rejected(why)) = fix_in_memory(&data, &file, page, strategy, 64 << 20) {
                    rejected.push((name.clone(), why));
                }
            }
        }
    }
    assert!(names.len() >= REBASE_DISAGREES_WITH_THE_PROOF.len(), "{dir:?} holds {names:?}");
    for (name, why) in &rejected {
        assert!(REBASE_DISAGREES_WITH_THE_PROOF.iter().any(|(known, _)| known == name), "{name}: {why}");
        assert!(why.starts_with("rebase at "), "{name}: {why}");
    }
    for (known, what) in REBASE_DISAGREES_WITH_THE_PROOF {
        assert!(rejected.iter().any(|(name, _)| name == known), "{known} ({what}) is no longer rejected: take it off the list");
    }
}
