//! FatELF: several ELF builds in one file, read and written without syscalls.
//!
//! # Byte layout (version 1, the FatELF specification)
//!
//! Everything is little-endian. The file starts with an 8-byte header:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `0x1F0E70FA` (bytes `FA 70 0E 1F`) |
//! | 4 | 2 | version: 1 (2 for the page-size variants below) |
//! | 6 | 1 | number of records |
//! | 7 | 1 | reserved, 0 |
//!
//! then one 24-byte record per ELF build:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 2 | machine (`e_machine`) |
//! | 2 | 1 | OS ABI (`e_ident[EI_OSABI]`) |
//! | 3 | 1 | OS ABI version (`e_ident[EI_ABIVERSION]`) |
//! | 4 | 1 | word size: 1 = 32-bit, 2 = 64-bit (`EI_CLASS`) |
//! | 5 | 1 | byte order: 0 = big-endian, 1 = little-endian (`EI_DATA` 2 and 1) |
//! | 6 | 1 | reserved, 0 (version 2: page size, see below) |
//! | 7 | 1 | reserved, 0 |
//! | 8 | 8 | offset of the ELF file |
//! | 16 | 8 | size of the ELF file |
//!
//! Records never overlap each other or the header, never run past the end of
//! the file, and no target appears twice. Bytes after the end of the last
//! record are kept by every rewrite. The reader checks every embedded ELF
//! header against its record: machine, class, byte order (FatELF's 0/1 mapped
//! to `EI_DATA`'s 2/1, which the reference tools compared directly and so
//! refused every big-endian ELF), OS ABI and its version.
//!
//! [`FatLayout`] aligns records to 64 KiB by default, so that 16K and 64K
//! kernels (and `pagefit run`) can map them straight from the file.
//!
//! # Page-size variants (version 2, a pagefit extension)
//!
//! Version 1 forbids two records with the same target, so a 4K build (small,
//! efficient on 4K hosts) and a 64K build (correct everywhere) of one CPU
//! cannot share a file. Version 2 adds one field, in the record's first
//! reserved byte (record offset 6):
//!
//! - `page_log2`: the base-2 logarithm of the largest page size at which the
//!   record loads exactly as at 4K (pagefit's `max_ok_page_size` under the
//!   file's default loader), or 0 when it was not measured. 12 means 4K only,
//!   16 means up to 64K.
//!
//! The page size is part of the target
//! (`x86_64:64bit:le:sysv:osabiver0:maxpage64k`), so two records may differ
//! by it alone; a record without one conflicts with every variant of its
//! build, since nothing could choose between them. A record whose largest
//! page size is below the file's alignment only needs that page size's
//! alignment (it is only chosen on hosts with such pages), which saves
//! padding. Readers that know only version 1 (the reference tools, the 2009
//! kernel and glibc patches) check the version and refuse the file instead of
//! misreading it; everything else is byte-for-byte version 1.

pub mod select;

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Write};
use std::ops::Range;
use std::str::FromStr;
use std::sync::OnceLock;

use object::elf;
use object::read::ReadRef;

use crate::elf::{machine_from_name, machine_label, machine_name, parse, ParseOptions};
use crate::error::ParseError;
use crate::page::PageSize;
use crate::predict::check::{check_file, CheckOptions};

/// The FatELF magic number.
pub const MAGIC: u32 = 0x1F0E_70FA;
/// The version the FatELF specification defines.
pub const VERSION: u16 = 1;
/// The version that may hold page-size variants (a pagefit extension).
pub const VERSION_PAGE_VARIANTS: u16 = 2;
/// Size of the file header.
pub const HEADER_LEN: u64 = 8;
/// Size of one record.
pub const RECORD_LEN: u64 = 24;
/// The most records a file can hold (the count is one byte).
pub const MAX_RECORDS: usize = u8::MAX as usize;
/// Record alignment `glue` uses unless told otherwise: 64 KiB, so that 16K
/// and 64K kernels can map every record straight from the file.
pub const DEFAULT_ALIGN: u64 = 64 << 10;

/// Whether `prefix` starts with the FatELF magic.
pub fn is_fat(prefix: &[u8]) -> bool {
    prefix.starts_with(&MAGIC.to_le_bytes())
}

/// ELF class, as FatELF's `word_size` stores it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WordSize {
    /// ELFCLASS32, stored as 1.
    Bits32,
    /// ELFCLASS64, stored as 2.
    Bits64,
}

