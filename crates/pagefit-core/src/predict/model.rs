//! Loader models: how each real loader maps PT_LOAD segments at page size P.
//!
//! Each model is data ([`LoaderTraits`]: its checks, how it lays out the
//! image, how it zeroes bss and rounds RELRO) plus one small function,
//! [`simulate`], that replays the loader's `mmap`/`mprotect`/`memset` calls
//! on a [`MemoryImage`]. Sources: Linux `fs/binfmt_elf.c` (6.12), glibc
//! `elf/dl-load.c`, `elf/dl-map-segments.h`, `elf/dl-reloc.c`, musl
//! `ldso/dynlink.c`, bionic `linker/linker_phdr.cpp` and
//! `linker_phdr_16kib_compat.cpp`. ARCHITECTURE.md records what the real
//! 16K and 64K kernels showed. [`LoaderModel::Play`] is no loader: it is
//! Google Play's 16 KB upload check, whose rules live in
//! [`crate::predict::finding`] (`play_rules`).

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::elf::{ProgramHeader, Prot};
use crate::page::PageSize;
use crate::predict::memory::{AddrRange, Backing, Content, MemoryImage};

/// The loaders pagefit can predict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum LoaderModel {
    /// Linux binfmt_elf: executables and their interpreter.
    #[serde(rename = "kernel")]
    Kernel,
    /// glibc ld.so 2.35 and later (the default for Linux shared objects).
    #[serde(rename = "glibc")]
    Glibc,
    /// glibc ld.so 2.34 and earlier, which also checks p_align.
    #[serde(rename = "glibc-2.34")]
    Glibc234,
    /// musl's dynamic linker.
    #[serde(rename = "musl")]
    Musl,
    /// Android's linker without 16 KiB compatibility mode.
    #[serde(rename = "bionic")]
    Bionic,
    /// Android 15/16's linker in 16 KiB page-size compatibility mode.
    #[serde(rename = "bionic-compat")]
    BionicCompat,
    /// Google Play's 16 KB check of an upload: it maps nothing, and accepts
    /// or rejects exactly what Play does (see `docs/android.md`).
    #[serde(rename = "play")]
    Play,
}

impl LoaderModel {
    /// Every model, in the order reports list them.
    pub const ALL: [LoaderModel; 7] = [
        LoaderModel::Kernel,
        LoaderModel::Glibc,
        LoaderModel::Glibc234,
        LoaderModel::Musl,
        LoaderModel::Bionic,
        LoaderModel::BionicCompat,
        LoaderModel::Play,
    ];

    /// The model's data.
    pub fn traits(self) -> &'static LoaderTraits {
        match self {
            LoaderModel::Kernel => &KERNEL,
            LoaderModel::Glibc => &GLIBC,
            LoaderModel::Glibc234 => &GLIBC_2_34,
            LoaderModel::Musl => &MUSL,
            LoaderModel::Bionic => &BIONIC,
            LoaderModel::BionicCompat => &BIONIC_COMPAT,
            LoaderModel::Play => &PLAY,
        }
    }

    /// The name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        self.traits().name
    }
}

impl fmt::Display for LoaderModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for LoaderModel {
    type Err = String;
    fn from_str(text: &str) -> Result<LoaderModel, String> {
        LoaderModel::ALL.into_iter().find(|m| m.name() == text).ok_or_else(|| {
            let names: Vec<_> = LoaderModel::ALL.iter().map(|m| m.name()).collect();
            format!("unknown loader {text:?}; known loaders: {}", names.join(", "))
        })
    }
}

/// What a loader does when `p_vaddr - p_offset` is not a multiple of P.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CongruenceRule {
    /// `mmap` fails after the point of no return: the process dies with SIGSEGV.
    KillsProcess,
    /// The loader refuses the object with this message. The modulus is the
    /// page size, or each segment's own p_align (glibc <= 2.34).
    Rejects(&'static str, Modulus),
    /// The loader maps from the rounded-down offset: bytes come out shifted.
    ShiftsSilently,
    /// The loader copies segments with `pread`: congruence does not matter.
    Irrelevant,
}

