//! The rewrite planner behind `pagefit fix`: a pure function from a parsed
//! file, a page size P and a strategy to the new program and section headers
//! and the list of output pieces that make up the rewritten file.
//!
//! Two phases, as `object`'s writer does: [`plan_rewrite`] decides every
//! offset (this module), then the caller streams the pieces in order
//! (copy an input range, write literal bytes, leave zeros).
//!
//! relayout and merge keep every virtual address, so nothing in the image
//! that holds an address (relocations, symbols, dynamic tags, DWARF) needs to
//! change; rebase moves every address by Δ and patches what holds one:
//!
//! - **relayout** moves file contents so that `p_offset ≡ p_vaddr (mod P)` and
//!   sets `p_align = P`. PT_LOADs that share a P-page must have the same flags;
//!   they become one segment, with any bss between them written as zeros.
//! - **merge** does the same for PT_LOADs with different flags that share a
//!   P-page, giving the merged segment the union of their flags. The cost is
//!   reported in words.
//! - **rebase** (ET_DYN only) shifts the image by Δ so that the first
//!   writable segment's first 4K page starts a P-page, then lays it out as
//!   merge does: read-only data joins code, RELRO joins the data, and nothing
//!   becomes writable and executable. Every value holding an address moves by
//!   Δ ([`rebase`]); the file is refused when one cannot be accounted for.
//!
//! In all three, PT_GNU_RELRO is trimmed (or extended into nothing) so that no
//! loader's rounding to P makes a page that is written read-only or takes
//! execute from code, and every file offset (e_phoff, e_shoff, p_offset,
//! sh_offset) is moved with the bytes it points at.

mod rebase;

use std::fmt;
use std::str::FromStr;

use object::elf;
use object::read::elf::{FileHeader, ProgramHeader as _, SectionHeader as _};
use object::{Endianness, ReadRef, U32, U64};
use serde::Serialize;

use crate::check::default_loaders;
use crate::elf::{ElfFile, ElfKind, Platform, ProgramHeader, Prot, Role, Section};
use crate::error::{ParseError, ParseErrorKind};
use crate::memory::AddrRange;
use crate::model::LoaderModel;
use crate::page::PageSize;
use crate::plan::{baseline, plan_against, LoadInput, Outcome, BASELINE_PAGE};

/// How `pagefit fix` rewrites a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// The first of relayout, rebase and merge that works.
    Auto,
    /// Move file contents only; no permission changes.
    Relayout,
    /// Shift an ET_DYN image by a constant Δ, moving every address it holds.
    Rebase,
    /// Merge PT_LOADs that share a P-page into one with the union of their flags.
    Merge,
}

impl Strategy {
    /// The name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Auto => "auto",
            Strategy::Relayout => "relayout",
            Strategy::Rebase => "rebase",
            Strategy::Merge => "merge",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Strategy {
    type Err = String;
    fn from_str(text: &str) -> Result<Strategy, String> {
        [Strategy::Auto, Strategy::Relayout, Strategy::Rebase, Strategy::Merge]
            .into_iter()
            .find(|s| s.name() == text)
            .ok_or_else(|| format!("unknown strategy {text:?}; known strategies: auto, relayout, rebase, merge"))
    }
}

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
    fn widened(&self, index: usize) -> ProgramHeader {
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
    fn is_alloc(&self) -> bool {
        self.sh_flags & elf::SHF_ALLOC.0 != 0
    }
    fn has_file_bytes(&self) -> bool {
        self.sh_type != elf::SHT_NOBITS.0 && self.sh_type != elf::SHT_NULL.0 && self.sh_size > 0
    }
}

/// Where the bytes of one output piece come from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum PieceSource {
    /// The input's bytes from this offset on.
    Copy {
        /// Input file offset of the piece's first byte.
        from: u64,
    },
    /// Zeros (bss written into the file, padding).
    Zeros,
    /// New bytes: a rewritten header table.
    Bytes {
        /// What they are ("ELF header", "program headers", "section headers").
        what: &'static str,
        /// The bytes.
        #[serde(skip)]
        bytes: Vec<u8>,
    },
}

/// One contiguous run of the output file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OutputPiece {
    /// Output file offset.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
    /// What fills it.
    pub source: PieceSource,
}