impl WordSize {
    fn from_code(code: u8) -> Option<WordSize> {
        match code {
            1 => Some(WordSize::Bits32),
            2 => Some(WordSize::Bits64),
            _ => None,
        }
    }
    /// The on-disk code, which is also the `EI_CLASS` value.
    pub fn code(self) -> u8 {
        match self {
            WordSize::Bits32 => 1,
            WordSize::Bits64 => 2,
        }
    }
    /// 32 or 64.
    pub fn bits(self) -> u8 {
        match self {
            WordSize::Bits32 => 32,
            WordSize::Bits64 => 64,
        }
    }
}

/// Byte order. FatELF stores 0 for big and 1 for little endian, while ELF's
/// `EI_DATA` says 2 and 1: the two codes are mapped, never compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ByteOrder {
    /// Big-endian: FatELF 0, `ELFDATA2MSB`.
    Big,
    /// Little-endian: FatELF 1, `ELFDATA2LSB`.
    Little,
}

impl ByteOrder {
    fn from_code(code: u8) -> Option<ByteOrder> {
        match code {
            0 => Some(ByteOrder::Big),
            1 => Some(ByteOrder::Little),
            _ => None,
        }
    }
    fn from_ei_data(ei_data: u8) -> Option<ByteOrder> {
        match ei_data {
            _ if ei_data == elf::ELFDATA2MSB.0 => Some(ByteOrder::Big),
            _ if ei_data == elf::ELFDATA2LSB.0 => Some(ByteOrder::Little),
            _ => None,
        }
    }
    /// The FatELF code.
    pub fn code(self) -> u8 {
        match self {
            ByteOrder::Big => 0,
            ByteOrder::Little => 1,
        }
    }
    /// `le` or `be`.
    pub fn name(self) -> &'static str {
        match self {
            ByteOrder::Big => "be",
            ByteOrder::Little => "le",
        }
    }
}

/// What a record says its ELF file runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target {
    /// `e_machine`.
    pub machine: u16,
    /// `e_ident[EI_OSABI]`.
    pub osabi: u8,
    /// `e_ident[EI_ABIVERSION]`.
    pub osabi_version: u8,
    /// `EI_CLASS`.
    pub word_size: WordSize,
    /// `EI_DATA`.
    pub byte_order: ByteOrder,
    /// Version 2 only: the largest page size at which the record loads as at 4K.
    pub max_page: Option<PageSize>,
}

impl Target {
    /// The target of an ELF file, from its identification bytes and
    /// `e_machine` (no page size: see [`largest_ok_page`]).
    pub fn of_elf(bytes: &[u8]) -> Result<Target, FatError> {
        Ok(ElfIdent::read(bytes, 0)?.target())
    }

    /// Whether two records with these targets cannot share a file: the same
    /// target, or page-size variants of which one has no page size (nothing,
    /// `pagefit run` included, could tell which of the two to choose).
    pub fn conflicts_with(&self, other: &Target) -> bool {
        let same_build = Target { max_page: None, ..*self } == Target { max_page: None, ..*other };
        same_build && (self.max_page == other.max_page || self.max_page.is_none() || other.max_page.is_none())
    }

    /// A name for the machine that also says the byte order where `uname -m`
    /// does (`ppc64le`, `aarch64_be`), as `pagefit check` prints it.
    pub fn machine_label(&self) -> String {
        machine_label(self.machine, self.byte_order == ByteOrder::Little)
    }
}

/// Prints every field, joined by `:` (`x86_64:64bit:le:sysv:osabiver0`, plus
/// `:maxpage64k` for a page-size variant). [`TargetSelector`] parses it back.
impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}bit:{}:{}:osabiver{}",
            machine_name(self.machine),
            self.word_size.bits(),
            self.byte_order.name(),
            osabi_name(self.osabi),
            self.osabi_version
        )?;
        if let Some(page) = self.max_page {
            write!(f, ":maxpage{}", page.to_string().to_ascii_lowercase())?;
        }
        Ok(())
    }
}

/// `e_ident[EI_OSABI]` names, from `object::elf::ELFOSABI_*`; `linux` is
/// preferred to `gnu` (both parse) because `uname` and the reference tools say it.
pub fn osabi_name(osabi: u8) -> String {
    if osabi == elf::ELFOSABI_GNU.0 {
        return "linux".to_string();
    }
    match elf::OsAbi(osabi).name() {
        Some(constant) => {
            let short = constant.trim_start_matches("ELFOSABI_").to_ascii_lowercase();
            // ELFOSABI_ARM would read as the machine `arm`.
            if machine_from_name(&short).is_some() {
                format!("osabi-{short}")
            } else {
                short
            }
        }
        None => format!("osabi{osabi}"),
    }
}

