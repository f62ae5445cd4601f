//! What every reader hands over: an ELF file found inside an archive, and
//! the helpers that read one from a stream.

use std::io::{self, Cursor, Read};

use crate::error::ArchiveError;
use crate::sparse::SparseFile;

/// An ELF file found inside an archive.
pub struct Member {
    /// `outer.apk!/lib/arm64-v8a/libfoo.so` (nested: `a.apks!/b.apk!/lib/...`).
    pub path: String,
    /// The file, as the ranges a verdict reads.
    pub data: SparseFile,
    /// Found inside an Android package: the bionic model and Android's rules apply.
    pub android: bool,
    /// For an entry stored uncompressed in a zip: where its data starts.
    pub zip_data_offset: Option<u64>,
}

/// What a scan calls for each ELF member.
pub type Visitor<'v> = &'v mut dyn FnMut(Member);

/// Visits a tar entry of `len` bytes as the member `path` if it is an ELF file.
pub(crate) fn visit_if_elf(entry: &mut dyn Read, len: u64, path: String, visit: Visitor<'_>) -> Result<(), ArchiveError> {
    let mut magic = [0u8; 4];
    let got = match read_up_to(entry, &mut magic) {
        Ok(got) => got,
        Err(e) => return Err(ArchiveError::member(path, e)),
    };
    if got < 4 || &magic != b"\x7fELF" {
        return Ok(());
    }
    let data = match SparseFile::read(&mut Cursor::new(magic).chain(entry), len) {
        Ok(data) => data,
        Err(e) => return Err(ArchiveError::member(path, e)),
    };
    visit(Member { path, data, android: false, zip_data_offset: None });
    Ok(())
}

/// Reads until `buf` is full or the stream ends; returns how much was read.
pub(crate) fn read_up_to(reader: &mut (impl Read + ?Sized), buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}
