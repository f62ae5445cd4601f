//! The proof `pagefit fix` runs on what it wrote: the output's memory image
//! at P, under each target loader, holds the same bytes as the input's image
//! at 4K, and no byte loses a protection it needs.
//!
//! [`image_checks`] is pure: it replays the loaders on both files' headers and
//! returns, for every byte range of every input segment, where the expected
//! and the actual bytes come from. [`compare_contents`] then reads both files
//! through a [`ReadAt`] the caller provides, so the syscalls stay outside.
//!
//! For rebase, input address `a` is compared with output address `a + Δ`,
//! and the bytes rebase must change are predicted by [`rebase_expectations`]
//! from the input's section headers (rebase itself finds them through the
//! dynamic section), then compared like any other bytes.

use std::collections::BTreeMap;

use object::elf;
use object::read::elf::{FileHeader, ProgramHeader as _, SectionHeader as _};
use object::{Endianness, ReadRef};

use serde::{Deserialize, Serialize};

use super::packed_relocations::{encode_within, max_packed_relocations};
use super::words::{Words, PPC64_TOC_BIAS};
use crate::elf::android_relocations::decode;
use crate::elf::{ElfFile, Prot};
use crate::page::PageSize;
use crate::predict::input::LoadInput;
use crate::predict::memory::{AddrRange, Content};
use crate::predict::model::{simulate, LoaderModel, SegmentLayout};
use crate::predict::plan::{baseline, BASELINE_PAGE};

/// Where the bytes of a range come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum ByteSource {
    /// The file's bytes from this offset on.
    File {
        /// File offset of the range's first byte.
        offset: u64,
    },
    /// Zeros.
    Zero,
    /// Bytes of an [`ExpectedChange`], from `skip` bytes into it.
    Expected {
        /// Index into the changes given to [`image_checks`].
        change: usize,
        /// Bytes into the change.
        skip: u64,
    },
}

impl ByteSource {
    fn advanced(self, by: u64) -> ByteSource {
        match self {
            ByteSource::File { offset } => ByteSource::File { offset: offset + by },
            ByteSource::Zero => ByteSource::Zero,
            ByteSource::Expected { change, skip } => ByteSource::Expected { change, skip: skip + by },
        }
    }
}

/// Loaded bytes a rebase must change: their input addresses and new bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpectedChange {
    /// Input addresses.
    pub range: AddrRange,
    /// What the output must hold there.
    pub bytes: Vec<u8>,
}

/// One range whose bytes must be equal in the input's 4K image (`expected`,
/// read from the input) and the output's image at P (`actual`, read from the output).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ContentCheck {
    /// The addresses.
    pub range: AddrRange,
    /// The input's bytes there.
    pub expected: ByteSource,
    /// The output's bytes there.
    pub actual: ByteSource,
}

