//! Planner unit tests: seed 001 (LATX, Claude Code), seed 000 (libQt5Core)
//! and one synthetic layout per finding kind.

use super::*;
use crate::predict::finding::FindingKind;

fn load(index: usize, prot: Prot, offset: u64, vaddr: u64, filesz: u64, memsz: u64, align: u64) -> ProgramHeader {
    ProgramHeader { index, p_type: 1, prot, offset, vaddr, filesz, memsz, align }
}

fn section(name: &str, addr: u64, size: u64, flags: u64) -> Section {
    Section { name: name.into(), addr, size, offset: 0, flags, sh_type: 1 }
}

const ALLOC: u64 = 2;
const CODE: u64 = 2 | 4;
const DATA: u64 = 2 | 1;

fn input<'a>(loads: Vec<ProgramHeader>, relro: Option<(u64, u64)>, sections: &'a [Section]) -> LoadInput<'a> {
    LoadInput { name: "liblib.so", loads, relro: relro.map(|(s, e)| AddrRange::new(s, e)), sections, symbols: &[], entry: None }
}

fn kinds(plan: &LoadPlan) -> Vec<FindingKind> {
    plan.findings.iter().map(|f| f.kind).collect()
}

/// Seed 001: the Claude Code binary. RX ends at 0x60ec1a0, RW starts at
/// 0x60ed1a0, p_align 0x4000, both congruent: on a 16K host they share the
/// page 0x60ec000. (LATX case 1: overlap.)
fn claude_code() -> Vec<ProgramHeader> {
    vec![load(2, Prot::RX, 0x1000, 0x401000, 0x5ceb1a0, 0x5ceb1a0, 0x4000), load(3, Prot::RW, 0x5ced1a0, 0x60ed1a0, 0x1000, 0x3000, 0x4000)]
}

#[test]
fn latx_case_1_overlap_clobbers_the_plt_tail() {
    let sections = [
        section(".text", 0x401000, 0x5ceb000, CODE),
        section(".plt", 0x60ec000, 0x100, CODE),
        section(".iplt", 0x60ec100, 0xa0, CODE),
        section(".data", 0x60ed1a0, 0x1000, DATA),
    ];
    let input = input(claude_code(), None, &sections);
    assert_eq!(plan(&input, PageSize::K4, LoaderModel::Kernel).outcome, Outcome::Ok);
    let at16k = plan(&input, PageSize::K16, LoaderModel::Kernel);
    assert_eq!(at16k.outcome, Outcome::Broken);
    let shared = at16k.findings.iter().find(|f| f.kind == FindingKind::SharedPage).expect("SharedPage");
    assert_eq!(shared.range, AddrRange::new(0x60ec000, 0x60f0000));
    assert_eq!(shared.winner, Some(3));
    assert_eq!(shared.bytes_intact, Some(true), "same file delta: bytes stay right");
    let lost = &shared.effects[0];
    assert_eq!(lost.range, AddrRange::new(0x60ec000, 0x60ec1a0));
    assert_eq!((lost.before, lost.after), (Some(Prot::RX), Some(Prot::RW)));
    assert_eq!(lost.sections, [".plt", ".iplt"]);
    assert!(shared.message.contains("widened down to 0x60ec000 and covers the last 0x1a0 bytes of .plt/.iplt"), "{}", shared.message);
    assert!(shared.message.contains("code there cannot execute"), "{}", shared.message);
}

#[test]
fn latx_case_2_aligned_non_overlapping_segments_are_ok() {
    let loads = vec![
        load(2, Prot::RX, 0x1000, 0x401000, 0x5ce7000, 0x5ce7000, 0x4000),
        load(3, Prot::RW, 0x5cec1a0, 0x60ec1a0, 0x1000, 0x3000, 0x4000),
    ];
    let input = input(loads, None, &[]);
    for loader in [LoaderModel::Kernel, LoaderModel::Glibc, LoaderModel::Bionic] {
        let planned = plan(&input, PageSize::K16, loader);
        assert_eq!(planned.outcome, Outcome::Ok, "{loader}: {:?}", planned.findings);
    }
}

