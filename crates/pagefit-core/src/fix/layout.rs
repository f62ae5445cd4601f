//! Placing PT_LOADs that share P-pages into congruent output segments:
//! page groups, their new offsets, the bytes outside any segment, RELRO
//! trimming, and what a merge costs in permissions.

use crate::elf::{ElfFile, Prot, Section};
use crate::page::PageSize;
use crate::predict::memory::AddrRange;
use object::elf;

use super::headers::{encode_file_header, encode_program_headers, encode_section_headers, RawHeaders, RawProgramHeader};
use super::plan::{OutputPiece, PermissionCost, PieceSource, RewritePlan, Strategy};
use super::rebase;

/// PT_LOADs that share P-pages, which become one output segment.
pub(crate) struct PageGroup {
    /// Indices into the input's program header table, by address.
    pub(crate) loads: Vec<usize>,
    pub(crate) vaddr: u64,
    /// End of the last file byte of any member (`vaddr` when none has file bytes).
    pub(crate) file_end: u64,
    pub(crate) mem_end: u64,
    pub(crate) flags: u32,
    /// Output file offset minus address, once placed.
    pub(crate) shift: i128,
}

impl PageGroup {
    pub(crate) fn contains(&self, address: u64) -> bool {
        self.vaddr <= address && address < self.mem_end
    }
    pub(crate) fn file_offset_of(&self, address: u64) -> u64 {
        u64::try_from(i128::from(address) + self.shift).unwrap_or(0)
    }
}

/// Groups the PT_LOADs (sorted by address) whose P-page ranges touch.
pub(crate) fn page_groups(loads: &[(usize, &RawProgramHeader)], page: PageSize) -> Vec<PageGroup> {
    let mut groups: Vec<PageGroup> = Vec::new();
    for &(index, ph) in loads {
        let mem_end = ph.p_vaddr + ph.p_memsz;
        let file_end = ph.p_vaddr + ph.p_filesz;
        match groups.last_mut() {
            Some(last) if page.align_down(ph.p_vaddr) < page.align_up(last.mem_end).unwrap_or(u64::MAX) => {
                last.loads.push(index);
                last.mem_end = last.mem_end.max(mem_end);
                if ph.p_filesz > 0 {
                    last.file_end = last.file_end.max(file_end);
                }
                last.flags |= ph.p_flags;
            }
            _ => groups.push(PageGroup {
                loads: vec![index],
                vaddr: ph.p_vaddr,
                file_end: if ph.p_filesz > 0 { file_end } else { ph.p_vaddr },
                mem_end,
                flags: ph.p_flags,
                shift: 0,
            }),
        }
    }
    groups
}

/// The smallest offset at or above `cursor` that is congruent to `address` modulo P.
pub(crate) fn next_congruent(cursor: u64, address: u64, page: PageSize) -> Option<u64> {
    let behind = page.offset_in_page(address.wrapping_sub(cursor));
    cursor.checked_add(behind)
}

/// How far a copied input range moved.
#[derive(Clone, Copy)]
pub(crate) struct Moved {
    pub(crate) from: u64,
    pub(crate) len: u64,
    pub(crate) to: u64,
}

pub(crate) fn translate(moves: &[Moved], offset: u64, len: u64) -> Option<u64> {
    let end = offset.checked_add(len)?;
    moves.iter().find(|m| m.from <= offset && end <= m.from + m.len).map(|m| m.to + (offset - m.from))
}

/// `612 bytes`, `1.9 KiB`, `17.6 MiB`.
pub(crate) fn human_size(bytes: u64) -> String {
    pub(crate) const KIB: u64 = 1024;
    match bytes {
        b if b < KIB => format!("{b} bytes"),
        b if b < KIB * KIB => format!("{:.1} KiB", b as f64 / KIB as f64),
        b => format!("{:.1} MiB", b as f64 / (KIB * KIB) as f64),
    }
}

pub(crate) fn section_names_in(sections: &[Section], range: AddrRange) -> Vec<String> {
    sections.iter().filter(|s| range.intersect(&AddrRange::new(s.addr, s.end())).is_some()).map(|s| s.name.clone()).collect()
}

/// `R`, `RX`, `RW`, `RWX`: how the issue and most people write segment flags.
pub(crate) fn flags_name(prot: Prot) -> String {
    [(Prot::R, 'R'), (Prot::W, 'W'), (Prot::X, 'X')].iter().filter(|(bit, _)| prot.contains(*bit)).map(|(_, c)| *c).collect()
}