/// What congruence is checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Modulus {
    /// The page size.
    Page,
    /// The segment's p_align (0 and 1 meaning no constraint beyond equality).
    SegmentAlign,
}

/// What a loader does with PT_LOADs whose p_align is below the page size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlignmentRule {
    /// p_align is never looked at (binfmt_elf, glibc >= 2.35, musl).
    Ignored,
    /// Every p_align must be a multiple of the page size (glibc <= 2.34).
    EachMultipleOfPage(&'static str),
    /// The smallest p_align must be at least the page size (bionic); the
    /// message has `{align}` and `{page}` placeholders.
    SmallestAtLeastPage(&'static str),
}

/// How the image is placed in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageLayout {
    /// One `mmap` per segment, gaps left unmapped (binfmt_elf, bionic).
    PerSegment,
    /// The first segment's mapping spans the image; gaps become PROT_NONE (glibc).
    SpanWithProtNoneHoles,
    /// The lowest segment's mapping spans the image; gaps keep its protection (musl).
    SpanKeepingHoles,
    /// Anonymous memory filled with `pread`, protected around one boundary (bionic compat).
    CopiedAroundBoundary,
    /// Nothing is loaded: the image is the one the program headers describe,
    /// to the byte and whatever the page size (Play's check).
    AsDescribed,
}

/// How the bytes between `p_filesz` and `p_memsz` are cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BssZeroing {
    /// Clear to the end of the page; silently skipped when the page is read-only
    /// (binfmt_elf `padzero`). A segment with no file bytes gets anonymous
    /// pages from its own page start.
    ToPageEndIfWritable,
    /// Clear exactly to `p_memsz`, making a read-only page writable for the
    /// `memset` and restoring the segment's protection on the whole page after (glibc).
    ToMemEndForcingWrite,
    /// Clear to the end of the page, writable segments only (musl, bionic).
    ToPageEndWritableSegmentsOnly,
}

/// Which way RELRO's end is rounded to P before `mprotect(PROT_READ)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelroEndRounding {
    /// Down: a partial last page stays writable (glibc, musl).
    Down,
    /// Up: a partial last page becomes read-only (bionic).
    Up,
}

/// A loader model as data.
#[derive(Debug)]
pub struct LoaderTraits {
    /// CLI and JSON name.
    pub name: &'static str,
    /// One line for `--help` and reports.
    pub summary: &'static str,
    /// What happens to non-congruent segments.
    pub congruence: CongruenceRule,
    /// What p_align below the page size does.
    pub alignment: AlignmentRule,
    /// The error when the first and last segments share a page (glibc 2.36+, BZ #28838).
    pub first_last_overlap_error: Option<&'static str>,
    /// Image layout.
    pub layout: ImageLayout,
    /// bss handling.
    pub bss: BssZeroing,
    /// RELRO end rounding (the start is always rounded down).
    pub relro_end: RelroEndRounding,
    /// How a user sees a rejection: `{name}` is the object, `{message}` the loader's text.
    pub rejection_format: &'static str,
    /// The error when RELRO, rounded to pages, covers unmapped addresses, if
    /// that is fatal: binfmt_elf leaves holes between segments, and glibc's
    /// `mprotect` of the rounded RELRO range then fails with ENOMEM. Loaders
    /// that reserve the whole span first never see holes.
    pub relro_over_hole_error: Option<&'static str>,
}

const GLIBC_NOT_PAGE_ALIGNED: &str = "ELF load command address/offset not page-aligned";