/// Lists, for every byte of every input PT_LOAD, where its bytes come from in
/// both images, and fails when the output at `page` leaves a byte unmapped or
/// takes away a protection it needs: read from anything, execute from code,
/// write from data that is written after relocation (RELRO is not).
/// `rewritten` holds output addresses whose bytes change on purpose (header
/// tables). Input address `a` is output address `a + delta`; `changes`
/// (sorted, from [`rebase_expectations`]) are compared against their
/// predicted bytes instead of the input's.
pub fn image_checks(
    input: &ElfFile,
    output: &ElfFile,
    page: PageSize,
    loaders: &[LoaderModel],
    rewritten: &[AddrRange],
    delta: u64,
    changes: &[ExpectedChange],
) -> Result<Vec<ContentCheck>, String> {
    let before_input = LoadInput::from_elf(input, "input");
    let after_input = LoadInput::from_elf(output, "output");
    let relro = before_input.relro;
    let mut checks: Vec<ContentCheck> = Vec::new();
    for &loader in loaders {
        let before = baseline(&before_input, BASELINE_PAGE, loader);
        let after = simulate(SegmentLayout { loads: &after_input.loads, relro: after_input.relro }, page, loader)
            .map_err(|r| format!("{loader} refuses the output at {page}: {}", r.loader_message))?;
        for segment in &before_input.loads {
            let mut cuts = vec![segment.vaddr, segment.file_end(), segment.mem_end()];
            let within = |a: u64| segment.vaddr < a && a < segment.mem_end();
            for region in before.regions() {
                cuts.extend([region.range.start, region.range.end].into_iter().filter(|&a| within(a)));
            }
            for range in after.regions().iter().map(|r| &r.range).chain(rewritten) {
                let back = [range.start.checked_sub(delta), range.end.checked_sub(delta)];
                cuts.extend(back.into_iter().flatten().filter(|&a| within(a)));
            }
            for range in relro.iter().chain(changes.iter().map(|c| &c.range)) {
                cuts.extend([range.start, range.end].into_iter().filter(|&a| within(a)));
            }
            for section in &input.sections {
                cuts.extend([section.addr, section.end()].into_iter().filter(|&a| within(a)));
            }
            cuts.sort_unstable();
            cuts.dedup();
            for pair in cuts.windows(2) {
                let piece = AddrRange::new(pair[0], pair[1]);
                let moved = piece.start + delta;
                if piece.is_empty() || rewritten.iter().any(|r| r.start <= moved && moved < r.end) {
                    continue;
                }
                let at = piece.start;
                let what = || {
                    let names: Vec<&str> =
                        input.sections.iter().filter(|s| s.addr <= at && at < s.end()).map(|s| s.name.as_str()).collect();
                    if names.is_empty() {
                        format!("{at:#x}")
                    } else {
                        format!("{at:#x} ({})", names.join(", "))
                    }
                };
                let Some(region) = after.region_at(at + delta) else {
                    return Err(format!("{} is not mapped by {loader} at {page}", what()));
                };
                let covering: Vec<_> = input.sections.iter().filter(|s| s.addr <= at && at < s.end()).collect();
                let (code, written) = if input.sections.is_empty() {
                    (segment.prot.is_executable(), segment.prot.is_writable())
                } else {
                    (covering.iter().any(|s| s.is_code()), covering.iter().any(|s| s.is_writable()))
                };
                let was = before.region_at(at).map_or(Prot::NONE, |r| r.prot);
                let now = region.prot;
                let in_relro = relro.is_some_and(|r| r.start <= at && at < r.end);
                let lost = |bit: Prot| was.contains(bit) && !now.contains(bit);
                if lost(Prot::R) || code && lost(Prot::X) || written && !in_relro && lost(Prot::W) {
                    return Err(format!("{} is {} at 4K but {} under {loader} at {page}", what(), was.maps_string(), now.maps_string()));
                }
                let change = changes.partition_point(|c| c.range.end <= at);
                let expected = if changes.get(change).is_some_and(|c| c.range.start <= at) {
                    ByteSource::Expected { change, skip: at - changes[change].range.start }
                } else if at < segment.file_end() {
                    ByteSource::File { offset: segment.offset + (at - segment.vaddr) }
                } else {
                    ByteSource::Zero
                };
                let actual = match region.content {
                    Content::Zero => ByteSource::Zero,
                    Content::File { shift } => ByteSource::File {
                        offset: u64::try_from(i128::from(at + delta) + shift)
                            .map_err(|_| format!("{} maps before the output's start", what()))?,
                    },
                };
                checks.push(ContentCheck { range: piece, expected, actual });
            }
        }
    }
    checks.sort_unstable();
    checks.dedup();
    Ok(coalesce(checks))
}

/// Joins ranges that continue each other on both sides.
fn coalesce(checks: Vec<ContentCheck>) -> Vec<ContentCheck> {
    let mut out: Vec<ContentCheck> = Vec::with_capacity(checks.len());
    for check in checks {
        if let Some(last) = out.last_mut() {
            let len = last.range.len();
            if last.range.end == check.range.start
                && last.expected.advanced(len) == check.expected
                && last.actual.advanced(len) == check.actual
            {
                last.range.end = check.range.end;
                continue;
            }
        }
        out.push(check);
    }
    out
}