pub(crate) fn describe(prot: Prot) -> &'static str {
    if prot.is_executable() {
        "code"
    } else if prot.is_writable() {
        "writable data"
    } else {
        "read-only data"
    }
}

pub(crate) fn describe_gain(gained: Prot) -> &'static str {
    match (gained.is_writable(), gained.is_executable()) {
        (true, true) => "writable and executable",
        (true, false) => "writable",
        (false, true) => "executable",
        (false, false) => "readable",
    }
}

/// Refuses (relayout) or prices (merge) every group whose members' flags differ.
pub(crate) fn merge_costs(
    headers: &RawHeaders,
    file: &ElfFile,
    groups: &[PageGroup],
    page: PageSize,
    merge_flags: bool,
) -> Result<Vec<PermissionCost>, String> {
    let mut costs = Vec::new();
    for group in groups {
        let flags: Vec<Prot> = group.loads.iter().map(|&i| Prot::from_p_flags(headers.program_headers[i].p_flags)).collect();
        if flags.iter().all(|f| *f == flags[0]) {
            continue;
        }
        if !merge_flags {
            let members: Vec<String> = group
                .loads
                .iter()
                .map(|&i| format!("PT_LOAD[{i}] ({})", Prot::from_p_flags(headers.program_headers[i].p_flags).readelf_string().trim_end()))
                .collect();
            return Err(format!(
                "{} share {page} pages ({:#x}–{:#x}): their flags differ, so only merging or moving addresses can separate them",
                members.join(" and "),
                page.align_down(group.vaddr),
                page.align_up(group.mem_end).unwrap_or(group.mem_end)
            ));
        }
        let union = Prot::from_p_flags(group.flags);
        for &i in &group.loads {
            let ph = &headers.program_headers[i];
            let prot = Prot::from_p_flags(ph.p_flags);
            if prot == union {
                continue;
            }
            let range = AddrRange::new(ph.p_vaddr, ph.p_vaddr + ph.p_memsz);
            costs.push(PermissionCost {
                range,
                bytes: range.len(),
                before: prot,
                after: union,
                sections: section_names_in(&file.sections, range),
                message: format!(
                    "{} segment {:#x}–{:#x} merged into {}: {} of {} becomes {}",
                    flags_name(prot),
                    range.start,
                    range.end,
                    flags_name(union),
                    human_size(range.len()),
                    describe(prot),
                    describe_gain(union.without(prot))
                ),
            });
        }
    }

    Ok(costs)
}

/// Places the groups in the output, in address order, each at the first
/// offset congruent to its address (setting each group's shift).
pub(crate) fn place_groups(
    headers: &RawHeaders,
    loads: &[(usize, &RawProgramHeader)],
    groups: &mut [PageGroup],
    page: PageSize,
    header_may_move: bool,
) -> Result<OutputLayout, String> {
    // Whatever precedes the first loaded
    // byte (usually nothing: the first segment maps the ELF header) keeps its place.
    let first_loaded = loads.iter().filter(|(_, ph)| ph.p_filesz > 0).map(|(_, ph)| ph.p_offset).min().unwrap_or(0);
    let mut layout = OutputLayout { pieces: Vec::new(), moves: Vec::new(), cursor: first_loaded, first_loaded };
    if first_loaded > 0 {
        layout.copy(0, first_loaded, 0);
    }
    for group in groups.iter_mut() {
        let has_file_bytes = group.file_end > group.vaddr;
        let start = if has_file_bytes {
            next_congruent(layout.cursor, group.vaddr, page).ok_or("file offsets overflow")?
        } else {
            // Nothing to write: any congruent offset within the file will do.
            let back = page.offset_in_page(layout.cursor.wrapping_sub(group.vaddr));
            if layout.cursor >= back {
                layout.cursor - back
            } else {
                next_congruent(layout.cursor, group.vaddr, page).ok_or("file offsets overflow")?
            }
        };
        group.shift = i128::from(start) - i128::from(group.vaddr);
        if !has_file_bytes {
            continue;
        }
        let mut written = start;
        for &i in &group.loads {
            let ph = &headers.program_headers[i];
            if ph.p_filesz == 0 {
                continue;
            }
            let to = group.file_offset_of(ph.p_vaddr);
            if to > written {
                layout.pieces.push(OutputPiece { offset: written, len: to - written, source: PieceSource::Zeros });
            }
            layout.copy(ph.p_offset, ph.p_filesz, to);
            written = to + ph.p_filesz;
        }
        layout.cursor = written;
    }
    if let Some((_, header_load)) = loads.iter().find(|(_, ph)| ph.p_offset == 0 && ph.p_filesz > 0) {
        let moved = groups.iter().find(|g| g.contains(header_load.p_vaddr)).is_some_and(|g| g.file_offset_of(header_load.p_vaddr) != 0);
        if moved && !header_may_move {
            return Err(format!(
                "the PT_LOAD that maps the ELF header (offset 0) is at {:#x}, which is not a multiple of {page}: the header cannot move",
                header_load.p_vaddr
            ));
        }
    }
    Ok(layout)
}