static KERNEL: LoaderTraits = LoaderTraits {
    name: "kernel",
    summary: "Linux binfmt_elf (executables and interpreters); RELRO applied by the program's libc",
    congruence: CongruenceRule::KillsProcess,
    alignment: AlignmentRule::Ignored,
    first_last_overlap_error: None,
    layout: ImageLayout::PerSegment,
    bss: BssZeroing::ToPageEndIfWritable,
    relro_end: RelroEndRounding::Down,
    rejection_format: "{message}",
    relro_over_hole_error: Some(
        "error while loading shared libraries: cannot apply additional memory protection after relocation: Cannot allocate memory",
    ),
};

static GLIBC: LoaderTraits = LoaderTraits {
    name: "glibc",
    summary: "glibc ld.so >= 2.35 (2.36+ also rejects a first and last segment sharing a page)",
    congruence: CongruenceRule::Rejects(GLIBC_NOT_PAGE_ALIGNED, Modulus::Page),
    alignment: AlignmentRule::Ignored,
    first_last_overlap_error: Some(GLIBC_NOT_PAGE_ALIGNED),
    layout: ImageLayout::SpanWithProtNoneHoles,
    bss: BssZeroing::ToMemEndForcingWrite,
    relro_end: RelroEndRounding::Down,
    rejection_format: "error while loading shared libraries: {name}: {message}",
    relro_over_hole_error: None,
};

static GLIBC_2_34: LoaderTraits = LoaderTraits {
    name: "glibc-2.34",
    summary: "glibc ld.so <= 2.34, which requires every PT_LOAD p_align to be a multiple of the page size",
    congruence: CongruenceRule::Rejects("ELF load command address/offset not properly aligned", Modulus::SegmentAlign),
    alignment: AlignmentRule::EachMultipleOfPage("ELF load command alignment not page-aligned"),
    first_last_overlap_error: Some("cannot change memory protections"),
    layout: ImageLayout::SpanWithProtNoneHoles,
    bss: BssZeroing::ToMemEndForcingWrite,
    relro_end: RelroEndRounding::Down,
    rejection_format: "error while loading shared libraries: {name}: {message}",
    relro_over_hole_error: None,
};

static MUSL: LoaderTraits = LoaderTraits {
    name: "musl",
    summary: "musl ld.so: no alignment or congruence checks, maps from the rounded-down offset",
    congruence: CongruenceRule::ShiftsSilently,
    alignment: AlignmentRule::Ignored,
    first_last_overlap_error: None,
    layout: ImageLayout::SpanKeepingHoles,
    bss: BssZeroing::ToPageEndWritableSegmentsOnly,
    relro_end: RelroEndRounding::Down,
    rejection_format: "Error loading shared library {name}: {message}",
    relro_over_hole_error: None,
};

static BIONIC: LoaderTraits = LoaderTraits {
    name: "bionic",
    summary: "Android linker without 16 KiB compat: p_align must be at least the page size",
    congruence: CongruenceRule::ShiftsSilently,
    alignment: AlignmentRule::SmallestAtLeastPage("program alignment ({align}) cannot be smaller than system page size ({page})"),
    first_last_overlap_error: None,
    layout: ImageLayout::PerSegment,
    bss: BssZeroing::ToPageEndWritableSegmentsOnly,
    relro_end: RelroEndRounding::Up,
    rejection_format: "dlopen failed: \"{name}\" {message}",
    relro_over_hole_error: None,
};

static BIONIC_COMPAT: LoaderTraits = LoaderTraits {
    name: "bionic-compat",
    summary: "Android 15/16 linker in 16 KiB compat mode: copies segments and protects around one RX|RW boundary",
    congruence: CongruenceRule::Irrelevant,
    alignment: AlignmentRule::Ignored,
    first_last_overlap_error: None,
    layout: ImageLayout::CopiedAroundBoundary,
    bss: BssZeroing::ToPageEndWritableSegmentsOnly,
    relro_end: RelroEndRounding::Up,
    rejection_format: "dlopen failed: \"{name}\" {message}",
    relro_over_hole_error: None,
};

