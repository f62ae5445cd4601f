use super::*;

fn load(index: usize, prot: Prot, offset: u64, vaddr: u64, filesz: u64, memsz: u64, align: u64) -> ProgramHeader {
    ProgramHeader { index, p_type: 1, prot, offset, vaddr, filesz, memsz, align }
}

/// What a byte of the loaded image holds under `plan`: a file offset, zero,
/// or nothing (unmapped or reserved).
#[derive(Debug, PartialEq, Eq)]
enum Byte {
    File(u64),
    Zero,
    Inaccessible,
}

fn byte_at(plan: &RobustPlan, address: u64) -> Byte {
    let Some(mapping) = plan.mapping_at(address) else { return Byte::Inaccessible };
    if mapping.zero.iter().any(|z| z.start <= address && address < z.end) {
        return Byte::Zero;
    }
    match &mapping.source {
        MappingSource::File { offset } => Byte::File(offset + (address - mapping.range.start)),
        MappingSource::Composed { copies } => copies
            .iter()
            .find(|c| c.destination.start <= address && address < c.destination.end)
            .map_or(Byte::Zero, |c| Byte::File(c.file_offset + (address - c.destination.start))),
        MappingSource::Anonymous => Byte::Zero,
        MappingSource::Reserved => Byte::Inaccessible,
    }
}

/// Every byte of every segment is what the ELF file says, with at least the
/// segment's own protection.
fn assert_image_is_faithful(plan: &RobustPlan, loads: &[ProgramHeader]) {
    for segment in loads {
        for address in (segment.vaddr..segment.mem_end()).step_by(0x40).chain([segment.mem_end() - 1]) {
            let expected = if address < segment.file_end() { Byte::File(segment.offset + (address - segment.vaddr)) } else { Byte::Zero };
            assert_eq!(byte_at(plan, address), expected, "PT_LOAD[{}] byte at {address:#x}", segment.index);
            let prot = plan.mapping_at(address).unwrap().prot;
            assert!(prot.contains(segment.prot), "PT_LOAD[{}] at {address:#x}: {prot:?} lacks {:?}", segment.index, segment.prot);
        }
    }
    for mapping in &plan.mappings {
        assert!(plan.page_size.divides(mapping.range.start) && plan.page_size.divides(mapping.range.end), "{mapping:?}");
        if let MappingSource::File { offset } = mapping.source {
            assert!(plan.page_size.divides(offset), "file mapping at offset {offset:#x}");
        }
    }
}

/// Seed 001, the layout of the Claude Code binary: the RX segment ends at
/// 0x60ec1a0 and the RW segment starts at 0x60ed1a0 (GNU ld's usual one page
/// further in memory than in the file), p_align 0x4000, on a 16K host. LATX's
/// old loader widened RW down to 0x60ec000 and zeroed .plt.
fn claude_code() -> Vec<ProgramHeader> {
    vec![
        load(2, Prot::R, 0, 0x400000, 0x5a0, 0x5a0, 0x4000),
        load(3, Prot::RX, 0x1000, 0x401000, 0x5ceb1a0, 0x5ceb1a0, 0x4000),
        load(4, Prot::RW, 0x5cec1a0, 0x60ed1a0, 0x2e0e8, 0x5b5c8, 0x4000),
    ]
}

