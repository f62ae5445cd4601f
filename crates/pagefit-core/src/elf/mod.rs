//! Reading what a load verdict needs from an ELF file, through `object`'s
//! low-level reader, from any [`ReadRef`] (a byte slice, or a caching reader
//! the caller backs with `pread`).
//!
//! ELF32 and ELF64, either byte order, any `e_machine`, `PN_XNUM`, and files
//! without section headers are all accepted. Every count is bounded by the
//! file length before anything is allocated.

pub mod android_relocations;

use std::collections::HashMap;
use std::ops::Range;
use std::sync::OnceLock;

use object::elf;
use object::read::elf::{Dyn as _, FileHeader, ProgramHeader as _, SectionHeader as _, Sym as _};
use object::{Endianness, ReadRef};
use serde::Serialize;

use crate::error::{ParseError, ParseErrorKind};
use crate::runtime::{self, RuntimePageSize, Segment};

/// Segment permission bits (`p_flags`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Prot(u8);

impl Prot {
    /// No access.
    pub const NONE: Prot = Prot(0);
    /// Readable.
    pub const R: Prot = Prot(4);
    /// Writable.
    pub const W: Prot = Prot(2);
    /// Executable.
    pub const X: Prot = Prot(1);
    /// Read and write.
    pub const RW: Prot = Prot(6);
    /// Read and execute.
    pub const RX: Prot = Prot(5);

    /// Converts ELF `p_flags` (PF_R = 4, PF_W = 2, PF_X = 1).
    pub fn from_p_flags(p_flags: u32) -> Prot {
        Prot((p_flags & 7) as u8)
    }
    /// True when every bit of `other` is set in `self`.
    pub fn contains(self, other: Prot) -> bool {
        self.0 & other.0 == other.0
    }
    /// The union of two protections.
    pub fn union(self, other: Prot) -> Prot {
        Prot(self.0 | other.0)
    }
    /// `self` without the bits of `other`.
    pub fn without(self, other: Prot) -> Prot {
        Prot(self.0 & !other.0)
    }
    /// Readable, writable, executable.
    pub fn is_readable(self) -> bool {
        self.contains(Prot::R)
    }
    /// See [`Prot::is_readable`].
    pub fn is_writable(self) -> bool {
        self.contains(Prot::W)
    }
    /// See [`Prot::is_readable`].
    pub fn is_executable(self) -> bool {
        self.contains(Prot::X)
    }
    /// `/proc/pid/maps` style: `r-x`.
    pub fn maps_string(self) -> String {
        let bit = |p: Prot, c: char| if self.contains(p) { c } else { '-' };
        [bit(Prot::R, 'r'), bit(Prot::W, 'w'), bit(Prot::X, 'x')].iter().collect()
    }
    /// readelf style: `R E`, `RW `.
    pub fn readelf_string(self) -> String {
        let bit = |p: Prot, c: char| if self.contains(p) { c } else { ' ' };
        [bit(Prot::R, 'R'), bit(Prot::W, 'W'), bit(Prot::X, 'E')].iter().collect()
    }
}

impl Serialize for Prot {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.maps_string())
    }
}

impl<'de> serde::Deserialize<'de> for Prot {
    /// From the `/proc/pid/maps` spelling [`Prot::maps_string`] writes.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Prot, D::Error> {
        let text = String::deserialize(d)?;
        let bits = text.as_bytes();
        if bits.len() != 3 {
            return Err(serde::de::Error::custom(format!("{text:?} is not a protection such as r-x")));
        }
        let mut prot = Prot::NONE;
        for (bit, (letter, flag)) in bits.iter().zip([(b'r', Prot::R), (b'w', Prot::W), (b'x', Prot::X)]) {
            match *bit {
                b'-' => {}
                b if b == letter => prot = prot.union(flag),
                _ => return Err(serde::de::Error::custom(format!("{text:?} is not a protection such as r-x"))),
            }
        }
        Ok(prot)
    }
}

/// One program header, widened to 64 bits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProgramHeader {
    /// Index in the program header table.
    pub index: usize,
    /// `p_type`.
    pub p_type: u32,
    /// `p_flags` as protections.
    pub prot: Prot,
    /// `p_offset`.
    pub offset: u64,
    /// `p_vaddr`.
    pub vaddr: u64,
    /// `p_filesz`.
    pub filesz: u64,
    /// `p_memsz`.
    pub memsz: u64,
    /// `p_align`.
    pub align: u64,
}