/// Play reads the headers and maps nothing, so the page size changes nothing
/// in its image; its verdict is its findings (`finding::play_rules`), judged
/// at 16 KB whatever page size is asked for.
static PLAY: LoaderTraits = LoaderTraits {
    name: "play",
    summary: "Google Play's 16 KB check of an upload: p_align, RELRO ends and zip alignment at 16 KB (64-bit ABIs only)",
    congruence: CongruenceRule::Irrelevant,
    alignment: AlignmentRule::Ignored,
    first_last_overlap_error: None,
    layout: ImageLayout::AsDescribed,
    bss: BssZeroing::ToPageEndWritableSegmentsOnly,
    relro_end: RelroEndRounding::Up,
    rejection_format: "{message}",
    relro_over_hole_error: None,
};

/// The page size Play's rules are written for, whatever the device's.
pub const PLAY_PAGE: PageSize = PageSize::K16;

/// Why a loader refuses an object, and the finding that explains it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// The loader's own text (`ELF load command address/offset not page-aligned`).
    pub loader_message: String,
    /// The PT_LOAD (program header index) that triggered it, when one did.
    pub segment: Option<usize>,
    /// Which rule fired.
    pub cause: RejectionCause,
}

/// The rule behind a rejection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectionCause {
    /// `p_vaddr - p_offset` is not a multiple of the page size (or of p_align).
    NonCongruent,
    /// p_align below the page size.
    AlignBelowPage,
    /// The first and last PT_LOAD share a page.
    FirstLastOverlap,
    /// The object has no PT_LOAD at all.
    NoLoadSegments,
    /// RELRO rounded to pages covers addresses nothing is mapped at.
    RelroOverHole,
}

/// The input of a simulation: the PT_LOADs (table order) and PT_GNU_RELRO.
#[derive(Clone, Copy, Debug)]
pub struct SegmentLayout<'a> {
    /// PT_LOAD headers in program header table order.
    pub loads: &'a [ProgramHeader],
    /// The PT_GNU_RELRO range, if any.
    pub relro: Option<AddrRange>,
}

/// Replays `model`'s loading of `layout` at page size `page`, up to and
/// including RELRO protection.
pub fn simulate(layout: SegmentLayout<'_>, page: PageSize, model: LoaderModel) -> Result<MemoryImage, Rejection> {
    let traits = model.traits();
    if traits.layout == ImageLayout::AsDescribed {
        return Ok(described_image(layout));
    }
    check(layout, page, traits)?;
    let mut image = MemoryImage::new();
    match traits.layout {
        ImageLayout::CopiedAroundBoundary if needs_compat(layout, page) => return Ok(copy_around_boundary(layout)),
        ImageLayout::PerSegment | ImageLayout::CopiedAroundBoundary => {
            for segment in layout.loads {
                map_segment(&mut image, segment, page, traits);
            }
        }
        ImageLayout::SpanWithProtNoneHoles => map_glibc(&mut image, layout.loads, page),
        ImageLayout::SpanKeepingHoles => map_musl(&mut image, layout.loads, page),
        ImageLayout::AsDescribed => return Ok(described_image(layout)),
    }
    if let Some(relro) = layout.relro {
        let start = page.align_down(relro.start);
        let end = match traits.relro_end {
            RelroEndRounding::Down => page.align_down(relro.end),
            RelroEndRounding::Up => page.align_up(relro.end).unwrap_or(relro.end),
        };
        if end > start {
            let range = AddrRange::new(start, end);
            if let Some(message) = traits.relro_over_hole_error.filter(|_| !image.is_fully_mapped(range)) {
                return Err(Rejection { loader_message: message.into(), segment: None, cause: RejectionCause::RelroOverHole });
            }
            image.protect(range, Prot::R);
        }
    }
    Ok(image)
}