#[test]
fn claude_code_on_a_16k_host_keeps_plt_and_composes_only_the_shared_page() {
    let loads = claude_code();
    let plan = plan_robust(&loads, PageSize::K16, PageSize::K4, GapPolicy::Extend).unwrap();
    assert_image_is_faithful(&plan, &loads);
    // .plt at 0x60ec080 and .iplt at 0x60ec120 hold the file's bytes, not zeros.
    assert_eq!(byte_at(&plan, 0x60ec080), Byte::File(0x5cec080));
    assert_eq!(byte_at(&plan, 0x60ec120), Byte::File(0x5cec120));
    let shared = &plan.composed[0];
    assert_eq!(shared.page, AddrRange::new(0x60ec000, 0x60f0000));
    assert_eq!(shared.contributors, [3, 4]);
    assert_eq!(shared.prot, Prot::RW.union(Prot::X));
    assert_eq!(shared.added, Prot::RW.union(Prot::X).without(Prot::R), "code gains write, data gains execute");
    // The RX segment stays file-backed up to the shared page; RW is not
    // congruent mod 16K, so all of its file pages are copies, bss is anonymous.
    let text = plan.mapping_at(0x401000).unwrap();
    assert_eq!(text.source, MappingSource::File { offset: 0 });
    assert_eq!(text.range.end, 0x60ec000);
    assert!(plan.composed.iter().all(|c| c.page.start >= 0x60ec000));
    assert!(plan.composed.iter().skip(1).all(|c| c.contributors == [4] && c.prot == Prot::RW));
}

#[test]
fn claude_code_as_the_16k_kernel_dies_at_exec() {
    let error = plan_as_kernel(&claude_code(), PageSize::K16).unwrap_err();
    let PlanError::Rejected(rejection) = error else { panic!("{error:?}") };
    assert!(rejection.loader_message.starts_with("killed by SIGSEGV at exec: PT_LOAD[4]"), "{}", rejection.loader_message);
}

/// LATX case 1: widening a segment down to the host page would overlap
/// another PT_LOAD, so that page falls back to guest-page granularity: here,
/// a composed page with both segments' bytes.
#[test]
fn latx_overlap_falls_back_to_the_guest_page() {
    let loads = vec![load(0, Prot::RX, 0, 0x10000, 0x2100, 0x2100, 0x4000), load(1, Prot::RW, 0x2100, 0x13100, 0x200, 0x400, 0x4000)];
    let plan = plan_robust(&loads, PageSize::K16, PageSize::K4, GapPolicy::Extend).unwrap();
    assert_image_is_faithful(&plan, &loads);
    assert_eq!(plan.composed.len(), 1);
    assert_eq!(plan.composed[0].contributors, [0, 1]);
    // At the guest page the RX segment owns 0x10000..0x13000, and RW 0x13000..0x14000.
    assert_eq!(byte_at(&plan, 0x12fff), Byte::File(0x2fff));
    assert_eq!(byte_at(&plan, 0x13000), Byte::File(0x2000));
}

/// LATX case 2: a segment whose p_align is a multiple of the host page and
/// whose host pages touch no other segment keeps host-page granularity:
/// mapped straight from the file.
#[test]
fn latx_aligned_non_overlapping_segment_keeps_the_host_page() {
    let loads = vec![load(0, Prot::RX, 0, 0x10000, 0x2100, 0x2100, 0x4000), load(1, Prot::RW, 0x4000, 0x14000, 0x200, 0x3000, 0x4000)];
    let plan = plan_robust(&loads, PageSize::K16, PageSize::K4, GapPolicy::Extend).unwrap();
    assert_image_is_faithful(&plan, &loads);
    assert!(plan.composed.is_empty());
    assert!(plan.widened.is_empty());
    assert_eq!(plan.mappings.len(), 2);
    assert_eq!(plan.mappings[0].source, MappingSource::File { offset: 0 });
    assert_eq!(plan.mappings[1].source, MappingSource::File { offset: 0x4000 });
    assert_eq!(plan.mappings[1].zero, [AddrRange::new(0x14200, 0x18000)]);
}

/// LATX case 3: a small p_align whose segment is not congruent mod the host
/// page falls back too: its pages are copied, never mapped from the wrong offset.
#[test]
fn latx_small_p_align_falls_back_to_copies() {
    let loads = vec![load(0, Prot::RX, 0, 0x10000, 0x2100, 0x2100, 0x1000), load(1, Prot::RW, 0x5100, 0x18100, 0x4100, 0x4100, 0x1000)];
    let plan = plan_robust(&loads, PageSize::K16, PageSize::K4, GapPolicy::None).unwrap();
    assert_image_is_faithful(&plan, &loads);
    assert!(plan.composed.iter().all(|c| c.contributors == [1] && c.added == Prot::NONE));
    assert_eq!(plan.composed.len(), 2);
    assert!(matches!(plan.mapping_at(0x18000).unwrap().source, MappingSource::Composed { .. }));
}

