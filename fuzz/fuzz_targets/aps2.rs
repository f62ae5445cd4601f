//! Android's packed relocations (APS2) on arbitrary bytes: decoding, in
//! either class and with or without addends, never panics and stays within
//! its relocation limit; whatever decodes re-encodes, and the encoding
//! decodes to the same relocations in the same groups.
//!
//! `cargo +nightly fuzz run aps2` from the repository root.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pagefit_core::elf::android_relocations::decode;
use pagefit_core::fix::packed_relocations::encode;

/// Small enough for fast runs, large enough for every group shape.
const MAX_RELOCATIONS: usize = 1 << 16;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, stream)) = data.split_first() else { return };
    let (wide, explicit_addend) = (selector & 1 != 0, selector & 2 != 0);
    let mut table = b"APS2".to_vec();
    table.extend_from_slice(stream);
    let Ok(decoded) = decode(&table, wide, explicit_addend, MAX_RELOCATIONS) else { return };
    let encoded = encode(&decoded, wide).unwrap_or_else(|e| panic!("a decoded table does not encode: {e}"));
    let again = decode(&encoded, wide, explicit_addend, MAX_RELOCATIONS).expect("an encoded table decodes");
    assert_eq!(again.groups, decoded.groups);
});
