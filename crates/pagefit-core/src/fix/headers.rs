//! Every header of the input with every field, read once and written back
//! with new offsets: the ELF header, program headers and section headers.

use crate::elf::{ProgramHeader, Prot};
use crate::error::{ParseError, ParseErrorKind};
use object::elf;
use object::read::elf::{FileHeader, ProgramHeader as _, SectionHeader as _};
use object::{Endianness, ReadRef, U32, U64};
use serde::Serialize;
use std::fmt;

/// A program header with every field, as it is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct RawProgramHeader {
    /// `p_type`.
    pub p_type: u32,
    /// `p_flags`, all bits.
    pub p_flags: u32,
    /// `p_offset`.
    pub p_offset: u64,
    /// `p_vaddr`.
    pub p_vaddr: u64,
    /// `p_paddr`.
    pub p_paddr: u64,
    /// `p_filesz`.
    pub p_filesz: u64,
    /// `p_memsz`.
    pub p_memsz: u64,
    /// `p_align`.
    pub p_align: u64,
}

impl RawProgramHeader {
    pub(crate) fn widened(&self, index: usize) -> ProgramHeader {
        ProgramHeader {
            index,
            p_type: self.p_type,
            prot: Prot::from_p_flags(self.p_flags),
            offset: self.p_offset,
            vaddr: self.p_vaddr,
            filesz: self.p_filesz,
            memsz: self.p_memsz,
            align: self.p_align,
        }
    }
}

/// readelf's name for a `p_type` (`LOAD`, `GNU_RELRO`), or its value in hex.
pub fn program_type_name(p_type: u32) -> String {
    let name = match elf::ProgramType(p_type) {
        elf::PT_NULL => "NULL",
        elf::PT_LOAD => "LOAD",
        elf::PT_DYNAMIC => "DYNAMIC",
        elf::PT_INTERP => "INTERP",
        elf::PT_NOTE => "NOTE",
        elf::PT_PHDR => "PHDR",
        elf::PT_TLS => "TLS",
        elf::PT_GNU_EH_FRAME => "GNU_EH_FRAME",
        elf::PT_GNU_STACK => "GNU_STACK",
        elf::PT_GNU_RELRO => "GNU_RELRO",
        elf::PT_GNU_PROPERTY => "GNU_PROPERTY",
        _ => return format!("{p_type:#x}"),
    };
    name.to_string()
}

/// A section header with every field, as it is written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RawSectionHeader {
    /// The section's name, for reports (not written).
    pub name: String,
    /// `sh_name`.
    pub sh_name: u32,
    /// `sh_type`.
    pub sh_type: u32,
    /// `sh_flags`.
    pub sh_flags: u64,
    /// `sh_addr`.
    pub sh_addr: u64,
    /// `sh_offset`.
    pub sh_offset: u64,
    /// `sh_size`.
    pub sh_size: u64,
    /// `sh_link`.
    pub sh_link: u32,
    /// `sh_info`.
    pub sh_info: u32,
    /// `sh_addralign`.
    pub sh_addralign: u64,
    /// `sh_entsize`.
    pub sh_entsize: u64,
}

impl RawSectionHeader {
    pub(crate) fn is_alloc(&self) -> bool {
        self.sh_flags & elf::SHF_ALLOC.0 != 0
    }
    pub(crate) fn has_file_bytes(&self) -> bool {
        self.sh_type != elf::SHT_NOBITS.0 && self.sh_type != elf::SHT_NULL.0 && self.sh_size > 0
    }
}

/// The ELF header, as `object`'s struct, to be written back with new offsets.
#[derive(Clone, Copy, Debug)]
pub(crate) enum FileHeaderImage {
    Elf32(elf::FileHeader32<Endianness>),
    Elf64(elf::FileHeader64<Endianness>),
}

/// Every header of the input with every field.
#[derive(Clone)]
pub(crate) struct RawHeaders {
    pub(crate) endian: Endianness,
    pub(crate) header: FileHeaderImage,
    pub(crate) program_headers: Vec<RawProgramHeader>,
    pub(crate) sections: Vec<RawSectionHeader>,
    pub(crate) phoff: u64,
    pub(crate) shoff: u64,
}

pub(crate) fn header_error(offset: u64, detail: impl fmt::Display) -> ParseError {
    ParseError::new(ParseErrorKind::InvalidHeader, Some(offset), detail.to_string())
}

