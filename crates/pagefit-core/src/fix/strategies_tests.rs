//! The rewrite planner on synthetic stripped ELF64 files built with
//! `object`'s structs: each plan is applied in memory, re-parsed and proven
//! with the same checks `pagefit fix` runs on real files.

use object::elf::{FileHeader64, Ident, ProgramHeader64};
use object::{Endianness, U16, U32, U64};

use super::*;
use crate::elf::{parse, ParseOptions};
use crate::fix::headers::RawSectionHeader;
use crate::fix::layout::{overlay, trim_relro, PageGroup};
use crate::fix::plan::{OutputPiece, PieceSource};
use crate::fix::proof::{compare_contents, image_checks, rebase_expectations};
use crate::fix::write::render;
use crate::predict::memory::AddrRange;

const E: Endianness = Endianness::Little;

struct Load {
    flags: u32,
    vaddr: u64,
    offset: u64,
    filesz: u64,
    memsz: u64,
}

/// An ET_EXEC or ET_DYN x86_64 file with these PT_LOADs (and PT_GNU_RELRO),
/// every file byte a position-dependent pattern so moved bytes are noticed.
fn build(e_type: object::elf::FileType, loads: &[Load], relro: Option<(u64, u64)>) -> Vec<u8> {
    let phnum = loads.len() + usize::from(relro.is_some());
    let len = loads.iter().map(|l| l.offset + l.filesz).max().unwrap() as usize;
    let mut data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let header = FileHeader64::<Endianness> {
        e_ident: Ident {
            magic: object::elf::ELFMAG,
            class: object::elf::ELFCLASS64,
            data: object::elf::ELFDATA2LSB,
            version: object::elf::EV_CURRENT,
            os_abi: object::elf::ELFOSABI_NONE,
            abi_version: 0,
            padding: [0; 7],
        },
        e_type: U16::new(E, e_type),
        e_machine: U16::new(E, object::elf::EM_X86_64),
        e_version: U32::new(E, 1),
        e_entry: U64::new(E, loads.iter().find(|l| l.flags & 1 != 0).map_or(0, |l| l.vaddr)),
        e_phoff: U64::new(E, 64),
        e_shoff: U64::new(E, 0),
        e_flags: U32::new(E, object::elf::FileFlags(0)),
        e_ehsize: U16::new(E, 64),
        e_phentsize: U16::new(E, 56),
        e_phnum: U16::new(E, phnum as u16),
        e_shentsize: U16::new(E, 64),
        e_shnum: U16::new(E, 0),
        e_shstrndx: U16::new(E, object::elf::SymbolSection(0)),
    };
    data[..64].copy_from_slice(object::bytes_of(&header));
    let mut table = Vec::new();
    let phdr =
        |p_type: object::elf::ProgramType, flags: u32, vaddr: u64, offset: u64, filesz: u64, memsz: u64| ProgramHeader64::<Endianness> {
            p_type: U32::new(E, p_type),
            p_flags: U32::new(E, object::elf::ProgramFlags(flags)),
            p_offset: U64::new(E, offset),
            p_vaddr: U64::new(E, vaddr),
            p_paddr: U64::new(E, vaddr),
            p_filesz: U64::new(E, filesz),
            p_memsz: U64::new(E, memsz),
            p_align: U64::new(E, 0x1000),
        };
    for l in loads {
        table.extend_from_slice(object::bytes_of(&phdr(object::elf::PT_LOAD, l.flags, l.vaddr, l.offset, l.filesz, l.memsz)));
    }
    if let Some((start, end)) = relro {
        let holder = loads.iter().find(|l| l.vaddr <= start && start < l.vaddr + l.memsz).unwrap();
        let offset = holder.offset + (start - holder.vaddr);
        table.extend_from_slice(object::bytes_of(&phdr(object::elf::PT_GNU_RELRO, 4, start, offset, end - start, end - start)));
    }
    data[64..64 + table.len()].copy_from_slice(&table);
    data
}

/// Plans, applies and proves a rewrite; returns the plan and the output.
fn fix(data: &[u8], page: PageSize, strategy: Strategy) -> Result<(RewritePlan, Vec<u8>), Vec<Refusal>> {
    let file = parse(data, ParseOptions::everything()).unwrap();
    let plan = plan_rewrite(data, &file, page, strategy)?;
    let out = render(&plan, data, u64::MAX).unwrap();
    let written = parse(out.as_slice(), ParseOptions::everything()).unwrap();
    let changes = if plan.delta == 0 { Vec::new() } else { rebase_expectations(data, plan.delta).unwrap() };
    let checks = image_checks(&file, &written, page, &target_loaders(&file), &plan.rewritten, plan.delta, &changes).unwrap();
    let compared = compare_contents(&checks, data, out.as_slice(), &changes).unwrap().unwrap();
    assert!(compared.bytes >= file.loads().map(|l| l.memsz).sum::<u64>() - 0x200, "every loaded byte is compared: {compared:?}");
    Ok((plan, out))
}

