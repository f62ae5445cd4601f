//! The rebase strategy's address accounting: every value inside an ET_DYN
//! file that holds a link-time address, found the way ld.so finds it
//! (through PT_DYNAMIC and the tags there), and its new bytes after a shift
//! by Δ. Anything that cannot be accounted for is a refusal with the reason.
//!
//! `proof::rebase_expectations` predicts the same changes through the
//! section headers instead, so the two paths check each other: before
//! anything is written ([`agree_with_sections`]) and in the proof of the output.

use std::collections::BTreeMap;

use object::elf;
use object::ReadRef;

use super::headers::RawHeaders;
use super::packed_relocations::{encode_within, max_packed_relocations};
use super::proof::rebase_expectations;
use super::words::{Words, PPC64_TOC_BIAS};
use crate::elf::android_relocations::decode;
use crate::elf::ElfFile;

/// New bytes for the input's bytes at `offset` (an input file offset).
pub(crate) struct Patch {
    pub offset: u64,
    pub bytes: Vec<u8>,
    pub what: &'static str,
}

/// How a machine's dynamic relocation types depend on the load address.
struct RelocationTypes {
    /// Base plus addend: the addend (in the entry, or for REL in the place)
    /// is a link-time address.
    relative: &'static [u32],
    /// PLT slots whose in-place value (a PLT address) lazy binding adds the base to.
    jump_slot: u32,
    /// Symbol plus addend; with symbol 0 the addend alone is an absolute address.
    absolute: u32,
    /// Values that do not depend on where this object is loaded.
    independent: &'static [u32],
}

fn relocation_types(machine: u16) -> Option<RelocationTypes> {
    match elf::Machine(machine) {
        elf::EM_X86_64 => Some(RelocationTypes {
            relative: &[elf::R_X86_64_RELATIVE.0, elf::R_X86_64_IRELATIVE.0],
            jump_slot: elf::R_X86_64_JUMP_SLOT.0,
            absolute: elf::R_X86_64_64.0,
            independent: &[
                elf::R_X86_64_NONE.0,
                elf::R_X86_64_GLOB_DAT.0,
                elf::R_X86_64_COPY.0,
                elf::R_X86_64_DTPMOD64.0,
                elf::R_X86_64_DTPOFF64.0,
                elf::R_X86_64_TPOFF64.0,
                elf::R_X86_64_TLSDESC.0,
            ],
        }),
        elf::EM_AARCH64 => Some(RelocationTypes {
            relative: &[elf::R_AARCH64_RELATIVE.0, elf::R_AARCH64_IRELATIVE.0],
            jump_slot: elf::R_AARCH64_JUMP_SLOT.0,
            absolute: elf::R_AARCH64_ABS64.0,
            independent: &[
                elf::R_AARCH64_NONE.0,
                elf::R_AARCH64_GLOB_DAT.0,
                elf::R_AARCH64_COPY.0,
                elf::R_AARCH64_TLS_DTPMOD.0,
                elf::R_AARCH64_TLS_DTPREL.0,
                elf::R_AARCH64_TLS_TPREL.0,
                elf::R_AARCH64_TLSDESC.0,
            ],
        }),
        // glibc's arm elf_machine_rel: GLOB_DAT and JUMP_SLOT store the
        // symbol's address over the place; TLS values are offsets; a lazy
        // TLS_DESC takes its entry from DT_TLSDESC_PLT, a tag that moves.
        elf::EM_ARM => Some(RelocationTypes {
            relative: &[elf::R_ARM_RELATIVE.0, elf::R_ARM_IRELATIVE.0],
            jump_slot: elf::R_ARM_JUMP_SLOT.0,
            absolute: elf::R_ARM_ABS32.0,
            independent: &[
                elf::R_ARM_NONE.0,
                elf::R_ARM_GLOB_DAT.0,
                elf::R_ARM_COPY.0,
                elf::R_ARM_TLS_DTPMOD32.0,
                elf::R_ARM_TLS_DTPOFF32.0,
                elf::R_ARM_TLS_TPOFF32.0,
                elf::R_ARM_TLS_DESC.0,
            ],
        }),
        // glibc's i386 elf_machine_rel, as arm's: REL with addends in place;
        // GLOB_DAT and JMP_SLOT store the symbol's address, TLS values are offsets.
        elf::EM_386 => Some(RelocationTypes {
            relative: &[elf::R_386_RELATIVE.0, elf::R_386_IRELATIVE.0],
            jump_slot: elf::R_386_JMP_SLOT.0,
            absolute: elf::R_386_32.0,
            independent: &[
                elf::R_386_NONE.0,
                elf::R_386_GLOB_DAT.0,
                elf::R_386_COPY.0,
                elf::R_386_TLS_TPOFF.0,
                elf::R_386_TLS_DTPMOD32.0,
                elf::R_386_TLS_DTPOFF32.0,
                elf::R_386_TLS_TPOFF32.0,
                elf::R_386_TLS_DESC.0,
            ],
        }),
        // ELFv2: the PLT is NOBITS and ld.so fills it from DT_PPC64_GLINK.
        elf::EM_PPC64 => Some(RelocationTypes {
            relative: &[elf::R_PPC64_RELATIVE.0, elf::R_PPC64_IRELATIVE.0],
            jump_slot: elf::R_PPC64_JMP_SLOT.0,
            absolute: elf::R_PPC64_ADDR64.0,
            independent: &[
                elf::R_PPC64_NONE.0,
                elf::R_PPC64_GLOB_DAT.0,
                elf::R_PPC64_COPY.0,
                elf::R_PPC64_DTPMOD64.0,
                elf::R_PPC64_DTPREL64.0,
                elf::R_PPC64_TPREL64.0,
            ],
        }),
        _ => None,
    }
}

