//! An ELF file read from a stream (an archive member) kept as just the byte
//! ranges a verdict reads: the headers at the start, PT_DYNAMIC, and the
//! section header table with what precedes it (where linkers put
//! `.shstrtab`). A 150 MiB library inside a package then costs a few hundred
//! KiB of memory, not 150 MiB. Files up to 64 MiB are kept whole, so that
//! the runtime check (jemalloc's compiled page size, read from the code and
//! `.rodata`) sees them as on disk.
//!
//! lld puts `.strtab`, which can be megabytes, between `.shstrtab` and the
//! section headers, so the bytes skipped on the way are watched for the name
//! `.shstrtab` (which the section name table holds) and kept around it.
//!
//! With [`Hashing::Sha256`], every byte streams through SHA-256 on the way,
//! so that a member can be matched by content (`check --owners`) without
//! being kept whole. Scans ask for it only then: it costs about a tenth of a
//! scan's time.

use std::io::{self, Read};
use std::ops::Range;

use object::elf;
use object::read::elf::{FileHeader, ProgramHeader};
use object::read::ReadRef;
use object::Endianness;
use sha2::{Digest, Sha256};

/// Files up to this size are kept whole.
const KEEP_WHOLE: u64 = 64 << 20;
/// How much of the start is kept (ELF header, program headers, PT_INTERP, notes).
const HEAD_LEN: u64 = 64 << 10;
/// How much before the section header table is kept, for `.shstrtab`.
const SECTION_NAMES_LEAD: u64 = 64 << 10;
/// The most kept of any one range, whatever the headers claim.
const MAX_RANGE_LEN: u64 = 16 << 20;
/// Skipped bytes are read in chunks this large (and aligned).
const CHUNK: u64 = 64 << 10;
/// What marks a section name table in skipped bytes.
const SECTION_NAME_TABLE_MARK: &[u8] = b"\0.shstrtab\0";
/// How many places that look like one are kept at most.
const MAX_NAME_TABLE_CANDIDATES: usize = 8;

/// Whether a read also hashes every byte it streams.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Hashing {
    #[default]
    Off,
    /// SHA-256 of the whole member ([`SparseFile::sha256`]).
    Sha256,
}

/// The kept ranges of a file, by offset.
pub struct SparseFile {
    len: u64,
    pieces: Vec<(u64, Vec<u8>)>,
    /// SHA-256 of the whole stream, including the bytes not kept, when hashed.
    sha256: Option<[u8; 32]>,
}

impl SparseFile {
    /// Reads an ELF file of `len` bytes from `reader`, keeping what a verdict
    /// needs; the stream is read to its end. A stream shorter than `len` (a
    /// truncated archive, a header claiming more than there is) is an error.
    pub fn read(reader: &mut dyn Read, len: u64, hashing: Hashing) -> io::Result<SparseFile> {
        SparseFile::read_whole_up_to(reader, len, KEEP_WHOLE, hashing)
    }

    fn read_whole_up_to(reader: &mut dyn Read, len: u64, keep_whole: u64, hashing: Hashing) -> io::Result<SparseFile> {
        let hasher = (hashing == Hashing::Sha256).then(Sha256::new);
        let mut counted = Counted { inner: reader, count: 0, hasher };
        let mut sparse = SparseFile::read_counted(&mut counted, len, keep_whole)?;
        sparse.sha256 = counted.hasher.map(|hasher| hasher.finalize().into());
        if counted.count < len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("truncated: the data ends after {} of its {len} bytes", counted.count),
            ));
        }
        Ok(sparse)
    }

    fn read_counted(reader: &mut dyn Read, len: u64, keep_whole: u64) -> io::Result<SparseFile> {
        let mut position = 0;
        let mut pieces = Vec::new();
        let head_len = if len <= keep_whole { len } else { HEAD_LEN.min(len) };
        let head = read_exact_len(reader, head_len)?;
        position += head.len() as u64;
        let wanted = if len <= keep_whole { Vec::new() } else { wanted_ranges(&head, len) };
        pieces.push((0, head));
        for range in wanted {
            let start = range.start.max(position);
            if start >= range.end {
                continue;
            }
            skip_keeping_name_tables(reader, position, start - position, &mut pieces)?;
            let bytes = read_exact_len(reader, range.end - start)?;
            position = start + bytes.len() as u64;
            pieces.push((start, bytes));
        }
        io::copy(reader, &mut io::sink())?;
        Ok(SparseFile { len, pieces, sha256: None })
    }

    /// SHA-256 of all the file's bytes (as `sha256sum` prints it for the file
    /// on disk), if it was read with [`Hashing::Sha256`].
    pub fn sha256(&self) -> Option<[u8; 32]> {
        self.sha256
    }

    fn piece_at(&self, offset: u64) -> Option<&[u8]> {
        let (start, bytes) = self.pieces.iter().rev().find(|(start, bytes)| *start <= offset && offset < start + bytes.len() as u64)?;
        Some(&bytes[usize::try_from(offset - start).ok()?..])
    }
}