/// Keeps the file bytes no segment loads: the tail (non-alloc sections, the
/// section header table, anything appended) and any gap between segments
/// that a header points into, each at an offset congruent modulo 4K so their
/// alignment holds.
pub(crate) fn keep_unloaded_bytes(
    headers: &RawHeaders,
    file: &ElfFile,
    loads: &[(usize, &RawProgramHeader)],
    layout: &mut OutputLayout,
) -> Result<(), String> {
    let mut loaded: Vec<(u64, u64)> =
        loads.iter().filter(|(_, ph)| ph.p_filesz > 0).map(|(_, ph)| (ph.p_offset, ph.p_offset + ph.p_filesz)).collect();
    loaded.sort_unstable();
    let mut unloaded: Vec<(u64, u64)> = Vec::new();
    let mut at = layout.first_loaded;
    for &(start, end) in &loaded {
        if start > at {
            unloaded.push((at, start));
        }
        at = at.max(end);
    }
    if file.file_len > at {
        unloaded.push((at, file.file_len));
    }
    let shdr_table_len = headers.section_header_size() * headers.sections.len() as u64;
    let mut referenced: Vec<(u64, u64)> = headers
        .sections
        .iter()
        .filter(|s| s.has_file_bytes())
        .map(|s| (s.sh_offset, s.sh_offset.saturating_add(s.sh_size)))
        .chain(
            headers
                .program_headers
                .iter()
                .filter(|ph| ph.p_type != elf::PT_LOAD.0 && ph.p_filesz > 0)
                .map(|ph| (ph.p_offset, ph.p_offset.saturating_add(ph.p_filesz))),
        )
        .collect();
    if headers.shoff != 0 {
        referenced.push((headers.shoff, headers.shoff.saturating_add(shdr_table_len)));
    }
    referenced.push((headers.phoff, headers.phoff.saturating_add(headers.program_header_size() * headers.program_headers.len() as u64)));
    let last = unloaded.len().saturating_sub(1);
    for (n, &(start, end)) in unloaded.iter().enumerate() {
        let is_tail = n == last && end == file.file_len;
        if !is_tail && !referenced.iter().any(|&(a, b)| a < end && start < b) {
            continue;
        }
        let to = next_congruent(layout.cursor, start, PageSize::K4).ok_or("file offsets overflow")?;
        layout.copy(start, end - start, to);
        layout.cursor = to + (end - start);
    }
    Ok(())
}

/// The output being laid out: its pieces, where input ranges went, and the
/// end of what is placed so far.
pub(crate) struct OutputLayout {
    pub(crate) pieces: Vec<OutputPiece>,
    pub(crate) moves: Vec<Moved>,
    pub(crate) cursor: u64,
    /// Input offset of the first byte a segment loads (what precedes it keeps its place).
    pub(crate) first_loaded: u64,
}

impl OutputLayout {
    pub(crate) fn copy(&mut self, from: u64, len: u64, to: u64) {
        self.pieces.push(OutputPiece { offset: to, len, source: PieceSource::Copy { from } });
        self.moves.push(Moved { from, len, to });
    }
}