impl ProgramHeader {
    /// End of the file-backed bytes in memory (`p_vaddr + p_filesz`).
    pub fn file_end(&self) -> u64 {
        self.vaddr + self.filesz
    }
    /// End of the segment in memory (`p_vaddr + p_memsz`).
    pub fn mem_end(&self) -> u64 {
        self.vaddr + self.memsz
    }
    /// `p_offset - p_vaddr` as a signed value: a file byte's offset minus its address.
    pub fn file_shift(&self) -> i128 {
        i128::from(self.offset) - i128::from(self.vaddr)
    }
    /// Whether the file offset and address agree modulo `modulus` (a power of two).
    pub fn is_congruent(&self, modulus: u64) -> bool {
        self.vaddr.wrapping_sub(self.offset) & (modulus - 1) == 0
    }
}

/// `e_type`, with the executable/shared-object distinction ELF itself blurs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ElfKind {
    /// ET_REL.
    Rel,
    /// ET_EXEC.
    Exec,
    /// ET_DYN (shared objects, PIEs and interpreters).
    Dyn,
    /// ET_CORE.
    Core,
    /// Anything else.
    Other,
}

/// `EI_CLASS`: how wide a program's addresses are, and so the words of its
/// initial stack and the size of its program headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfClass {
    /// ELFCLASS32.
    Elf32,
    /// ELFCLASS64.
    Elf64,
}

impl ElfClass {
    /// Bytes in an address (and in an auxv tag or value).
    pub fn word_bytes(self) -> usize {
        match self {
            ElfClass::Elf32 => 4,
            ElfClass::Elf64 => 8,
        }
    }
    /// Bytes in one program header (`e_phentsize`, AT_PHENT).
    pub fn program_header_size(self) -> usize {
        match self {
            ElfClass::Elf32 => std::mem::size_of::<elf::ProgramHeader32<Endianness>>(),
            ElfClass::Elf64 => std::mem::size_of::<elf::ProgramHeader64<Endianness>>(),
        }
    }
}

/// What runs the file, which decides the default loader model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Mapped by the kernel at exec (ET_EXEC, PIE, static PIE).
    Executable,
    /// A dynamic linker, mapped by the kernel as PT_INTERP.
    Interpreter,
    /// Mapped by a dynamic linker (DT_NEEDED or dlopen).
    SharedObject,
    /// Not loadable (relocatable objects, core files).
    NotLoadable,
}

/// The platform the file was built for, as far as the file says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// GNU/Linux with glibc (the default when nothing else is said).
    Glibc,
    /// Linux with musl (musl's interpreter or libc).
    Musl,
    /// Android (bionic): `.note.android.ident`, or `/system/bin/linker*`.
    Android,
}

/// The dynamic section's entries that matter for loading and dependency closure.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DynamicInfo {
    /// DT_NEEDED names, in order (empty unless strings were read).
    pub needed: Vec<String>,
    /// DT_SONAME.
    pub soname: Option<String>,
    /// DT_RPATH.
    pub rpath: Option<String>,
    /// DT_RUNPATH.
    pub runpath: Option<String>,
    /// DT_FLAGS.
    pub flags: u64,
    /// DT_FLAGS_1.
    pub flags_1: u64,
    /// DT_TEXTREL present (or DF_TEXTREL).
    pub text_relocations: bool,
    /// DT_STRTAB, the address the string offsets below count from.
    #[serde(skip)]
    pub string_table_vaddr: Option<u64>,
    /// DT_RPATH and DT_RUNPATH entries, where they are in memory (empty
    /// unless strings were read).
    #[serde(skip)]
    pub search_path_entries: Vec<SearchPathEntry>,
}

/// A DT_RPATH or DT_RUNPATH entry, located for a loader that rewrites it in memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchPathEntry {
    /// DT_RPATH or DT_RUNPATH.
    pub tag: elf::DynamicTag,
    /// The link-time address of the entry's `d_val` (its string's offset in DT_STRTAB).
    pub value_vaddr: u64,
    /// The string.
    pub text: String,
}

/// An allocated section, used to say *what* a mapping problem touches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Section {
    /// Section name (`.text`).
    pub name: String,
    /// `sh_addr`.
    pub addr: u64,
    /// `sh_size`.
    pub size: u64,
    /// `sh_offset`.
    pub offset: u64,
    /// `sh_flags`.
    pub flags: u64,
    /// `sh_type`.
    pub sh_type: u32,
}

impl Section {
    /// Holds instructions (SHF_EXECINSTR).
    pub fn is_code(&self) -> bool {
        self.flags & elf::SHF_EXECINSTR.0 != 0
    }
    /// Written at run time (SHF_WRITE).
    pub fn is_writable(&self) -> bool {
        self.flags & elf::SHF_WRITE.0 != 0
    }
    /// Occupies bytes of the loaded image. `.tbss` does not: it overlaps whatever follows.
    pub fn occupies_memory(&self) -> bool {
        let alloc = self.flags & elf::SHF_ALLOC.0 != 0;
        let tls_bss = self.sh_type == elf::SHT_NOBITS.0 && self.flags & elf::SHF_TLS.0 != 0;
        alloc && !tls_bss && self.size > 0
    }
    /// End address.
    pub fn end(&self) -> u64 {
        self.addr.saturating_add(self.size)
    }
}