/// Three segments on three different 16K pages, with file offsets that are
/// congruent only modulo 4K: the RX and RW segments must move.
fn separated_pages() -> Vec<u8> {
    build(
        object::elf::ET_EXEC,
        &[
            Load { flags: 4, vaddr: 0x400000, offset: 0, filesz: 0x800, memsz: 0x800 },
            Load { flags: 5, vaddr: 0x406000, offset: 0x1000, filesz: 0x2345, memsz: 0x2345 },
            Load { flags: 6, vaddr: 0x410400, offset: 0x3400, filesz: 0x300, memsz: 0x5000 },
        ],
        None,
    )
}

fn file_loads_congruent(data: &[u8]) -> bool {
    parse(data, ParseOptions::everything()).unwrap().loads().all(|l| l.is_congruent(0x4000))
}

#[test]
fn relayout_makes_offsets_congruent_without_changing_permissions() {
    let data = separated_pages();
    let (plan, out) = fix(&data, PageSize::K16, Strategy::Auto).unwrap();
    assert_eq!(plan.strategy, Strategy::Relayout);
    assert!(plan.costs.is_empty());
    let written = parse(out.as_slice(), ParseOptions::everything()).unwrap();
    let loads: Vec<_> = written.loads().collect();
    assert_eq!(loads.len(), 3);
    assert!(!file_loads_congruent(&data), "the input must need the fix");
    for load in &loads {
        assert!(load.is_congruent(0x4000), "{load:?}");
        assert_eq!(load.align, 0x4000);
    }
    assert_eq!(loads.iter().map(|l| l.prot).collect::<Vec<_>>(), [Prot::R, Prot::RX, Prot::RW]);
    // The header stays at offset 0 and the program headers where the first segment maps them.
    assert_eq!(written.program_header_offset, 64);
    assert_eq!(&out[..4], b"\x7fELF");
}

#[test]
fn relayout_refuses_segments_with_different_flags_on_one_page_and_merge_takes_over() {
    // GNU ld's usual 4K layout: R, RX, R, RW within 16K pages.
    let data = build(
        object::elf::ET_EXEC,
        &[
            Load { flags: 4, vaddr: 0x400000, offset: 0, filesz: 0x6d0, memsz: 0x6d0 },
            Load { flags: 5, vaddr: 0x401000, offset: 0x1000, filesz: 0x9a4, memsz: 0x9a4 },
            Load { flags: 4, vaddr: 0x402000, offset: 0x2000, filesz: 0x3b4, memsz: 0x3b4 },
            Load { flags: 6, vaddr: 0x403df8, offset: 0x2df8, filesz: 0x260, memsz: 0x1280 },
        ],
        Some((0x403df8, 0x404000)),
    );
    let refused = fix(&data, PageSize::K16, Strategy::Relayout).unwrap_err();
    assert!(refused[0].reason.contains("share 16K pages"), "{refused:?}");
    let (plan, out) = fix(&data, PageSize::K16, Strategy::Auto).unwrap();
    assert_eq!(plan.strategy, Strategy::Merge);
    assert!(plan.writable_executable);
    let messages: Vec<&str> = plan.costs.iter().map(|c| c.message.as_str()).collect();
    assert!(
        messages.contains(&"R segment 0x400000–0x4006d0 merged into RWX: 1.7 KiB of read-only data becomes writable and executable"),
        "{messages:#?}"
    );
    assert!(messages.iter().any(|m| m.starts_with("PT_GNU_RELRO 0x403df8–0x404000 trimmed to nothing")), "{messages:#?}");
    let written = parse(out.as_slice(), ParseOptions::everything()).unwrap();
    assert_eq!(written.loads().count(), 1);
    // The merged segment's bss between RW file bytes and the end is unchanged;
    // the holes between the old segments are file bytes now.
    let merged = written.loads().next().unwrap();
    assert_eq!((merged.vaddr, merged.filesz, merged.memsz), (0x400000, 0x4058, 0x5078));
    // The dropped PT_LOAD slots become PT_NULL, so the table keeps its size.
    assert_eq!(written.program_headers.iter().filter(|p| p.p_type == object::elf::PT_NULL.0).count(), 3);
}