fn check(layout: SegmentLayout<'_>, page: PageSize, traits: &LoaderTraits) -> Result<(), Rejection> {
    let loads = layout.loads;
    if loads.is_empty() {
        return Err(Rejection {
            loader_message: "object file has no loadable segments".into(),
            segment: None,
            cause: RejectionCause::NoLoadSegments,
        });
    }
    let reject =
        |message: String, segment: &ProgramHeader, cause| Err(Rejection { loader_message: message, segment: Some(segment.index), cause });
    if let AlignmentRule::SmallestAtLeastPage(text) = traits.alignment {
        // bionic skips p_align 0 and 1 when computing the minimum.
        if let Some(smallest) = loads.iter().filter(|s| s.align > 1).min_by_key(|s| s.align).filter(|s| s.align < page.bytes()) {
            let message = text.replace("{align}", &smallest.align.to_string()).replace("{page}", &page.bytes().to_string());
            return reject(message, smallest, RejectionCause::AlignBelowPage);
        }
    }
    for segment in loads {
        if let AlignmentRule::EachMultipleOfPage(message) = traits.alignment {
            if !page.divides(segment.align) {
                return reject(message.into(), segment, RejectionCause::AlignBelowPage);
            }
        }
        match traits.congruence {
            CongruenceRule::Rejects(message, modulus) => {
                let modulus = match modulus {
                    Modulus::Page => page.bytes(),
                    Modulus::SegmentAlign => segment.align.max(1),
                };
                if segment.vaddr.wrapping_sub(segment.offset) % modulus != 0 {
                    return reject(message.into(), segment, RejectionCause::NonCongruent);
                }
            }
            CongruenceRule::KillsProcess if segment.filesz > 0 && !segment.is_congruent(page.bytes()) => {
                let message = format!(
                    "killed by SIGSEGV at exec: PT_LOAD[{}] p_offset {:#x} is not congruent to p_vaddr {:#x} modulo {:#x}, so its mmap fails after the point of no return",
                    segment.index,
                    segment.offset,
                    segment.vaddr,
                    page.bytes()
                );
                return reject(message, segment, RejectionCause::NonCongruent);
            }
            _ => {}
        }
    }
    if let Some(message) = traits.first_last_overlap_error {
        let (first, last) = (&loads[0], &loads[loads.len() - 1]);
        if loads.len() > 1 && has_holes(loads, page) && page.align_down(last.vaddr) < up(page, first.file_end()) {
            return reject(message.into(), last, RejectionCause::FirstLastOverlap);
        }
    }
    Ok(())
}

/// glibc's `has_holes`: some segment does not start exactly where the previous one's file pages end.
fn has_holes(loads: &[ProgramHeader], page: PageSize) -> bool {
    loads.windows(2).any(|pair| page.align_up(pair[0].file_end()) != Some(page.align_down(pair[1].vaddr)))
}

fn file_backing(segment: &ProgramHeader, page: PageSize) -> Backing {
    // Every loader maps the page holding p_vaddr from the page holding p_offset.
    let shift = i128::from(page.align_down(segment.offset)) - i128::from(page.align_down(segment.vaddr));
    Backing::File { shift }
}

fn up(page: PageSize, address: u64) -> u64 {
    page.align_up(address).unwrap_or(u64::MAX)
}

/// binfmt_elf `elf_load` and bionic `LoadSegments`: one segment.
fn map_segment(image: &mut MemoryImage, segment: &ProgramHeader, page: PageSize, traits: &LoaderTraits) {
    match traits.bss {
        BssZeroing::ToPageEndIfWritable => map_segment_kernel(image, segment, page),
        _ => map_segment_bionic(image, segment, page),
    }
}

