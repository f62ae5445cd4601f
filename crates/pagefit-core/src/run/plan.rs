//! The robust loader model: how to map an executable or interpreter so that
//! it sees exactly the image it was linked for, whatever the page size.
//!
//! [`plan_robust`] is a pure function of (PT_LOAD segments, host page H,
//! guest page G, gap policy). It first replays binfmt_elf at G (the page size
//! the program was linked for, usually 4K) to get the image the program
//! expects, then walks that image H-page by H-page:
//!
//! - a page whose bytes all come from the file at one shift that is a
//!   multiple of H is mapped from the file (`MAP_PRIVATE`), so the page cache
//!   stays shared; bss bytes inside it are cleared after mapping;
//! - a page holding only bss is anonymous memory;
//! - every other page is *composed*: anonymous memory with each contributing
//!   segment's bytes copied in at their own offsets (seed 001's LATX case,
//!   generalised). Its protection is the union of its contributors', and
//!   [`ComposedPage`] says what that costs.
//!
//! Neighbouring pages of the same kind and protection become one
//! [`PlannedMapping`], so the loader makes one `mmap` per mapping. Gaps
//! between segments follow [`GapPolicy`]. The loader reserves the whole span
//! first, fills every mapping, and applies [`PlannedMapping::prot`] only after
//! all contents are in place (box64's lesson, PR #3546).
//!
//! [`plan_as_kernel`] is the other mode: what Linux binfmt_elf does at P,
//! including its failures (a non-congruent segment kills the process) and
//! its replacement of shared pages by the later segment.
//!
//! ```
//! use pagefit_core::elf::{ProgramHeader, Prot};
//! use pagefit_core::page::PageSize;
//! use pagefit_core::run::plan::{plan_robust, GapPolicy, MappingSource};
//! // seed 001: RX ends at 0x60ec1a0, RW starts at 0x60ed1a0, both in the 16K page 0x60ec000.
//! let rx = ProgramHeader { index: 2, p_type: 1, prot: Prot::RX, offset: 0x1000, vaddr: 0x401000, filesz: 0x5ceb1a0, memsz: 0x5ceb1a0, align: 0x4000 };
//! // GNU ld puts RW one page further in memory than in the file: not congruent mod 16K.
//! let rw = ProgramHeader { index: 3, p_type: 1, prot: Prot::RW, offset: 0x5cec1a0, vaddr: 0x60ed1a0, filesz: 0x1000, memsz: 0x2000, align: 0x4000 };
//! let plan = plan_robust(&[rx, rw], PageSize::K16, PageSize::K4, GapPolicy::Extend).unwrap();
//! let shared = plan.mapping_at(0x60ec000).unwrap();
//! // The shared page keeps the .plt bytes of the RX segment and the RW segment's data.
//! assert!(matches!(shared.source, MappingSource::Composed { .. }));
//! assert_eq!(shared.prot, Prot::RW.union(Prot::X));
//! assert_eq!(plan.composed[0].contributors, [2, 3]);
//! ```

use serde::Serialize;

use crate::elf::{ElfClass, ProgramHeader, Prot};
use crate::page::PageSize;
use crate::predict::memory::{AddrRange, Backing, Content, Region};
use crate::predict::model::{simulate, LoaderModel, Rejection, SegmentLayout};

/// What to do with the pages between segments that no segment touches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GapPolicy {
    /// Extend the preceding file mapping over the gap, up to the end of the
    /// file (MaskRay's suggestion, seed 002): one VMA instead of two.
    Extend,
    /// Unmap the gap, as binfmt_elf does.
    Unmap,
    /// Leave the gap reserved `PROT_NONE`, as glibc's ld.so does.
    None,
}

/// Where a mapping's bytes come from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum MappingSource {
    /// `mmap(MAP_PRIVATE | MAP_FIXED)` of the file from `offset` (a multiple of the page).
    File {
        /// File offset of the mapping's first byte.
        offset: u64,
    },
    /// Anonymous memory with file bytes copied in (`pread`) after mapping.
    Composed {
        /// The file ranges copied, in address order.
        copies: Vec<FileCopy>,
    },
    /// Anonymous zero pages (bss).
    Anonymous,
    /// A gap left reserved with no access.
    Reserved,
}