#[test]
fn latx_case_3_small_p_align_matters_only_to_loaders_that_check_it() {
    let loads = vec![load(0, Prot::RX, 0, 0, 0x2000, 0x2000, 0x10000), load(1, Prot::RW, 0x4000, 0x14000, 0x1000, 0x1000, 0x1000)];
    let input = input(loads, None, &[]);
    assert_eq!(plan(&input, PageSize::K16, LoaderModel::Kernel).outcome, Outcome::Ok);
    assert_eq!(plan(&input, PageSize::K16, LoaderModel::Glibc).outcome, Outcome::Ok);
    let bionic = plan(&input, PageSize::K16, LoaderModel::Bionic);
    assert_eq!(bionic.outcome, Outcome::Rejected);
    assert_eq!(
        bionic.message.as_deref(),
        Some("dlopen failed: \"liblib.so\" program alignment (4096) cannot be smaller than system page size (16384)")
    );
    let old_glibc = plan(&input, PageSize::K16, LoaderModel::Glibc234);
    assert_eq!(
        old_glibc.message.as_deref(),
        Some("error while loading shared libraries: liblib.so: ELF load command alignment not page-aligned")
    );
    assert!(kinds(&old_glibc).contains(&FindingKind::AlignBelowPage));
    assert_eq!(old_glibc.findings.iter().find(|f| f.kind == FindingKind::AlignBelowPage).unwrap().severity, Severity::Rejected);
}

/// Seed 000: libQt5Core.so.5's program headers, copied from the seed.
fn qt5core() -> (Vec<ProgramHeader>, Option<(u64, u64)>) {
    let loads = vec![
        load(1, Prot::RX, 0, 0, 0x43f1a8, 0x43f1a8, 0x10000),
        load(6, Prot::RW, 0x4449b0, 0x4549b0, 0x12ef8, 0x16da9, 0x10000),
        load(10, Prot::RW, 0x54b000, 0x54b000, 0x38aa0, 0x38aa0, 0x1000),
    ];
    (loads, Some((0x4549b0, 0x4549b0 + 0xb650)))
}

#[test]
fn seed_000_qt5core_is_rejected_by_old_glibc_only() {
    let (loads, relro) = qt5core();
    let input = LoadInput { name: "libQt5Core.so.5", ..input(loads, relro, &[]) };
    let old = plan(&input, PageSize::K64, LoaderModel::Glibc234);
    assert_eq!(old.outcome, Outcome::Rejected);
    assert_eq!(
        old.message.as_deref(),
        Some("error while loading shared libraries: libQt5Core.so.5: ELF load command alignment not page-aligned")
    );
    // glibc >= 2.35 no longer looks at p_align; every segment is congruent
    // modulo 64K and no two share a 64K page, so it loads exactly as at 4K.
    let new = plan(&input, PageSize::K64, LoaderModel::Glibc);
    assert_eq!(new.outcome, Outcome::Ok, "{:?}", new.findings);
    assert_eq!(max_ok_page_size(&input, LoaderModel::Glibc, PageSize::M2), Some(PageSize::K64));
    assert_eq!(max_ok_page_size(&input, LoaderModel::Glibc234, PageSize::M2), Some(PageSize::K4));
}

/// GNU ld's default x86_64 PIE at max-page-size 4096.
fn gnu_pie_4k() -> Vec<ProgramHeader> {
    vec![
        load(2, Prot::R, 0, 0, 0x628, 0x628, 0x1000),
        load(3, Prot::RX, 0x1000, 0x1000, 0x1a5, 0x1a5, 0x1000),
        load(4, Prot::R, 0x2000, 0x2000, 0x104, 0x104, 0x1000),
        load(5, Prot::RW, 0x2df0, 0x3df0, 0x228, 0x230, 0x1000),
    ]
}

#[test]
fn non_congruent_kills_under_the_kernel_is_refused_by_glibc_and_shifts_under_musl() {
    let input = input(gnu_pie_4k(), Some((0x3df0, 0x4000)), &[]);
    let kernel = plan(&input, PageSize::K16, LoaderModel::Kernel);
    assert_eq!(kernel.outcome, Outcome::Rejected);
    assert!(kernel.message.as_deref().unwrap().starts_with("killed by SIGSEGV at exec: PT_LOAD[5]"));
    let glibc = plan(&input, PageSize::K16, LoaderModel::Glibc);
    assert_eq!(
        glibc.message.as_deref(),
        Some("error while loading shared libraries: liblib.so: ELF load command address/offset not page-aligned")
    );
    assert_eq!(glibc.findings[0].kind, FindingKind::NonCongruent);
    assert_eq!(glibc.findings[0].severity, Severity::Rejected);
    let musl = plan(&input, PageSize::K16, LoaderModel::Musl);
    assert_eq!(musl.outcome, Outcome::Broken);
    assert!(musl.effects.iter().any(|e| matches!(e.clobbered, Some(Clobber::FileBytes { .. }))));
    assert_eq!(max_ok_page_size(&input, LoaderModel::Kernel, PageSize::M2), Some(PageSize::K4));
}