/// What a dynamic tag's value is.
enum TagValue {
    Address,
    Plain,
}

fn tag_value(tag: elf::DynamicTag, flags: u64, machine: u16) -> Result<TagValue, String> {
    use TagValue::{Address, Plain};
    Ok(match tag {
        elf::DT_PLTGOT
        | elf::DT_HASH
        | elf::DT_STRTAB
        | elf::DT_SYMTAB
        | elf::DT_RELA
        | elf::DT_INIT
        | elf::DT_FINI
        | elf::DT_REL
        | elf::DT_JMPREL
        | elf::DT_INIT_ARRAY
        | elf::DT_FINI_ARRAY
        | elf::DT_PREINIT_ARRAY
        | elf::DT_SYMTAB_SHNDX
        | elf::DT_RELR
        | elf::DT_ANDROID_REL
        | elf::DT_ANDROID_RELA
        | elf::DT_ANDROID_RELR
        | elf::DT_GNU_HASH
        | elf::DT_TLSDESC_PLT
        | elf::DT_TLSDESC_GOT
        | elf::DT_PLTPAD
        | elf::DT_MOVETAB
        | elf::DT_SYMINFO
        | elf::DT_VERSYM
        | elf::DT_VERDEF
        | elf::DT_VERNEED => Address,
        // DT_DEBUG is 0 in the file; ld.so stores r_debug's run-time address there.
        elf::DT_NULL
        | elf::DT_NEEDED
        | elf::DT_PLTRELSZ
        | elf::DT_RELASZ
        | elf::DT_RELAENT
        | elf::DT_STRSZ
        | elf::DT_SYMENT
        | elf::DT_SONAME
        | elf::DT_RPATH
        | elf::DT_SYMBOLIC
        | elf::DT_RELSZ
        | elf::DT_RELENT
        | elf::DT_PLTREL
        | elf::DT_DEBUG
        | elf::DT_BIND_NOW
        | elf::DT_INIT_ARRAYSZ
        | elf::DT_FINI_ARRAYSZ
        | elf::DT_RUNPATH
        | elf::DT_PREINIT_ARRAYSZ
        | elf::DT_RELRSZ
        | elf::DT_RELRENT
        | elf::DT_ANDROID_RELSZ
        | elf::DT_ANDROID_RELASZ
        | elf::DT_ANDROID_RELRSZ
        | elf::DT_ANDROID_RELRENT
        | elf::DT_RELACOUNT
        | elf::DT_RELCOUNT
        | elf::DT_FLAGS_1
        | elf::DT_VERDEFNUM
        | elf::DT_VERNEEDNUM
        | elf::DT_CONFIG
        | elf::DT_DEPAUDIT
        | elf::DT_AUDIT
        | elf::DT_AUXILIARY
        | elf::DT_FILTER
        | elf::DT_CHECKSUM
        | elf::DT_PLTPADSZ
        | elf::DT_MOVEENT
        | elf::DT_MOVESZ
        | elf::DT_FEATURE_1
        | elf::DT_POSFLAG_1
        | elf::DT_SYMINSZ
        | elf::DT_SYMINENT => Plain,
        elf::DT_FLAGS if flags & elf::DF_TEXTREL.0 == 0 => Plain,
        elf::DT_TEXTREL | elf::DT_FLAGS => {
            return Err("the file has text relocations (DT_TEXTREL): code holds absolute addresses that only its relocations name".into())
        }
        elf::DT_GNU_PRELINKED | elf::DT_GNU_CONFLICT | elf::DT_GNU_CONFLICTSZ | elf::DT_GNU_LIBLIST | elf::DT_GNU_LIBLISTSZ => {
            return Err("the file is prelinked: its prelink conflict and library lists hold absolute addresses".into())
        }
        elf::DT_AARCH64_BTI_PLT | elf::DT_AARCH64_PAC_PLT | elf::DT_AARCH64_VARIANT_PCS if machine == elf::EM_AARCH64.0 => Plain,
        elf::DT_PPC64_GLINK if machine == elf::EM_PPC64.0 => Address,
        elf::DT_PPC64_OPT if machine == elf::EM_PPC64.0 => Plain,
        elf::DT_PPC64_OPD | elf::DT_PPC64_OPDSZ if machine == elf::EM_PPC64.0 => {
            return Err("the file has ELFv1 function descriptors (.opd), whose entries hold absolute addresses".into())
        }
        other => return Err(format!("dynamic tag {:#x} is not one rebase knows, so whether it holds an address is unknown", other.0)),
    })
}

