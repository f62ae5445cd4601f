//! The archive readers (zip and the APK family, tar in every compression,
//! ar/.deb, container images, nested archives, FatELF) on arbitrary bytes,
//! with every ELF member parsed as `check` parses it: an error or members,
//! never a panic.
//!
//! `cargo +nightly fuzz run archive` from the repository root.
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;
use pagefit_archive::{detect, scan, Hashing};
use pagefit_core::elf::{parse, ParseOptions};

fuzz_target!(|data: &[u8]| {
    let Some(kind) = detect(data) else { return };
    let mut file = tempfile::NamedTempFile::new().expect("a temporary file");
    file.write_all(data).expect("write the input");
    let _ = scan(file.path(), kind, Hashing::Off, &mut |member| {
        let _ = parse(&member.data, ParseOptions { sections: true, runtime: true, ..ParseOptions::default() });
    });
});