#[test]
fn congruent_segments_sharing_a_page_stay_file_backed_with_the_union_reported() {
    // libc's layout: R then RX, vaddr == offset, in one 16K page.
    let loads = vec![load(0, Prot::R, 0, 0, 0x25388, 0x25388, 0x1000), load(1, Prot::RX, 0x26000, 0x26000, 0x1000, 0x1000, 0x1000)];
    let plan = plan_robust(&loads, PageSize::K16, PageSize::K4, GapPolicy::Extend).unwrap();
    assert_image_is_faithful(&plan, &loads);
    assert!(plan.composed.is_empty());
    assert_eq!(plan.widened.len(), 1);
    assert_eq!(plan.widened[0].page, AddrRange::new(0x24000, 0x28000));
    assert_eq!(plan.widened[0].added, Prot::X);
}

#[test]
fn gap_policies() {
    // 64K-linked layout on a 4K page: gaps between the file pages of each segment.
    let loads = vec![load(0, Prot::R, 0, 0, 0x1200, 0x1200, 0x10000), load(1, Prot::RX, 0x10000, 0x10000, 0x800, 0x800, 0x10000)];
    let extend = plan_robust(&loads, PageSize::K4, PageSize::K4, GapPolicy::Extend).unwrap();
    assert_image_is_faithful(&extend, &loads);
    // The R mapping continues over the gap for as far as the file goes.
    assert_eq!(extend.mappings[0].range, AddrRange::new(0, 0x10000));
    assert_eq!(extend.mappings.len(), 2);
    assert!(extend.unmapped.is_empty());
    let unmap = plan_robust(&loads, PageSize::K4, PageSize::K4, GapPolicy::Unmap).unwrap();
    assert_eq!(unmap.unmapped, [AddrRange::new(0x2000, 0x10000)]);
    let none = plan_robust(&loads, PageSize::K4, PageSize::K4, GapPolicy::None).unwrap();
    assert_eq!(none.mapping_at(0x5000).unwrap().source, MappingSource::Reserved);
    assert_eq!(none.mapping_at(0x5000).unwrap().prot, Prot::NONE);
    assert_eq!(none.base_alignment, 0x10000);
}

#[test]
fn extend_stops_at_the_end_of_the_file() {
    // The last file page ends at 0x2000; the gap beyond it stays reserved.
    let loads = vec![load(0, Prot::RX, 0, 0, 0x1200, 0x1200, 0x1000), load(1, Prot::RW, 0x1800, 0x20800, 0x100, 0x100, 0x1000)];
    let plan = plan_robust(&loads, PageSize::K4, PageSize::K4, GapPolicy::Extend).unwrap();
    assert_eq!(plan.mappings[0].range, AddrRange::new(0, 0x2000));
    assert_eq!(plan.mapping_at(0x2000).unwrap().source, MappingSource::Reserved);
}