/// Table addresses and sizes the dynamic section names.
#[derive(Default)]
struct DynamicTables {
    rela: Option<u64>,
    rela_size: u64,
    rel: Option<u64>,
    rel_size: u64,
    jmprel: Option<u64>,
    plt_size: u64,
    plt_is_rel: bool,
    relr: Option<u64>,
    relr_size: u64,
    /// DT_ANDROID_REL or DT_ANDROID_RELA (bionic keeps one packed table), and whether it is RELA.
    packed: Option<(u64, bool)>,
    packed_size: u64,
    symtab: Option<u64>,
    pltgot: Option<u64>,
}

/// Reads the input's bytes at a link-time address (file-backed bytes only).
struct Image<'a, R> {
    data: R,
    headers: &'a RawHeaders,
    words: Words,
    start: u64,
    end: u64,
}

impl<'data, R: ReadRef<'data>> Image<'_, R> {
    fn offset_of(&self, address: u64, len: u64) -> Option<u64> {
        self.headers
            .program_headers
            .iter()
            .filter(|ph| ph.p_type == elf::PT_LOAD.0)
            .find(|ph| ph.p_vaddr <= address && address.checked_add(len).is_some_and(|end| end <= ph.p_vaddr + ph.p_filesz))
            .map(|ph| ph.p_offset + (address - ph.p_vaddr))
    }
    fn contains(&self, address: u64) -> bool {
        self.start <= address && address < self.end
    }
    /// The file's bytes of a table at a link-time address.
    fn table(&self, address: u64, size: u64, what: &str) -> Result<(u64, &'data [u8]), String> {
        let offset = self.offset_of(address, size).ok_or_else(|| format!("{what} at {address:#x} has no bytes in the file"))?;
        let bytes = self.data.read_bytes_at(offset, size).map_err(|()| format!("{what} at {address:#x} runs past the end of the file"))?;
        Ok((offset, bytes))
    }
    /// The address-sized word at `address`, if the file holds it.
    fn word(&self, address: u64) -> Option<u64> {
        let offset = self.offset_of(address, self.words.size())?;
        let bytes = self.data.read_bytes_at(offset, self.words.size()).ok()?;
        self.words.get(bytes, 0)
    }
    fn word_or_error(&self, address: u64) -> Result<u64, String> {
        self.word(address).ok_or_else(|| format!("the word at {address:#x} has no bytes in the file"))
    }
}