/// A defined function or object symbol, for naming what is affected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Symbol {
    /// Symbol name.
    pub name: String,
    /// `st_value`.
    pub addr: u64,
    /// `st_size`.
    pub size: u64,
}

/// How much of the file to read beyond the headers every verdict needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ParseOptions {
    /// Read section headers.
    pub sections: bool,
    /// Also read the sections' names (one more read, and a string each).
    pub section_names: bool,
    /// Read `.symtab` (or `.dynsym`) function and object symbols.
    pub symbols: bool,
    /// Read DT_NEEDED, DT_SONAME, DT_RPATH and DT_RUNPATH strings.
    pub dynamic_strings: bool,
    /// Look for runtimes built for one page size ([`crate::runtime`]): reads
    /// the section headers and their names, `.rodata` (or, without section
    /// headers, the read-only segments), and the code of files that hold jemalloc.
    pub runtime: bool,
}

impl ParseOptions {
    /// Everything, for explanations and dependency closures.
    pub fn everything() -> ParseOptions {
        ParseOptions { sections: true, section_names: true, symbols: true, dynamic_strings: true, runtime: true }
    }
}

/// Everything pagefit knows about one ELF file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ElfFile {
    /// 32 or 64.
    pub bits: u8,
    /// Little endian?
    pub little_endian: bool,
    /// `e_machine`.
    pub machine: u16,
    /// `EI_OSABI`.
    pub os_abi: u8,
    /// `e_type`.
    pub kind: ElfKind,
    /// Who maps this file.
    pub role: Role,
    /// The platform it was built for.
    pub platform: Platform,
    /// `e_entry`.
    pub entry: u64,
    /// Every program header.
    pub program_headers: Vec<ProgramHeader>,
    /// PT_INTERP contents.
    pub interpreter: Option<String>,
    /// The dynamic section.
    pub dynamic: DynamicInfo,
    /// Allocated sections, sorted by address (empty when not read or stripped).
    pub sections: Vec<Section>,
    /// Whether section headers were read (false also when there are none).
    pub sections_read: bool,
    /// Function and object symbols, sorted by address.
    pub symbols: Vec<Symbol>,
    /// Android API level from `.note.android.ident`.
    pub android_api: Option<u32>,
    /// Length of the file in bytes.
    pub file_len: u64,
    /// `e_phoff`, to name where a bad program header is.
    pub program_header_offset: u64,
    /// Runtimes with a compiled page size (read with [`ParseOptions::runtime`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub runtime: Vec<RuntimePageSize>,
}

impl ElfFile {
    /// The PT_LOAD headers, in table order.
    pub fn loads(&self) -> impl Iterator<Item = &ProgramHeader> {
        self.program_headers.iter().filter(|p| p.p_type == elf::PT_LOAD.0)
    }
    /// The first header of a type.
    pub fn header_of_type(&self, p_type: elf::ProgramType) -> Option<&ProgramHeader> {
        self.program_headers.iter().find(|p| p.p_type == p_type.0)
    }
    /// A name for `e_machine` (`x86_64`, `aarch64`, `ppc64le`, ...).
    pub fn machine_name(&self) -> String {
        machine_label(self.machine, self.little_endian)
    }
    /// ELF32 or ELF64 (`bits`, which parsing only ever sets to 32 or 64).
    pub fn class(&self) -> ElfClass {
        if self.bits == 32 {
            ElfClass::Elf32
        } else {
            ElfClass::Elf64
        }
    }
    /// DF_1_PIE is set.
    pub fn is_pie(&self) -> bool {
        self.kind == ElfKind::Dyn && self.role == Role::Executable
    }
}

/// The names `uname -m` prints, for the machines pagefit users meet most;
/// every other `e_machine` is named after its `object::elf::EM_*` constant.
const FRIENDLY_MACHINE_NAMES: &[(elf::Machine, &str)] = &[
    (elf::EM_386, "i386"),
    (elf::EM_X86_64, "x86_64"),
    (elf::EM_ARM, "arm"),
    (elf::EM_AARCH64, "aarch64"),
    (elf::EM_PPC, "ppc"),
    (elf::EM_PPC64, "ppc64"),
    (elf::EM_RISCV, "riscv"),
    (elf::EM_LOONGARCH, "loongarch"),
    (elf::EM_MIPS, "mips"),
    (elf::EM_S390, "s390"),
    (elf::EM_SPARCV9, "sparc64"),
    (elf::EM_SPARC, "sparc"),
    (elf::EM_IA_64, "ia64"),
    (elf::EM_ALPHA, "alpha"),
    (elf::EM_PARISC, "parisc"),
    (elf::EM_SH, "sh"),
    (elf::EM_68K, "m68k"),
    (elf::EM_BPF, "bpf"),
    (elf::EM_XTENSA, "xtensa"),
    (elf::EM_MICROBLAZE, "microblaze"),
    (elf::EM_ARC_COMPACT2, "arc"),
    (elf::EM_CSKY, "csky"),
    (elf::EM_HEXAGON, "hexagon"),
];

