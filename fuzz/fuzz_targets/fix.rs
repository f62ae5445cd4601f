//! `pagefit fix` on arbitrary bytes, end to end in memory
//! (`fix::steps::fix_in_memory`: decide, write the plan's output, prove it),
//! at 16K and 64K, with each strategy (`auto` only picks the first of them
//! that applies, so it adds nothing). Each input must end refused (an error
//! or a refusal) or with an output the proof accepts; a panic or a rejected
//! output is a crash.
//!
//! `cargo +nightly fuzz run fix` from the repository root.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pagefit_core::elf::parse;
use pagefit_core::fix::plan::Strategy;
use pagefit_core::fix::steps::{fix_in_memory, parse_options, InMemoryFix};
use pagefit_core::page::PageSize;

/// Larger outputs (gigabytes of bss written as zeros) are not rendered.
const MAX_OUTPUT: u64 = 64 << 20;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = parse(data, parse_options()) else { return };
    for page in [PageSize::K16, PageSize::K64] {
        for strategy in [Strategy::Relayout, Strategy::Rebase, Strategy::Merge] {
            if let Ok(InMemoryFix::Rejected(why)) = fix_in_memory(data, &file, page, strategy, MAX_OUTPUT) {
                panic!("{why}");
            }
        }
    }
});