/// Every patch a shift by `delta` needs, or why rebase cannot account for the file.
pub(super) fn address_patches<'data, R: ReadRef<'data>>(
    data: R,
    headers: &RawHeaders,
    file: &ElfFile,
    delta: u64,
) -> Result<Vec<Patch>, String> {
    let words = Words::new(headers.is_64(), headers.endian);
    let types = relocation_types(file.machine).ok_or_else(|| {
        format!("rebase knows the dynamic relocations of x86_64, aarch64, arm, i386 and ppc64 only, not {}", file.machine_name())
    })?;
    let loads = || headers.program_headers.iter().filter(|ph| ph.p_type == elf::PT_LOAD.0 && ph.p_memsz > 0);
    let image = Image {
        data,
        headers,
        words,
        start: loads().map(|ph| ph.p_vaddr).min().unwrap_or(0),
        end: loads().map(|ph| ph.p_vaddr + ph.p_memsz).max().unwrap_or(0),
    };
    let shifted = |value: u64| -> Result<u64, String> {
        let moved = value.checked_add(delta).ok_or_else(|| format!("{value:#x} + Δ {delta:#x} overflows"))?;
        words.encode(moved)?;
        Ok(moved)
    };
    let mut patches = Vec::new();
    // Words in the image that hold addresses, by address: each changes once.
    let mut moved_words: BTreeMap<u64, u64> = BTreeMap::new();

    // The dynamic section: tags that hold addresses.
    let dynamic = headers
        .program_headers
        .iter()
        .find(|ph| ph.p_type == elf::PT_DYNAMIC.0)
        .ok_or("the file has no PT_DYNAMIC, so nothing says where its relocations are")?;
    let entry_size = words.dynamic_entry_size();
    let dynamic_size = dynamic.p_filesz - dynamic.p_filesz % entry_size;
    let entries = data.read_bytes_at(dynamic.p_offset, dynamic_size).map_err(|()| "PT_DYNAMIC runs past the end of the file")?;
    let entry = |index: u64| -> (u64, u64) {
        let at = index * entry_size;
        (words.get(entries, at).unwrap_or(0), words.get(entries, at + words.size()).unwrap_or(0))
    };
    let count = dynamic_size / entry_size;
    let flags = (0..count).map(entry).find(|&(tag, _)| tag == elf::DT_FLAGS.0 as u64).map_or(0, |(_, value)| value);
    let mut tables = DynamicTables::default();
    let mut new_entries = entries.to_vec();
    for index in 0..count {
        let (tag, value) = entry(index);
        let tag = elf::DynamicTag(tag as i64);
        if tag == elf::DT_NULL {
            break;
        }
        if let TagValue::Address = tag_value(tag, flags, file.machine)? {
            if value != 0 {
                words.put(&mut new_entries, index * entry_size + words.size(), shifted(value)?)?;
            }
        }
        match tag {
            elf::DT_RELA => tables.rela = Some(value),
            elf::DT_RELASZ => tables.rela_size = value,
            elf::DT_REL => tables.rel = Some(value),
            elf::DT_RELSZ => tables.rel_size = value,
            elf::DT_JMPREL => tables.jmprel = Some(value),
            elf::DT_PLTRELSZ => tables.plt_size = value,
            elf::DT_PLTREL => tables.plt_is_rel = value == elf::DT_REL.0 as u64,
            // bionic reads DT_ANDROID_RELR as DT_RELR.
            elf::DT_RELR | elf::DT_ANDROID_RELR => tables.relr = Some(value),
            elf::DT_RELRSZ | elf::DT_ANDROID_RELRSZ => tables.relr_size = value,
            elf::DT_ANDROID_REL | elf::DT_ANDROID_RELA => tables.packed = Some((value, tag == elf::DT_ANDROID_RELA)),
            elf::DT_ANDROID_RELSZ | elf::DT_ANDROID_RELASZ => tables.packed_size = value,
            elf::DT_SYMTAB => tables.symtab = Some(value),
            elf::DT_PLTGOT => tables.pltgot = Some(value),
            _ => {}
        }
    }
    patches.push(Patch { offset: dynamic.p_offset, bytes: new_entries, what: "dynamic section" });

    // REL and RELA tables; DT_RELSZ/DT_RELASZ may or may not cover DT_JMPREL, and each entry is patched once.
    let mut relocation_tables: Vec<(u64, u64, bool)> = [
        tables.rela.map(|a| (a, tables.rela_size, true)),
        tables.rel.map(|a| (a, tables.rel_size, false)),
        tables.jmprel.map(|a| (a, tables.plt_size, !tables.plt_is_rel)),
    ]
    .into_iter()
    .flatten()
    .filter(|&(_, size, _)| size > 0)
    .collect();
    relocation_tables.sort_unstable();
    relocation_tables.dedup();
    let mut index = 1;
    while index < relocation_tables.len() {
        let ((a, a_size, a_rela), (b, b_size, b_rela)) = (relocation_tables[index - 1], relocation_tables[index]);
        if b < a + a_size {
            if b + b_size > a + a_size || a_rela != b_rela {
                return Err(format!("the relocation tables at {a:#x}+{a_size:#x} and {b:#x}+{b_size:#x} overlap in part"));
            }
            relocation_tables.remove(index);
        } else {
            index += 1;
        }
    }
    // One relocation at `place`: records the words in the image it moves and
    // returns its new addend (RELA's `addend`, moved if relative).
    let mut shift_relocation = |place: u64, info: u64, addend: Option<u64>| -> Result<Option<u64>, String> {
        let (symbol, r_type) = words.symbol_and_type(info);
        if types.relative.contains(&r_type) {
            match addend {
                Some(addend) => return Ok(Some(addend.wrapping_add(delta) & words.mask())),
                None => {
                    moved_words.insert(place, shifted(image.word_or_error(place)?)?);
                }
            }
        } else if r_type == types.jump_slot {
            match image.word(place) {
                Some(value) if image.contains(value) => {
                    moved_words.insert(place, shifted(value)?);
                }
                Some(0) => {}
                Some(value) => return Err(format!("the PLT slot at {place:#x} holds {value:#x}, outside the image")),
                // A slot with no file bytes (ppc64's NOBITS .plt) is filled by ld.so.
                None if image.contains(place) => {}
                None => return Err(format!("the PLT slot at {place:#x} is outside the image")),
            }
        } else if r_type == types.absolute && symbol == 0 {
            let addend = match addend {
                Some(addend) => addend,
                None => image.word_or_error(place)?,
            };
            return Err(format!(
                "the relocation at {place:#x} (type {r_type}) has no symbol: its addend {addend:#x} is an absolute address that does not follow the load base"
            ));
        } else if !types.independent.contains(&r_type) && r_type != types.absolute {
            return Err(format!("relocation type {r_type} at {place:#x} is not one rebase handles on {}", file.machine_name()));
        }
        Ok(addend)
    };
    for (address, size, explicit_addend) in relocation_tables {
        let entry_size = words.relocation_size(explicit_addend);
        let (offset, table) = image.table(address, size - size % entry_size, "the relocations")?;
        let mut new_table = table.to_vec();
        for at in (0..table.len() as u64).step_by(entry_size as usize) {
            let field = |n: u64| words.get(table, at + n * words.size()).unwrap_or(0);
            let place = field(0);
            words.put(&mut new_table, at, shifted(place)?)?;
            if let Some(addend) = shift_relocation(place, field(1), explicit_addend.then(|| field(2)))? {
                words.put(&mut new_table, at + 2 * words.size(), addend)?;
            }
        }
        patches.push(Patch { offset, bytes: new_table, what: "relocations" });
    }

    // Android's packed table: decoded, every relocation shifted, re-encoded in
    // the same shape into the same bytes.
    if let Some((address, explicit_addend)) = tables.packed.filter(|_| tables.packed_size > 0) {
        let (offset, table) = image.table(address, tables.packed_size, "the packed relocations")?;
        let limit = max_packed_relocations(image.end - image.start, words.size());
        let mut packed = decode(table, headers.is_64(), explicit_addend, limit).map_err(|e| e.to_string())?;
        for relocation in packed.groups.iter_mut().flat_map(|g| g.relocations.iter_mut()) {
            let addend = shift_relocation(relocation.offset, relocation.info, explicit_addend.then_some(relocation.addend))?;
            relocation.offset = shifted(relocation.offset)?;
            relocation.addend = addend.unwrap_or(relocation.addend);
        }
        let bytes =
            encode_within(&packed, headers.is_64(), table.len()).map_err(|e| format!("the packed relocations cannot be rewritten: {e}"))?;
        patches.push(Patch { offset, bytes, what: "packed relocations" });
    }

    // RELR: address entries move, bitmaps stay; every word they name holds an address.
    if let Some((address, size)) = tables.relr.map(|a| (a, tables.relr_size)).filter(|&(_, size)| size > 0) {
        let (offset, table) = image.table(address, size - size % words.size(), "DT_RELR")?;
        let mut new_table = table.to_vec();
        let mut next = 0u64;
        for at in (0..table.len() as u64).step_by(words.size() as usize) {
            let value = words.get(table, at).unwrap_or(0);
            if value & 1 == 0 {
                words.put(&mut new_table, at, shifted(value)?)?;
                moved_words.insert(value, shifted(image.word_or_error(value)?)?);
                next = value + words.size();
            } else {
                for bit in 1..=words.relr_bitmap_bits() {
                    if value >> bit & 1 == 1 {
                        let place = next + (bit - 1) * words.size();
                        moved_words.insert(place, shifted(image.word_or_error(place)?)?);
                    }
                }
                next += words.relr_bitmap_bits() * words.size();
            }
        }
        patches.push(Patch { offset, bytes: new_table, what: "RELR relocations" });
    }

    // GOT[0] holds a link-time address no relocation names: _DYNAMIC's, or
    // on ppc64 the TOC base (.got + 0x8000).
    let got = headers.sections.iter().find(|s| s.name == ".got" && s.sh_size >= words.size()).map(|s| s.sh_addr);
    for slot in [tables.pltgot, got].into_iter().flatten() {
        if let Some(value) = image.word(slot) {
            let toc_base = file.machine == elf::EM_PPC64.0 && Some(slot) == got && value == slot + PPC64_TOC_BIAS;
            if value == dynamic.p_vaddr || toc_base {
                moved_words.insert(slot, shifted(value)?);
            }
        }
    }

    // Symbols: values of defined symbols in allocated sections, except TLS offsets.
    let dynsym = headers.sections.iter().find(|s| s.sh_type == elf::SHT_DYNSYM.0);
    match (tables.symtab, dynsym) {
        (Some(address), Some(section)) if section.sh_addr != address => {
            return Err(format!("DT_SYMTAB {address:#x} is not the .dynsym section ({:#x})", section.sh_addr))
        }
        (Some(_), None) => return Err("without section headers the size of the dynamic symbol table is unknown".into()),
        _ => {}
    }
    for section in headers.sections.iter().filter(|s| s.sh_type == elf::SHT_DYNSYM.0 || s.sh_type == elf::SHT_SYMTAB.0) {
        let symbol_size = words.symbol_size();
        let symbols = data
            .read_bytes_at(section.sh_offset, section.sh_size - section.sh_size % symbol_size)
            .map_err(|()| format!("{} runs past the end of the file", section.name))?;
        let mut new_symbols = symbols.to_vec();
        for at in (0..symbols.len() as u64).step_by(symbol_size as usize) {
            let symbol = &symbols[at as usize..(at + symbol_size) as usize];
            let (index, tls) = words.symbol_section_and_tls(symbol).unwrap_or((0, false));
            if index == elf::SHN_XINDEX.0 {
                return Err(format!("{} uses extended section indices (SHN_XINDEX), which rebase does not read", section.name));
            }
            let in_alloc = index != elf::SHN_UNDEF.0
                && index < elf::SHN_LORESERVE
                && headers.sections.get(usize::from(index)).is_some_and(|s| s.is_alloc());
            if in_alloc && !tls {
                let value_at = at + words.symbol_value_at();
                words.put(&mut new_symbols, value_at, shifted(words.get(symbols, value_at).unwrap_or(0))?)?;
            }
        }
        let what = if section.sh_type == elf::SHT_DYNSYM.0 { "dynamic symbols" } else { "symbols" };
        patches.push(Patch { offset: section.sh_offset, bytes: new_symbols, what });
    }

    // In-place words, joined into runs.
    let mut run: Option<Patch> = None;
    for (address, value) in moved_words {
        let offset = image.offset_of(address, words.size()).ok_or_else(|| format!("the word at {address:#x} has no bytes in the file"))?;
        let bytes = words.encode(value)?;
        match run.as_mut() {
            Some(current) if current.offset + current.bytes.len() as u64 == offset => current.bytes.extend_from_slice(&bytes),
            _ => {
                patches.extend(run.take());
                run = Some(Patch { offset, bytes, what: "relocated words" });
            }
        }
    }
    patches.extend(run);
    Ok(patches)
}