/// Positioned reads, implemented by the caller (`pread` on a file, or a slice in tests).
pub trait ReadAt {
    /// Fills `buf` with the bytes at `offset`, failing at the end of the data.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()>;
}

impl ReadAt for [u8] {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let start = usize::try_from(offset).ok().filter(|&s| s.checked_add(buf.len()).is_some_and(|end| end <= self.len()));
        let start = start.ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(&self[start..start + buf.len()]);
        Ok(())
    }
}

/// How much of the two files [`compare_contents`] reads at a time.
const COMPARE_CHUNK: usize = 256 * 1024;

/// What [`compare_contents`] compared.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComparedBytes {
    /// Ranges compared.
    pub ranges: usize,
    /// Bytes compared.
    pub bytes: u64,
}

/// Compares the bytes of every check (`changes` as given to
/// [`image_checks`]). `Ok(Err(message))` names the first input address where
/// the images differ; `Err` is a read error.
pub fn compare_contents<I: ReadAt + ?Sized, O: ReadAt + ?Sized>(
    checks: &[ContentCheck],
    input: &I,
    output: &O,
    changes: &[ExpectedChange],
) -> std::io::Result<Result<ComparedBytes, String>> {
    let mut expected = vec![0u8; COMPARE_CHUNK];
    let mut actual = vec![0u8; COMPARE_CHUNK];
    let mut compared = ComparedBytes::default();
    for check in checks {
        compared.ranges += 1;
        // Mangled headers can describe zero ranges that add up past 2^64.
        compared.bytes = compared.bytes.saturating_add(check.range.len());
        // Zeros against zeros need no reading (a bss can be gigabytes).
        if check.expected == ByteSource::Zero && check.actual == ByteSource::Zero {
            continue;
        }
        let mut at = check.range.start;
        while at < check.range.end {
            let len = usize::try_from(check.range.end - at).unwrap_or(COMPARE_CHUNK).min(COMPARE_CHUNK);
            let done = at - check.range.start;
            fill(&mut expected[..len], check.expected.advanced(done), input, changes)?;
            fill(&mut actual[..len], check.actual.advanced(done), output, changes)?;
            // Slice equality is a memcmp; the byte loop runs only to name a difference.
            if expected[..len] != actual[..len] {
                let i = expected[..len].iter().zip(&actual[..len]).position(|(a, b)| a != b).unwrap_or(0);
                return Ok(Err(format!(
                    "the byte at {:#x} is {:#04x} in the input's 4K image but {:#04x} in the output's",
                    at + i as u64,
                    expected[i],
                    actual[i]
                )));
            }
            at += len as u64;
        }
    }
    Ok(Ok(compared))
}

fn fill<F: ReadAt + ?Sized>(buf: &mut [u8], source: ByteSource, file: &F, changes: &[ExpectedChange]) -> std::io::Result<()> {
    match source {
        ByteSource::Expected { change, skip } => {
            let bytes = changes.get(change).and_then(|c| c.bytes.get(usize::try_from(skip).ok()?..)?.get(..buf.len()));
            buf.copy_from_slice(bytes.ok_or_else(|| std::io::Error::other("an expected change is shorter than its range"))?);
            Ok(())
        }
        ByteSource::Zero => {
            buf.fill(0);
            Ok(())
        }
        ByteSource::File { offset } => file.read_exact_at(buf, offset),
    }
}

