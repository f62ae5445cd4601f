//! The rebase strategy's address accounting: every value inside an ET_DYN
//! file that holds a link-time address, found the way ld.so finds it
//! (through PT_DYNAMIC and the tags there), and its new bytes after a shift
//! by Δ. Anything that cannot be accounted for is a refusal with the reason.
//!
//! `verify::rebase_expectations` predicts the same changes through the
//! section headers instead, so the two paths check each other.

use std::collections::BTreeMap;

use object::elf;
use object::read::elf::{Dyn as _, Rela as _, Sym as _};
use object::{Endianness, ReadRef, I64, U64};

use super::headers::RawHeaders;
use crate::elf::ElfFile;

/// New bytes for the input's bytes at `offset` (an input file offset).
pub(crate) struct Patch {
    pub offset: u64,
    pub bytes: Vec<u8>,
    pub what: &'static str,
}

/// How a machine's dynamic relocation types depend on the load address.
struct RelocationTypes {
    /// Base plus addend: the addend is a link-time address.
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
        elf::DT_ANDROID_REL | elf::DT_ANDROID_RELA | elf::DT_ANDROID_RELR => {
            return Err("Android packed relocations (DT_ANDROID_REL/RELA/RELR) are not decoded".into())
        }
        elf::DT_AARCH64_BTI_PLT | elf::DT_AARCH64_PAC_PLT | elf::DT_AARCH64_VARIANT_PCS if machine == elf::EM_AARCH64.0 => Plain,
        other => return Err(format!("dynamic tag {:#x} is not one rebase knows, so whether it holds an address is unknown", other.0)),
    })
}

/// Table addresses and sizes the dynamic section names.
#[derive(Default)]
struct DynamicTables {
    rela: Option<u64>,
    rela_size: u64,
    jmprel: Option<u64>,
    plt_size: u64,
    plt_is_rel: bool,
    rel: bool,
    relr: Option<u64>,
    relr_size: u64,
    symtab: Option<u64>,
    pltgot: Option<u64>,
}

/// Reads the input's bytes at a link-time address (file-backed bytes only).
struct Image<'a> {
    headers: &'a RawHeaders,
    start: u64,
    end: u64,
}

impl Image<'_> {
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
}

fn read_word<'data, R: ReadRef<'data>>(data: R, image: &Image<'_>, address: u64, e: Endianness) -> Result<u64, String> {
    let offset = image.offset_of(address, 8).ok_or_else(|| format!("the word at {address:#x} has no bytes in the file"))?;
    let word: &U64<Endianness> = data.read_at(offset).map_err(|()| format!("the word at {address:#x} runs past the end of the file"))?;
    Ok(word.get(e))
}