/// A static binary (GNU ld, 4K) whose RX segment ends at 0x47b100 and whose
/// RW segment starts at 0x47c180: distinct 16K pages, one shared 64K page.
fn static_layout(rw_offset: u64) -> Vec<ProgramHeader> {
    vec![load(0, Prot::RX, 0, 0x400000, 0x7b100, 0x7b100, 0x1000), load(1, Prot::RW, rw_offset, 0x47c180, 0x2000, 0x5000, 0x1000)]
}

fn static_sections() -> [Section; 5] {
    [
        section(".text", 0x400000, 0x6f000, CODE),
        section(".rodata", 0x46f000, 0xb000, ALLOC),
        section(".eh_frame", 0x47a000, 0x1100, ALLOC),
        section(".data", 0x47c180, 0x2000, DATA),
        section(".bss", 0x47e180, 0x3000, DATA),
    ]
}

#[test]
fn static_binary_on_distinct_16k_pages_runs_at_16k() {
    let sections = static_sections();
    let input = input(static_layout(0x7c180), None, &sections);
    assert_eq!(plan(&input, PageSize::K16, LoaderModel::Kernel).outcome, Outcome::Ok);
}

#[test]
fn shared_page_at_the_same_delta_degrades_non_code_and_breaks_code() {
    let sections = static_sections();
    let input = input(static_layout(0x7c180), None, &sections);
    let at64k = plan(&input, PageSize::K64, LoaderModel::Kernel);
    assert_eq!(at64k.outcome, Outcome::Degraded, "{:#?}", at64k.effects);
    let shared = at64k.findings.iter().find(|f| f.kind == FindingKind::SharedPage).unwrap();
    assert_eq!(shared.bytes_intact, Some(true));
    assert_eq!(shared.effects[0].sections, [".rodata", ".eh_frame"]);
    assert_eq!((shared.effects[0].before, shared.effects[0].after), (Some(Prot::RX), Some(Prot::RW)));
    // Without section headers every RX byte counts as code.
    let stripped = input_without_sections(&input);
    assert_eq!(plan(&stripped, PageSize::K64, LoaderModel::Kernel).outcome, Outcome::Broken);
}

fn input_without_sections<'a>(input: &LoadInput<'a>) -> LoadInput<'a> {
    LoadInput { sections: &[], ..input.clone() }
}

#[test]
fn shared_page_at_another_delta_clobbers_bytes() {
    let sections = static_sections();
    let input = input(static_layout(0x6c180), None, &sections);
    assert_eq!(plan(&input, PageSize::K16, LoaderModel::Kernel).outcome, Outcome::Ok);
    let at64k = plan(&input, PageSize::K64, LoaderModel::Kernel);
    assert_eq!(at64k.outcome, Outcome::Broken);
    let shared = at64k.findings.iter().find(|f| f.kind == FindingKind::SharedPage).unwrap();
    assert_eq!(shared.bytes_intact, Some(false));
    assert!(matches!(shared.effects[0].clobbered, Some(Clobber::FileBytes { offset: 0x60000 })), "{:?}", shared.effects[0]);
    assert_eq!(max_ok_page_size(&input, LoaderModel::Kernel, PageSize::M2), Some(PageSize::K16));
}

#[test]
fn relro_start_rounding_takes_execute_from_code_under_glibc() {
    // lld-style: RX [0x1000, 0x2500), RW (RELRO) at 0x3000: one 16K page.
    let loads = vec![load(0, Prot::RX, 0x1000, 0x1000, 0x1500, 0x1500, 0x1000), load(1, Prot::RW, 0x3000, 0x3000, 0x2000, 0x2000, 0x1000)];
    let sections =
        [section(".text", 0x1000, 0x1500, CODE), section(".data.rel.ro", 0x3000, 0x1000, DATA), section(".data", 0x4000, 0x1000, DATA)];
    let input = input(loads, Some((0x3000, 0x4000)), &sections);
    let at16k = plan(&input, PageSize::K16, LoaderModel::Glibc);
    assert_eq!(at16k.outcome, Outcome::Rejected, "first and last share a page");
    assert!(kinds(&at16k).contains(&FindingKind::FirstLastOverlap));
    let kernel = plan(&input, PageSize::K16, LoaderModel::Kernel);
    assert_eq!(kernel.outcome, Outcome::Broken);
    let start = kernel.findings.iter().find(|f| f.kind == FindingKind::RelroStart).unwrap();
    assert_eq!(start.range, AddrRange::new(0, 0x3000));
    assert_eq!(start.severity, Severity::Broken);
    assert!(kinds(&kernel).contains(&FindingKind::SharedPage));
}

