//! What every reader hands over: an entry of an archive (to the walk, which
//! decides what it is), and an ELF file found inside an archive (to the
//! caller); and the helpers that read them from a stream.

use std::io::{self, Read};

use crate::error::{ArchiveError, EntryHeader};
use crate::sparse::{Hashing, SparseFile};

/// An ELF file found inside an archive.
pub struct Member {
    /// `outer.apk!/lib/arm64-v8a/libfoo.so` (nested: `a.tgz!/b.aar!/jni/...`).
    pub path: String,
    /// The file, as the ranges a verdict reads.
    pub data: SparseFile,
    /// Found inside an Android package, at any depth: the bionic model and
    /// Android's rules apply.
    pub android: bool,
    /// For an entry stored uncompressed in a zip: where its data starts in
    /// the zip that directly holds it (what zipalign and Play check).
    pub zip_data_offset: Option<u64>,
}

/// What a scan calls for each ELF member.
pub type Visitor<'v> = &'v mut dyn FnMut(Member);

/// An entry of an archive, as its reader hands it over.
pub(crate) struct Entry<'r> {
    /// Its name inside the archive, without a leading `./`.
    pub(crate) name: String,
    /// Its length, as its header says.
    pub(crate) len: u64,
    /// A regular file (not a directory, link or device).
    pub(crate) is_file: bool,
    /// Which header `header_offset` is that of.
    pub(crate) header: EntryHeader,
    /// Where its header starts: in the zip, or in the uncompressed tar.
    pub(crate) header_offset: u64,
    /// For an entry stored uncompressed in a zip: where its data starts.
    pub(crate) zip_data_offset: Option<u64>,
    /// Its data, from the start.
    pub(crate) data: &'r mut dyn Read,
}

/// What a reader calls for each entry.
pub(crate) type EntryVisitor<'e> = &'e mut dyn FnMut(Entry<'_>) -> Result<(), ArchiveError>;

/// Reads the ELF file `data` of `len` bytes as the member `path`.
pub(crate) fn read_elf(
    data: &mut dyn Read,
    len: u64,
    path: String,
    android: bool,
    zip_data_offset: Option<u64>,
    hashing: Hashing,
) -> Result<Member, ArchiveError> {
    match SparseFile::read(data, len, hashing) {
        Ok(data) => Ok(Member { path, data, android, zip_data_offset }),
        Err(e) => Err(ArchiveError::member(path, e)),
    }
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