/// The OS ABI [`osabi_name`] gives `name`, or `gnu`.
pub fn osabi_from_name(name: &str) -> Option<u8> {
    let name = name.to_ascii_lowercase();
    if name == "gnu" {
        return Some(elf::ELFOSABI_GNU.0);
    }
    static NAMES: OnceLock<HashMap<String, u8>> = OnceLock::new();
    NAMES.get_or_init(|| (0..=u8::MAX).map(|osabi| (osabi_name(osabi), osabi)).collect()).get(&name).copied()
}

/// The identification an embedded ELF header carries.
struct ElfIdent {
    machine: u16,
    osabi: u8,
    osabi_version: u8,
    word_size: WordSize,
    byte_order: ByteOrder,
}

/// Offsets inside an ELF header, for error messages.
const EI_CLASS: u64 = 4;
const EI_DATA: u64 = 5;
const EI_OSABI: u64 = 7;
const EI_ABIVERSION: u64 = 8;
const E_MACHINE: u64 = 18;

impl ElfIdent {
    /// Reads the identification of the ELF file in `bytes`, which starts at
    /// file offset `base` (for error offsets).
    fn read(bytes: &[u8], base: u64) -> Result<ElfIdent, FatError> {
        let at = |field: u64| base.checked_add(field);
        if bytes.len() < 4 || bytes[..4] != elf::ELFMAG {
            return Err(FatError::new(FatErrorKind::NotElf, Some(base), "no ELF magic (7f 45 4c 46)"));
        }
        let too_short = || FatError::new(FatErrorKind::Truncated, Some(base), format!("an ELF header cannot fit in {} bytes", bytes.len()));
        if bytes.len() < 20 {
            return Err(too_short());
        }
        let word_size = WordSize::from_code(bytes[EI_CLASS as usize]).ok_or_else(|| {
            FatError::new(FatErrorKind::NotElf, at(EI_CLASS), format!("EI_CLASS {} is neither 1 (32-bit) nor 2 (64-bit)", bytes[4]))
        })?;
        let header_len = match word_size {
            WordSize::Bits32 => 52,
            WordSize::Bits64 => 64,
        };
        if bytes.len() < header_len {
            return Err(too_short());
        }
        let byte_order = ByteOrder::from_ei_data(bytes[EI_DATA as usize]).ok_or_else(|| {
            FatError::new(FatErrorKind::NotElf, at(EI_DATA), format!("EI_DATA {} is neither 1 (LSB) nor 2 (MSB)", bytes[5]))
        })?;
        let machine_bytes = [bytes[E_MACHINE as usize], bytes[E_MACHINE as usize + 1]];
        let machine = match byte_order {
            ByteOrder::Big => u16::from_be_bytes(machine_bytes),
            ByteOrder::Little => u16::from_le_bytes(machine_bytes),
        };
        Ok(ElfIdent { machine, osabi: bytes[EI_OSABI as usize], osabi_version: bytes[EI_ABIVERSION as usize], word_size, byte_order })
    }

    fn target(&self) -> Target {
        Target {
            machine: self.machine,
            osabi: self.osabi,
            osabi_version: self.osabi_version,
            word_size: self.word_size,
            byte_order: self.byte_order,
            max_page: None,
        }
    }
}

/// The largest page size (4K to 2M) at which `elf` loads exactly as at 4K
/// under its default loader(s); `None` when it is not ok even at 4K or no
/// loader maps it. This is what a page-size variant records.
pub fn largest_ok_page<'data, R: ReadRef<'data>>(elf: R) -> Result<Option<PageSize>, ParseError> {
    let file = parse(elf, ParseOptions { sections: true, runtime: true, ..ParseOptions::default() })?;
    let options = CheckOptions { page_sizes: Vec::new(), findings: false, ..CheckOptions::default() };
    let report = check_file(&file, "", "", &options);
    let per_loader: Option<Vec<PageSize>> = report.max_ok_page_size.values().copied().collect();
    Ok(per_loader.and_then(|sizes| sizes.into_iter().min()))
}

/// One ELF file inside a FatELF file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FatRecord {
    /// Position in the record table, from 0 (`record0`).
    pub index: usize,
    /// What it runs on.
    pub target: Target,
    /// Where the ELF file starts.
    pub offset: u64,
    /// How long it is.
    pub size: u64,
}

impl FatRecord {
    /// `recordN`.
    pub fn name(&self) -> String {
        format!("record{}", self.index)
    }
    /// File offset of this record's entry in the record table.
    pub fn table_offset(&self) -> u64 {
        HEADER_LEN + RECORD_LEN * self.index as u64
    }
    /// The file bytes the record covers (its offset and size passed
    /// validation, so this cannot overflow).
    pub fn range(&self) -> Range<u64> {
        self.offset..self.offset + self.size
    }
}