/// Tags whose value is an address, by the gABI's encoding rule: its table
/// below DT_ENCODING, even tags from DT_ENCODING to DT_LOOS, GNU's address
/// range (whose audit tags are string offsets), the GNU version tables, and
/// ppc64's glink stub address. DT_DEBUG is 0 in files (ld.so fills it in memory).
fn tag_holds_address(tag: u64, machine: elf::Machine) -> bool {
    const GABI_POINTERS: [elf::DynamicTag; 11] = [
        elf::DT_PLTGOT,
        elf::DT_HASH,
        elf::DT_STRTAB,
        elf::DT_SYMTAB,
        elf::DT_RELA,
        elf::DT_INIT,
        elf::DT_FINI,
        elf::DT_REL,
        elf::DT_JMPREL,
        elf::DT_INIT_ARRAY,
        elf::DT_FINI_ARRAY,
    ];
    let tag = elf::DynamicTag(tag as i64);
    if tag.0 < elf::DT_ENCODING.0 {
        GABI_POINTERS.contains(&tag)
    } else if tag.0 < elf::DT_LOOS {
        tag.0 % 2 == 0
    } else if matches!(tag, elf::DT_ANDROID_REL | elf::DT_ANDROID_RELA | elf::DT_ANDROID_RELR) {
        true
    } else if tag.is_address() {
        !matches!(tag, elf::DT_CONFIG | elf::DT_DEPAUDIT | elf::DT_AUDIT)
    } else {
        matches!(tag, elf::DT_VERSYM | elf::DT_VERDEF | elf::DT_VERNEED) || (machine == elf::EM_PPC64 && tag == elf::DT_PPC64_GLINK)
    }
}

/// The relative relocation types (base plus addend) and the PLT slot type
/// (whose in-place value lazy binding adds the base to) of a machine.
fn machine_relocations(machine: elf::Machine) -> Option<([u32; 2], u32)> {
    match machine {
        elf::EM_X86_64 => Some(([elf::R_X86_64_RELATIVE.0, elf::R_X86_64_IRELATIVE.0], elf::R_X86_64_JUMP_SLOT.0)),
        elf::EM_AARCH64 => Some(([elf::R_AARCH64_RELATIVE.0, elf::R_AARCH64_IRELATIVE.0], elf::R_AARCH64_JUMP_SLOT.0)),
        elf::EM_ARM => Some(([elf::R_ARM_RELATIVE.0, elf::R_ARM_IRELATIVE.0], elf::R_ARM_JUMP_SLOT.0)),
        elf::EM_386 => Some(([elf::R_386_RELATIVE.0, elf::R_386_IRELATIVE.0], elf::R_386_JMP_SLOT.0)),
        elf::EM_PPC64 => Some(([elf::R_PPC64_RELATIVE.0, elf::R_PPC64_IRELATIVE.0], elf::R_PPC64_JMP_SLOT.0)),
        _ => None,
    }
}

/// Predicts, from the input's section headers, every loaded byte a shift by
/// `delta` changes: dynamic entries that hold addresses, relocation offsets
/// and relative addends (in RELA entries, or for REL in the place), RELR
/// addresses and the words they relocate, PLT slot values, GOT[0]
/// (`_DYNAMIC`, or ppc64's TOC base), and `.dynsym` values. Sorted by address.
pub fn rebase_expectations<'data, R: ReadRef<'data>>(data: R, delta: u64) -> Result<Vec<ExpectedChange>, String> {
    let class = data.read_bytes_at(4, 1).map_err(|()| "no ELF class byte".to_string())?[0];
    if class == elf::ELFCLASS64.0 {
        expectations(elf::FileHeader64::<Endianness>::parse(data).map_err(|e| format!("ELF header: {e}"))?, data, delta, true)
    } else {
        expectations(elf::FileHeader32::<Endianness>::parse(data).map_err(|e| format!("ELF header: {e}"))?, data, delta, false)
    }
}

/// Cuts `bytes` to whole entries of `size`.
fn whole_entries(bytes: &mut Vec<u8>, size: u64) {
    bytes.truncate(bytes.len() - bytes.len() % size as usize);
}