#[test]
fn merge_flags_writable_executable_and_lists_earlier_refusals() {
    let data = build(
        object::elf::ET_DYN,
        &[
            Load { flags: 5, vaddr: 0, offset: 0, filesz: 0x1234, memsz: 0x1234 },
            Load { flags: 6, vaddr: 0x2234, offset: 0x1234, filesz: 0x100, memsz: 0x100 },
        ],
        None,
    );
    let file = parse(data.as_slice(), ParseOptions::everything()).unwrap();
    let plan = plan_rewrite(data.as_slice(), &file, PageSize::K16, Strategy::Auto).unwrap();
    assert!(plan.writable_executable);
    let refusals: Vec<_> = plan.refused.iter().map(|r| r.strategy).collect();
    assert_eq!(refusals, [Strategy::Relayout, Strategy::Rebase]);
    assert!(plan.refused[1].reason.contains("without section headers"), "{:?}", plan.refused);
}

#[test]
fn the_image_proof_catches_a_changed_byte() {
    let data = separated_pages();
    let (plan, mut out) = fix(&data, PageSize::K16, Strategy::Relayout).unwrap();
    let file = parse(data.as_slice(), ParseOptions::everything()).unwrap();
    let written = parse(out.as_slice(), ParseOptions::everything()).unwrap();
    let rx = written.loads().nth(1).unwrap().clone();
    out[(rx.offset + 0x10) as usize] ^= 0xff;
    let checks = image_checks(&file, &written, PageSize::K16, &target_loaders(&file), &plan.rewritten, 0, &[]).unwrap();
    let verdict = compare_contents(&checks, data.as_slice(), out.as_slice(), &[]).unwrap();
    assert_eq!(
        verdict.unwrap_err(),
        format!(
            "the byte at {:#x} is {:#04x} in the input's 4K image but {:#04x} in the output's",
            rx.vaddr + 0x10,
            out[(rx.offset + 0x10) as usize] ^ 0xff,
            out[(rx.offset + 0x10) as usize]
        )
    );
}

#[test]
fn the_image_proof_catches_an_unmoved_segment() {
    // Claiming the input itself is the fixed file: at 16K the kernel refuses it.
    let data = separated_pages();
    let file = parse(data.as_slice(), ParseOptions::everything()).unwrap();
    let error = image_checks(&file, &file, PageSize::K16, &[LoaderModel::Kernel], &[], 0, &[]).unwrap_err();
    assert!(error.starts_with("kernel refuses the output at 16K"), "{error}");
}

#[test]
fn relro_keeps_only_whole_pages_that_nothing_else_shares() {
    let group = |vaddr, mem_end| PageGroup { loads: vec![], vaddr, file_end: mem_end, mem_end, flags: 6, shift: 0 };
    let p = PageSize::K16;
    // RELRO at the start of the RW segment, data after it on the same page: the end is rounded down.
    let groups = [group(0x10de8, 0x1a000)];
    assert_eq!(trim_relro(AddrRange::new(0x10de8, 0x15000), &groups, p), Some(AddrRange::new(0x10de8, 0x14000)));
    // Nothing after it on its last page: the end may grow to the page boundary.
    let groups = [group(0x10de8, 0x15000)];
    assert_eq!(trim_relro(AddrRange::new(0x10de8, 0x15000), &groups, p), Some(AddrRange::new(0x10de8, 0x18000)));
    // Code before it on its first page: the start is rounded up, and here nothing is left.
    let groups = [group(0x0, 0x1a000)];
    assert_eq!(trim_relro(AddrRange::new(0x10de8, 0x13000), &groups, p), None);
    // Padded past its segment into a hole: cut at the segment's last page.
    let groups = [group(0x10000, 0x10800), group(0x40000, 0x41000)];
    assert_eq!(trim_relro(AddrRange::new(0x10000, 0x30000), &groups, p), Some(AddrRange::new(0x10000, 0x14000)));
}

#[test]
fn a_header_mapped_at_an_unaligned_address_is_refused() {
    let data = build(object::elf::ET_EXEC, &[Load { flags: 5, vaddr: 0x401000, offset: 0, filesz: 0x800, memsz: 0x800 }], None);
    let refused = fix(&data, PageSize::K16, Strategy::Relayout).unwrap_err();
    assert!(refused[0].reason.contains("the header cannot move"), "{refused:?}");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

    /// Mangled headers never make the planner or the proof panic, and
    /// whatever plan comes out is either proven or caught by the proof.
    #[test]
    fn mangled_headers_never_panic(flips in proptest::collection::vec((0usize..0x200, proptest::prelude::any::<u8>()), 1..8)) {
        let mut data = build(
            object::elf::ET_DYN,
            &[
                Load { flags: 4, vaddr: 0, offset: 0, filesz: 0x6d0, memsz: 0x6d0 },
                Load { flags: 5, vaddr: 0x1000, offset: 0x1000, filesz: 0x9a4, memsz: 0x9a4 },
                Load { flags: 6, vaddr: 0x2df8, offset: 0x1df8, filesz: 0x260, memsz: 0x1280 },
            ],
            Some((0x2df8, 0x3000)),
        );
        for (at, value) in flips {
            data[at] = value;
        }
        let Ok(file) = parse(data.as_slice(), ParseOptions::everything()) else { return Ok(()) };
        for page in [PageSize::K16, PageSize::K64] {
            let Ok(plan) = plan_rewrite(data.as_slice(), &file, page, Strategy::Auto) else { continue };
            let out = render(&plan, &data, u64::MAX).unwrap();
            let Ok(written) = parse(out.as_slice(), ParseOptions::everything()) else { continue };
            let changes = if plan.delta == 0 { Vec::new() } else { rebase_expectations(data.as_slice(), plan.delta).unwrap_or_default() };
            if let Ok(checks) = image_checks(&file, &written, page, &target_loaders(&file), &plan.rewritten, plan.delta, &changes) {
                let _ = compare_contents(&checks, data.as_slice(), out.as_slice(), &changes);
            }
        }
    }
}