/// A validated FatELF file: its header and records, not their contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FatFile {
    /// 1, or 2 when it may hold page-size variants.
    pub version: u16,
    /// In table order.
    pub records: Vec<FatRecord>,
    /// The length of the whole file.
    pub file_len: u64,
}

impl FatFile {
    /// Reads and validates a FatELF file: header, record table, that records
    /// do not overlap or run past the end, that no target repeats, and that
    /// every embedded ELF header agrees with its record.
    pub fn parse<'data, R: ReadRef<'data>>(data: R) -> Result<FatFile, FatError> {
        let file_len = data.len().map_err(|()| FatError::new(FatErrorKind::Truncated, None, "cannot read the file's length"))?;
        let read = |offset: u64, len: u64, what: &str| {
            data.read_bytes_at(offset, len).map_err(|()| {
                FatError::new(FatErrorKind::Truncated, Some(offset), format!("{what} needs {len} bytes, the file has {file_len}"))
            })
        };
        let magic = data.read_bytes_at(0, 4).map_err(|()| FatError::new(FatErrorKind::NotFat, Some(0), "shorter than the magic"))?;
        if !is_fat(magic) {
            return Err(FatError::new(FatErrorKind::NotFat, Some(0), "no FatELF magic (fa 70 0e 1f)"));
        }
        let header = read(0, HEADER_LEN, "the FatELF header")?;
        let version = u16::from_le_bytes([header[4], header[5]]);
        if version != VERSION && version != VERSION_PAGE_VARIANTS {
            return Err(FatError::new(
                FatErrorKind::UnsupportedVersion,
                Some(4),
                format!("version {version} (pagefit reads 1, and 2 for page-size variants)"),
            ));
        }
        let count = usize::from(header[6]);
        if count == 0 {
            return Err(FatError::new(FatErrorKind::InvalidRecord, Some(6), "the file holds no records"));
        }
        let table_end = HEADER_LEN + RECORD_LEN * count as u64;
        let table = read(HEADER_LEN, RECORD_LEN * count as u64, &format!("the table of {count} records"))?;
        let mut records = Vec::with_capacity(count);
        for (index, entry) in table.chunks_exact(RECORD_LEN as usize).enumerate() {
            let record = parse_record(index, entry, version)?;
            let entry_offset = record.table_offset();
            record.offset.checked_add(record.size).filter(|&end| end <= file_len).ok_or_else(|| {
                FatError::new(
                    FatErrorKind::RecordPastEnd,
                    Some(entry_offset + 8),
                    format!("record{index} claims {} bytes at {:#x}, past the end of the file ({file_len:#x})", record.size, record.offset),
                )
            })?;
            if record.offset < table_end {
                return Err(FatError::new(
                    FatErrorKind::OverlappingRecords,
                    Some(entry_offset + 8),
                    format!(
                        "record{index} starts at {:#x}, inside the header and record table (which end at {table_end:#x})",
                        record.offset
                    ),
                ));
            }
            records.push(record);
        }
        check_no_overlap(&records)?;
        check_distinct_targets(&records)?;
        for record in &records {
            let head = read(record.offset, record.size.min(64), &format!("record{}'s ELF header", record.index))?;
            let ident = ElfIdent::read(head, record.offset).map_err(|e| e.in_context(&record.name()))?;
            check_agreement(record, &ident)?;
        }
        Ok(FatFile { version, records, file_len })
    }

    /// The bytes after the end of the last record (and of the record
    /// table): kept as they are by every rewrite.
    pub fn trailing(&self) -> Range<u64> {
        let table_end = HEADER_LEN + RECORD_LEN * self.records.len() as u64;
        let start = self.records.iter().map(|r| r.range().end).max().unwrap_or(0).max(table_end).min(self.file_len);
        start..self.file_len
    }

    /// The records `selector` names, in table order; `recordN` past the last
    /// record is an error rather than an empty match.
    pub fn select(&self, selector: &TargetSelector) -> Result<Vec<&FatRecord>, TargetError> {
        match selector {
            TargetSelector::Record(index) => match self.records.get(*index) {
                Some(record) => Ok(vec![record]),
                None => Err(TargetError(format!(
                    "record{index} does not exist: the file holds {} records (record0 to record{})",
                    self.records.len(),
                    self.records.len().saturating_sub(1)
                ))),
            },
            TargetSelector::Fields(pattern) => Ok(self.records.iter().filter(|r| pattern.matches(&r.target)).collect()),
        }
    }
}