/// Prefix of the name of an `e_machine` value nothing else names.
const NUMERIC_MACHINE_PREFIX: &str = "machine-";

/// A name for every `e_machine` value, each one distinct and accepted back by
/// [`machine_from_name`]: the `uname -m` name for common machines (`x86_64`,
/// `aarch64`, `ppc64`, `riscv`, `loongarch`, `s390`), else the `EM_*`
/// constant's name in lower case (`EM_MSP430` is `msp430`; `em_arc` where the
/// short form is taken by a common name), else `machine-N`.
pub fn machine_name(machine: u16) -> String {
    if let Some((_, name)) = FRIENDLY_MACHINE_NAMES.iter().find(|(value, _)| value.0 == machine) {
        return (*name).to_string();
    }
    let Some(constant) = elf::Machine(machine).name() else {
        return format!("{NUMERIC_MACHINE_PREFIX}{machine}");
    };
    let constant = constant.to_ascii_lowercase();
    let short = constant.trim_start_matches("em_");
    if FRIENDLY_MACHINE_NAMES.iter().any(|(_, name)| *name == short) {
        constant
    } else {
        short.to_string()
    }
}

/// [`machine_name`], but saying the byte order where `uname -m` does:
/// `ppc64le`, `aarch64_be`.
pub fn machine_label(machine: u16, little_endian: bool) -> String {
    match (machine_name(machine), little_endian) {
        (name, true) if name == "ppc64" => "ppc64le".to_string(),
        (name, false) if name == "aarch64" => "aarch64_be".to_string(),
        (name, _) => name,
    }
}

/// The `e_machine` value [`machine_name`] gives `name` (case-insensitive).
pub fn machine_from_name(name: &str) -> Option<u16> {
    let name = name.to_ascii_lowercase();
    if let Some((value, _)) = FRIENDLY_MACHINE_NAMES.iter().find(|(_, friendly)| *friendly == name) {
        return Some(value.0);
    }
    if let Some(number) = name.strip_prefix(NUMERIC_MACHINE_PREFIX) {
        let machine = number.parse::<u16>().ok()?;
        // Only the canonical spelling: `machine-62` is `x86_64`'s number, not a name of it.
        return (machine_name(machine) == name).then_some(machine);
    }
    constant_machine_names().get(&name).copied()
}

/// [`machine_name`] of every `e_machine` value `object` has a constant for,
/// built on the first name lookup (the constants are not listed, only looked up).
fn constant_machine_names() -> &'static HashMap<String, u16> {
    static NAMES: OnceLock<HashMap<String, u16>> = OnceLock::new();
    NAMES.get_or_init(|| (0..=u16::MAX).filter(|&m| elf::Machine(m).name().is_some()).map(|m| (machine_name(m), m)).collect())
}

/// Reads an ELF file's headers (and, per `options`, its sections, symbols and
/// dynamic strings) from `data`.
pub fn parse<'data, R: ReadRef<'data>>(data: R, options: ParseOptions) -> Result<ElfFile, ParseError> {
    let file_len = data.len().map_err(|()| ParseError::new(ParseErrorKind::Truncated, Some(0), "cannot determine the file length"))?;
    let ident = data.read_bytes_at(0, 16).map_err(|()| {
        ParseError::new(ParseErrorKind::NotElf, Some(0), format!("file is {file_len} bytes, shorter than an ELF identification"))
    })?;
    if ident[..4] != elf::ELFMAG {
        return Err(ParseError::new(ParseErrorKind::NotElf, Some(0), "no \\x7fELF magic"));
    }
    match ident[EI_CLASS] {
        c if c == elf::ELFCLASS32.0 => parse_class::<elf::FileHeader32<Endianness>, R>(data, file_len, options),
        c if c == elf::ELFCLASS64.0 => parse_class::<elf::FileHeader64<Endianness>, R>(data, file_len, options),
        other => Err(ParseError::new(
            ParseErrorKind::InvalidHeader,
            Some(EI_CLASS as u64),
            format!("EI_CLASS is {other}, neither 1 (32-bit) nor 2 (64-bit)"),
        )),
    }
}

fn truncated(offset: u64, what: impl Into<String>) -> ParseError {
    ParseError::new(ParseErrorKind::Truncated, Some(offset), what)
}