/// binfmt_elf `elf_load` (6.7+): map the file pages, `padzero` to the page
/// end (a fault on a read-only page is ignored), then `vm_brk_flags` the rest:
/// anonymous RW(+X) pages that replace whatever was there, starting at the
/// segment's own page when it has no file bytes.
fn map_segment_kernel(image: &mut MemoryImage, segment: &ProgramHeader, page: PageSize) {
    let prot = segment.prot;
    let has_bss = segment.memsz > segment.filesz;
    let brk_start = if segment.filesz > 0 {
        image.map(
            AddrRange::new(page.align_down(segment.vaddr), up(page, segment.file_end())),
            prot,
            file_backing(segment, page),
            Some(segment.index),
        );
        if has_bss && prot.is_writable() {
            image.zero(AddrRange::new(segment.file_end(), up(page, segment.file_end())));
        }
        up(page, segment.file_end())
    } else {
        page.align_down(segment.vaddr)
    };
    let brk_end = up(page, segment.mem_end());
    if has_bss && brk_end > brk_start {
        let brk_prot = Prot::RW.union(if prot.is_executable() { Prot::X } else { Prot::NONE });
        image.map(AddrRange::new(brk_start, brk_end), brk_prot, Backing::Anonymous, Some(segment.index));
    }
}

/// bionic `LoadSegments`: map from the page holding p_offset for
/// `p_offset + p_filesz - page_start(p_offset)` bytes, zero a writable
/// segment's last file page to its end, and map bss pages with the segment's protection.
fn map_segment_bionic(image: &mut MemoryImage, segment: &ProgramHeader, page: PageSize) {
    let prot = segment.prot;
    let file_length = segment.offset + segment.filesz - page.align_down(segment.offset);
    let map_start = page.align_down(segment.vaddr);
    if file_length > 0 {
        image.map(AddrRange::new(map_start, up(page, map_start + file_length)), prot, file_backing(segment, page), Some(segment.index));
    }
    if prot.is_writable() && !page.divides(segment.file_end()) {
        image.zero(AddrRange::new(segment.file_end(), up(page, segment.file_end())));
    }
    let bss_start = up(page, segment.file_end());
    let bss_end = up(page, segment.mem_end());
    if bss_end > bss_start {
        image.map(AddrRange::new(bss_start, bss_end), prot, Backing::Anonymous, Some(segment.index));
    }
}

/// glibc `_dl_map_segments` and `_dl_postprocess_loadcmd`.
fn map_glibc(image: &mut MemoryImage, loads: &[ProgramHeader], page: PageSize) {
    let first = &loads[0];
    let last = &loads[loads.len() - 1];
    let span = AddrRange::new(page.align_down(first.vaddr), up(page, last.mem_end()));
    image.map(span, first.prot, file_backing(first, page), Some(first.index));
    let first_map_end = up(page, first.file_end());
    if has_holes(loads, page) {
        image.protect(AddrRange::new(first_map_end, page.align_down(last.vaddr)), Prot::NONE);
    }
    glibc_bss(image, first, page);
    for segment in &loads[1..] {
        let map = AddrRange::new(page.align_down(segment.vaddr), up(page, segment.file_end()));
        image.map(map, segment.prot, file_backing(segment, page), Some(segment.index));
        glibc_bss(image, segment, page);
    }
}

fn glibc_bss(image: &mut MemoryImage, segment: &ProgramHeader, page: PageSize) {
    if segment.memsz <= segment.filesz {
        return;
    }
    let zero = segment.file_end();
    let zero_end = segment.mem_end();
    let zero_page = up(page, zero).min(zero_end);
    let prot = segment.prot;
    if zero_page > zero {
        image.zero(AddrRange::new(zero, zero_page));
        if !prot.is_writable() {
            // The mprotect dance leaves the whole page with this segment's protection.
            let whole_page = AddrRange::new(page.align_down(zero), up(page, zero + 1));
            image.protect(whole_page, prot);
        }
    }
    if zero_end > zero_page {
        image.map(AddrRange::new(zero_page, up(page, zero_end)), prot, Backing::Anonymous, Some(segment.index));
    }
}