/// What trimming PT_GNU_RELRO `old` to `kept` gives up: loaded bytes that
/// stay writable after relocation. A segment that is not readable (PF_W
/// alone) was readable there only by RELRO's mprotect, so trimming would take
/// reading away: that is refused.
pub(crate) fn relro_costs(
    old: AddrRange,
    kept: Option<AddrRange>,
    groups: &[PageGroup],
    file: &ElfFile,
    page: PageSize,
) -> Result<Vec<PermissionCost>, String> {
    let mut costs = Vec::new();
    let kept = kept.unwrap_or(AddrRange::new(old.start, old.start));
    let trimmed = [AddrRange::new(old.start, kept.start.max(old.start).min(old.end)), AddrRange::new(kept.end.max(old.start), old.end)];
    // Only loaded bytes lose anything: RELRO may run past its segment.
    let lost_loaded =
        trimmed.iter().flat_map(|t| groups.iter().filter_map(|g| Some((g, t.intersect(&AddrRange::new(g.vaddr, g.mem_end))?))));
    for (group, lost) in lost_loaded {
        if !Prot::from_p_flags(group.flags).contains(Prot::R) {
            return Err(format!(
                "PT_GNU_RELRO {:#x}–{:#x} must be trimmed at {page}, and the segment at {:#x} is {}: {:#x}–{:#x} would lose reading, which only RELRO gave it",
                old.start,
                old.end,
                group.vaddr,
                flags_name(Prot::from_p_flags(group.flags)),
                lost.start,
                lost.end
            ));
        }
        costs.push(PermissionCost {
            range: lost,
            bytes: lost.len(),
            before: Prot::R,
            after: Prot::RW,
            sections: section_names_in(&file.sections, lost),
            message: format!(
                "PT_GNU_RELRO {:#x}–{:#x} trimmed to {}: {} at {:#x}–{:#x} stays writable after relocation, because a {page} page there also holds bytes that are written",
                old.start,
                old.end,
                if kept.is_empty() { "nothing".to_string() } else { format!("{:#x}–{:#x}", kept.start, kept.end) },
                human_size(lost.len()),
                lost.start,
                lost.end
            ),
        });
    }
    Ok(costs)
}

/// What rebase adds to a layout: the shift and the patched values.
pub(crate) struct Shift {
    pub(crate) delta: u64,
    pub(crate) patches: Vec<rebase::Patch>,
}

