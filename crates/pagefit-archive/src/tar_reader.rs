//! Tar streams, plain or compressed: their ELF files, and the index of their
//! entries (which tells whether the tar holds a container image, and where
//! the image's files are).

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::compression::Compression;
use crate::error::ArchiveError;
use crate::member::{visit_if_elf, Visitor};

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

/// Visits a tar stream's ELF files; returns the index of its entries.
pub(crate) fn scan_tar(reader: impl Read, compression: Compression, outer: &str, visit: Visitor<'_>) -> Result<TarIndex, ArchiveError> {
    let decoder = compression.decoder(reader).map_err(|error| ArchiveError::Decompress { layer: false, error })?;
    let mut tar = tar::Archive::new(decoder);
    let entries = tar.entries().map_err(|error| ArchiveError::NotTar { layer: false, error })?;
    let mut index = TarIndex::new();
    for entry in entries {
        let mut entry = entry.map_err(|error| ArchiveError::TarEntry { layer: false, error })?;
        let name = entry.path().map(|p| p.display().to_string()).unwrap_or_default();
        record_entry(&mut index, &name, None, entry.size());
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let len = entry.size();
        visit_if_elf(&mut entry, len, format!("{outer}!/{}", name.trim_start_matches("./")), visit)?;
    }
    Ok(index)
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