/// File bytes copied into a composed mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct FileCopy {
    /// Where the bytes go (link-time addresses).
    pub destination: AddrRange,
    /// File offset of the first byte.
    pub file_offset: u64,
    /// The PT_LOAD (program header index) the bytes belong to.
    pub segment: Option<usize>,
}

/// One mapping the loader makes: page-aligned, one source, one final protection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PlannedMapping {
    /// Link-time addresses (add the load bias).
    pub range: AddrRange,
    /// Protection applied once every mapping is filled.
    pub prot: Prot,
    /// Where the bytes come from.
    pub source: MappingSource,
    /// Bytes to clear after mapping (bss sharing a page with file bytes).
    pub zero: Vec<AddrRange>,
}

impl PlannedMapping {
    /// Whether the loader must write into the mapping (copies or clearing),
    /// so it has to be mapped writable first and protected afterwards.
    pub fn needs_writes(&self) -> bool {
        matches!(self.source, MappingSource::Composed { .. }) || !self.zero.is_empty()
    }
}

/// A page whose bytes could not come from one congruent file mapping.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ComposedPage {
    /// The page (link-time addresses).
    pub page: AddrRange,
    /// The PT_LOADs (program header indices) with bytes in it, in address order.
    pub contributors: Vec<usize>,
    /// File bytes copied in.
    pub bytes_copied: u64,
    /// The page's protection: the union of its contributors'.
    pub prot: Prot,
    /// Bytes that get a permission their own segment does not have.
    pub widened_bytes: u64,
    /// The permissions added to some bytes (e.g. `-w-` when code becomes writable).
    pub added: Prot,
}

/// A page mapped from the file whose protection is wider than some of its bytes ask for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WidenedPage {
    /// The page (link-time addresses).
    pub page: AddrRange,
    /// Its protection.
    pub prot: Prot,
    /// Bytes that get a permission their own segment does not have.
    pub widened_bytes: u64,
    /// The permissions added.
    pub added: Prot,
}

/// The robust (or kernel-faithful) way to load one ELF object at a page size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RobustPlan {
    /// The page size every mapping decision uses (the host's, or the emulated one).
    pub page_size: PageSize,
    /// The page size the program was linked for; its image is the target.
    pub guest_page_size: PageSize,
    /// The whole span to reserve before mapping (link-time addresses).
    pub span: AddrRange,
    /// The alignment of an ET_DYN load bias: max(largest p_align, page size).
    pub base_alignment: u64,
    /// The mappings, sorted by address, covering parts of `span`.
    pub mappings: Vec<PlannedMapping>,
    /// Parts of `span` to unmap after mapping (gaps, with [`GapPolicy::Unmap`]).
    pub unmapped: Vec<AddrRange>,
    /// Every composed page, with its cost.
    pub composed: Vec<ComposedPage>,
    /// File-mapped pages whose protection is wider than their bytes ask for.
    pub widened: Vec<WidenedPage>,
}

impl RobustPlan {
    /// The mapping holding `address`, if any.
    pub fn mapping_at(&self, address: u64) -> Option<&PlannedMapping> {
        self.mappings.iter().find(|m| m.range.start <= address && address < m.range.end)
    }

    /// Private (non-shared) pages the plan adds: composed pages.
    pub fn composed_page_count(&self) -> usize {
        self.composed.len()
    }
}