#[test]
fn overlapping_header_tables_split_pieces_exactly() {
    // A mangled e_shoff inside the ELF header once left a split literal with all its bytes.
    let mut pieces = vec![OutputPiece { offset: 0, len: 0x100, source: PieceSource::Copy { from: 0 } }];
    overlay(&mut pieces, 0, "ELF header", vec![1; 0x40]);
    overlay(&mut pieces, 0x25, "section headers", vec![2; 0x80]);
    let mut at = 0;
    for piece in &pieces {
        assert_eq!(piece.offset, at, "{pieces:?}");
        if let PieceSource::Bytes { bytes, .. } = &piece.source {
            assert_eq!(bytes.len() as u64, piece.len, "{pieces:?}");
        }
        at += piece.len;
    }
    assert_eq!(at, 0x100);
    assert_eq!(pieces.len(), 3);
}

/// A GNU ld 4K layout: R, RX, R, then RW starting mid-page at 0x3df0.
fn gnu_ld_4k_layout() -> Vec<u8> {
    build(
        object::elf::ET_DYN,
        &[
            Load { flags: 4, vaddr: 0, offset: 0, filesz: 0x800, memsz: 0x800 },
            Load { flags: 5, vaddr: 0x1000, offset: 0x1000, filesz: 0x9a4, memsz: 0x9a4 },
            Load { flags: 4, vaddr: 0x2000, offset: 0x2000, filesz: 0x3b4, memsz: 0x3b4 },
            Load { flags: 6, vaddr: 0x3df0, offset: 0x2df0, filesz: 0x260, memsz: 0x1280 },
        ],
        Some((0x3df0, 0x4000)),
    )
}

#[test]
fn delta_puts_the_first_writable_4k_page_on_a_p_boundary() {
    let data = gnu_ld_4k_layout();
    let headers = RawHeaders::read(data.as_slice()).unwrap();
    // The RW segment's page 0x3000 moves to 0x4000 at 16K and to 0x10000 at 64K.
    assert_eq!(choose_delta(&headers, PageSize::K16), Ok(0x1000));
    assert_eq!(choose_delta(&headers, PageSize::K64), Ok(0xd000));
    // Already on a P boundary: nothing to shift.
    assert!(choose_delta(&headers, PageSize::K4).unwrap_err().contains("already on a 4K boundary"));
    // A section asking for 64K alignment makes Δ a multiple of 64K: refused at 64K.
    let mut aligned = headers.clone();
    aligned.sections.push(RawSectionHeader {
        name: ".aligned".into(),
        sh_name: 0,
        sh_type: object::elf::SHT_PROGBITS.0,
        sh_flags: object::elf::SHF_ALLOC.0,
        sh_addr: 0x4000,
        sh_offset: 0x3000,
        sh_size: 0x10,
        sh_link: 0,
        sh_info: 0,
        sh_addralign: 0x10000,
        sh_entsize: 0,
    });
    let refused = choose_delta(&aligned, PageSize::K64).unwrap_err();
    assert!(refused.contains("0x10000-aligned start 0x0"), "{refused}");
}

#[test]
fn delta_is_refused_when_read_only_bytes_share_the_first_writable_page() {
    // RW at 0x2400 shares the 4K page 0x2000 with read-only bytes up to 0x23b4
    // (a layout no 4K loader maps faithfully either).
    let data = build(
        object::elf::ET_DYN,
        &[
            Load { flags: 5, vaddr: 0, offset: 0, filesz: 0x23b4, memsz: 0x23b4 },
            Load { flags: 6, vaddr: 0x2400, offset: 0x2400, filesz: 0x100, memsz: 0x100 },
        ],
        None,
    );
    let headers = RawHeaders::read(data.as_slice()).unwrap();
    let refused = choose_delta(&headers, PageSize::K16).unwrap_err();
    assert!(refused.contains("read-only bytes end at 0x23b4, after the 0x1000-aligned start 0x2000"), "{refused}");
}