fn parse_class<'data, Elf, R>(data: R, file_len: u64, options: ParseOptions) -> Result<ElfFile, ParseError>
where
    Elf: FileHeader<Endian = Endianness>,
    R: ReadRef<'data>,
{
    let header = Elf::parse(data).map_err(|e| {
        let kind = if (file_len as usize) < std::mem::size_of::<Elf>() { ParseErrorKind::Truncated } else { ParseErrorKind::InvalidHeader };
        ParseError::new(kind, Some(0), format!("ELF header: {e}"))
    })?;
    let endian = header.endian().map_err(|e| ParseError::new(ParseErrorKind::InvalidHeader, Some(EI_DATA as u64), e.to_string()))?;
    let program_headers = read_program_headers(header, endian, data, file_len)?;
    let mut file = ElfFile {
        bits: if header.is_type_64() { 64 } else { 32 },
        little_endian: endian == Endianness::Little,
        machine: header.e_machine(endian).0,
        os_abi: header.e_ident().os_abi.0,
        kind: match header.e_type(endian) {
            elf::ET_REL => ElfKind::Rel,
            elf::ET_EXEC => ElfKind::Exec,
            elf::ET_DYN => ElfKind::Dyn,
            elf::ET_CORE => ElfKind::Core,
            _ => ElfKind::Other,
        },
        role: Role::NotLoadable,
        platform: Platform::Glibc,
        entry: header.e_entry(endian).into(),
        program_headers,
        interpreter: None,
        dynamic: DynamicInfo::default(),
        sections: Vec::new(),
        sections_read: false,
        symbols: Vec::new(),
        android_api: None,
        file_len,
        program_header_offset: header.e_phoff(endian).into(),
        runtime: Vec::new(),
    };
    validate_loads(&file)?;
    file.interpreter = read_interpreter(&file, data)?;
    let strtab = read_dynamic(&mut file, endian, data, options.dynamic_strings)?;
    file.android_api = read_android_note(header, endian, data);
    file.role = role_of(&file, &strtab, data);
    file.platform = platform_of(&file);
    // The runtime check searches .rodata, found by section name.
    let options = if options.runtime { ParseOptions { sections: true, section_names: true, ..options } } else { options };
    if options.sections || options.symbols {
        read_sections(header, endian, data, &mut file, options)?;
    }
    if options.runtime {
        let segments: Vec<Segment> = file
            .loads()
            .map(|l| Segment {
                offset: l.offset,
                len: l.offset.saturating_add(l.filesz).min(file_len).saturating_sub(l.offset),
                vaddr: l.vaddr,
                writable: l.prot.is_writable(),
                executable: l.prot.is_executable(),
            })
            .collect();
        // .rodata (where compilers put string literals) is a fraction of the
        // read-only segments, which also hold the code.
        let read_only: Vec<Range<u64>> = file
            .sections
            .iter()
            .filter(|s| s.sh_type == elf::SHT_PROGBITS.0 && !s.is_code() && !s.is_writable() && s.name.starts_with(".rodata"))
            .map(|s| s.offset..s.offset.saturating_add(s.size).min(file_len))
            .filter(|r| r.start < r.end)
            .collect();
        file.runtime = runtime::detect(data, file.machine, &read_only, &segments);
    }
    Ok(file)
}

fn read_program_headers<'data, Elf: FileHeader<Endian = Endianness>, R: ReadRef<'data>>(
    header: &Elf,
    endian: Endianness,
    data: R,
    file_len: u64,
) -> Result<Vec<ProgramHeader>, ParseError> {
    let phoff: u64 = header.e_phoff(endian).into();
    if phoff == 0 {
        return Ok(Vec::new());
    }
    let entry_size = std::mem::size_of::<Elf::ProgramHeader>() as u64;
    let count = u64::from(
        header.phnum(endian, data).map_err(|e| ParseError::new(ParseErrorKind::InvalidHeader, Some(0), format!("e_phnum: {e}")))?,
    );
    if count > 0 && u64::from(header.e_phentsize(endian)) != entry_size {
        return Err(ParseError::new(
            ParseErrorKind::InvalidHeader,
            Some(0),
            format!("e_phentsize is {}, expected {entry_size}", header.e_phentsize(endian)),
        ));
    }
    let table_end = count.checked_mul(entry_size).and_then(|n| n.checked_add(phoff));
    match table_end {
        Some(end) if end <= file_len => {}
        // Past the end by a few entries is truncation; thousands more than fit is a lie.
        _ if count > file_len / entry_size && count > MAX_PLAUSIBLE_PHNUM => {
            return Err(ParseError::new(
                ParseErrorKind::AbsurdCount,
                Some(phoff),
                format!("{count} program headers cannot fit in a {file_len}-byte file"),
            ))
        }
        _ => {
            return Err(truncated(
                phoff,
                format!("program header table ({count} entries of {entry_size} bytes) runs past the end of the file ({file_len} bytes)"),
            ))
        }
    }
    let table = header.program_headers(endian, data).map_err(|e| truncated(phoff, format!("program header table: {e}")))?;
    Ok(table
        .iter()
        .enumerate()
        .map(|(index, ph)| ProgramHeader {
            index,
            p_type: ph.p_type(endian).0,
            prot: Prot::from_p_flags(ph.p_flags(endian).0),
            offset: ph.p_offset(endian).into(),
            vaddr: ph.p_vaddr(endian).into(),
            filesz: ph.p_filesz(endian).into(),
            memsz: ph.p_memsz(endian).into(),
            align: ph.p_align(endian).into(),
        })
        .collect())
}