impl OutputPiece {
    fn end(&self) -> u64 {
        self.offset + self.len
    }
}

/// A protection the rewritten file grants or keeps from bytes that had
/// another one: the price of the fix, in words and numbers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PermissionCost {
    /// The addresses affected.
    pub range: AddrRange,
    /// Bytes affected.
    pub bytes: u64,
    /// Protection in the input.
    pub before: Prot,
    /// Protection in the output.
    pub after: Prot,
    /// Sections in the range.
    pub sections: Vec<String>,
    /// The cost in words.
    pub message: String,
}

/// A strategy that does not apply, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// The strategy.
    pub strategy: Strategy,
    /// Why, in words.
    pub reason: String,
}

/// The complete rewrite: headers, pieces and what it costs.
#[derive(Clone, Debug, Serialize)]
pub struct RewritePlan {
    /// The strategy that produced it (never `auto`).
    pub strategy: Strategy,
    /// How far rebase moved every address (0 for relayout and merge).
    pub delta: u64,
    /// Target page size.
    pub page_size: PageSize,
    /// The new program header table, in table order.
    pub program_headers: Vec<RawProgramHeader>,
    /// The new section header table (empty for a file without one).
    pub section_headers: Vec<RawSectionHeader>,
    /// New `e_phoff`.
    pub phoff: u64,
    /// New `e_shoff` (0 without section headers).
    pub shoff: u64,
    /// The output file, piece by piece, sorted by offset; bytes between pieces are zeros.
    pub pieces: Vec<OutputPiece>,
    /// Length of the output file.
    pub output_len: u64,
    /// Loaded addresses whose bytes are rewritten on purpose (the ELF header
    /// and program header table when a segment maps them).
    pub rewritten: Vec<AddrRange>,
    /// Permissions gained or RELRO protection given up.
    pub costs: Vec<PermissionCost>,
    /// Some output PT_LOAD is both writable and executable.
    pub writable_executable: bool,
    /// Things the user should know that are not permission costs.
    pub warnings: Vec<String>,
    /// Strategies tried before this one, and why they did not apply.
    pub refused: Vec<Refusal>,
}

/// The loaders a fixed file must be `ok` under: the kernel for programs,
/// bionic for anything Android, and glibc (old and new), musl and bionic for
/// other shared objects (the same bytes must load under whichever the system has).
pub fn target_loaders(file: &ElfFile) -> Vec<LoaderModel> {
    match (file.platform, file.role) {
        (Platform::Android, _) => vec![LoaderModel::Bionic],
        (_, Role::SharedObject) => vec![LoaderModel::Glibc, LoaderModel::Glibc234, LoaderModel::Musl, LoaderModel::Bionic],
        _ => default_loaders(file),
    }
}

/// Plans rewriting `file` (parsed from `data` with at least section headers
/// and their names) so that it loads at page size `page` exactly as at 4K.
///
/// With [`Strategy::Auto`], relayout, rebase and merge are tried in that
/// order; the plan returned is the first whose new headers the load planner
/// calls `ok` at `page` under every [`target_loaders`] model. On failure every
/// strategy's refusal is returned.
pub fn plan_rewrite<'data, R: ReadRef<'data>>(
    data: R,
    file: &ElfFile,
    page: PageSize,
    strategy: Strategy,
) -> Result<RewritePlan, Vec<Refusal>> {
    let headers = RawHeaders::read(data).map_err(|e| vec![Refusal { strategy, reason: e.to_string() }])?;
    let order: &[Strategy] = match strategy {
        Strategy::Auto => &[Strategy::Relayout, Strategy::Rebase, Strategy::Merge],
        Strategy::Relayout => &[Strategy::Relayout],
        Strategy::Rebase => &[Strategy::Rebase],
        Strategy::Merge => &[Strategy::Merge],
    };
    let mut refused = Vec::new();
    for &candidate in order {
        let attempt = match candidate {
            Strategy::Rebase => plan_rebase(data, &headers, file, page),
            _ => plan_layout(&headers, file, page, candidate == Strategy::Merge, None),
        }
        .and_then(|plan| refuse_android_wx(file, plan))
        .and_then(|plan| prove_loads_ok(file, &plan).map(|()| plan));
        match attempt {
            Ok(mut plan) => {
                plan.strategy = candidate;
                plan.refused = refused;
                return Ok(plan);
            }
            Err(reason) => refused.push(Refusal { strategy: candidate, reason }),
        }
    }
    Err(refused)
}

