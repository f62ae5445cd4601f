//! The FatELF reader on arbitrary bytes: it must return an error, never
//! panic, and what it accepts must hold together (records inside the file,
//! printed targets that parse back and select their record).
//!
//! `cargo +nightly fuzz run fat_reader` from the repository root.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pagefit_core::fat::{FatFile, TargetSelector};

fuzz_target!(|data: &[u8]| {
    let Ok(fat) = FatFile::parse(data) else { return };
    for record in &fat.records {
        assert!(record.range().end <= fat.file_len);
        let selector: TargetSelector = record.target.to_string().parse().expect("printed targets parse back");
        let selected = fat.select(&selector).expect("a field selector never fails");
        assert!(selected.contains(&record));
    }
    assert!(fat.trailing().end == fat.file_len);
});