fn parse_record(index: usize, entry: &[u8], version: u16) -> Result<FatRecord, FatError> {
    let entry_offset = HEADER_LEN + RECORD_LEN * index as u64;
    let u64_at = |at: usize| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&entry[at..at + 8]);
        u64::from_le_bytes(bytes)
    };
    let invalid = |field: u64, detail: String| FatError::new(FatErrorKind::InvalidRecord, Some(entry_offset + field), detail);
    let word_size = WordSize::from_code(entry[4])
        .ok_or_else(|| invalid(4, format!("record{index}'s word size is {}, neither 1 (32-bit) nor 2 (64-bit)", entry[4])))?;
    let byte_order = ByteOrder::from_code(entry[5])
        .ok_or_else(|| invalid(5, format!("record{index}'s byte order is {}, neither 0 (big) nor 1 (little)", entry[5])))?;
    // Version 1 leaves the reserved bytes alone; version 2 gives the first one a meaning.
    let max_page = match (version, entry[6]) {
        (VERSION_PAGE_VARIANTS, log2 @ 1..) => Some(
            1u64.checked_shl(u32::from(log2))
                .filter(|_| log2 < 64)
                .and_then(PageSize::new)
                .ok_or_else(|| invalid(6, format!("record{index}'s page size is 2^{log2}, not a page size")))?,
        ),
        _ => None,
    };
    Ok(FatRecord {
        index,
        target: Target {
            machine: u16::from_le_bytes([entry[0], entry[1]]),
            osabi: entry[2],
            osabi_version: entry[3],
            word_size,
            byte_order,
            max_page,
        },
        offset: u64_at(8),
        size: u64_at(16),
    })
}

fn check_no_overlap(records: &[FatRecord]) -> Result<(), FatError> {
    let mut by_offset: Vec<&FatRecord> = records.iter().collect();
    by_offset.sort_by_key(|r| (r.offset, r.index));
    for pair in by_offset.windows(2) {
        let (first, second) = (pair[0], pair[1]);
        if second.offset < first.range().end {
            return Err(FatError::new(
                FatErrorKind::OverlappingRecords,
                Some(second.table_offset() + 8),
                format!(
                    "{} ({:#x}..{:#x}) overlaps {} ({:#x}..{:#x})",
                    second.name(),
                    second.offset,
                    second.range().end,
                    first.name(),
                    first.offset,
                    first.range().end
                ),
            ));
        }
    }
    Ok(())
}

fn check_distinct_targets(records: &[FatRecord]) -> Result<(), FatError> {
    for (later, record) in records.iter().enumerate() {
        if let Some(earlier) = records[..later].iter().find(|r| r.target.conflicts_with(&record.target)) {
            return Err(FatError::new(
                FatErrorKind::DuplicateTarget,
                Some(record.table_offset()),
                format!("{} ({}) and {} ({}) are one target", earlier.name(), earlier.target, record.name(), record.target),
            ));
        }
    }
    Ok(())
}

fn check_agreement(record: &FatRecord, ident: &ElfIdent) -> Result<(), FatError> {
    let target = &record.target;
    let mismatch = |field: u64, what: &str, said: String, found: String| {
        Err(FatError::new(
            FatErrorKind::TargetMismatch,
            Some(record.offset + field),
            format!("{} says {what} {said}, its ELF header says {found}", record.name()),
        ))
    };
    if ident.word_size != target.word_size {
        return mismatch(EI_CLASS, "word size", format!("{}-bit", target.word_size.bits()), format!("{}-bit", ident.word_size.bits()));
    }
    if ident.byte_order != target.byte_order {
        return mismatch(EI_DATA, "byte order", target.byte_order.name().into(), ident.byte_order.name().into());
    }
    if ident.machine != target.machine {
        return mismatch(E_MACHINE, "machine", machine_name(target.machine), machine_name(ident.machine));
    }
    if ident.osabi != target.osabi {
        return mismatch(EI_OSABI, "OS ABI", osabi_name(target.osabi), osabi_name(ident.osabi));
    }
    if ident.osabi_version != target.osabi_version {
        return mismatch(EI_ABIVERSION, "OS ABI version", target.osabi_version.to_string(), ident.osabi_version.to_string());
    }
    Ok(())
}

/// How a command names records: `recordN`, or target fields joined by `:`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetSelector {
    /// `recordN`: the record at that table position.
    Record(usize),
    /// Every record whose target has all the given fields.
    Fields(TargetPattern),
}

/// Some of a target's fields; the others match anything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetPattern {
    /// `e_machine`.
    pub machine: Option<u16>,
    /// `32bit` or `64bit`.
    pub word_size: Option<WordSize>,
    /// `le` or `be`.
    pub byte_order: Option<ByteOrder>,
    /// OS ABI.
    pub osabi: Option<u8>,
    /// `osabiverN`.
    pub osabi_version: Option<u8>,
    /// `maxpageNk` (version 2).
    pub max_page: Option<PageSize>,
}