/// Relayout (`merge_flags` false), merge, or with `shift` the layout of
/// rebase's shifted headers: file contents move, headers are rewritten and
/// the patches overlaid on the bytes they replace.
pub(crate) fn plan_layout(
    headers: &RawHeaders,
    file: &ElfFile,
    page: PageSize,
    merge_flags: bool,
    shift: Option<Shift>,
) -> Result<RewritePlan, String> {
    let p = page.bytes();
    // A section is moved with its bytes; one whose bytes are not in the file
    // has mangled headers, and no new offset would keep it consistent.
    let outside = headers
        .sections
        .iter()
        .skip(1)
        .find(|s| s.has_file_bytes() && s.sh_offset.checked_add(s.sh_size).is_none_or(|end| end > file.file_len));
    if let Some(section) = outside {
        return Err(format!(
            "section {:?} claims {:#x} bytes at offset {:#x}, past the end of the {}-byte file",
            section.name, section.sh_size, section.sh_offset, file.file_len
        ));
    }
    // A PT_LOAD with no memory size is left out of the output, which keeps
    // the image only if no loader maps anything for it: bionic maps the file
    // from the page holding p_offset to p_offset + p_filesz, and zeroes a
    // writable segment's page from p_vaddr + p_filesz to its end.
    let mapped_without_size = headers.program_headers.iter().enumerate().find(|(_, ph)| {
        let writable = Prot::from_p_flags(ph.p_flags).is_writable();
        ph.p_type == elf::PT_LOAD.0
            && ph.p_memsz == 0
            && (ph.p_filesz > 0
                || !PageSize::K4.divides(ph.p_offset)
                || writable && !PageSize::K4.divides(ph.p_vaddr.wrapping_add(ph.p_filesz)))
    });
    if let Some((index, ph)) = mapped_without_size {
        return Err(format!(
            "PT_LOAD[{index}] has no memory size, yet loaders map or zero a page for it (p_offset {:#x}, p_vaddr {:#x}): a rewrite would drop that page",
            ph.p_offset, ph.p_vaddr
        ));
    }
    let mut loads: Vec<(usize, &RawProgramHeader)> =
        headers.program_headers.iter().enumerate().filter(|(_, ph)| ph.p_type == elf::PT_LOAD.0 && ph.p_memsz > 0).collect();
    if loads.is_empty() {
        return Err("the file has no PT_LOAD segment to lay out".into());
    }
    // binfmt_elf and bionic zero bss only in a writable segment: in another,
    // the file pages they map keep the bytes that follow the segment's own
    // (all of them when it has none), and those move with the rewrite.
    let unwritable_bss = loads.iter().find(|(_, ph)| ph.p_memsz > ph.p_filesz && !Prot::from_p_flags(ph.p_flags).is_writable());
    if let Some((index, ph)) = unwritable_bss {
        return Err(format!(
            "PT_LOAD[{index}] ({}) has bss but is not writable: loaders leave the file's bytes there, and a rewrite moves them",
            flags_name(Prot::from_p_flags(ph.p_flags))
        ));
    }
    loads.sort_by_key(|(_, ph)| ph.p_vaddr);
    let mut groups = page_groups(&loads, page);
    let mut costs = merge_costs(headers, file, &groups, page, merge_flags)?;
    let mut layout = place_groups(headers, &loads, &mut groups, page, shift.is_some())?;
    keep_unloaded_bytes(headers, file, &loads, &mut layout)?;
    let OutputLayout { mut pieces, moves, cursor, .. } = layout;
    let output_len = cursor;
    let shdr_table_len = headers.section_header_size() * headers.sections.len() as u64;
    // bss that merging puts inside the file is written as zeros; a lying
    // p_memsz must not turn that into a file of terabytes.
    let zeros: u64 = pieces.iter().filter(|p| p.source == PieceSource::Zeros).map(|p| p.len).sum();
    if zeros > file.file_len.saturating_add(16 * p) {
        return Err(format!("the segments would need {} of zeros written into the file for the bss between them", human_size(zeros)));
    }

    // The new program header table.
    let relro = headers.program_headers.iter().find(|ph| ph.p_type == elf::PT_GNU_RELRO.0 && ph.p_memsz > 0);
    let relro_kept = relro.map(|r| trim_relro(AddrRange::new(r.p_vaddr, r.p_vaddr.saturating_add(r.p_memsz)), &groups, page));
    // A RELRO that ends alone on its last page is extended to the page end;
    // its segment grows with it (zeros), so the range is mapped at every page size.
    let mut warnings = Vec::new();
    if let Some(kept) = relro_kept.flatten() {
        if let Some(group) = groups.iter_mut().find(|g| g.contains(kept.start)).filter(|g| g.mem_end < kept.end) {
            warnings.push(format!(
                "the segment at {:#x} grows by {} of zeros so that PT_GNU_RELRO ends on a {page} boundary",
                group.vaddr,
                human_size(kept.end - group.mem_end)
            ));
            group.mem_end = kept.end;
        }
    }
    let group_of = |address: u64| groups.iter().find(|g| g.contains(address) || (g.vaddr == address && g.mem_end == address));
    let mut table: Vec<RawProgramHeader> = Vec::new();
    let mut next_group = groups.iter();
    for ph in &headers.program_headers {
        if ph.p_type == elf::PT_LOAD.0 {
            if ph.p_memsz == 0 {
                continue;
            }
            if let Some(group) = next_group.next() {
                let first = &headers.program_headers[group.loads[0]];
                table.push(RawProgramHeader {
                    p_type: elf::PT_LOAD.0,
                    p_flags: group.flags,
                    p_offset: group.file_offset_of(group.vaddr),
                    p_vaddr: group.vaddr,
                    p_paddr: first.p_paddr,
                    p_filesz: group.file_end - group.vaddr,
                    p_memsz: group.mem_end - group.vaddr,
                    p_align: p,
                });
            }
            continue;
        }
        let mut new = *ph;
        if ph.p_type == elf::PT_GNU_RELRO.0 && ph.p_memsz > 0 {
            let kept = relro_kept.flatten();
            let range = kept.unwrap_or(AddrRange::new(ph.p_vaddr, ph.p_vaddr));
            new.p_vaddr = range.start;
            new.p_paddr = range.start;
            new.p_memsz = range.len();
            new.p_filesz = range.len();
        }
        let located = (ph.p_memsz > 0 || ph.p_filesz > 0).then(|| group_of(new.p_vaddr)).flatten();
        new.p_offset = match located {
            Some(group) if new.p_vaddr < group.file_end || new.p_filesz == 0 => group.file_offset_of(new.p_vaddr),
            _ if ph.p_filesz == 0 => ph.p_offset.min(output_len),
            _ => translate(&moves, ph.p_offset, ph.p_filesz).ok_or_else(|| {
                format!("program header {:#x} (offset {:#x}) points at bytes the rewrite does not keep", ph.p_type, ph.p_offset)
            })?,
        };
        table.push(new);
    }
    while table.len() < headers.program_headers.len() {
        table.push(RawProgramHeader {
            p_type: elf::PT_NULL.0,
            p_flags: 0,
            p_offset: 0,
            p_vaddr: 0,
            p_paddr: 0,
            p_filesz: 0,
            p_memsz: 0,
            p_align: 0,
        });
    }

    if let (Some(r), Some(kept)) = (relro, relro_kept) {
        costs.extend(relro_costs(AddrRange::new(r.p_vaddr, r.p_vaddr.saturating_add(r.p_memsz)), kept, &groups, file, page)?);
    }

    // Section headers: allocated sections follow their segment, the others their bytes.
    let mut sections = headers.sections.clone();
    for section in sections.iter_mut().skip(1) {
        let placed = section.is_alloc().then(|| group_of(section.sh_addr)).flatten();
        section.sh_offset = match placed {
            Some(group) => group.file_offset_of(section.sh_addr),
            None if !section.has_file_bytes() => section.sh_offset.min(output_len),
            None => translate(&moves, section.sh_offset, section.sh_size).ok_or_else(|| {
                format!("section {} (offset {:#x}) lies in bytes the rewrite does not keep", section.name, section.sh_offset)
            })?,
        };
    }

    // The header tables are written over whatever copy holds them.
    let phoff = match table.iter().find(|ph| ph.p_type == elf::PT_PHDR.0) {
        Some(phdr) => phdr.p_offset,
        None => translate(&moves, headers.phoff, 1).ok_or("the program header table lies in bytes the rewrite does not keep")?,
    };
    let shoff = if headers.shoff == 0 {
        0
    } else {
        translate(&moves, headers.shoff, shdr_table_len.max(1)).ok_or("the section header table lies in bytes the rewrite does not keep")?
    };
    let header_len = headers.file_header_size();
    // Rebase moves the loaded copy of the ELF header off offset 0.
    let loaded_header = translate(&moves, 0, header_len).filter(|&copy| copy != 0);
    let program_headers = encode_program_headers(headers, &table)?;
    let mut tables = vec![("the ELF header", 0, header_len), ("the program header table", phoff, program_headers.len() as u64)];
    tables.extend(loaded_header.map(|copy| ("the loaded copy of the ELF header", copy, header_len)));
    if shoff != 0 {
        tables.push(("the section header table", shoff, shdr_table_len));
    }
    header_tables_apart(&tables)?;
    let mut literals = vec![(0, "ELF header", encode_file_header(headers, phoff, shoff)?), (phoff, "program headers", program_headers)];
    // The loaded copy is rewritten too, with e_phoff relative to itself, for
    // code that finds its program headers from __ehdr_start.
    if let Some(copy) = loaded_header.filter(|&copy| phoff >= copy) {
        literals.push((copy, "ELF header (loaded copy)", encode_file_header(headers, phoff - copy, shoff)?));
    }
    if shoff != 0 {
        literals.push((shoff, "section headers", encode_section_headers(headers, &sections)?));
    }
    let mut rewritten = Vec::new();
    for (offset, what, bytes) in literals {
        let len = bytes.len() as u64;
        for group in &groups {
            let start = group.file_offset_of(group.vaddr);
            let end = group.file_offset_of(group.file_end);
            if offset < end && start < offset + len {
                let address = u64::try_from(i128::from(offset) - group.shift).unwrap_or(0);
                rewritten.push(AddrRange::new(address, address + len));
            }
        }
        overlay(&mut pieces, offset, what, bytes);
    }
    let delta = shift.as_ref().map(|s| s.delta);
    for patch in shift.into_iter().flat_map(|s| s.patches) {
        let at = translate(&moves, patch.offset, patch.bytes.len() as u64)
            .ok_or_else(|| format!("the {} at offset {:#x} lie in bytes the rewrite does not keep", patch.what, patch.offset))?;
        overlay(&mut pieces, at, patch.what, patch.bytes);
    }
    let writable_executable =
        table.iter().any(|ph| ph.p_type == elf::PT_LOAD.0 && Prot::from_p_flags(ph.p_flags).contains(Prot::W.union(Prot::X)));
    Ok(RewritePlan {
        strategy: match (delta, merge_flags) {
            (Some(_), _) => Strategy::Rebase,
            (None, true) => Strategy::Merge,
            (None, false) => Strategy::Relayout,
        },
        delta: delta.unwrap_or(0),
        page_size: page,
        program_headers: table,
        section_headers: if headers.shoff == 0 { Vec::new() } else { sections },
        phoff,
        shoff,
        pieces,
        output_len,
        rewritten,
        costs,
        writable_executable,
        warnings,
        refused: Vec::new(),
    })
}

