//! Google Play's 16 KB rules (`play_rules`): each rule, the RELRO exemption,
//! and a counter-case for each, on layouts built here.

use crate::elf::{ProgramHeader, Prot, Section};
use crate::page::PageSize;
use crate::predict::effect::{Outcome, Severity};
use crate::predict::finding::FindingKind;
use crate::predict::input::LoadInput;
use crate::predict::memory::AddrRange;
use crate::predict::model::LoaderModel;
use crate::predict::plan::{plan, LoadPlan};

const K16: u64 = 0x4000;
const DATA: u64 = 2 | 1;

fn load(index: usize, prot: Prot, vaddr: u64, memsz: u64, align: u64) -> ProgramHeader {
    ProgramHeader { index, p_type: 1, prot, offset: vaddr, vaddr, filesz: memsz, memsz, align }
}

fn section(name: &str, addr: u64, size: u64) -> Section {
    Section { name: name.into(), addr, size, offset: addr, flags: DATA, sh_type: 1 }
}

fn input<'a>(loads: Vec<ProgramHeader>, relro: (u64, u64), sections: &'a [Section]) -> LoadInput<'a> {
    LoadInput { name: "libplay.so", loads, relro: Some(AddrRange::new(relro.0, relro.1)), sections, symbols: &[], entry: None }
}

/// Play's verdict, checked to be the same at every page size: Play judges at 16 KB.
fn play(input: &LoadInput<'_>) -> LoadPlan {
    let at16k = plan(input, PageSize::K16, LoaderModel::Play);
    for page in [PageSize::K4, PageSize::K64] {
        let other = plan(input, page, LoaderModel::Play);
        assert_eq!((other.outcome, &other.message, &other.findings), (at16k.outcome, &at16k.message, &at16k.findings), "at {page}");
    }
    assert!(at16k.effects.is_empty(), "Play maps nothing: {:?}", at16k.effects);
    at16k
}

fn assert_ok(planned: &LoadPlan) {
    assert_eq!((planned.outcome, &planned.message), (Outcome::Ok, &None), "{:?}", planned.findings);
    assert!(planned.findings.is_empty(), "{:?}", planned.findings);
}

/// The one rejection `planned` has: its kind, segments and message.
fn rejection(planned: &LoadPlan) -> (FindingKind, Vec<usize>, String) {
    assert_eq!(planned.outcome, Outcome::Rejected);
    let [finding] = planned.findings.as_slice() else { panic!("one finding expected: {:?}", planned.findings) };
    assert_eq!(finding.severity, Severity::Rejected);
    assert_eq!(planned.message.as_deref(), Some(finding.message.as_str()), "the verdict names the rule");
    (finding.kind, finding.segments.clone(), finding.message.clone())
}

/// R, RX, then one RW LOAD whose first part is RELRO (lld's single-RW layout).
fn rw_after_code(align: u64, rw_end: u64) -> Vec<ProgramHeader> {
    vec![load(0, Prot::R, 0, 0x3000, align), load(1, Prot::RX, 0x4000, 0x8000, align), load(2, Prot::RW, 0x10000, rw_end - 0x10000, align)]
}

#[test]
fn a_16k_linked_library_passes_at_every_page_size() {
    let sections = [section(".data.rel.ro", 0x10000, 0x3f00), section(".got", 0x13f00, 0x100), section(".data", 0x14000, 0x800)];
    assert_ok(&play(&input(rw_after_code(K16, 0x14800), (0x10000, 0x14000), &sections)));
    // 64 KB is a multiple of 16 KB.
    assert_ok(&play(&input(rw_after_code(0x10000, 0x14800), (0x10000, 0x14000), &sections)));
}

#[test]
fn the_smallest_p_align_below_16k_is_rejected() {
    let mut loads = rw_after_code(K16, 0x14800);
    loads[2].align = 0x1000;
    let (kind, segments, message) = rejection(&play(&input(loads, (0x10000, 0x14000), &[])));
    assert_eq!((kind, segments), (FindingKind::AlignBelowPage, vec![2]));
    assert!(
        message.starts_with(
            "4 KB LOAD section alignment, but 16 KB is required: PT_LOAD[2] (RW) start: 0x00010000 end: 0x00014800 align: 0x00001000; relink with -Wl,-z,max-page-size=16384"
        ),
        "{message}"
    );
    // p_align 0 counts as below 16 KB (AOSP's elfpolicy compares it).
    let mut unaligned = rw_after_code(K16, 0x14800);
    unaligned[0].align = 0;
    assert_eq!(rejection(&play(&input(unaligned, (0x10000, 0x14000), &[]))).1, vec![0]);
}