/// A FatELF record: the image at `base` in a bigger file. At a base that is a
/// multiple of P the plan is the standalone plan moved by `base`; at any other
/// base (1K-aligned records) every page holding file bytes is composed, and the
/// image is still the one the record's own headers describe.
#[test]
fn an_embedded_image_is_planned_on_its_own_offsets_and_read_from_base_on() {
    let loads = claude_code();
    let moved =
        |base: u64| -> Vec<ProgramHeader> { loads.iter().map(|l| ProgramHeader { offset: l.offset + base, ..l.clone() }).collect() };
    let alone = plan_robust(&loads, PageSize::K16, PageSize::K4, GapPolicy::Extend).unwrap();
    let aligned = plan_robust_embedded(&loads, 0x40000, PageSize::K16, PageSize::K4, GapPolicy::Extend).unwrap();
    assert_image_is_faithful(&aligned, &moved(0x40000));
    assert_eq!((aligned.mappings.len(), aligned.composed.len()), (alone.mappings.len(), alone.composed.len()));
    assert_eq!(aligned.mappings[0].source, MappingSource::File { offset: 0x40000 });

    let unaligned = plan_robust_embedded(&loads, 0x10400, PageSize::K16, PageSize::K4, GapPolicy::Extend).unwrap();
    assert_image_is_faithful(&unaligned, &moved(0x10400));
    assert!(unaligned.mappings.iter().all(|m| !matches!(m.source, MappingSource::File { .. })));
    assert!(!unaligned.composed.is_empty());
    // The shifted headers alone are not congruent even at 4K: the kernel model refuses them.
    assert!(matches!(plan_robust(&moved(0x10400), PageSize::K16, PageSize::K4, GapPolicy::Extend), Err(PlanError::Rejected(_))));
}

#[test]
fn as_kernel_lets_the_later_segment_replace_a_shared_page() {
    // Congruent mod 16K, sharing the page 0x4000..0x8000: the kernel maps RW over it.
    let loads = vec![load(0, Prot::RX, 0, 0, 0x4100, 0x4100, 0x1000), load(1, Prot::RW, 0x5200, 0x5200, 0x100, 0x200, 0x1000)];
    let plan = plan_as_kernel(&loads, PageSize::K16).unwrap();
    let shared = plan.mapping_at(0x4000).unwrap();
    assert_eq!(shared.prot, Prot::RW);
    assert_eq!(shared.source, MappingSource::File { offset: 0x4000 });
    assert!(plan.composed.is_empty());
    // The robust plan keeps execute there instead.
    let robust = plan_robust(&loads, PageSize::K16, PageSize::K4, GapPolicy::Extend).unwrap();
    assert_image_is_faithful(&robust, &loads);
    assert_eq!(robust.mapping_at(0x4000).unwrap().prot, Prot::RW.union(Prot::X));
}

#[test]
fn at_the_guest_page_the_plan_is_the_kernels() {
    let loads = claude_code();
    let robust = plan_robust(&loads, PageSize::K4, PageSize::K4, GapPolicy::Unmap).unwrap();
    let kernel = plan_as_kernel(&loads, PageSize::K4).unwrap();
    assert_eq!(robust.mappings, kernel.mappings);
    assert_eq!(robust.unmapped, kernel.unmapped);
    assert!(robust.composed.is_empty());
}

#[test]
fn impossible_layouts_are_errors_not_panics() {
    assert!(matches!(plan_robust(&[], PageSize::K16, PageSize::K4, GapPolicy::Extend), Err(PlanError::BadLayout(_))));
    let wraps = load(0, Prot::R, 0, u64::MAX - 10, 0x100, 0x100, 0x1000);
    assert!(plan_robust(std::slice::from_ref(&wraps), PageSize::K16, PageSize::K4, GapPolicy::Extend).is_err());
    assert!(plan_as_kernel(&[wraps], PageSize::K16).is_err());
}

#[test]
fn relro_starting_on_a_page_with_code_is_trimmed_to_the_next_page() {
    // c-static-lld-4k (x86_64): RELRO starts at 0x2c34c0, in the 16K page 0x2c0000 that ends the RX segment.
    let loads = vec![
        load(0, Prot::R, 0, 0x200000, 0x2ccf4, 0x2ccf4, 0x1000),
        load(1, Prot::RX, 0x2cd00, 0x22dd00, 0x947c0, 0x947c0, 0x1000),
        load(2, Prot::RW, 0xc14c0, 0x2c34c0, 0x3970, 0x3970, 0x1000),
        load(3, Prot::RW, 0xc4e40, 0x2c7e40, 0x32b0, 0x9af8, 0x1000),
    ];
    let relro = AddrRange::new(0x2c34c0, 0x2c7000);
    assert_eq!(relro_for_robust_load(&loads, relro, PageSize::K16), Some(AddrRange::new(0x2c4000, 0x2c7000)));
    // At 4K the page below RELRO holds only the RX segment's last bytes of... nothing: no change needed.
    assert_eq!(relro_for_robust_load(&loads, AddrRange::new(0x2c3000, 0x2c7000), PageSize::K4), None);
    // Only read-only bytes below: protecting them too is harmless.
    let read_only_below = vec![load(0, Prot::R, 0, 0, 0x3000, 0x3000, 0x1000), load(1, Prot::RW, 0x3000, 0x3000, 0x2000, 0x2000, 0x1000)];
    assert_eq!(relro_for_robust_load(&read_only_below, AddrRange::new(0x3000, 0x4000), PageSize::K16), None);
}