/// The header tables (name, output offset, length) are written whole over
/// the copied bytes; one over another would garble it. Only mangled headers
/// put them there: a PT_PHDR that does not describe the table (the table is
/// written where PT_PHDR says) or an e_shoff inside the program headers.
fn header_tables_apart(tables: &[(&str, u64, u64)]) -> Result<(), String> {
    for (n, &(first, first_at, first_len)) in tables.iter().enumerate() {
        for &(second, second_at, second_len) in &tables[n + 1..] {
            if first_at < second_at.saturating_add(second_len) && second_at < first_at.saturating_add(first_len) {
                return Err(format!(
                    "{first} ({first_at:#x}+{first_len:#x}) and {second} ({second_at:#x}+{second_len:#x}) would overlap in the output"
                ));
            }
        }
    }
    Ok(())
}

/// Trims PT_GNU_RELRO so that rounding either end to P neither protects a
/// byte outside it nor leaves a byte of it writable under one loader but not
/// another: an end is rounded away from any P-page it shares with other
/// loaded bytes, and may grow to the page boundary when nothing else is on
/// that page. `None` when nothing is left.
pub(crate) fn trim_relro(relro: AddrRange, groups: &[PageGroup], page: PageSize) -> Option<AddrRange> {
    let loaded = |range: AddrRange| groups.iter().any(|g| range.intersect(&AddrRange::new(g.vaddr, g.mem_end)).is_some());
    let start_page = page.align_down(relro.start);
    let start = if loaded(AddrRange::new(start_page, relro.start)) { page.align_up(relro.start)? } else { start_page };
    let end_page = page.align_up(relro.end)?;
    let end = if loaded(AddrRange::new(relro.end, end_page)) { page.align_down(relro.end) } else { end_page };
    // RELRO padded past its segment (lld with common-page-size = max-page-size)
    // covers a hole the kernel leaves unmapped; its mprotect would fail.
    let mapped_end = groups.iter().find(|g| g.contains(relro.start)).and_then(|g| page.align_up(g.mem_end)).unwrap_or(end);
    let end = end.min(mapped_end);
    (end > start).then(|| AddrRange::new(start.max(relro.start), end))
}