/// Rejects PT_LOADs no loader could map: sizes past the address space,
/// file ranges past EOF, and segments that claim the same memory.
fn validate_loads(file: &ElfFile) -> Result<(), ParseError> {
    // A 32-bit segment may end exactly at 4 GiB.
    let address_limit = if file.bits == 32 { 1 << 32 } else { u64::MAX };
    let entry_size: u64 = if file.bits == 32 { 32 } else { 56 };
    let phoff_of = |index: usize| -> Option<u64> { Some(file.program_header_offset + index as u64 * entry_size) };
    let mut loads: Vec<&ProgramHeader> = Vec::new();
    for ph in file.loads() {
        let in_range = ph.vaddr.checked_add(ph.memsz).is_some_and(|end| end <= address_limit) && ph.offset.checked_add(ph.filesz).is_some();
        if !in_range {
            return Err(ParseError::new(
                ParseErrorKind::AddressOverflow,
                phoff_of(ph.index),
                format!(
                    "PT_LOAD[{}] p_vaddr {:#x} + p_memsz {:#x} or p_offset {:#x} + p_filesz {:#x} overflows",
                    ph.index, ph.vaddr, ph.memsz, ph.offset, ph.filesz
                ),
            ));
        }
        if ph.filesz > ph.memsz {
            return Err(ParseError::new(
                ParseErrorKind::InvalidHeader,
                phoff_of(ph.index),
                format!("PT_LOAD[{}] p_filesz {:#x} is larger than p_memsz {:#x}", ph.index, ph.filesz, ph.memsz),
            ));
        }
        if ph.offset + ph.filesz > file.file_len {
            return Err(truncated(
                ph.offset,
                format!(
                    "PT_LOAD[{}] file bytes {:#x}-{:#x} run past the end of the file ({:#x})",
                    ph.index,
                    ph.offset,
                    ph.offset + ph.filesz,
                    file.file_len
                ),
            ));
        }
        if let Some(other) = loads.iter().find(|o| o.memsz > 0 && ph.memsz > 0 && o.vaddr < ph.mem_end() && ph.vaddr < o.mem_end()) {
            return Err(ParseError::new(
                ParseErrorKind::OverlappingSegments,
                phoff_of(ph.index),
                format!(
                    "PT_LOAD[{}] {:#x}-{:#x} overlaps PT_LOAD[{}] {:#x}-{:#x}",
                    ph.index,
                    ph.vaddr,
                    ph.mem_end(),
                    other.index,
                    other.vaddr,
                    other.mem_end()
                ),
            ));
        }
        loads.push(ph);
    }
    Ok(())
}

const EI_CLASS: usize = 4;
/// More program headers than this cannot describe a real object.
const MAX_PLAUSIBLE_PHNUM: u64 = 4096;
const EI_DATA: usize = 5;

/// Caps what pagefit reads of variable-length items, so a lying header cannot make it allocate much.
const MAX_INTERP_LEN: u64 = 4096;
const MAX_DYNAMIC_ENTRIES: u64 = 1 << 16;

fn read_interpreter<'data, R: ReadRef<'data>>(file: &ElfFile, data: R) -> Result<Option<String>, ParseError> {
    let Some(ph) = file.header_of_type(elf::PT_INTERP) else { return Ok(None) };
    let len = ph.filesz.min(MAX_INTERP_LEN);
    let bytes = data
        .read_bytes_at(ph.offset, len)
        .map_err(|()| truncated(ph.offset, format!("PT_INTERP ({len} bytes) runs past the end of the file")))?;
    let text = bytes.split(|b| *b == 0).next().unwrap_or_default();
    Ok(Some(String::from_utf8_lossy(text).into_owned()))
}

/// Translates a virtual address to a file offset through the PT_LOADs.
fn vaddr_to_offset(file: &ElfFile, vaddr: u64) -> Option<u64> {
    file.loads().find(|ph| vaddr >= ph.vaddr && vaddr < ph.file_end()).map(|ph| ph.offset + (vaddr - ph.vaddr))
}

/// Where the dynamic string table lives, for reading names later.
#[derive(Default)]
struct StringTable {
    offset: Option<u64>,
    size: u64,
    soname: Option<u64>,
}

