//! The dependency-closure resolver on hostile inputs: the program (arbitrary
//! ELF bytes: DT_NEEDED, DT_RPATH and DT_RUNPATH strings, PT_INTERP),
//! /etc/ld.so.conf with its includes (loops included) and LD_LIBRARY_PATH,
//! as `crates/pagefit-core/tests/fuzz_input/closure.rs` reads them from the
//! input (shared with the test that replays crashes). It must finish with a
//! closure or an error, never panic, loop or exhaust memory.
//!
//! `cargo +nightly fuzz run closure` from the repository root.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/pagefit-core/tests/fuzz_input/closure.rs"]
mod closure_input;

fuzz_target!(|data: &[u8]| {
    let _ = closure_input::resolve_input(data);
});