/// bionic refuses W+X segments for apps targeting API 26 and later.
fn refuse_android_wx(file: &ElfFile, plan: RewritePlan) -> Result<RewritePlan, String> {
    if file.platform == Platform::Android && plan.writable_executable {
        return Err("the merged segment would be writable and executable, and bionic refuses such libraries: \"has load segments that are both writable and executable\"".into());
    }
    Ok(plan)
}

/// Rebase: choose Δ, account for every address the file holds, then lay the
/// shifted headers out as merge does, refusing a writable and executable result.
fn plan_rebase<'data, R: ReadRef<'data>>(data: R, headers: &RawHeaders, file: &ElfFile, page: PageSize) -> Result<RewritePlan, String> {
    if file.kind != ElfKind::Dyn {
        return Err("rebase moves the load address, which only ET_DYN objects (shared objects, PIEs) allow".into());
    }
    if file.role == Role::Interpreter {
        return Err("a dynamic linker relocates itself and finds its load base from __ehdr_start, assuming it is linked at 0".into());
    }
    if file.role == Role::Executable && file.interpreter.is_none() {
        return Err("a static PIE relocates itself and finds its load base from __ehdr_start, assuming it is linked at 0".into());
    }
    if !file.sections_read {
        return Err("without section headers the symbol tables and GOT cannot be found to move their addresses".into());
    }
    let delta = choose_delta(headers, page)?;
    rebase::check_eh_frame_hdr(data, headers)?;
    let patches = rebase::address_patches(data, headers, file, delta)?;
    let shifted_headers = headers.shifted(delta)?;
    let mut shifted_file = file.clone();
    for section in &mut shifted_file.sections {
        section.addr += delta;
    }
    let mut plan = plan_layout(&shifted_headers, &shifted_file, page, true, Some(Shift { delta, patches }))?;
    if plan.writable_executable {
        return Err(format!(
            "after a shift by {delta:#x}, writable and executable segments would still share {page} pages (a writable segment precedes code)"
        ));
    }
    let debug: Vec<&str> = headers.sections.iter().filter(|s| s.name.starts_with(".debug_")).map(|s| s.name.as_str()).collect();
    if !debug.is_empty() {
        plan.warnings.push(format!(
            "debug info ({}) is not adjusted: debuggers will see every address in it off by Δ = {delta:#x}",
            debug.join(", ")
        ));
    }
    plan.warnings.push(format!("every address moved by Δ = {delta:#x}: symbols, relocations, dynamic tags, program and section headers"));
    Ok(plan)
}

/// Δ puts the first 4K page of the first writable PT_LOAD at a P boundary.
/// It is a multiple of 4K and of every alignment the image asks for (sections,
/// PT_TLS), so aligned data stays aligned and TLS offsets do not change; the
/// 4K page is free of read-only bytes because the input loads at 4K.
fn choose_delta(headers: &RawHeaders, page: PageSize) -> Result<u64, String> {
    let mut loads: Vec<&RawProgramHeader> =
        headers.program_headers.iter().filter(|ph| ph.p_type == elf::PT_LOAD.0 && ph.p_memsz > 0).collect();
    loads.sort_by_key(|ph| ph.p_vaddr);
    let first_writable = loads
        .iter()
        .position(|ph| Prot::from_p_flags(ph.p_flags).is_writable())
        .ok_or("no segment is writable, so there is no boundary between code and data to move")?;
    let read_only_end = loads[..first_writable].iter().map(|ph| ph.p_vaddr + ph.p_memsz).max().unwrap_or(0);
    let alignment = headers
        .sections
        .iter()
        .filter(|s| s.is_alloc())
        .map(|s| s.sh_addralign)
        .chain(headers.program_headers.iter().filter(|ph| ph.p_type == elf::PT_TLS.0).map(|ph| ph.p_align))
        .filter(|a| a.is_power_of_two())
        .fold(BASELINE_PAGE.bytes(), u64::max);
    let boundary = loads[first_writable].p_vaddr & !(alignment - 1);
    if boundary < read_only_end {
        return Err(format!(
            "read-only bytes end at {read_only_end:#x}, after the {alignment:#x}-aligned start {boundary:#x} of the writable data (Δ must be a multiple of {alignment:#x}, the largest alignment of a 4K page, a section or PT_TLS)"
        ));
    }
    let delta = page.offset_in_page(page.bytes() - page.offset_in_page(boundary));
    if delta == 0 {
        return Err(format!("the boundary between code and data ({boundary:#x}) is already on a {page} boundary"));
    }
    Ok(delta)
}