impl StringTable {
    /// Reads the NUL-terminated string at `index`, in growing windows.
    ///
    /// Not `ReadRef::read_bytes_at_until`: that searches with the memchr
    /// crate, whose first search probes the CPU's features with a dozen
    /// `cpuid` instructions, each trapped by a hypervisor, on the start-up
    /// path of every `pagefit run`.
    fn read<'data, R: ReadRef<'data>>(&self, data: R, index: u64) -> Option<String> {
        let start = self.offset?.checked_add(index)?;
        let available = (self.offset? + self.size).checked_sub(start)?;
        let mut window = 64;
        loop {
            let len = available.min(window);
            let bytes = data.read_bytes_at(start, len).ok()?;
            if let Some(nul) = bytes.iter().position(|b| *b == 0) {
                return Some(String::from_utf8_lossy(&bytes[..nul]).into_owned());
            }
            if len == available {
                return None;
            }
            window *= 8;
        }
    }
}

fn read_dynamic<'data, R: ReadRef<'data>>(
    file: &mut ElfFile,
    endian: Endianness,
    data: R,
    read_strings: bool,
) -> Result<StringTable, ParseError> {
    let Some(ph) = file.header_of_type(elf::PT_DYNAMIC).cloned() else { return Ok(StringTable::default()) };
    let entry_size: u64 = if file.bits == 64 { 16 } else { 8 };
    let count = (ph.filesz / entry_size).min(MAX_DYNAMIC_ENTRIES);
    let mut tags: Vec<(elf::DynamicTag, u64)> = Vec::new();
    if file.bits == 64 {
        let entries: &[elf::Dyn64<Endianness>] = data
            .read_slice_at(ph.offset, count as usize)
            .map_err(|()| truncated(ph.offset, format!("PT_DYNAMIC ({count} entries) runs past the end of the file")))?;
        for d in entries {
            tags.push((d.d_tag(endian), d.d_val(endian)));
        }
    } else {
        let entries: &[elf::Dyn32<Endianness>] = data
            .read_slice_at(ph.offset, count as usize)
            .map_err(|()| truncated(ph.offset, format!("PT_DYNAMIC ({count} entries) runs past the end of the file")))?;
        for d in entries {
            tags.push((d.d_tag(endian), d.d_val(endian).into()));
        }
    }
    let mut strtab = StringTable::default();
    let dynamic = &mut file.dynamic;
    let mut names: Vec<(elf::DynamicTag, u64, u64)> = Vec::new();
    for (index, (tag, value)) in (0u64..).zip(tags) {
        let value_vaddr = ph.vaddr + index * entry_size + entry_size / 2;
        match tag {
            elf::DT_NULL => break,
            elf::DT_STRTAB => {
                strtab.offset = Some(value);
                dynamic.string_table_vaddr = Some(value);
            }
            elf::DT_STRSZ => strtab.size = value,
            elf::DT_FLAGS => {
                dynamic.flags = value;
                dynamic.text_relocations |= value & elf::DF_TEXTREL.0 != 0;
            }
            elf::DT_FLAGS_1 => dynamic.flags_1 = value,
            elf::DT_TEXTREL => dynamic.text_relocations = true,
            elf::DT_SONAME => strtab.soname = Some(value),
            elf::DT_NEEDED | elf::DT_RPATH | elf::DT_RUNPATH => names.push((tag, value, value_vaddr)),
            _ => {}
        }
    }
    strtab.offset = strtab.offset.and_then(|vaddr| vaddr_to_offset(file, vaddr));
    strtab.size = strtab.size.min(file.file_len);
    if read_strings {
        let dynamic = &mut file.dynamic;
        dynamic.soname = strtab.soname.and_then(|i| strtab.read(data, i));
        for (tag, index, value_vaddr) in names {
            let Some(text) = strtab.read(data, index) else { continue };
            if tag != elf::DT_NEEDED {
                dynamic.search_path_entries.push(SearchPathEntry { tag, value_vaddr, text: text.clone() });
            }
            match tag {
                elf::DT_NEEDED => dynamic.needed.push(text),
                elf::DT_RPATH => dynamic.rpath = Some(text),
                _ => dynamic.runpath = Some(text),
            }
        }
    }
    Ok(strtab)
}

/// `.note.android.ident`: name "Android", type 1, descriptor = API level.
fn read_android_note<'data, Elf: FileHeader<Endian = Endianness>, R: ReadRef<'data>>(
    header: &Elf,
    endian: Endianness,
    data: R,
) -> Option<u32> {
    const NT_ANDROID_TYPE_IDENT: u32 = 1;
    for ph in header.program_headers(endian, data).ok()? {
        let Ok(Some(mut notes)) = ph.notes(endian, data) else { continue };
        while let Ok(Some(note)) = notes.next() {
            if note.name() == b"Android" && note.n_type(endian).0 == NT_ANDROID_TYPE_IDENT && note.desc().len() >= 4 {
                let desc: [u8; 4] = note.desc()[..4].try_into().ok()?;
                return Some(match endian {
                    Endianness::Little => u32::from_le_bytes(desc),
                    Endianness::Big => u32::from_be_bytes(desc),
                });
            }
        }
    }
    None
}

