//! Tar streams, plain or compressed: their entries, and the index of their
//! entries (which tells whether the tar holds a container image, and where
//! the image's files are).

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::compression::Compression;
use crate::error::{ArchiveError, EntryHeader};
use crate::member::{Entry, EntryVisitor};

/// An entry of a tar, as its index records it.
pub struct TarEntry {
    /// Where its data starts (uncompressed tars only).
    pub(crate) data_offset: Option<u64>,
    pub(crate) size: u64,
}

/// The entries of a tar, by name (without a leading `./`).
pub type TarIndex = HashMap<String, TarEntry>;

/// Records a tar entry.
pub(crate) fn record_entry(index: &mut TarIndex, name: &str, data_offset: Option<u64>, size: u64) {
    index.insert(name.trim_start_matches("./").to_string(), TarEntry { data_offset, size });
}

/// Calls `each` for every entry of a tar stream, decoded as it is read.
pub(crate) fn for_each_entry(reader: impl Read, compression: Compression, each: EntryVisitor<'_>) -> Result<(), ArchiveError> {
    let decoder = compression.decoder(reader).map_err(|error| ArchiveError::Decompress { layer: false, error })?;
    let mut tar = tar::Archive::new(decoder);
    let entries = tar.entries().map_err(|error| ArchiveError::NotTar { layer: false, error })?;
    for entry in entries {
        let mut entry = entry.map_err(|error| ArchiveError::TarEntry { layer: false, error })?;
        let name = entry.path().map(|p| p.display().to_string()).unwrap_or_default();
        each(Entry {
            name: name.trim_start_matches("./").to_string(),
            len: entry.size(),
            is_file: entry.header().entry_type() == tar::EntryType::Regular,
            header: EntryHeader::Tar,
            header_offset: entry.raw_header_position(),
            zip_data_offset: None,
            data: &mut entry,
        })?;
    }
    Ok(())
}

/// Indexes an uncompressed tar file's entries, seeking over their data (a
/// read per entry header).
pub(crate) fn index_uncompressed(path: &Path) -> Result<TarIndex, ArchiveError> {
    let file = File::open(path).map_err(ArchiveError::Open)?;
    let mut index = TarIndex::new();
    let mut tar = tar::Archive::new(file);
    for entry in tar.entries_with_seek().map_err(|error| ArchiveError::NotTar { layer: false, error })? {
        let entry = entry.map_err(|error| ArchiveError::TarEntry { layer: false, error })?;
        let name = entry.path().map(|p| p.display().to_string()).unwrap_or_default();
        record_entry(&mut index, &name, Some(entry.raw_file_position()), entry.size());
    }
    Ok(index)
}