impl TargetPattern {
    /// Whether `target` has every field this pattern gives.
    pub fn matches(&self, target: &Target) -> bool {
        self.machine.is_none_or(|m| m == target.machine)
            && self.word_size.is_none_or(|w| w == target.word_size)
            && self.byte_order.is_none_or(|b| b == target.byte_order)
            && self.osabi.is_none_or(|o| o == target.osabi)
            && self.osabi_version.is_none_or(|v| v == target.osabi_version)
            && self.max_page.is_none_or(|p| Some(p) == target.max_page)
    }
}

/// A target that does not parse, or a record that does not exist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetError(pub String);

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TargetError {}

/// Parses `recordN`, or fields joined by `:` in any order: a machine
/// (`x86_64`, `aarch64`, `ppc64`, or `ppc64le` which also sets the byte
/// order), `32bit`/`64bit` (`32bits`/`64bits` as the reference `info`
/// printed), `le`/`be`, an OS ABI (`sysv`, `linux`, `freebsd`, `osabiN`),
/// `osabiverN`, and `maxpage4k`/`maxpage64k` for page-size variants.
impl FromStr for TargetSelector {
    type Err = TargetError;

    fn from_str(text: &str) -> Result<TargetSelector, TargetError> {
        let lower = text.trim().to_ascii_lowercase();
        if let Some(index) = lower.strip_prefix("record") {
            return index
                .parse::<usize>()
                .map(TargetSelector::Record)
                .map_err(|_| TargetError(format!("invalid target {text:?}: `record` must be followed by a record number")));
        }
        let mut pattern = TargetPattern::default();
        for field in lower.split(':') {
            let duplicate = |()| TargetError(format!("invalid target {text:?}: {field:?} contradicts a field given before it"));
            if field.is_empty() {
                return Err(TargetError(format!("invalid target {text:?}: empty field")));
            } else if let Some(bits) =
                field.strip_suffix("bits").or_else(|| field.strip_suffix("bit")).filter(|b| matches!(*b, "32" | "64"))
            {
                let size = if bits == "32" { WordSize::Bits32 } else { WordSize::Bits64 };
                set_field(&mut pattern.word_size, size).map_err(duplicate)?;
            } else if field == "le" || field == "be" {
                let order = if field == "le" { ByteOrder::Little } else { ByteOrder::Big };
                set_field(&mut pattern.byte_order, order).map_err(duplicate)?;
            } else if let Some(version) = field.strip_prefix("osabiver") {
                let version = version
                    .parse::<u8>()
                    .map_err(|_| TargetError(format!("invalid target {text:?}: {field:?} needs a number from 0 to 255")))?;
                set_field(&mut pattern.osabi_version, version).map_err(duplicate)?;
            } else if let Some(page) = field.strip_prefix("maxpage") {
                let page = page.parse::<PageSize>().map_err(|e| TargetError(format!("invalid target {text:?}: {e}")))?;
                set_field(&mut pattern.max_page, page).map_err(duplicate)?;
            } else if let Some(osabi) = osabi_from_name(field) {
                set_field(&mut pattern.osabi, osabi).map_err(duplicate)?;
            } else if let Some((machine, order)) = machine_with_order(field) {
                set_field(&mut pattern.machine, machine).map_err(duplicate)?;
                if let Some(order) = order {
                    set_field(&mut pattern.byte_order, order).map_err(duplicate)?;
                }
            } else {
                return Err(TargetError(format!(
                    "invalid target {text:?}: {field:?} is not a machine, 32bit/64bit, le/be, an OS ABI, osabiverN or maxpageNk"
                )));
            }
        }
        Ok(TargetSelector::Fields(pattern))
    }
}

/// Fills a pattern field; a different second value for it (`32bit:64bit`,
/// `ppc64le:be`) is a contradiction.
fn set_field<T: PartialEq>(slot: &mut Option<T>, value: T) -> Result<(), ()> {
    match slot {
        Some(old) if *old != value => Err(()),
        _ => {
            *slot = Some(value);
            Ok(())
        }
    }
}

/// A machine name, or one of the names that also say the byte order.
fn machine_with_order(name: &str) -> Option<(u16, Option<ByteOrder>)> {
    match name {
        "ppc64le" => Some((elf::EM_PPC64.0, Some(ByteOrder::Little))),
        "aarch64_be" => Some((elf::EM_AARCH64.0, Some(ByteOrder::Big))),
        _ => machine_from_name(name).map(|machine| (machine, None)),
    }
}

/// Where each record of a file being written goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FatLayout {
    /// 1, or 2 with page-size variants.
    pub version: u16,
    /// The records with their planned offsets, in input order.
    pub records: Vec<FatRecord>,
    /// Where the preserved trailing bytes go (right after the last record).
    pub trailing_offset: u64,
}