/// Every patch a shift by `delta` needs, or why rebase cannot account for the file.
pub(super) fn address_patches<'data, R: ReadRef<'data>>(
    data: R,
    headers: &RawHeaders,
    file: &ElfFile,
    delta: u64,
) -> Result<Vec<Patch>, String> {
    let e = headers.endian;
    let types = relocation_types(file.machine)
        .filter(|_| headers.is_64())
        .ok_or_else(|| format!("rebase knows the dynamic relocations of x86_64 and aarch64 only, not {}", file.machine_name()))?;
    let loads = || headers.program_headers.iter().filter(|ph| ph.p_type == elf::PT_LOAD.0 && ph.p_memsz > 0);
    let image = Image {
        headers,
        start: loads().map(|ph| ph.p_vaddr).min().unwrap_or(0),
        end: loads().map(|ph| ph.p_vaddr + ph.p_memsz).max().unwrap_or(0),
    };
    let shifted = |value: u64| value.checked_add(delta).ok_or_else(|| format!("{value:#x} + Δ {delta:#x} overflows"));
    let mut patches = Vec::new();
    let mut words: BTreeMap<u64, u64> = BTreeMap::new();

    // The dynamic section: tags that hold addresses.
    let dynamic = headers
        .program_headers
        .iter()
        .find(|ph| ph.p_type == elf::PT_DYNAMIC.0)
        .ok_or("the file has no PT_DYNAMIC, so nothing says where its relocations are")?;
    let count = usize::try_from(dynamic.p_filesz / size_of::<elf::Dyn64<Endianness>>() as u64).map_err(|_| "PT_DYNAMIC is too large")?;
    let entries: &[elf::Dyn64<Endianness>] =
        data.read_slice_at(dynamic.p_offset, count).map_err(|()| "PT_DYNAMIC runs past the end of the file")?;
    let flags = entries.iter().find(|d| d.d_tag(e) == elf::DT_FLAGS).map_or(0, |d| d.d_val(e));
    let mut tables = DynamicTables::default();
    let mut new_entries = entries.to_vec();
    for entry in new_entries.iter_mut() {
        let (tag, value) = (entry.d_tag(e), entry.d_val(e));
        if tag == elf::DT_NULL {
            break;
        }
        if let TagValue::Address = tag_value(tag, flags, file.machine)? {
            if value != 0 {
                entry.d_val = U64::new(e, shifted(value)?);
            }
        }
        match tag {
            elf::DT_RELA => tables.rela = Some(value),
            elf::DT_RELASZ => tables.rela_size = value,
            elf::DT_JMPREL => tables.jmprel = Some(value),
            elf::DT_PLTRELSZ => tables.plt_size = value,
            elf::DT_PLTREL => tables.plt_is_rel = value == elf::DT_REL.0 as u64,
            elf::DT_REL => tables.rel = true,
            elf::DT_RELR => tables.relr = Some(value),
            elf::DT_RELRSZ => tables.relr_size = value,
            elf::DT_SYMTAB => tables.symtab = Some(value),
            elf::DT_PLTGOT => tables.pltgot = Some(value),
            _ => {}
        }
    }
    patches.push(Patch { offset: dynamic.p_offset, bytes: object::bytes_of_slice(&new_entries).to_vec(), what: "dynamic section" });
    if tables.rel || tables.plt_is_rel {
        return Err(format!("REL relocations (implicit addends) are not handled on {}", file.machine_name()));
    }

    // RELA tables: DT_RELASZ may or may not cover DT_JMPREL; each entry is patched once.
    let mut rela_tables: Vec<(u64, u64)> = [tables.rela.map(|a| (a, tables.rela_size)), tables.jmprel.map(|a| (a, tables.plt_size))]
        .into_iter()
        .flatten()
        .filter(|&(_, size)| size > 0)
        .collect();
    rela_tables.sort_unstable();
    rela_tables.dedup();
    if let [(a, a_size), (b, b_size)] = rela_tables[..] {
        if b < a + a_size {
            if b + b_size > a + a_size {
                return Err(format!("DT_RELA {a:#x}+{a_size:#x} and DT_JMPREL {b:#x}+{b_size:#x} overlap in part"));
            }
            rela_tables.pop();
        }
    }
    for (address, size) in rela_tables {
        let entry_size = size_of::<elf::Rela64<Endianness>>() as u64;
        let offset = image.offset_of(address, size).ok_or_else(|| format!("the relocations at {address:#x} have no bytes in the file"))?;
        let count = usize::try_from(size / entry_size).map_err(|_| "relocation table too large")?;
        let table: &[elf::Rela64<Endianness>] =
            data.read_slice_at(offset, count).map_err(|()| format!("the relocations at {address:#x} run past the end of the file"))?;
        let mut new_table = table.to_vec();
        for rela in new_table.iter_mut() {
            let (place, r_type, symbol) = (rela.r_offset(e), rela.r_type(e, false).0, rela.r_sym(e, false));
            rela.r_offset = U64::new(e, shifted(place)?);
            if types.relative.contains(&r_type) {
                rela.r_addend = I64::new(e, rela.r_addend(e).wrapping_add(delta as i64));
            } else if r_type == types.jump_slot {
                let value = read_word(data, &image, place, e)?;
                if image.contains(value) {
                    words.insert(place, shifted(value)?);
                } else if value != 0 {
                    return Err(format!("the PLT slot at {place:#x} holds {value:#x}, outside the image"));
                }
            } else if r_type == types.absolute && symbol == 0 {
                return Err(format!(
                    "the relocation at {place:#x} (type {r_type}) has no symbol: its addend {:#x} is an absolute address that does not follow the load base",
                    rela.r_addend(e)
                ));
            } else if !types.independent.contains(&r_type) && r_type != types.absolute {
                return Err(format!("relocation type {r_type} at {place:#x} is not one rebase handles on {}", file.machine_name()));
            }
        }
        patches.push(Patch { offset, bytes: object::bytes_of_slice(&new_table).to_vec(), what: "relocations" });
    }

    // RELR: address entries move, bitmaps stay; every word they name holds an address.
    if let Some((address, size)) = tables.relr.map(|a| (a, tables.relr_size)).filter(|&(_, size)| size > 0) {
        let offset = image.offset_of(address, size).ok_or_else(|| format!("DT_RELR at {address:#x} has no bytes in the file"))?;
        let count = usize::try_from(size / 8).map_err(|_| "DT_RELR too large")?;
        let table: &[elf::Relr64<Endianness>] = data.read_slice_at(offset, count).map_err(|()| "DT_RELR runs past the end of the file")?;
        let mut new_table = table.to_vec();
        let mut next = 0u64;
        for entry in new_table.iter_mut() {
            let value = entry.0.get(e);
            if value & 1 == 0 {
                entry.0 = U64::new(e, shifted(value)?);
                let word = read_word(data, &image, value, e)?;
                words.insert(value, shifted(word)?);
                next = value + 8;
            } else {
                for bit in 1..64 {
                    if value >> bit & 1 == 1 {
                        let place = next + (bit - 1) * 8;
                        let word = read_word(data, &image, place, e)?;
                        words.insert(place, shifted(word)?);
                    }
                }
                next += 63 * 8;
            }
        }
        patches.push(Patch { offset, bytes: object::bytes_of_slice(&new_table).to_vec(), what: "RELR relocations" });
    }

    // GOT[0] holds _DYNAMIC's link-time address, read by some loaders without a relocation.
    let got = headers.sections.iter().find(|s| s.name == ".got" && s.sh_size >= 8).map(|s| s.sh_addr);
    for slot in [tables.pltgot, got].into_iter().flatten() {
        if let Ok(value) = read_word(data, &image, slot, e) {
            if value == dynamic.p_vaddr {
                words.insert(slot, shifted(value)?);
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
        let count = usize::try_from(section.sh_size / size_of::<elf::Sym64<Endianness>>() as u64).map_err(|_| "symbol table too large")?;
        let symbols: &[elf::Sym64<Endianness>] =
            data.read_slice_at(section.sh_offset, count).map_err(|()| format!("{} runs past the end of the file", section.name))?;
        let mut new_symbols = symbols.to_vec();
        for symbol in new_symbols.iter_mut() {
            let index = symbol.st_shndx(e).0;
            if index == elf::SHN_XINDEX.0 {
                return Err(format!("{} uses extended section indices (SHN_XINDEX), which rebase does not read", section.name));
            }
            let in_alloc = index != elf::SHN_UNDEF.0
                && index < elf::SHN_LORESERVE
                && headers.sections.get(usize::from(index)).is_some_and(|s| s.is_alloc());
            if in_alloc && symbol.st_type() != elf::STT_TLS {
                symbol.st_value = U64::new(e, shifted(symbol.st_value(e))?);
            }
        }
        let what = if section.sh_type == elf::SHT_DYNSYM.0 { "dynamic symbols" } else { "symbols" };
        patches.push(Patch { offset: section.sh_offset, bytes: object::bytes_of_slice(&new_symbols).to_vec(), what });
    }

    // In-place words, joined into runs.
    let mut run: Option<Patch> = None;
    for (address, value) in words {
        let offset = image.offset_of(address, 8).ok_or_else(|| format!("the word at {address:#x} has no bytes in the file"))?;
        let word = U64::new(e, value);
        let bytes = object::bytes_of(&word);
        match run.as_mut() {
            Some(current) if current.offset + current.bytes.len() as u64 == offset => current.bytes.extend_from_slice(bytes),
            _ => {
                patches.extend(run.take());
                run = Some(Patch { offset, bytes: bytes.to_vec(), what: "relocated words" });
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