/// A stream that counts the bytes read from it, and hashes them if asked to.
struct Counted<'r> {
    inner: &'r mut dyn Read,
    count: u64,
    hasher: Option<Sha256>,
}

impl Read for Counted<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        if let Some(hasher) = &mut self.hasher {
            hasher.update(&buf[..n]);
        }
        Ok(n)
    }
}

/// Reads past `count` bytes at `position`, keeping the chunks before, at and
/// after each place that holds the name `.shstrtab`.
fn skip_keeping_name_tables(reader: &mut dyn Read, position: u64, count: u64, pieces: &mut Vec<(u64, Vec<u8>)>) -> io::Result<()> {
    let end = position + count;
    let mut at = position;
    let mut previous: (u64, Vec<u8>) = (position, Vec::new());
    let mut extend_last_piece = false;
    let mut candidates = 0;
    while at < end {
        let chunk = read_exact_len(reader, (CHUNK - at % CHUNK).min(end - at))?;
        if chunk.is_empty() {
            break;
        }
        // The mark may straddle the two chunks: only that seam is copied, not the chunk.
        let mark_len = SECTION_NAME_TABLE_MARK.len();
        let seam = [&previous.1[previous.1.len().saturating_sub(mark_len)..], &chunk[..chunk.len().min(mark_len)]].concat();
        let found = [seam.as_slice(), chunk.as_slice()].iter().any(|bytes| memchr::memmem::find(bytes, SECTION_NAME_TABLE_MARK).is_some());
        if extend_last_piece {
            if let Some((_, piece)) = pieces.last_mut() {
                piece.extend_from_slice(&chunk);
            }
            extend_last_piece = false;
        } else if found && candidates < MAX_NAME_TABLE_CANDIDATES {
            candidates += 1;
            pieces.push((previous.0, [previous.1.as_slice(), &chunk].concat()));
            extend_last_piece = true;
        }
        let len = chunk.len() as u64;
        previous = (at, chunk);
        at += len;
    }
    Ok(())
}

fn read_exact_len(reader: &mut dyn Read, len: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0).min(MAX_RANGE_LEN as usize));
    reader.take(len).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The ranges past the head that parsing reads, sorted and starting on 4 KiB
/// boundaries (so that headers keep their alignment in memory).
fn wanted_ranges(head: &[u8], len: u64) -> Vec<Range<u64>> {
    let mut ranges = match elf::FileHeader64::<Endianness>::parse(head) {
        Ok(header) => ranges_of(header, head),
        Err(_) => elf::FileHeader32::<Endianness>::parse(head).map(|header| ranges_of(header, head)).unwrap_or_default(),
    };
    for range in &mut ranges {
        range.start &= !0xfff;
        range.end = range.end.min(len).min(range.start.saturating_add(MAX_RANGE_LEN));
    }
    ranges.sort_by_key(|r| r.start);
    ranges
}