#[test]
fn program_headers_are_rewritten_in_place() {
    use object::elf::{ProgramHeader64, PT_GNU_RELRO, PT_LOAD, PT_PHDR};
    use object::LittleEndian as LE;
    let mut bytes = vec![0u8; 3 * 56];
    let headers: &mut [ProgramHeader64<LE>] = object::pod::slice_from_all_bytes_mut(&mut bytes).unwrap();
    for (header, (p_type, vaddr, size)) in
        headers.iter_mut().zip([(PT_PHDR, 0x40, 0xa8), (PT_LOAD, 0, 0x1000), (PT_GNU_RELRO, 0x2c34c0, 0x3b40)])
    {
        header.p_type.set(LE, p_type);
        header.p_vaddr.set(LE, vaddr);
        header.p_offset.set(LE, vaddr);
        header.p_filesz.set(LE, size);
        header.p_memsz.set(LE, size);
    }
    let original = bytes.clone();
    rewrite_program_headers(&mut bytes, ElfClass::Elf64, Some(AddrRange::new(0x2c4000, 0x2c7000)), 0x7fff_0000).unwrap();
    let rewritten: &[ProgramHeader64<LE>] = object::pod::slice_from_all_bytes(&bytes).unwrap();
    assert_eq!(rewritten[0].p_vaddr.get(LE), 0x7fff_0000);
    assert_eq!(bytes[56..112], original[56..112]);
    assert_eq!((rewritten[2].p_vaddr.get(LE), rewritten[2].p_offset.get(LE), rewritten[2].p_memsz.get(LE)), (0x2c4000, 0x2c4000, 0x3000));
    assert!(rewrite_program_headers(&mut bytes[..57], ElfClass::Elf64, None, 0).is_err());
}

#[test]
fn a_32_bit_header_table_is_rewritten_in_its_own_layout() {
    use object::elf::{ProgramHeader32, PT_GNU_RELRO, PT_LOAD, PT_PHDR};
    use object::LittleEndian as LE;
    let mut bytes = vec![0u8; 3 * 32];
    let headers: &mut [ProgramHeader32<LE>] = object::pod::slice_from_all_bytes_mut(&mut bytes).unwrap();
    for (header, (p_type, vaddr, size)) in
        headers.iter_mut().zip([(PT_PHDR, 0x34, 0x60), (PT_LOAD, 0, 0x1000), (PT_GNU_RELRO, 0x1fef4, 0x10c)])
    {
        header.p_type.set(LE, p_type);
        header.p_vaddr.set(LE, vaddr);
        header.p_offset.set(LE, vaddr);
        header.p_filesz.set(LE, size);
        header.p_memsz.set(LE, size);
        header.p_align.set(LE, 0x1000);
    }
    let original = bytes.clone();
    // A table copied below the load base: its p_vaddr wraps modulo 2^32.
    let below_base = 0x7000_0000u64.wrapping_sub(0x7200_0000);
    rewrite_program_headers(&mut bytes, ElfClass::Elf32, Some(AddrRange::new(0x20000, 0x20000)), below_base).unwrap();
    let rewritten: &[ProgramHeader32<LE>] = object::pod::slice_from_all_bytes(&bytes).unwrap();
    assert_eq!(rewritten[0].p_vaddr.get(LE), 0xfe00_0000);
    assert_eq!(bytes[32..64], original[32..64]);
    let relro = &rewritten[2];
    assert_eq!((relro.p_vaddr.get(LE), relro.p_offset.get(LE), relro.p_filesz.get(LE), relro.p_memsz.get(LE)), (0x20000, 0x20000, 0, 0));
    raise_load_alignment(&mut bytes, ElfClass::Elf32, 0x8000).unwrap();
    let aligns: Vec<u32> =
        object::pod::slice_from_all_bytes::<ProgramHeader32<LE>>(&bytes).unwrap().iter().map(|h| h.p_align.get(LE)).collect();
    assert_eq!(aligns, [0x1000, 0x8000, 0x1000]);
    // 56-byte entries are not 32-byte ones.
    assert!(rewrite_program_headers(&mut bytes[..56], ElfClass::Elf32, None, 0).is_err());
}