/// The new headers as the planner sees them, before anything is written.
fn rewritten_file(file: &ElfFile, plan: &RewritePlan) -> ElfFile {
    let mut out = file.clone();
    out.program_headers = plan.program_headers.iter().enumerate().map(|(i, ph)| ph.widened(i)).collect();
    out.program_header_offset = plan.phoff;
    out.file_len = plan.output_len;
    if out.entry != 0 {
        out.entry += plan.delta;
    }
    // Sections move by Δ (0 but for rebase), and their offsets with their segments.
    for section in &mut out.sections {
        if let Some(new) = plan.section_headers.iter().find(|s| s.name == section.name && s.sh_addr == section.addr + plan.delta) {
            section.offset = new.sh_offset;
            section.addr = new.sh_addr;
        }
    }
    out
}

/// The pure half of verification, run before anything is written: the new
/// headers load `ok` under every target loader at every page size from 4K to
/// P (a file fixed for 64K still runs on 4K and 16K kernels).
fn prove_loads_ok(file: &ElfFile, plan: &RewritePlan) -> Result<(), String> {
    let out = rewritten_file(file, plan);
    let input = LoadInput::from_elf(&out, "output");
    for loader in target_loaders(file) {
        let base = baseline(&input, BASELINE_PAGE, loader);
        for page in BASELINE_PAGE.up_to(plan.page_size) {
            let planned = plan_against(&input, page, loader, &base);
            if planned.outcome != Outcome::Ok {
                let why = planned
                    .message
                    .or_else(|| planned.findings.first().map(|f| f.message.clone()))
                    .unwrap_or_else(|| "the mapping differs from the 4K mapping".into());
                return Err(format!("the rewritten headers would still be {} under {loader} at {page}: {why}", planned.outcome.name()));
            }
        }
    }
    Ok(())
}

/// The ELF header, as `object`'s struct, to be written back with new offsets.
#[derive(Clone, Copy, Debug)]
enum FileHeaderImage {
    Elf32(elf::FileHeader32<Endianness>),
    Elf64(elf::FileHeader64<Endianness>),
}

/// Every header of the input with every field.
#[derive(Clone)]
struct RawHeaders {
    endian: Endianness,
    header: FileHeaderImage,
    program_headers: Vec<RawProgramHeader>,
    sections: Vec<RawSectionHeader>,
    phoff: u64,
    shoff: u64,
}

fn header_error(offset: u64, detail: impl fmt::Display) -> ParseError {
    ParseError::new(ParseErrorKind::InvalidHeader, Some(offset), detail.to_string())
}

impl RawHeaders {
    fn read<'data, R: ReadRef<'data>>(data: R) -> Result<RawHeaders, ParseError> {
        let class = data.read_bytes_at(4, 1).map_err(|()| header_error(4, "no EI_CLASS"))?[0];
        if class == elf::ELFCLASS64.0 {
            let header: &elf::FileHeader64<Endianness> = elf::FileHeader64::parse(data).map_err(|e| header_error(0, e))?;
            Self::read_class(header, FileHeaderImage::Elf64(*header), data)
        } else {
            let header: &elf::FileHeader32<Endianness> = elf::FileHeader32::parse(data).map_err(|e| header_error(0, e))?;
            Self::read_class(header, FileHeaderImage::Elf32(*header), data)
        }
    }