fn ranges_of<Elf: FileHeader<Endian = Endianness>>(header: &Elf, head: &[u8]) -> Vec<Range<u64>> {
    let Ok(endian) = header.endian() else { return Vec::new() };
    let mut ranges = Vec::new();
    let phoff: u64 = header.e_phoff(endian).into();
    let phsize = u64::from(header.e_phentsize(endian)) * u64::from(header.e_phnum(endian));
    ranges.push(phoff..phoff.saturating_add(phsize));
    if let Ok(headers) = header.program_headers(endian, head) {
        for ph in headers.iter().filter(|ph| ph.p_type(endian) == elf::PT_DYNAMIC || ph.p_type(endian) == elf::PT_INTERP) {
            let offset: u64 = ph.p_offset(endian).into();
            ranges.push(offset..offset.saturating_add(ph.p_filesz(endian).into()));
        }
    }
    let shoff: u64 = header.e_shoff(endian).into();
    if shoff != 0 {
        let count = match header.e_shnum(endian) {
            // PN_XNUM-style: the real count is in section 0, read with the table.
            0 => 1,
            n => u64::from(n),
        };
        let table_end = shoff.saturating_add(count * u64::from(header.e_shentsize(endian)));
        ranges.push(shoff.saturating_sub(SECTION_NAMES_LEAD)..table_end);
    }
    ranges
}