#[test]
fn a_relro_end_off_16k_inside_its_load_is_rejected_with_play_consoles_words() {
    // duckduckgo/Android #9308: Play Console's report for libraries whose
    // PT_LOADs were all 2**14 aligned.
    let loads = vec![load(0, Prot::RX, 0, 0x1e0000, K16), load(1, Prot::RW, 0x1ecc20, 0x1a000, K16)];
    let sections = [section(".data.rel.ro", 0x1ecc20, 0x163e0), section(".data", 0x203000, 0x1000)];
    let (kind, segments, message) = rejection(&play(&input(loads, (0x1ecc20, 0x203000), &sections)));
    assert_eq!((kind, segments), (FindingKind::AndroidRelro, vec![1]));
    assert!(
        message.starts_with(
            "RELRO is not a suffix and its end is not 16 KB aligned: PT_GNU_RELRO start: 0x001ecc20 end: 0x00203000 align: 0x00000001 ends 0x3c20 before the end of PT_LOAD[1] (RW) (0x00206c20), 0x3000 past a 16 KB boundary"
        ),
        "{message}"
    );
}

#[test]
fn a_relro_that_is_a_suffix_or_ends_on_16k_passes() {
    // .data before RELRO keeps the exemption out of it.
    let sections = [section(".data", 0xc000, 0x800), section(".data.rel.ro", 0x10000, 0x3000)];
    // Suffix: RELRO ends where its LOAD ends, off any 16 KB boundary; its start is 16 KB aligned.
    let loads = vec![load(0, Prot::RX, 0, 0x8000, K16), load(1, Prot::RW, 0xc000, 0x7000, K16)];
    assert_ok(&play(&input(loads.clone(), (0x10000, 0x13000), &sections)));
    // Counter-case: the same RELRO one byte short of the LOAD's end.
    let (_, _, message) = rejection(&play(&input(loads, (0x10000, 0x12fff), &sections)));
    assert!(message.starts_with("RELRO is not a suffix"), "{message}");
}

#[test]
fn a_relro_starting_off_16k_inside_its_load_is_rejected() {
    let loads = vec![load(0, Prot::RX, 0, 0x8000, K16), load(1, Prot::RW, 0xc000, 0x8000, K16)];
    let sections = [section(".data", 0xc000, 0x100), section(".data.rel.ro", 0xc100, 0x3f00), section(".bss", 0x10000, 0x4000)];
    let (kind, segments, message) = rejection(&play(&input(loads.clone(), (0xc100, 0x10000), &sections)));
    assert_eq!((kind, segments), (FindingKind::AndroidRelro, vec![1]));
    assert!(message.starts_with("RELRO is not a prefix and its start is not 16 KB aligned: PT_GNU_RELRO start: 0x0000c100"), "{message}");
    // Counter-case: a prefix of its LOAD may start anywhere.
    assert_ok(&play(&input(loads, (0xc000, 0x10000), &sections)));
}

#[test]
fn a_relro_holding_the_same_sections_as_its_load_is_exempt() {
    // RELRO ends off 16 KB and short of its LOAD, but the LOAD's tail holds no section.
    let loads = vec![load(0, Prot::RX, 0, 0x8000, K16), load(1, Prot::RW, 0x10000, 0x3500, K16), load(2, Prot::RW, 0x14000, 0x1000, K16)];
    let relro_only = [section(".data.rel.ro", 0x10000, 0x2f00), section(".got", 0x12f00, 0x100), section(".data", 0x14000, 0x1000)];
    assert_ok(&play(&input(loads.clone(), (0x10000, 0x13000), &relro_only)));
    // Counter-case: a section in the LOAD past RELRO's end.
    let with_tail = [section(".data.rel.ro", 0x10000, 0x2f00), section(".got", 0x12f00, 0x100), section(".fini_array", 0x13000, 0x500)];
    let (_, _, message) = rejection(&play(&input(loads, (0x10000, 0x13000), &with_tail)));
    assert!(message.starts_with("RELRO is not a suffix"), "{message}");
}

#[test]
fn a_relro_running_into_the_next_load_is_rejected() {
    let loads = vec![load(0, Prot::RX, 0, 0x8000, K16), load(1, Prot::RW, 0x8000, 0x3000, K16), load(2, Prot::RW, 0xb000, 0x2000, K16)];
    let (kind, segments, message) = rejection(&play(&input(loads, (0x8000, 0xc000), &[])));
    assert_eq!((kind, segments), (FindingKind::AndroidRelro, vec![1, 2]));
    assert!(message.contains("runs into PT_LOAD[2] (RW), which starts at 0x0000b000"), "{message}");
}