#[test]
fn relro_end_stays_writable_under_glibc_and_freezes_data_under_bionic() {
    let loads = vec![load(0, Prot::RX, 0, 0, 0x8000, 0x8000, 0x10000), load(1, Prot::RW, 0x10000, 0x10000, 0x3000, 0x3000, 0x10000)];
    let sections =
        [section(".text", 0, 0x8000, CODE), section(".data.rel.ro", 0x10000, 0x1000, DATA), section(".data", 0x11000, 0x2000, DATA)];
    let input = input(loads, Some((0x10000, 0x11000)), &sections);
    let glibc = plan(&input, PageSize::K16, LoaderModel::Glibc);
    assert_eq!(glibc.outcome, Outcome::Degraded);
    let end = glibc.findings.iter().find(|f| f.kind == FindingKind::RelroEnd).unwrap();
    assert_eq!(end.range, AddrRange::new(0x10000, 0x11000));
    assert_eq!((end.effects[0].before, end.effects[0].after), (Some(Prot::R), Some(Prot::RW)));
    let bionic = plan(&input, PageSize::K16, LoaderModel::Bionic);
    assert_eq!(bionic.outcome, Outcome::Broken);
    let end = bionic.findings.iter().find(|f| f.kind == FindingKind::RelroEnd).unwrap();
    assert_eq!(end.range, AddrRange::new(0x11000, 0x14000));
    assert!(end.message.contains("writes there fault"), "{}", end.message);
    let android = bionic.findings.iter().find(|f| f.kind == FindingKind::AndroidRelro).unwrap();
    assert_eq!(android.message, "RELRO is not a suffix and its end is not 16 KB aligned");
}

#[test]
fn bss_only_segment_wipes_a_shared_page_under_the_kernel() {
    let loads = vec![
        load(0, Prot::RX, 0, 0, 0x1000, 0x1000, 0x1000),
        load(1, Prot::RW, 0x5000, 0x15000, 0x800, 0x800, 0x1000),
        load(2, Prot::RW, 0x6000, 0x16000, 0, 0x1000, 0x1000),
    ];
    let input = input(loads, None, &[]);
    let kernel = plan(&input, PageSize::K16, LoaderModel::Kernel);
    assert_eq!(kernel.outcome, Outcome::Broken);
    let bss = kernel.findings.iter().find(|f| f.kind == FindingKind::BssOnSharedPage).unwrap();
    assert_eq!(bss.range, AddrRange::new(0x15000, 0x15800));
    assert_eq!(bss.effects[0].clobbered, Some(Clobber::Zeros));
}

#[test]
fn bionic_compat_copies_and_turns_read_only_data_executable() {
    let loads = vec![
        load(0, Prot::R, 0, 0, 0x800, 0x800, 0x1000),
        load(1, Prot::RX, 0x1000, 0x1000, 0x1000, 0x1000, 0x1000),
        load(2, Prot::RW, 0x2000, 0x2000, 0x1100, 0x1200, 0x1000),
    ];
    let input = input(loads, Some((0x2000, 0x3000)), &[]);
    let compat = plan(&input, PageSize::K16, LoaderModel::BionicCompat);
    assert_eq!(compat.outcome, Outcome::Degraded, "{:#?}", compat.effects);
    assert!(kinds(&compat).contains(&FindingKind::CompatLayout));
    assert!(compat.effects.iter().all(|e| e.clobbered.is_none()));
    assert_eq!(plan(&input, PageSize::K16, LoaderModel::Bionic).outcome, Outcome::Rejected);
}

#[test]
fn no_load_segments_is_rejected() {
    let input = input(Vec::new(), None, &[]);
    let planned = plan(&input, PageSize::K16, LoaderModel::Glibc);
    assert_eq!(planned.outcome, Outcome::Rejected);
    assert_eq!(kinds(&planned), [FindingKind::NoLoadSegments]);
}

/// The sweep finds, at each rising address, exactly the sections a scan of
/// all of them finds, in table order, overlapping and empty ones included.
#[test]
fn covering_sweep_matches_a_scan() {
    let sections: Vec<Section> = (0..40u64).map(|i| section(&format!("s{i}"), (i * 37) % 300, (i * 53) % 90, 0)).collect();
    let mut sweep = Covering::new(&sections, |s| (s.addr, s.end()));
    for at in 0..400 {
        let scanned: Vec<&Section> = sections.iter().filter(|s| s.addr <= at && at < s.end()).collect();
        assert_eq!(sweep.at(at), scanned, "at {at:#x}");
    }
}