impl<'a> ReadRef<'a> for &'a SparseFile {
    fn len(self) -> Result<u64, ()> {
        Ok(self.len)
    }

    fn read_bytes_at(self, offset: u64, size: u64) -> Result<&'a [u8], ()> {
        let bytes = self.piece_at(offset).ok_or(())?;
        bytes.get(..usize::try_from(size).map_err(|_| ())?).ok_or(())
    }

    fn read_bytes_at_until(self, range: Range<u64>, delimiter: u8) -> Result<&'a [u8], ()> {
        let bytes = self.piece_at(range.start).ok_or(())?;
        let limit = usize::try_from(range.end.saturating_sub(range.start)).map_err(|_| ())?.min(bytes.len());
        let bytes = &bytes[..limit];
        bytes.iter().position(|&b| b == delimiter).map(|end| &bytes[..end]).ok_or(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object::read::elf::SectionHeader;

    /// The whole-file threshold the tests read this test binary with (it is
    /// smaller than the real one).
    const TEST_KEEP_WHOLE: u64 = 4 << 20;

    fn read(reader: &mut dyn Read, len: u64) -> io::Result<SparseFile> {
        SparseFile::read_whole_up_to(reader, len, TEST_KEEP_WHOLE, Hashing::Off)
    }

    /// This test binary: tens of MiB, with debug sections between the code and the section headers.
    fn this_binary() -> Vec<u8> {
        let bytes = std::fs::read("/proc/self/exe").unwrap();
        assert!(bytes.len() as u64 > 4 * TEST_KEEP_WHOLE, "the test needs a large file");
        bytes
    }

    #[test]
    fn a_large_file_keeps_what_a_verdict_reads_exactly_as_all_its_bytes_hold_it() {
        let bytes = this_binary();
        let sparse = read(&mut bytes.as_slice(), bytes.len() as u64).unwrap();
        let kept: usize = sparse.pieces.iter().map(|(_, piece)| piece.len()).sum();
        assert!(kept < bytes.len() / 16, "kept {kept} of {} bytes", bytes.len());
        assert_eq!((&sparse).len(), Ok(bytes.len() as u64));

        let whole = bytes.as_slice();
        let header = elf::FileHeader64::<Endianness>::parse(whole).unwrap();
        let endian = header.endian().unwrap();
        assert_eq!(elf::FileHeader64::<Endianness>::parse(&sparse).unwrap().e_shoff(endian), header.e_shoff(endian));
        // Program headers, and PT_DYNAMIC and PT_INTERP's contents.
        let program_headers = header.program_headers(endian, whole).unwrap();
        let kept_program_headers = header.program_headers(endian, &sparse).unwrap();
        assert_eq!(object::pod::bytes_of_slice(kept_program_headers), object::pod::bytes_of_slice(program_headers));
        for ph in program_headers.iter().filter(|ph| matches!(ph.p_type(endian), elf::PT_DYNAMIC | elf::PT_INTERP)) {
            assert_eq!(ph.data(endian, &sparse), ph.data(endian, whole));
        }
        // Section headers and every section's name.
        let sections = header.sections(endian, whole).unwrap();
        let kept_sections = header.sections(endian, &sparse).unwrap();
        assert!(sections.len() > 10 && kept_sections.len() == sections.len());
        for (section, kept) in sections.iter().zip(kept_sections.iter()) {
            assert_eq!(object::pod::bytes_of(section), object::pod::bytes_of(kept));
            let name = sections.section_name(endian, section).unwrap();
            assert!(!name.is_empty() || section.sh_type(endian) == elf::SHT_NULL);
            assert_eq!(kept_sections.section_name(endian, kept).unwrap(), name);
        }
    }

    /// As `pagefit check` parses a member (pagefit-core is a dependency with the `fat` feature only).
    #[cfg(feature = "fat")]
    #[test]
    fn a_large_file_parses_from_its_kept_ranges_exactly_as_from_all_its_bytes() {
        use pagefit_core::elf::{parse, ParseOptions};

        let bytes = this_binary();
        let sparse = read(&mut bytes.as_slice(), bytes.len() as u64).unwrap();
        let options = ParseOptions { sections: true, section_names: true, ..ParseOptions::default() };
        let whole = parse(bytes.as_slice(), options).unwrap();
        assert!(!whole.sections.is_empty() && whole.sections.iter().all(|s| !s.name.is_empty()));
        assert_eq!(parse(&sparse, options).unwrap(), whole);
    }

    #[test]
    fn a_small_file_is_kept_whole_and_the_stream_read_to_its_end() {
        let bytes: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let mut stream = bytes.as_slice();
        let sparse = read(&mut stream, bytes.len() as u64).unwrap();
        assert!(stream.is_empty());
        assert_eq!((&sparse).read_bytes_at(0, bytes.len() as u64), Ok(bytes.as_slice()));
        assert_eq!((&sparse).read_bytes_at(9_990, 11), Err(()));
    }

    #[test]
    fn the_hash_covers_every_byte_including_those_not_kept() {
        let bytes = this_binary();
        let hashed =
            |bytes: &[u8]| SparseFile::read_whole_up_to(&mut &bytes[..], bytes.len() as u64, TEST_KEEP_WHOLE, Hashing::Sha256).unwrap();
        assert_eq!(read(&mut bytes.as_slice(), bytes.len() as u64).unwrap().sha256(), None);
        let sparse = hashed(&bytes);
        assert!(sparse.pieces.iter().map(|(_, piece)| piece.len()).sum::<usize>() < bytes.len());
        assert_eq!(sparse.sha256(), Some(<[u8; 32]>::from(Sha256::digest(&bytes))));
        let mut changed = bytes.clone();
        let last = changed.len() - 1;
        changed[last] ^= 1;
        let other = hashed(&changed);
        assert_ne!(other.sha256(), sparse.sha256());
    }

    #[test]
    fn a_length_claimed_past_the_stream_allocates_no_more_than_the_caps() {
        // A header that says 1 TiB, for a stream of 100 bytes: the head is read (what there is), nothing else.
        let mut header = [0u8; 100];
        header[..4].copy_from_slice(b"\x7fELF");
        let sparse = SparseFile::read_counted(&mut header.as_slice(), 1 << 40, KEEP_WHOLE).unwrap();
        assert_eq!((&sparse).len(), Ok(1 << 40));
        assert_eq!((&sparse).read_bytes_at(0, 100), Ok(header.as_slice()));
        assert!(sparse.pieces.iter().all(|(_, piece)| piece.capacity() as u64 <= MAX_RANGE_LEN));
        // Which `read` reports.
        let error = SparseFile::read(&mut header.as_slice(), 1 << 40, Hashing::Off).err().unwrap();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(error.to_string(), "truncated: the data ends after 100 of its 1099511627776 bytes");
    }
}