/// Refuses absolute pointer encodings in `.eh_frame_hdr`, which nothing relocates.
pub(super) fn check_eh_frame_hdr<'data, R: ReadRef<'data>>(data: R, headers: &RawHeaders) -> Result<(), String> {
    const DW_EH_PE_OMIT: u8 = 0xff;
    const DW_EH_PE_PCREL: u8 = 0x10;
    const DW_EH_PE_DATAREL: u8 = 0x30;
    let Some(ph) = headers.program_headers.iter().find(|ph| ph.p_type == elf::PT_GNU_EH_FRAME.0 && ph.p_filesz >= 4) else {
        return Ok(());
    };
    let bytes = data.read_bytes_at(ph.p_offset, 4).map_err(|()| "PT_GNU_EH_FRAME runs past the end of the file")?;
    for encoding in [bytes[1], bytes[3]] {
        let relative = encoding & 0x70 == DW_EH_PE_PCREL || encoding & 0x70 == DW_EH_PE_DATAREL;
        if encoding != DW_EH_PE_OMIT && !relative {
            return Err(format!(".eh_frame_hdr uses the absolute pointer encoding {encoding:#04x}, which nothing relocates"));
        }
    }
    Ok(())
}

/// The file's own header tables, which the rewrite writes anew: a patch
/// that lands on one (a mangled section header pointing there) would be
/// overwritten or would overwrite them, so rebase refuses it. The new
/// program header table goes where PT_PHDR's address is loaded from, which
/// in a mangled file is not e_phoff.
pub(super) fn patches_clear_of_headers(headers: &RawHeaders, patches: &[Patch]) -> Result<(), String> {
    let program_headers_len = headers.program_headers.len() as u64 * headers.program_header_size();
    let phdr_offset = headers.program_headers.iter().find(|ph| ph.p_type == elf::PT_PHDR.0).and_then(|phdr| {
        headers
            .program_headers
            .iter()
            .filter(|ph| ph.p_type == elf::PT_LOAD.0)
            .find(|ph| ph.p_vaddr <= phdr.p_vaddr && phdr.p_vaddr - ph.p_vaddr < ph.p_filesz)
            .map(|ph| ph.p_offset + (phdr.p_vaddr - ph.p_vaddr))
    });
    let mut tables = vec![
        ("the ELF header", 0, headers.file_header_size()),
        ("the program header table", headers.phoff, program_headers_len),
        ("the section header table", headers.shoff, headers.sections.len() as u64 * headers.section_header_size()),
    ];
    tables.extend(phdr_offset.map(|offset| ("the program header table PT_PHDR places", offset, program_headers_len)));
    for patch in patches {
        let end = patch.offset + patch.bytes.len() as u64;
        if let Some((table, ..)) = tables.iter().find(|(_, start, len)| *len > 0 && patch.offset < start + len && *start < end) {
            return Err(format!("the {} at offset {:#x} overlap {table}", patch.what, patch.offset));
        }
    }
    Ok(())
}