impl RawHeaders {
    pub(crate) fn read<'data, R: ReadRef<'data>>(data: R) -> Result<RawHeaders, ParseError> {
        let class = data.read_bytes_at(4, 1).map_err(|()| header_error(4, "no EI_CLASS"))?[0];
        if class == elf::ELFCLASS64.0 {
            let header: &elf::FileHeader64<Endianness> = elf::FileHeader64::parse(data).map_err(|e| header_error(0, e))?;
            Self::read_class(header, FileHeaderImage::Elf64(*header), data)
        } else {
            let header: &elf::FileHeader32<Endianness> = elf::FileHeader32::parse(data).map_err(|e| header_error(0, e))?;
            Self::read_class(header, FileHeaderImage::Elf32(*header), data)
        }
    }

    pub(crate) fn read_class<'data, Elf: FileHeader<Endian = Endianness>, R: ReadRef<'data>>(
        header: &Elf,
        image: FileHeaderImage,
        data: R,
    ) -> Result<RawHeaders, ParseError> {
        let endian = header.endian().map_err(|e| header_error(5, e))?;
        let phoff: u64 = header.e_phoff(endian).into();
        let shoff: u64 = header.e_shoff(endian).into();
        let program_headers = header
            .program_headers(endian, data)
            .map_err(|e| header_error(phoff, e))?
            .iter()
            .map(|ph| RawProgramHeader {
                p_type: ph.p_type(endian).0,
                p_flags: ph.p_flags(endian).0,
                p_offset: ph.p_offset(endian).into(),
                p_vaddr: ph.p_vaddr(endian).into(),
                p_paddr: ph.p_paddr(endian).into(),
                p_filesz: ph.p_filesz(endian).into(),
                p_memsz: ph.p_memsz(endian).into(),
                p_align: ph.p_align(endian).into(),
            })
            .collect();
        let table = header.sections(endian, data).map_err(|e| header_error(shoff, e))?;
        let sections = table
            .iter()
            .map(|sh| RawSectionHeader {
                name: table.section_name(endian, sh).map(|n| String::from_utf8_lossy(n).into_owned()).unwrap_or_default(),
                sh_name: sh.sh_name(endian),
                sh_type: sh.sh_type(endian).0,
                sh_flags: sh.sh_flags(endian).0,
                sh_addr: sh.sh_addr(endian).into(),
                sh_offset: sh.sh_offset(endian).into(),
                sh_size: sh.sh_size(endian).into(),
                sh_link: sh.sh_link(endian),
                sh_info: sh.sh_info(endian),
                sh_addralign: sh.sh_addralign(endian).into(),
                sh_entsize: sh.sh_entsize(endian).into(),
            })
            .collect();
        Ok(RawHeaders { endian, header: image, program_headers, sections, phoff, shoff })
    }

    /// The headers of the image moved up by `delta`: e_entry, every program
    /// header that describes memory, and every allocated section's address.
    pub(crate) fn shifted(&self, delta: u64) -> Result<RawHeaders, String> {
        let moved = |value: u64| value.checked_add(delta).ok_or_else(|| format!("address {value:#x} + Δ {delta:#x} overflows"));
        let mut out = self.clone();
        for ph in out.program_headers.iter_mut().filter(|ph| ph.p_memsz > 0 || ph.p_filesz > 0) {
            ph.p_vaddr = moved(ph.p_vaddr)?;
            ph.p_paddr = moved(ph.p_paddr)?;
        }
        for section in out.sections.iter_mut().filter(|s| s.is_alloc()) {
            section.sh_addr = moved(section.sh_addr)?;
        }
        let e = self.endian;
        match &mut out.header {
            FileHeaderImage::Elf64(h) if h.e_entry.get(e) != 0 => h.e_entry = U64::new(e, moved(h.e_entry.get(e))?),
            FileHeaderImage::Elf32(h) if h.e_entry.get(e) != 0 => {
                h.e_entry = U32::new(e, word32(moved(h.e_entry.get(e).into())?, "e_entry")?)
            }
            _ => {}
        }
        Ok(out)
    }

    pub(crate) fn is_64(&self) -> bool {
        matches!(self.header, FileHeaderImage::Elf64(_))
    }

    pub(crate) fn program_header_size(&self) -> u64 {
        if self.is_64() {
            size_of::<elf::ProgramHeader64<Endianness>>() as u64
        } else {
            size_of::<elf::ProgramHeader32<Endianness>>() as u64
        }
    }

    pub(crate) fn file_header_size(&self) -> u64 {
        if self.is_64() {
            size_of::<elf::FileHeader64<Endianness>>() as u64
        } else {
            size_of::<elf::FileHeader32<Endianness>>() as u64
        }
    }

    pub(crate) fn section_header_size(&self) -> u64 {
        if self.is_64() {
            size_of::<elf::SectionHeader64<Endianness>>() as u64
        } else {
            size_of::<elf::SectionHeader32<Endianness>>() as u64
        }
    }
}