/// musl `map_library`.
fn map_musl(image: &mut MemoryImage, loads: &[ProgramHeader], page: PageSize) {
    let lowest = loads.iter().min_by_key(|s| s.vaddr).unwrap_or(&loads[0]);
    let addr_min = page.align_down(lowest.vaddr);
    let addr_max = up(page, loads.iter().map(|s| s.mem_end()).max().unwrap_or(0));
    image.map(AddrRange::new(addr_min, addr_max), lowest.prot, file_backing(lowest, page), Some(lowest.index));
    for segment in loads {
        let this_min = page.align_down(segment.vaddr);
        let this_max = up(page, segment.mem_end());
        let prot = segment.prot;
        if this_min != addr_min {
            image.map(AddrRange::new(this_min, this_max), prot, file_backing(segment, page), Some(segment.index));
        }
        if segment.memsz > segment.filesz && prot.is_writable() {
            let brk = segment.file_end();
            let page_brk = up(page, brk);
            image.zero(AddrRange::new(brk, page_brk));
            if page_brk < this_max {
                image.map(AddrRange::new(page_brk, this_max), prot, Backing::Anonymous, Some(segment.index));
            }
        }
    }
}

/// The image the program headers ask for, to the byte: each segment's own
/// addresses, protections and file bytes, zeros past `p_filesz`, RELRO read-only.
fn described_image(layout: SegmentLayout<'_>) -> MemoryImage {
    let mut image = MemoryImage::new();
    for segment in layout.loads.iter().filter(|s| s.memsz > 0) {
        let range = AddrRange::new(segment.vaddr, segment.mem_end());
        image.map(range, segment.prot, Backing::File { shift: segment.file_shift() }, Some(segment.index));
        image.zero(AddrRange::new(segment.file_end().min(range.end), range.end));
    }
    if let Some(relro) = layout.relro {
        image.protect(relro, Prot::R);
    }
    image
}

/// Compat mode engages when some PT_LOAD is aligned below the page size.
fn needs_compat(layout: SegmentLayout<'_>, page: PageSize) -> bool {
    layout.loads.iter().any(|s| s.align < page.bytes())
}

/// bionic 16 KiB compat (`linker_phdr_16kib_compat.cpp`): every segment is
/// `pread` into anonymous memory from its 4K page, the load bias is shifted so
/// that one boundary (RELRO's end rounded up to 4K, or the first RW segment's
/// start rounded down) falls on a page boundary, and after relocation
/// everything below it becomes RX while the rest stays RW. Layouts that do not
/// fit `(R|RX)* (RW with RELRO prefix)? RW*` get RWX everywhere (AOSP main since 2025-07).
fn copy_around_boundary(layout: SegmentLayout<'_>) -> MemoryImage {
    const COMPAT_PAGE: PageSize = PageSize::K4;
    let mut image = MemoryImage::new();
    let loads = layout.loads;
    let first_writable = loads.iter().position(|s| s.prot.is_writable());
    let boundary = first_writable.and_then(|i| {
        let rw_adjacent = loads[i..].iter().all(|s| s.prot.is_writable() && !s.prot.is_executable());
        match layout.relro {
            Some(relro) if relro.start != loads[i].vaddr => None,
            Some(relro) => COMPAT_PAGE.align_up(relro.end).filter(|_| rw_adjacent),
            None => Some(COMPAT_PAGE.align_down(loads[i].vaddr)).filter(|_| rw_adjacent),
        }
    });
    let start = COMPAT_PAGE.align_down(loads.iter().map(|s| s.vaddr).min().unwrap_or(0));
    let end = up(COMPAT_PAGE, loads.iter().map(|s| s.mem_end()).max().unwrap_or(0));
    image.map(AddrRange::new(start, end), Prot::RW, Backing::Anonymous, None);
    for segment in loads {
        let copied = AddrRange::new(COMPAT_PAGE.align_down(segment.vaddr), segment.file_end());
        image.set_content(copied, Content::File { shift: i128::from(COMPAT_PAGE.align_down(segment.offset)) - i128::from(copied.start) });
    }
    match boundary {
        Some(boundary) => image.protect(AddrRange::new(start, boundary.min(end)), Prot::RX),
        None => image.protect(AddrRange::new(start, end), Prot::RW.union(Prot::RX)),
    }
    image
}