impl FatLayout {
    /// Plans a file holding ELF files of these targets and sizes: every
    /// record starts at a multiple of `align` (a power of two), after the
    /// header and table. With `page_variants` the file is version 2, targets
    /// keep their page sizes, and a record whose largest ok page size is below
    /// `align` is aligned to that page size only (it is only ever mapped on
    /// such hosts); without, page sizes are dropped and the file is version 1.
    pub fn plan(targets: &[(Target, u64)], align: u64, page_variants: bool) -> Result<FatLayout, FatError> {
        let fail = |kind, detail: String| Err(FatError::new(kind, None, detail));
        if !align.is_power_of_two() {
            return fail(FatErrorKind::InvalidRecord, format!("alignment {align} is not a power of two"));
        }
        if targets.is_empty() || targets.len() > MAX_RECORDS {
            return fail(FatErrorKind::InvalidRecord, format!("a FatELF file holds 1 to {MAX_RECORDS} records, not {}", targets.len()));
        }
        let mut records: Vec<FatRecord> = Vec::with_capacity(targets.len());
        let mut end = HEADER_LEN + RECORD_LEN * targets.len() as u64;
        for (index, &(target, size)) in targets.iter().enumerate() {
            let target = Target { max_page: target.max_page.filter(|_| page_variants), ..target };
            if let Some(earlier) = records.iter().find(|r| r.target.conflicts_with(&target)) {
                let hint = if page_variants { "" } else { " (builds for different page sizes need --page-variants)" };
                return fail(
                    FatErrorKind::DuplicateTarget,
                    format!("input {} ({}) and input {index} ({target}) are one target{hint}", earlier.index, earlier.target),
                );
            }
            let record_align = match target.max_page {
                Some(page) => align.min(page.bytes().max(PageSize::K4.bytes())),
                None => align,
            };
            let overflow = || FatError::new(FatErrorKind::RecordPastEnd, None, "the file would be larger than 2^64 bytes");
            let offset = end.checked_next_multiple_of(record_align).ok_or_else(overflow)?;
            end = offset.checked_add(size).ok_or_else(overflow)?;
            records.push(FatRecord { index, target, offset, size });
        }
        Ok(FatLayout { version: if page_variants { VERSION_PAGE_VARIANTS } else { VERSION }, records, trailing_offset: end })
    }

    /// The header and record table.
    fn header_bytes(&self) -> io::Result<Vec<u8>> {
        let count = u8::try_from(self.records.len()).map_err(|_| invalid_layout("more than 255 records"))?;
        let mut bytes = Vec::with_capacity(HEADER_LEN as usize + RECORD_LEN as usize * self.records.len());
        bytes.extend_from_slice(&MAGIC.to_le_bytes());
        bytes.extend_from_slice(&self.version.to_le_bytes());
        bytes.extend_from_slice(&[count, 0]);
        for record in &self.records {
            let target = &record.target;
            bytes.extend_from_slice(&target.machine.to_le_bytes());
            bytes.extend_from_slice(&[target.osabi, target.osabi_version, target.word_size.code(), target.byte_order.code()]);
            // A power of two up to 2^63: its logarithm fits in a byte.
            let page_log2 = target.max_page.map_or(0, |page| page.bytes().trailing_zeros() as u8);
            bytes.extend_from_slice(&[page_log2, 0]);
            bytes.extend_from_slice(&record.offset.to_le_bytes());
            bytes.extend_from_slice(&record.size.to_le_bytes());
        }
        Ok(bytes)
    }

    /// Writes the file: header, table, each record's bytes at its offset
    /// (zeros in between), then `trailing`. `bodies` are in record order and
    /// must have the planned sizes.
    pub fn write(&self, out: &mut dyn Write, bodies: &[&[u8]], trailing: &[u8]) -> io::Result<()> {
        if bodies.len() != self.records.len() || self.records.iter().zip(bodies).any(|(r, b)| r.size != b.len() as u64) {
            return Err(invalid_layout("the record bodies do not match the planned layout"));
        }
        let header = self.header_bytes()?;
        out.write_all(&header)?;
        let mut position = header.len() as u64;
        for (record, body) in self.records.iter().zip(bodies) {
            let gap = record.offset.checked_sub(position).ok_or_else(|| invalid_layout("records overlap or are out of order"))?;
            write_zeros(out, gap)?;
            out.write_all(body)?;
            position = record.offset.checked_add(record.size).ok_or_else(|| invalid_layout("a record ends past 2^64"))?;
        }
        out.write_all(trailing)
    }
}