/// A value that must fit an ELF32 field.
pub(crate) fn word32(value: u64, what: &str) -> Result<u32, String> {
    u32::try_from(value).map_err(|_| format!("{what} {value:#x} does not fit a 32-bit ELF file"))
}

pub(crate) fn encode_file_header(headers: &RawHeaders, phoff: u64, shoff: u64) -> Result<Vec<u8>, String> {
    let e = headers.endian;
    Ok(match headers.header {
        FileHeaderImage::Elf64(mut h) => {
            h.e_phoff = U64::new(e, phoff);
            h.e_shoff = U64::new(e, shoff);
            object::bytes_of(&h).to_vec()
        }
        FileHeaderImage::Elf32(mut h) => {
            h.e_phoff = U32::new(e, word32(phoff, "e_phoff")?);
            h.e_shoff = U32::new(e, word32(shoff, "e_shoff")?);
            object::bytes_of(&h).to_vec()
        }
    })
}

pub(crate) fn encode_program_headers(headers: &RawHeaders, table: &[RawProgramHeader]) -> Result<Vec<u8>, String> {
    let e = headers.endian;
    let mut out = Vec::new();
    for ph in table {
        if headers.is_64() {
            let raw = elf::ProgramHeader64 {
                p_type: U32::new(e, elf::ProgramType(ph.p_type)),
                p_flags: U32::new(e, elf::ProgramFlags(ph.p_flags)),
                p_offset: U64::new(e, ph.p_offset),
                p_vaddr: U64::new(e, ph.p_vaddr),
                p_paddr: U64::new(e, ph.p_paddr),
                p_filesz: U64::new(e, ph.p_filesz),
                p_memsz: U64::new(e, ph.p_memsz),
                p_align: U64::new(e, ph.p_align),
            };
            out.extend_from_slice(object::bytes_of(&raw));
        } else {
            let raw = elf::ProgramHeader32 {
                p_type: U32::new(e, elf::ProgramType(ph.p_type)),
                p_offset: U32::new(e, word32(ph.p_offset, "p_offset")?),
                p_vaddr: U32::new(e, word32(ph.p_vaddr, "p_vaddr")?),
                p_paddr: U32::new(e, word32(ph.p_paddr, "p_paddr")?),
                p_filesz: U32::new(e, word32(ph.p_filesz, "p_filesz")?),
                p_memsz: U32::new(e, word32(ph.p_memsz, "p_memsz")?),
                p_flags: U32::new(e, elf::ProgramFlags(ph.p_flags)),
                p_align: U32::new(e, word32(ph.p_align, "p_align")?),
            };
            out.extend_from_slice(object::bytes_of(&raw));
        }
    }
    Ok(out)
}

pub(crate) fn encode_section_headers(headers: &RawHeaders, table: &[RawSectionHeader]) -> Result<Vec<u8>, String> {
    let e = headers.endian;
    let mut out = Vec::new();
    for sh in table {
        if headers.is_64() {
            let raw = elf::SectionHeader64 {
                sh_name: U32::new(e, sh.sh_name),
                sh_type: U32::new(e, elf::SectionType(sh.sh_type)),
                sh_flags: U64::new(e, elf::SectionFlags(sh.sh_flags)),
                sh_addr: U64::new(e, sh.sh_addr),
                sh_offset: U64::new(e, sh.sh_offset),
                sh_size: U64::new(e, sh.sh_size),
                sh_link: U32::new(e, sh.sh_link),
                sh_info: U32::new(e, sh.sh_info),
                sh_addralign: U64::new(e, sh.sh_addralign),
                sh_entsize: U64::new(e, sh.sh_entsize),
            };
            out.extend_from_slice(object::bytes_of(&raw));
        } else {
            let raw = elf::SectionHeader32 {
                sh_name: U32::new(e, sh.sh_name),
                sh_type: U32::new(e, elf::SectionType(sh.sh_type)),
                sh_flags: U32::new_u64(e, elf::SectionFlags(sh.sh_flags))
                    .map_err(|_| format!("sh_flags {:#x} does not fit a 32-bit ELF file", sh.sh_flags))?,
                sh_addr: U32::new(e, word32(sh.sh_addr, "sh_addr")?),
                sh_offset: U32::new(e, word32(sh.sh_offset, "sh_offset")?),
                sh_size: U32::new(e, word32(sh.sh_size, "sh_size")?),
                sh_link: U32::new(e, sh.sh_link),
                sh_info: U32::new(e, sh.sh_info),
                sh_addralign: U32::new(e, word32(sh.sh_addralign, "sh_addralign")?),
                sh_entsize: U32::new(e, word32(sh.sh_entsize, "sh_entsize")?),
            };
            out.extend_from_slice(object::bytes_of(&raw));
        }
    }
    Ok(out)
}