#[test]
fn emulation_raises_only_load_alignment_past_the_page_size() {
    use object::elf::{ProgramHeader64, PT_GNU_STACK, PT_LOAD};
    use object::LittleEndian as LE;
    let mut bytes = vec![0u8; 3 * 56];
    let headers: &mut [ProgramHeader64<LE>] = object::pod::slice_from_all_bytes_mut(&mut bytes).unwrap();
    for (header, (p_type, align)) in headers.iter_mut().zip([(PT_LOAD, 0x10000), (PT_LOAD, 0x40000), (PT_GNU_STACK, 0x10)]) {
        header.p_type.set(LE, p_type);
        header.p_align.set(LE, align);
    }
    let alignment = emulation_alignment(PageSize::K64);
    assert!(alignment > PageSize::K64.bytes() && alignment % PageSize::K64.bytes() == 0);
    raise_load_alignment(&mut bytes, ElfClass::Elf64, alignment).unwrap();
    let raised: Vec<u64> =
        object::pod::slice_from_all_bytes::<ProgramHeader64<LE>>(&bytes).unwrap().iter().map(|h| h.p_align.get(LE)).collect();
    assert_eq!(raised, [0x20000, 0x40000, 0x10]);
    assert!(raise_load_alignment(&mut bytes[..57], ElfClass::Elf64, alignment).is_err());
}

#[test]
fn huge_pages_go_where_text_is_congruent_mod_2m_and_whole_chunks_fit() {
    // gdb: vaddr == offset, text 0xd3000..0x6b57a9: two whole 2 MiB chunks.
    let gdb = vec![load(0, Prot::R, 0, 0, 0xd2000, 0xd2000, 0x1000), load(1, Prot::RX, 0xd3000, 0xd3000, 0x5e27a9, 0x5e27a9, 0x1000)];
    let plan = plan_robust(&gdb, PageSize::K4, PageSize::K4, GapPolicy::Extend).unwrap();
    let chunk = HugePageText { range: AddrRange::new(0x200000, 0x600000), file_offset: 0x200000, prot: Prot::RX };
    assert_eq!(huge_page_text(&plan), [chunk]);
    // python3: text 0x41f000..0x6d1289, congruent but no whole chunk.
    let python =
        vec![load(0, Prot::R, 0, 0x400000, 0x1e3e8, 0x1e3e8, 0x1000), load(1, Prot::RX, 0x1f000, 0x41f000, 0x2b2289, 0x2b2289, 0x1000)];
    assert!(huge_page_text(&plan_robust(&python, PageSize::K4, PageSize::K4, GapPolicy::Extend).unwrap()).is_empty());
    // cargo: text one page further in memory than in the file: never congruent mod 2 MiB.
    let cargo = vec![load(0, Prot::RX, 0x6fcc40, 0x6fdc40, 0x171a6b0, 0x171a6b0, 0x1000)];
    assert!(huge_page_text(&plan_robust(&cargo, PageSize::K4, PageSize::K4, GapPolicy::Extend).unwrap()).is_empty());
}