fn expectations<'data, Elf: FileHeader<Endian = Endianness>, R: ReadRef<'data>>(
    header: &Elf,
    data: R,
    delta: u64,
    wide: bool,
) -> Result<Vec<ExpectedChange>, String> {
    let e = header.endian().map_err(|e| e.to_string())?;
    let words = Words::new(wide, e);
    let machine = header.e_machine(e);
    let (relative, jump_slot) =
        machine_relocations(machine).ok_or("rebased files are proven for x86_64, aarch64, arm, i386 and ppc64 only")?;
    let loads: Vec<(u64, u64, u64, u64)> = header
        .program_headers(e, data)
        .map_err(|e| e.to_string())?
        .iter()
        .filter(|ph| ph.p_type(e) == elf::PT_LOAD && ph.p_memsz(e).into() > 0)
        .map(|ph| (ph.p_vaddr(e).into(), ph.p_offset(e).into(), ph.p_filesz(e).into(), ph.p_memsz(e).into()))
        .collect();
    let image = AddrRange::new(loads.iter().map(|l| l.0).min().unwrap_or(0), loads.iter().map(|l| l.0 + l.3).max().unwrap_or(0));
    let word_at = |address: u64| -> Option<u64> {
        let &(vaddr, offset, ..) = loads.iter().find(|l| l.0 <= address && address + words.size() <= l.0 + l.2)?;
        words.get(data.read_bytes_at(offset + (address - vaddr), words.size()).ok()?, 0)
    };
    let moved = |value: u64| value.wrapping_add(delta) & words.mask();
    let sections = header.sections(e, data).map_err(|e| e.to_string())?;
    let dynamic_address: Option<u64> = sections.iter().find(|s| s.sh_type(e) == elf::SHT_DYNAMIC).map(|s| s.sh_addr(e).into());
    let allocated = |flags: elf::SectionFlags| flags.0 & elf::SHF_ALLOC.0 != 0;
    let mut changes = Vec::new();
    let mut moved_words: BTreeMap<u64, u64> = BTreeMap::new();
    for section in sections.iter().filter(|s| allocated(s.sh_flags(e))) {
        let start: u64 = section.sh_addr(e).into();
        let kind = section.sh_type(e);
        let packed = matches!(kind, elf::SHT_ANDROID_REL | elf::SHT_ANDROID_RELA);
        let relr = matches!(kind, elf::SHT_RELR | elf::SHT_ANDROID_RELR);
        if !(packed || relr || matches!(kind, elf::SHT_DYNAMIC | elf::SHT_RELA | elf::SHT_REL | elf::SHT_DYNSYM)) {
            continue;
        }
        let mut bytes = section.data(e, data).map_err(|error| format!("the section at {start:#x}: {error}"))?.to_vec();
        // What a shift does to one relocation: the words it moves, and its new addend.
        let mut shift_relocation = |place: u64, r_type: u32, addend: Option<u64>| -> Result<Option<u64>, String> {
            if relative.contains(&r_type) && addend.is_none() {
                let value = word_at(place).ok_or(format!("a relative relocation names {place:#x}, which has no file bytes"))?;
                moved_words.insert(place, moved(value));
            }
            if let Some(value) = word_at(place).filter(|&v| r_type == jump_slot && image.start <= v && v < image.end) {
                moved_words.insert(place, moved(value));
            }
            Ok(addend.map(|addend| if relative.contains(&r_type) { moved(addend) } else { addend }))
        };
        match kind {
            _ if packed => {
                let explicit_addend = kind == elf::SHT_ANDROID_RELA;
                let limit = max_packed_relocations(image.len(), words.size());
                let mut table = decode(&bytes, wide, explicit_addend, limit).map_err(|error| error.to_string())?;
                for relocation in table.groups.iter_mut().flat_map(|g| g.relocations.iter_mut()) {
                    let (_, r_type) = words.symbol_and_type(relocation.info);
                    let addend = shift_relocation(relocation.offset, r_type, explicit_addend.then_some(relocation.addend))?;
                    relocation.addend = addend.unwrap_or(relocation.addend);
                    relocation.offset = moved(relocation.offset);
                }
                bytes = encode_within(&table, wide, bytes.len())?;
            }
            elf::SHT_DYNAMIC => {
                let size = words.dynamic_entry_size();
                whole_entries(&mut bytes, size);
                for at in (0..bytes.len() as u64).step_by(size as usize) {
                    let (tag, value) = (words.get(&bytes, at).unwrap_or(0), words.get(&bytes, at + words.size()).unwrap_or(0));
                    if tag == elf::DT_NULL.0 as u64 {
                        break;
                    }
                    if tag_holds_address(tag, machine) && value != 0 {
                        words.put(&mut bytes, at + words.size(), moved(value))?;
                    }
                }
            }
            elf::SHT_RELA | elf::SHT_REL => {
                let explicit_addend = kind == elf::SHT_RELA;
                let size = words.relocation_size(explicit_addend);
                whole_entries(&mut bytes, size);
                for at in (0..bytes.len() as u64).step_by(size as usize) {
                    let place = words.get(&bytes, at).unwrap_or(0);
                    let (_, r_type) = words.symbol_and_type(words.get(&bytes, at + words.size()).unwrap_or(0));
                    words.put(&mut bytes, at, moved(place))?;
                    let addend_at = at + 2 * words.size();
                    let addend = explicit_addend.then(|| words.get(&bytes, addend_at).unwrap_or(0));
                    if let Some(addend) = shift_relocation(place, r_type, addend)? {
                        words.put(&mut bytes, addend_at, addend)?;
                    }
                }
            }
            _ if relr => {
                whole_entries(&mut bytes, words.size());
                let mut base = 0;
                for at in (0..bytes.len() as u64).step_by(words.size() as usize) {
                    let value = words.get(&bytes, at).unwrap_or(0);
                    let relocated: Vec<u64> = if value & 1 == 0 {
                        words.put(&mut bytes, at, moved(value))?;
                        base = value + words.size();
                        vec![value]
                    } else {
                        let bitmap_base = base;
                        base += words.relr_bitmap_bits() * words.size();
                        (1..=words.relr_bitmap_bits())
                            .filter(|bit| value >> bit & 1 == 1)
                            .map(|bit| bitmap_base + (bit - 1) * words.size())
                            .collect()
                    };
                    for place in relocated {
                        moved_words.insert(place, moved(word_at(place).ok_or(format!("RELR names {place:#x}, which has no file bytes"))?));
                    }
                }
            }
            _ => {
                let size = words.symbol_size();
                whole_entries(&mut bytes, size);
                for at in (0..bytes.len() as u64).step_by(size as usize) {
                    let (index, tls) = words.symbol_section_and_tls(&bytes[at as usize..(at + size) as usize]).unwrap_or((0, false));
                    let in_alloc = index != 0
                        && index < elf::SHN_LORESERVE
                        && sections.section(object::SectionIndex(index.into())).is_ok_and(|s| allocated(s.sh_flags(e)));
                    if in_alloc && !tls {
                        let value_at = at + words.symbol_value_at();
                        let value = words.get(&bytes, value_at).unwrap_or(0);
                        words.put(&mut bytes, value_at, moved(value))?;
                    }
                }
            }
        }
        changes.push(ExpectedChange { range: AddrRange::new(start, start + bytes.len() as u64), bytes });
    }
    for name in [".got", ".got.plt"] {
        let Some((_, got)) = sections.section_by_name(e, name.as_bytes()) else { continue };
        let slot: u64 = got.sh_addr(e).into();
        let toc_base = machine == elf::EM_PPC64 && name == ".got" && word_at(slot) == Some(slot + PPC64_TOC_BIAS);
        if (dynamic_address.is_some() && word_at(slot) == dynamic_address) || toc_base {
            moved_words.insert(slot, moved(word_at(slot).unwrap_or(0)));
        }
    }
    // Adjacent words (a GOT's PLT slots) become one change, so the image is cut less.
    let mut runs: Vec<ExpectedChange> = Vec::new();
    for (address, value) in moved_words {
        let bytes = words.encode(value)?;
        match runs.last_mut() {
            Some(run) if run.range.end == address => {
                run.range.end += words.size();
                run.bytes.extend_from_slice(&bytes);
            }
            _ => runs.push(ExpectedChange { range: AddrRange::new(address, address + words.size()), bytes }),
        }
    }
    changes.extend(runs);
    changes.sort_by_key(|c| c.range.start);
    if let Some(pair) = changes.windows(2).find(|pair| pair[1].range.start < pair[0].range.end) {
        return Err(format!("two predicted changes overlap at {:#x}", pair[1].range.start));
    }
    Ok(changes)
}
