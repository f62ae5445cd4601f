//! `pagefit fix` on arbitrary bytes, end to end in memory: decide, write the
//! plan's output and prove it, at 16K and 64K, with every strategy. Each
//! input must end refused (an error or a refusal) or with an output the
//! proof accepts; a panic or a rejected output is a crash.
//!
//! `cargo +nightly fuzz run fix` from the repository root.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pagefit_core::elf::{parse, ParseOptions};
use pagefit_core::fix::plan::Strategy;
use pagefit_core::fix::steps::{decide, prove, Decision, Readers};
use pagefit_core::fix::write::render;
use pagefit_core::page::PageSize;

/// Larger outputs (gigabytes of bss written as zeros) are not rendered.
const MAX_OUTPUT: u64 = 64 << 20;

fuzz_target!(|data: &[u8]| {
    // The options `pagefit fix` parses with.
    let options = ParseOptions { sections: true, section_names: true, runtime: true, ..ParseOptions::default() };
    let Ok(file) = parse(data, options) else { return };
    for page in [PageSize::K16, PageSize::K64] {
        for strategy in [Strategy::Auto, Strategy::Relayout, Strategy::Rebase, Strategy::Merge] {
            let Ok(Decision::Rewrite { plan, loaders, .. }) = decide(data, &file, "input", page, strategy, false) else { continue };
            let output = match render(&plan, data, MAX_OUTPUT) {
                Ok(output) => output,
                Err(e) if e.kind() == std::io::ErrorKind::FileTooLarge => continue,
                Err(e) => panic!("{strategy} at {page}: the plan cannot be written: {e}"),
            };
            let input = Readers { data, at: data };
            let written = Readers { data: output.as_slice(), at: output.as_slice() };
            match prove(&file, &plan, &loaders, input, written, "output").expect("memory reads do not fail") {
                Ok(_) => {}
                Err(why) => panic!("{strategy} at {page}: the proof rejects the output: {why}"),
            }
        }
    }
});