fn role_of<'data, R: ReadRef<'data>>(file: &ElfFile, strtab: &StringTable, data: R) -> Role {
    match file.kind {
        ElfKind::Exec => Role::Executable,
        ElfKind::Dyn if file.interpreter.is_some() || file.dynamic.flags_1 & elf::DF_1_PIE.0 != 0 => Role::Executable,
        ElfKind::Dyn => {
            let soname = file.dynamic.soname.clone().or_else(|| strtab.soname.and_then(|i| strtab.read(data, i)));
            match soname {
                Some(name) if is_interpreter_name(&name) => Role::Interpreter,
                _ => Role::SharedObject,
            }
        }
        _ => Role::NotLoadable,
    }
}

/// Sonames of the dynamic linkers pagefit knows (glibc's ld-linux*, ld64.so.*, ld.so.*, musl's ld-musl-*, bionic's linker).
pub fn is_interpreter_name(name: &str) -> bool {
    let base = name.rsplit('/').next().unwrap_or(name);
    base.starts_with("ld-linux")
        || base.starts_with("ld64.so")
        || base.starts_with("ld.so")
        || base.starts_with("ld-musl")
        || base == "linker"
        || base == "linker64"
}

fn platform_of(file: &ElfFile) -> Platform {
    let interp = file.interpreter.as_deref().unwrap_or("");
    if file.android_api.is_some() || interp.starts_with("/system/bin/linker") {
        Platform::Android
    } else if interp.contains("ld-musl") || file.dynamic.needed.iter().any(|n| n.starts_with("libc.musl")) {
        Platform::Musl
    } else {
        Platform::Glibc
    }
}

const MAX_SYMBOLS: u64 = 1 << 22;

fn read_sections<'data, Elf: FileHeader<Endian = Endianness>, R: ReadRef<'data>>(
    header: &Elf,
    endian: Endianness,
    data: R,
    file: &mut ElfFile,
    options: ParseOptions,
) -> Result<(), ParseError> {
    let shoff: u64 = header.e_shoff(endian).into();
    if shoff == 0 {
        return Ok(());
    }
    let entry_size = std::mem::size_of::<Elf::SectionHeader>() as u64;
    let count = u64::from(
        header.shnum(endian, data).map_err(|e| ParseError::new(ParseErrorKind::InvalidHeader, Some(shoff), format!("e_shnum: {e}")))?,
    );
    if count > file.file_len / entry_size {
        return Err(ParseError::new(
            ParseErrorKind::AbsurdCount,
            Some(shoff),
            format!("{count} section headers cannot fit in a {}-byte file", file.file_len),
        ));
    }
    let table = header.sections(endian, data).map_err(|e| truncated(shoff, format!("section header table ({count} entries): {e}")))?;
    file.sections_read = true;
    for section in table.iter() {
        let name = if options.section_names {
            table.section_name(endian, section).map(|n| String::from_utf8_lossy(n).into_owned()).unwrap_or_default()
        } else {
            String::new()
        };
        let s = Section {
            name,
            addr: section.sh_addr(endian).into(),
            size: section.sh_size(endian).into(),
            offset: section.sh_offset(endian).into(),
            flags: section.sh_flags(endian).0,
            sh_type: section.sh_type(endian).0,
        };
        if s.occupies_memory() {
            file.sections.push(s);
        }
    }
    file.sections.sort_by_key(|s| (s.addr, s.size));
    if options.symbols {
        let symbols = table
            .symbols(endian, data, elf::SHT_SYMTAB)
            .ok()
            .filter(|t| !t.is_empty())
            .or_else(|| table.symbols(endian, data, elf::SHT_DYNSYM).ok());
        if let Some(symbols) = symbols {
            for sym in symbols.iter().take(MAX_SYMBOLS as usize) {
                let kind = sym.st_type();
                if sym.is_undefined(endian)
                    || !(kind == elf::STT_FUNC || kind == elf::STT_OBJECT)
                    || sym.st_shndx(endian).0 == elf::SHN_ABS.0
                {
                    continue;
                }
                let name = symbols.symbol_name(endian, sym).map(|n| String::from_utf8_lossy(n).into_owned()).unwrap_or_default();
                if name.is_empty() {
                    continue;
                }
                file.symbols.push(Symbol { name, addr: sym.st_value(endian).into(), size: sym.st_size(endian).into() });
            }
            file.symbols.sort_by(|a, b| (a.addr, &a.name).cmp(&(b.addr, &b.name)));
            file.symbols.dedup_by(|a, b| a.addr == b.addr && a.name == b.name);
        }
    }
    Ok(())
}
