//! No panics on truncated or mangled ELF files, nor on arbitrary program headers.

use pagefit_core::elf::{parse, ParseOptions, ProgramHeader, Prot};
use pagefit_core::page::PageSize;
use pagefit_core::predict::check::{check_file, CheckOptions};
use pagefit_core::predict::input::LoadInput;
use pagefit_core::predict::model::LoaderModel;
use pagefit_core::predict::plan::plan;
use proptest::prelude::*;

/// A real ELF file: this test binary's own first 256 KiB (headers, tables, code).
fn real_elf() -> Vec<u8> {
    let mut bytes = std::fs::read("/proc/self/exe").expect("read /proc/self/exe");
    bytes.truncate(256 << 10);
    bytes
}

fn check_everything(bytes: &[u8]) {
    if let Ok(file) = parse(bytes, ParseOptions::everything()) {
        let options = CheckOptions { loaders: Some(LoaderModel::ALL.to_vec()), ..CheckOptions::default() };
        let _ = check_file(&file, "mangled", "mangled", &options);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn mangled_headers_never_panic(flips in proptest::collection::vec((0usize..4096, any::<u8>()), 1..16), cut in 0usize..(256 << 10)) {
        let mut bytes = real_elf();
        for (at, value) in flips {
            if at < bytes.len() {
                bytes[at] = value;
            }
        }
        check_everything(&bytes[..cut.min(bytes.len())]);
        check_everything(&bytes);
    }

    #[test]
    fn arbitrary_program_headers_never_panic(
        segments in proptest::collection::vec((0u8..8, 0u64..1 << 40, 0u64..1 << 40, 0u64..1 << 24, 0u64..1 << 24, 0u32..24), 0..6),
        relro in proptest::option::of((0u64..1 << 40, 0u64..1 << 24)),
        page_shift in 10u32..22,
    ) {
        let loads: Vec<ProgramHeader> = segments
            .iter()
            .enumerate()
            .map(|(index, &(flags, offset, vaddr, filesz, extra, align_shift))| ProgramHeader {
                index,
                p_type: 1,
                prot: Prot::from_p_flags(u32::from(flags)),
                offset,
                vaddr,
                filesz,
                memsz: filesz + extra,
                align: 1 << align_shift,
            })
            .collect();
        let relro = relro.map(|(start, len)| pagefit_core::predict::memory::AddrRange::new(start, start + len));
        let input = LoadInput { name: "synthetic", loads, relro, sections: &[], symbols: &[], entry: Some(0x1000) };
        let page = PageSize::new(1 << page_shift).unwrap();
        for loader in LoaderModel::ALL {
            let _ = plan(&input, page, loader);
        }
    }
}

#[test]
fn every_truncation_of_the_headers_is_an_error_not_a_panic() {
    let bytes = real_elf();
    for len in 0..2048 {
        check_everything(&bytes[..len]);
    }
}