    fn read_class<'data, Elf: FileHeader<Endian = Endianness>, R: ReadRef<'data>>(
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
    fn shifted(&self, delta: u64) -> Result<RawHeaders, String> {
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

    fn is_64(&self) -> bool {
        matches!(self.header, FileHeaderImage::Elf64(_))
    }

    fn program_header_size(&self) -> u64 {
        if self.is_64() {
            size_of::<elf::ProgramHeader64<Endianness>>() as u64
        } else {
            size_of::<elf::ProgramHeader32<Endianness>>() as u64
        }
    }

    fn section_header_size(&self) -> u64 {
        if self.is_64() {
            size_of::<elf::SectionHeader64<Endianness>>() as u64
        } else {
            size_of::<elf::SectionHeader32<Endianness>>() as u64
        }
    }
}

/// A value that must fit an ELF32 field.
fn word32(value: u64, what: &str) -> Result<u32, String> {
    u32::try_from(value).map_err(|_| format!("{what} {value:#x} does not fit a 32-bit ELF file"))
}

fn encode_file_header(headers: &RawHeaders, phoff: u64, shoff: u64) -> Result<Vec<u8>, String> {
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

fn encode_program_headers(headers: &RawHeaders, table: &[RawProgramHeader]) -> Result<Vec<u8>, String> {
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

fn encode_section_headers(headers: &RawHeaders, table: &[RawSectionHeader]) -> Result<Vec<u8>, String> {
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

/// PT_LOADs that share P-pages, which become one output segment.
struct PageGroup {
    /// Indices into the input's program header table, by address.
    loads: Vec<usize>,
    vaddr: u64,
    /// End of the last file byte of any member (`vaddr` when none has file bytes).
    file_end: u64,
    mem_end: u64,
    flags: u32,
    /// Output file offset minus address, once placed.
    shift: i128,
}

impl PageGroup {
    fn contains(&self, address: u64) -> bool {
        self.vaddr <= address && address < self.mem_end
    }
    fn file_offset_of(&self, address: u64) -> u64 {
        u64::try_from(i128::from(address) + self.shift).unwrap_or(0)
    }
}

/// Groups the PT_LOADs (sorted by address) whose P-page ranges touch.
fn page_groups(loads: &[(usize, &RawProgramHeader)], page: PageSize) -> Vec<PageGroup> {
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
fn next_congruent(cursor: u64, address: u64, page: PageSize) -> Option<u64> {
    let behind = page.offset_in_page(address.wrapping_sub(cursor));
    cursor.checked_add(behind)
}

/// How far a copied input range moved.
#[derive(Clone, Copy)]
struct Moved {
    from: u64,
    len: u64,
    to: u64,
}

fn translate(moves: &[Moved], offset: u64, len: u64) -> Option<u64> {
    let end = offset.checked_add(len)?;
    moves.iter().find(|m| m.from <= offset && end <= m.from + m.len).map(|m| m.to + (offset - m.from))
}

/// `612 bytes`, `1.9 KiB`, `17.6 MiB`.
fn human_size(bytes: u64) -> String {
    const KIB: u64 = 1024;
    match bytes {
        b if b < KIB => format!("{b} bytes"),
        b if b < KIB * KIB => format!("{:.1} KiB", b as f64 / KIB as f64),
        b => format!("{:.1} MiB", b as f64 / (KIB * KIB) as f64),
    }
}

fn section_names_in(sections: &[Section], range: AddrRange) -> Vec<String> {
    sections.iter().filter(|s| range.intersect(&AddrRange::new(s.addr, s.end())).is_some()).map(|s| s.name.clone()).collect()
}

/// `R`, `RX`, `RW`, `RWX`: how the issue and most people write segment flags.
fn flags_name(prot: Prot) -> String {
    [(Prot::R, 'R'), (Prot::W, 'W'), (Prot::X, 'X')].iter().filter(|(bit, _)| prot.contains(*bit)).map(|(_, c)| *c).collect()
}

fn describe(prot: Prot) -> &'static str {
    if prot.is_executable() {
        "code"
    } else if prot.is_writable() {
        "writable data"
    } else {
        "read-only data"
    }
}

fn describe_gain(gained: Prot) -> &'static str {
    match (gained.is_writable(), gained.is_executable()) {
        (true, true) => "writable and executable",
        (true, false) => "writable",
        (false, true) => "executable",
        (false, false) => "readable",
    }
}

/// Refuses (relayout) or prices (merge) every group whose members' flags differ.
fn merge_costs(
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
fn place_groups(
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
fn keep_unloaded_bytes(
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
struct OutputLayout {
    pieces: Vec<OutputPiece>,
    moves: Vec<Moved>,
    cursor: u64,
    /// Input offset of the first byte a segment loads (what precedes it keeps its place).
    first_loaded: u64,
}

impl OutputLayout {
    fn copy(&mut self, from: u64, len: u64, to: u64) {
        self.pieces.push(OutputPiece { offset: to, len, source: PieceSource::Copy { from } });
        self.moves.push(Moved { from, len, to });
    }
}

/// What trimming PT_GNU_RELRO `old` to `kept` gives up: loaded bytes that
/// stay writable after relocation.
fn relro_costs(old: AddrRange, kept: Option<AddrRange>, groups: &[PageGroup], file: &ElfFile, page: PageSize) -> Vec<PermissionCost> {
    let mut costs = Vec::new();
    let kept = kept.unwrap_or(AddrRange::new(old.start, old.start));
    let trimmed = [AddrRange::new(old.start, kept.start.max(old.start).min(old.end)), AddrRange::new(kept.end.max(old.start), old.end)];
    // Only loaded bytes lose anything: RELRO may run past its segment.
    let lost_loaded = trimmed.iter().flat_map(|t| groups.iter().filter_map(|g| t.intersect(&AddrRange::new(g.vaddr, g.mem_end))));
    for lost in lost_loaded {
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
    costs
}

/// What rebase adds to a layout: the shift and the patched values.
struct Shift {
    delta: u64,
    patches: Vec<rebase::Patch>,
}

/// Relayout (`merge_flags` false), merge, or with `shift` the layout of
/// rebase's shifted headers: file contents move, headers are rewritten and
/// the patches overlaid on the bytes they replace.
fn plan_layout(
    headers: &RawHeaders,
    file: &ElfFile,
    page: PageSize,
    merge_flags: bool,
    shift: Option<Shift>,
) -> Result<RewritePlan, String> {
    let p = page.bytes();
    let mut loads: Vec<(usize, &RawProgramHeader)> =
        headers.program_headers.iter().enumerate().filter(|(_, ph)| ph.p_type == elf::PT_LOAD.0 && ph.p_memsz > 0).collect();
    if loads.is_empty() {
        return Err("the file has no PT_LOAD segment to lay out".into());
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
    let relro_kept = relro.map(|r| trim_relro(AddrRange::new(r.p_vaddr, r.p_vaddr + r.p_memsz), &groups, page));
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
        costs.extend(relro_costs(AddrRange::new(r.p_vaddr, r.p_vaddr + r.p_memsz), kept, &groups, file, page));
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
    let mut literals = vec![
        (0, "ELF header", encode_file_header(headers, phoff, shoff)?),
        (phoff, "program headers", encode_program_headers(headers, &table)?),
    ];
    // Rebase moves the loaded copy of the ELF header off offset 0. It is
    // rewritten too, with e_phoff relative to itself, for code that finds its
    // program headers from __ehdr_start.
    let header_len = encode_file_header(headers, 0, 0)?.len() as u64;
    if let Some(copy) = translate(&moves, 0, header_len).filter(|&copy| copy != 0 && phoff >= copy) {
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

/// Trims PT_GNU_RELRO so that rounding either end to P neither protects a
/// byte outside it nor leaves a byte of it writable under one loader but not
/// another: an end is rounded away from any P-page it shares with other
/// loaded bytes, and may grow to the page boundary when nothing else is on
/// that page. `None` when nothing is left.
fn trim_relro(relro: AddrRange, groups: &[PageGroup], page: PageSize) -> Option<AddrRange> {
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
fn part_of(piece: &OutputPiece, skip: u64, len: u64) -> OutputPiece {
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
fn overlay(pieces: &mut Vec<OutputPiece>, offset: u64, what: &'static str, bytes: Vec<u8>) {
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

#[cfg(test)]
#[path = "rewrite_tests.rs"]
mod tests;