/// A layout `plan` would not have made.
fn invalid_layout(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("invalid FatELF layout: {why}"))
}

fn write_zeros(out: &mut dyn Write, mut len: u64) -> io::Result<()> {
    const ZEROS: [u8; 4096] = [0; 4096];
    while len > 0 {
        let n = len.min(ZEROS.len() as u64) as usize;
        out.write_all(&ZEROS[..n])?;
        len -= n as u64;
    }
    Ok(())
}

/// The name of pagefit's handler under `/proc/sys/fs/binfmt_misc`.
pub const BINFMT_NAME: &str = "pagefit-fatelf";

/// The handler's flags: `P` keeps the program's own `argv[0]` (the
/// interpreter is run as `INTERPRETER PATH ARGV0 ARGS...`, PATH being the path
/// `execve` got, e.g. `./app.fat`) and
/// `F` makes the kernel open the interpreter once, at registration, so the
/// handler also works inside containers and chroots.
pub const BINFMT_FLAGS: &str = "PF";

/// The kernel's limit on a registration line (`MAX_REGISTER_LENGTH`).
const BINFMT_MAX_REGISTRATION: usize = 1920;

/// The line written to `/proc/sys/fs/binfmt_misc/register` to run every file
/// starting with the FatELF magic (any version) with `interpreter`:
/// `:pagefit-fatelf:M::\xfa\x70\x0e\x1f::/usr/bin/pagefit:PF`.
pub fn binfmt_registration(interpreter: &str) -> Result<String, InvalidInterpreter> {
    let refuse = |why: &str| Err(InvalidInterpreter(format!("interpreter {interpreter:?} {why}")));
    if !interpreter.starts_with('/') {
        return refuse("is not an absolute path");
    }
    // ':' separates the fields; the kernel reads one line.
    if interpreter.contains([':', '\n', '\0']) {
        return refuse("contains ':', a newline or a NUL, which binfmt_misc cannot take");
    }
    let magic: String = MAGIC.to_le_bytes().iter().map(|byte| format!("\\x{byte:02x}")).collect();
    let line = format!(":{BINFMT_NAME}:M::{magic}::{interpreter}:{BINFMT_FLAGS}");
    if line.len() > BINFMT_MAX_REGISTRATION {
        return refuse(&format!("is too long: binfmt_misc takes {BINFMT_MAX_REGISTRATION} bytes per registration"));
    }
    Ok(line)
}

/// An interpreter path binfmt_misc cannot register.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidInterpreter(pub String);

impl fmt::Display for InvalidInterpreter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidInterpreter {}

/// A FatELF file that cannot be read or written, with the offset of the
/// offending bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FatError {
    /// What is wrong.
    pub kind: FatErrorKind,
    /// File offset of the offending bytes, when one applies.
    pub offset: Option<u64>,
    /// Which record, which values.
    pub detail: String,
}

/// The kinds of bad FatELF input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FatErrorKind {
    /// No FatELF magic.
    NotFat,
    /// The header, table or an ELF header runs past the end of the file.
    Truncated,
    /// A version other than 1 and 2.
    UnsupportedVersion,
    /// A record field holds a value the format does not define.
    InvalidRecord,
    /// A record runs past the end of the file.
    RecordPastEnd,
    /// Two records, or a record and the table, share bytes.
    OverlappingRecords,
    /// Two records have the same target.
    DuplicateTarget,
    /// A record does not hold an ELF file.
    NotElf,
    /// A record's ELF header disagrees with the record.
    TargetMismatch,
}

impl FatError {
    fn new(kind: FatErrorKind, offset: Option<u64>, detail: impl Into<String>) -> FatError {
        FatError { kind, offset, detail: detail.into() }
    }

    fn in_context(mut self, what: &str) -> FatError {
        self.detail = format!("{what}: {}", self.detail);
        self
    }
}

impl fmt::Display for FatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            FatErrorKind::NotFat => "not a FatELF file",
            FatErrorKind::Truncated => "truncated",
            FatErrorKind::UnsupportedVersion => "unsupported FatELF version",
            FatErrorKind::InvalidRecord => "invalid record",
            FatErrorKind::RecordPastEnd => "record past the end of the file",
            FatErrorKind::OverlappingRecords => "overlapping records",
            FatErrorKind::DuplicateTarget => "duplicate target",
            FatErrorKind::NotElf => "not an ELF file",
            FatErrorKind::TargetMismatch => "record and ELF header disagree",
        };
        match self.offset {
            Some(offset) => write!(f, "{what} at offset {offset:#x}: {}", self.detail),
            None => write!(f, "{what}: {}", self.detail),
        }
    }
}

impl std::error::Error for FatError {}

#[cfg(test)]
mod tests;