/// The `len` bytes of `piece` that start `skip` bytes into it.
pub(crate) fn part_of(piece: &OutputPiece, skip: u64, len: u64) -> OutputPiece {
    let source = match &piece.source {
        PieceSource::Copy { from } => PieceSource::Copy { from: from + skip },
        PieceSource::Zeros => PieceSource::Zeros,
        PieceSource::Bytes { what, bytes } => {
            let start = usize::try_from(skip).unwrap_or(bytes.len()).min(bytes.len());
            let end = usize::try_from(skip + len).unwrap_or(bytes.len()).min(bytes.len());
            PieceSource::Bytes { what, bytes: bytes[start..end].to_vec() }
        }
    };
    OutputPiece { offset: piece.offset + skip, len, source }
}

/// Writes `bytes` at `offset` over the pieces, splitting any piece they cover part of.
pub(crate) fn overlay(pieces: &mut Vec<OutputPiece>, offset: u64, what: &'static str, bytes: Vec<u8>) {
    if bytes.is_empty() {
        return;
    }
    let end = offset + bytes.len() as u64;
    let mut kept = Vec::with_capacity(pieces.len() + 2);
    for piece in pieces.drain(..) {
        if piece.end() <= offset || end <= piece.offset {
            kept.push(piece);
            continue;
        }
        if piece.offset < offset {
            kept.push(part_of(&piece, 0, offset - piece.offset));
        }
        if end < piece.end() {
            kept.push(part_of(&piece, end - piece.offset, piece.end() - end));
        }
    }
    kept.push(OutputPiece { offset, len: bytes.len() as u64, source: PieceSource::Bytes { what, bytes } });
    kept.sort_by_key(|p| p.offset);
    *pieces = kept;
}