/// Rebase finds what it moves through PT_DYNAMIC; the proof predicts the same
/// bytes through the section headers ([`rebase_expectations`]). In a
/// consistent file both name the same loaded bytes. Where they differ (a
/// mangled dynamic section or section header) the output would fail its
/// proof, so rebase refuses now, naming the first address they disagree on.
pub(super) fn agree_with_sections<'data, R: ReadRef<'data>>(
    data: R,
    headers: &RawHeaders,
    patches: &[Patch],
    delta: u64,
) -> Result<(), String> {
    let expected = rebase_expectations(data, delta).map_err(|e| format!("the section headers do not say what rebase moves: {e}"))?;
    let loads: Vec<_> = headers.program_headers.iter().filter(|ph| ph.p_type == elf::PT_LOAD.0 && ph.p_filesz > 0).collect();
    let address_of = |offset: u64| {
        loads.iter().find(|ph| ph.p_offset <= offset && offset - ph.p_offset < ph.p_filesz).map(|ph| ph.p_vaddr + (offset - ph.p_offset))
    };
    let offset_of = |address: u64| {
        loads.iter().find(|ph| ph.p_vaddr <= address && address - ph.p_vaddr < ph.p_filesz).map(|ph| ph.p_offset + (address - ph.p_vaddr))
    };
    let input_byte = |offset: u64| data.read_bytes_at(offset, 1).ok().map(|b| b[0]);
    // Loaded bytes whose value changes, by input address: patched, and predicted.
    let mut patched: Vec<(u64, u8)> = Vec::new();
    for patch in patches {
        for (offset, &new) in (patch.offset..).zip(&patch.bytes) {
            if let Some(address) = address_of(offset).filter(|_| input_byte(offset) != Some(new)) {
                patched.push((address, new));
            }
        }
    }
    let mut predicted: Vec<(u64, u8)> = Vec::new();
    for change in &expected {
        for (address, &new) in (change.range.start..).zip(&change.bytes) {
            if offset_of(address).and_then(input_byte) != Some(new) {
                predicted.push((address, new));
            }
        }
    }
    for list in [&mut patched, &mut predicted] {
        list.sort_unstable();
        list.dedup();
    }
    match patched.iter().zip(&predicted).find(|(a, b)| a != b) {
        Some((a, b)) => Err(format!(
            "the dynamic section and the section headers disagree on what moves: rebase would change {:#x}, the section headers {:#x}",
            a.0, b.0
        )),
        None if patched.len() != predicted.len() => {
            let first_extra = patched.get(predicted.len()).or(predicted.get(patched.len())).map_or(0, |c| c.0);
            Err(format!("the dynamic section and the section headers disagree on what moves, from {first_extra:#x}"))
        }
        None => Ok(()),
    }
}