/// Why an object cannot be loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlanError {
    /// The kernel model refuses the object (at the guest page in robust mode,
    /// at P in kernel mode); the message is what the user would see.
    Rejected(Rejection),
    /// Addresses overflow, or a segment's file offset is below its page start.
    BadLayout(String),
}

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlanError::Rejected(rejection) => f.write_str(&rejection.loader_message),
            PlanError::BadLayout(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for PlanError {}

/// Plans a robust load of `loads` (PT_LOAD headers in table order) with
/// mappings at `page` granularity, reproducing the image the kernel would
/// make at `guest_page`.
pub fn plan_robust(loads: &[ProgramHeader], page: PageSize, guest_page: PageSize, gaps: GapPolicy) -> Result<RobustPlan, PlanError> {
    plan_robust_embedded(loads, 0, page, guest_page, gaps)
}

/// [`plan_robust`] for an ELF image that starts at `base` in its file (a
/// FatELF record): `loads` are the image's own program headers, and the
/// plan's file offsets count from the start of the file. The expected image
/// is replayed on the image's own offsets, so any `base` works: where
/// `base` breaks congruence with `page`, pages are composed.
pub fn plan_robust_embedded(
    loads: &[ProgramHeader],
    base: u64,
    page: PageSize,
    guest_page: PageSize,
    gaps: GapPolicy,
) -> Result<RobustPlan, PlanError> {
    validate(loads)?;
    if loads.iter().any(|s| base.checked_add(s.offset + s.filesz).is_none()) {
        return Err(PlanError::BadLayout(format!("segments at {base:#x} in the file end past 2^64")));
    }
    let image = simulate(SegmentLayout { loads, relro: None }, guest_page, LoaderModel::Kernel).map_err(PlanError::Rejected)?;
    let target: Vec<Region> = image.regions().iter().map(|region| in_file_at(region, base)).collect();
    let span = span_of(loads, page)?;
    let mut plan = empty_plan(loads, page, guest_page, span);
    let mut page_start = span.start;
    while page_start < span.end {
        let this_page = AddrRange::new(page_start, page_start + page.bytes());
        let regions = regions_in(&target, this_page);
        if regions.is_empty() {
            plan_gap_page(&mut plan, this_page, gaps, loads, base);
        } else {
            plan_page(&mut plan, this_page, &regions, page);
        }
        page_start = this_page.end;
    }
    Ok(plan)
}

/// Plans the load Linux binfmt_elf makes at `page`: each segment mapped from
/// its rounded-down offset, a later segment replacing a shared page, gaps
/// unmapped. A non-congruent segment is the kernel's SIGSEGV at exec.
pub fn plan_as_kernel(loads: &[ProgramHeader], page: PageSize) -> Result<RobustPlan, PlanError> {
    validate(loads)?;
    let image = simulate(SegmentLayout { loads, relro: None }, page, LoaderModel::Kernel).map_err(PlanError::Rejected)?;
    let span = span_of(loads, page)?;
    let mut plan = empty_plan(loads, page, page, span);
    let mut covered = span.start;
    for region in image.regions() {
        if region.range.start > covered {
            plan.unmapped.push(AddrRange::new(covered, region.range.start));
        }
        covered = region.range.end;
        let zero = match (region.backing, region.content) {
            (Backing::File { .. }, Content::Zero) => vec![region.range],
            _ => Vec::new(),
        };
        let source = match region.backing {
            Backing::File { shift } => MappingSource::File { offset: file_offset(region.range.start, shift)? },
            Backing::Anonymous => MappingSource::Anonymous,
        };
        push_mapping(&mut plan, PlannedMapping { range: region.range, prot: region.prot, source, zero });
    }
    if covered < span.end {
        plan.unmapped.push(AddrRange::new(covered, span.end));
    }
    Ok(plan)
}

fn validate(loads: &[ProgramHeader]) -> Result<(), PlanError> {
    if loads.is_empty() {
        return Err(PlanError::BadLayout("no PT_LOAD segment".into()));
    }
    for segment in loads {
        let overflows = segment.vaddr.checked_add(segment.memsz).is_none() || segment.offset.checked_add(segment.filesz).is_none();
        if overflows || segment.filesz > segment.memsz {
            return Err(PlanError::BadLayout(format!("PT_LOAD[{}] has impossible sizes", segment.index)));
        }
    }
    Ok(())
}

fn span_of(loads: &[ProgramHeader], page: PageSize) -> Result<AddrRange, PlanError> {
    let start = loads.iter().map(|s| s.vaddr).min().unwrap_or(0);
    let end = loads.iter().map(|s| s.mem_end()).max().unwrap_or(0);
    let end = page.align_up(end).ok_or_else(|| PlanError::BadLayout("segments end past the address space".into()))?;
    Ok(AddrRange::new(page.align_down(start), end))
}

fn empty_plan(loads: &[ProgramHeader], page: PageSize, guest_page: PageSize, span: AddrRange) -> RobustPlan {
    // binfmt_elf's maximum_alignment: only power-of-two p_align values count.
    let largest_align = loads.iter().map(|s| s.align).filter(|a| a.is_power_of_two()).max().unwrap_or(1);
    RobustPlan {
        page_size: page,
        guest_page_size: guest_page,
        span,
        base_alignment: largest_align.max(page.bytes()),
        mappings: Vec::new(),
        unmapped: Vec::new(),
        composed: Vec::new(),
        widened: Vec::new(),
    }
}

fn file_offset(address: u64, shift: i128) -> Result<u64, PlanError> {
    u64::try_from(i128::from(address) + shift).map_err(|_| PlanError::BadLayout(format!("address {address:#x} maps below file offset 0")))
}

/// `region` with its file bytes taken from `base` further into the file.
fn in_file_at(region: &Region, base: u64) -> Region {
    let base = i128::from(base);
    let backing = match region.backing {
        Backing::File { shift } => Backing::File { shift: shift + base },
        Backing::Anonymous => Backing::Anonymous,
    };
    let content = match region.content {
        Content::File { shift } => Content::File { shift: shift + base },
        Content::Zero => Content::Zero,
    };
    Region { backing, content, ..*region }
}

/// The target image's regions clipped to `page`.
fn regions_in(image: &[Region], page: AddrRange) -> Vec<Region> {
    image.iter().filter_map(|r| r.range.intersect(&page).map(|range| Region { range, ..*r })).collect()
}

/// One page with target bytes in it. Each region's protection is what its
/// bytes ask for (the segment's, or binfmt_elf's brk protection for bss).
fn plan_page(plan: &mut RobustPlan, page_range: AddrRange, regions: &[Region], page: PageSize) {
    let prot = regions.iter().fold(Prot::NONE, |acc, r| acc.union(r.prot));
    let (widened_bytes, added) = regions.iter().fold((0, Prot::NONE), |(bytes, added), r| {
        let extra = prot.without(r.prot);
        if extra == Prot::NONE {
            (bytes, added)
        } else {
            (bytes + r.range.len(), added.union(extra))
        }
    });
    let mut zero: Vec<AddrRange> = Vec::new();
    for region in regions.iter().filter(|r| r.content == Content::Zero) {
        match zero.last_mut().filter(|z| z.end == region.range.start) {
            Some(previous) => previous.end = region.range.end,
            None => zero.push(region.range),
        }
    }
    // Like binfmt_elf's padzero at this page size: bss clears to the page end,
    // so no file bytes show after it.
    if let Some(last) = zero.last_mut().filter(|z| regions.last().is_some_and(|r| r.range.end == z.end)) {
        last.end = page_range.end;
    }
    let file_shifts: Vec<i128> = regions
        .iter()
        .filter_map(|r| match r.content {
            Content::File { shift } => Some(shift),
            Content::Zero => None,
        })
        .collect();
    let congruent_shift = file_shifts.first().copied().filter(|first| {
        file_shifts.iter().all(|s| s == first)
            && i128::from(page_range.start)
                .checked_add(*first)
                .and_then(|offset| u64::try_from(offset).ok())
                .is_some_and(|offset| page.divides(offset))
    });
    let (source, zero) = match (congruent_shift, file_shifts.is_empty()) {
        (_, true) => {
            // Only bss: anonymous pages are already zero.
            (MappingSource::Anonymous, Vec::new())
        }
        (Some(shift), false) => {
            let offset = u64::try_from(i128::from(page_range.start) + shift).unwrap_or(0);
            if added != Prot::NONE {
                plan.widened.push(WidenedPage { page: page_range, prot, widened_bytes, added });
            }
            (MappingSource::File { offset }, zero)
        }
        (None, false) => {
            let copies: Vec<FileCopy> = regions
                .iter()
                .filter_map(|r| match r.content {
                    Content::File { shift } => Some(FileCopy {
                        destination: r.range,
                        file_offset: u64::try_from(i128::from(r.range.start) + shift).unwrap_or(0),
                        segment: r.segment,
                    }),
                    Content::Zero => None,
                })
                .collect();
            let mut contributors: Vec<usize> = regions.iter().filter_map(|r| r.segment).collect();
            contributors.dedup();
            plan.composed.push(ComposedPage {
                page: page_range,
                contributors,
                bytes_copied: copies.iter().map(|c| c.destination.len()).sum(),
                prot,
                widened_bytes,
                added,
            });
            (MappingSource::Composed { copies }, Vec::new())
        }
    };
    push_mapping(plan, PlannedMapping { range: page_range, prot, source, zero });
}

fn plan_gap_page(plan: &mut RobustPlan, page_range: AddrRange, gaps: GapPolicy, loads: &[ProgramHeader], base: u64) {
    match gaps {
        GapPolicy::Extend => {
            // Continue the preceding file mapping, but never past the end of the
            // bytes the file's segments cover (seed 002: min(next segment, file end)).
            let file_end = base + loads.iter().map(|s| s.offset + s.filesz).max().unwrap_or(0);
            if let Some(last) = plan.mappings.last().filter(|m| m.range.end == page_range.start) {
                if let MappingSource::File { offset } = last.source {
                    let next_offset = offset + last.range.len();
                    let page_file_end = plan.page_size.align_up(file_end).unwrap_or(file_end);
                    if next_offset + page_range.len() <= page_file_end {
                        let prot = last.prot;
                        push_mapping(
                            plan,
                            PlannedMapping {
                                range: page_range,
                                prot,
                                source: MappingSource::File { offset: next_offset },
                                zero: Vec::new(),
                            },
                        );
                        return;
                    }
                }
            }
            push_mapping(plan, PlannedMapping { range: page_range, prot: Prot::NONE, source: MappingSource::Reserved, zero: Vec::new() });
        }
        GapPolicy::None => {
            push_mapping(plan, PlannedMapping { range: page_range, prot: Prot::NONE, source: MappingSource::Reserved, zero: Vec::new() })
        }
        GapPolicy::Unmap => match plan.unmapped.last_mut().filter(|r| r.end == page_range.start) {
            Some(previous) => previous.end = page_range.end,
            None => plan.unmapped.push(page_range),
        },
    }
}

/// Appends a mapping, merging it into the previous one when the loader can
/// make both with one call: same protection, and contiguous file offsets or
/// both anonymous.
fn push_mapping(plan: &mut RobustPlan, mapping: PlannedMapping) {
    if let Some(last) = plan.mappings.last_mut() {
        if last.range.end == mapping.range.start && last.prot == mapping.prot {
            let merged = match (&mut last.source, &mapping.source) {
                (MappingSource::File { offset }, MappingSource::File { offset: next }) => *offset + last.range.len() == *next,
                (MappingSource::Reserved, MappingSource::Reserved) | (MappingSource::Anonymous, MappingSource::Anonymous) => true,
                (MappingSource::Composed { copies }, MappingSource::Composed { copies: more }) => {
                    copies.extend_from_slice(more);
                    true
                }
                (MappingSource::Composed { .. }, MappingSource::Anonymous) => true,
                _ => false,
            };
            if merged {
                last.range.end = mapping.range.end;
                last.zero.extend(mapping.zero);
                return;
            }
        }
    }
    plan.mappings.push(mapping);
}

/// The PT_GNU_RELRO range a robust load should advertise, when it differs
/// from the file's.
///
/// The libc rounds RELRO's start *down* to the page size before
/// `mprotect(PROT_READ)`. When that page also holds bytes of code or of
/// writable data outside RELRO (lld's layouts, `-z separate-loadable-segments`,
/// GNU ld's static binaries at 16K), the program would lose execute or write
/// there and crash. The robust load then advertises RELRO from the next page
/// boundary: those few bytes stay writable, everything else is protected.
/// Returns `None` when the file's range is safe as it is; an empty range
/// means nothing of RELRO can be protected at this page size.
pub fn relro_for_robust_load(loads: &[ProgramHeader], relro: AddrRange, page: PageSize) -> Option<AddrRange> {
    let first_page = page.align_down(relro.start);
    if first_page == relro.start {
        return None;
    }
    let below = AddrRange::new(first_page, relro.start);
    let endangered = loads.iter().any(|segment| {
        let bytes = AddrRange::new(segment.vaddr, segment.mem_end());
        bytes.intersect(&below).is_some() && (segment.prot.is_executable() || segment.prot.is_writable())
    });
    if !endangered {
        return None;
    }
    let start = page.align_up(relro.start).unwrap_or(relro.end).min(relro.end);
    Some(AddrRange::new(start, relro.end.max(start)))
}

/// Rewrites a little-endian program header table of `class` (as read from
/// the file) for a robust load: PT_GNU_RELRO becomes `relro` when given, and
/// PT_PHDR's `p_vaddr` becomes `phdr_vaddr`, so that a table copied elsewhere
/// still tells ld.so the load bias (AT_PHDR minus PT_PHDR's `p_vaddr`).
/// In an ELF32 table `phdr_vaddr` is kept modulo 2^32, as ld.so's 32-bit
/// address arithmetic wraps.
pub fn rewrite_program_headers(table: &mut [u8], class: ElfClass, relro: Option<AddrRange>, phdr_vaddr: u64) -> Result<(), PlanError> {
    use object::elf::{PT_GNU_RELRO, PT_PHDR};
    edit_program_headers(table, class, |header| match header.p_type {
        PT_PHDR => header.p_vaddr = phdr_vaddr,
        PT_GNU_RELRO => {
            if let Some(relro) = relro {
                let skipped = relro.start.saturating_sub(header.p_vaddr);
                header.p_vaddr = relro.start;
                header.p_paddr = relro.start;
                header.p_offset = header.p_offset.saturating_add(skipped);
                header.p_filesz = header.p_filesz.saturating_sub(skipped);
                header.p_memsz = relro.len();
            }
        }
        _ => {}
    })
}

/// The program header fields the loader rewrites, widened to 64 bits.
struct EditableHeader {
    p_type: object::elf::ProgramType,
    p_offset: u64,
    p_vaddr: u64,
    p_paddr: u64,
    p_filesz: u64,
    p_memsz: u64,
    p_align: u64,
}

/// Applies `edit` to each header of a little-endian table of `class`;
/// values written into an ELF32 table keep their low 32 bits.
fn edit_program_headers(table: &mut [u8], class: ElfClass, mut edit: impl FnMut(&mut EditableHeader)) -> Result<(), PlanError> {
    use object::elf::{ProgramHeader32, ProgramHeader64};
    use object::LittleEndian as LE;
    let not_whole = || PlanError::BadLayout(format!("the program header table is not a whole number of {class:?} entries"));
    match class {
        ElfClass::Elf64 => {
            let headers: &mut [ProgramHeader64<LE>] = object::pod::slice_from_all_bytes_mut(table).map_err(|()| not_whole())?;
            for header in headers {
                let mut fields = EditableHeader {
                    p_type: header.p_type.get(LE),
                    p_offset: header.p_offset.get(LE),
                    p_vaddr: header.p_vaddr.get(LE),
                    p_paddr: header.p_paddr.get(LE),
                    p_filesz: header.p_filesz.get(LE),
                    p_memsz: header.p_memsz.get(LE),
                    p_align: header.p_align.get(LE),
                };
                edit(&mut fields);
                header.p_offset.set(LE, fields.p_offset);
                header.p_vaddr.set(LE, fields.p_vaddr);
                header.p_paddr.set(LE, fields.p_paddr);
                header.p_filesz.set(LE, fields.p_filesz);
                header.p_memsz.set(LE, fields.p_memsz);
                header.p_align.set(LE, fields.p_align);
            }
        }
        ElfClass::Elf32 => {
            let headers: &mut [ProgramHeader32<LE>] = object::pod::slice_from_all_bytes_mut(table).map_err(|()| not_whole())?;
            for header in headers {
                let mut fields = EditableHeader {
                    p_type: header.p_type.get(LE),
                    p_offset: header.p_offset.get(LE).into(),
                    p_vaddr: header.p_vaddr.get(LE).into(),
                    p_paddr: header.p_paddr.get(LE).into(),
                    p_filesz: header.p_filesz.get(LE).into(),
                    p_memsz: header.p_memsz.get(LE).into(),
                    p_align: header.p_align.get(LE).into(),
                };
                edit(&mut fields);
                header.p_offset.set(LE, fields.p_offset as u32);
                header.p_vaddr.set(LE, fields.p_vaddr as u32);
                header.p_paddr.set(LE, fields.p_paddr as u32);
                header.p_filesz.set(LE, fields.p_filesz as u32);
                header.p_memsz.set(LE, fields.p_memsz as u32);
                header.p_align.set(LE, fields.p_align as u32);
            }
        }
    }
    Ok(())
}

/// The `p_align` that makes glibc's ld.so place a library at a multiple of
/// `page` when the kernel's `mmap(NULL)` only promises host pages: ld.so
/// aligns the base itself only when the largest PT_LOAD `p_align` exceeds
/// its page size (AT_PAGESZ), and trusts the kernel otherwise. Emulating P
/// on a smaller host breaks that trust, and ld.so then rounds bss clearing
/// to the wrong P-page boundary.
pub fn emulation_alignment(page: PageSize) -> u64 {
    page.bytes() * 2
}

/// Raises every PT_LOAD's `p_align` in a little-endian program header
/// table of `class` to at least `alignment`. Nothing moves: ld.so (glibc)
/// checks congruence modulo its page size only, and aligns the load base to
/// the largest `p_align`.
pub fn raise_load_alignment(table: &mut [u8], class: ElfClass, alignment: u64) -> Result<(), PlanError> {
    edit_program_headers(table, class, |header| {
        if header.p_type == object::elf::PT_LOAD {
            header.p_align = header.p_align.max(alignment);
        }
    })
}

/// A whole, aligned 2 MiB chunk of file-mapped text (see [`huge_page_text`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HugePageText {
    /// Link-time addresses.
    pub range: AddrRange,
    /// The file offset of `range.start`.
    pub file_offset: u64,
    /// The mapping's protection.
    pub prot: Prot,
}

/// The parts of the plan's executable file mappings that the kernel can back
/// with transparent huge pages (2 MiB, the PMD size on x86_64 and on
/// aarch64 with 4K pages) once the load bias is a multiple of 2 MiB
/// (seed 002): whole, aligned 2 MiB chunks whose address and file offset
/// agree modulo 2 MiB.
pub fn huge_page_text(plan: &RobustPlan) -> Vec<HugePageText> {
    let huge = PageSize::M2;
    plan.mappings
        .iter()
        .filter(|m| m.prot.is_executable())
        .filter_map(|m| match m.source {
            MappingSource::File { offset } if huge.offset_in_page(m.range.start) == huge.offset_in_page(offset) => {
                let start = huge.align_up(m.range.start)?;
                let end = huge.align_down(m.range.end);
                (end > start).then(|| HugePageText {
                    range: AddrRange::new(start, end),
                    file_offset: offset + (start - m.range.start),
                    prot: m.prot,
                })
            }
            _ => None,
        })
        .collect()
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
