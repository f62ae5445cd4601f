//! The zip family (APK, AAB, AAR, APEX, JAR, .apks, zip): its entries.

use std::io::{Read, Seek};

use crate::error::{ArchiveError, EntryHeader};
use crate::member::{Entry, EntryVisitor};

/// An open zip.
pub(crate) struct ZipEntries<R> {
    zip: zip::ZipArchive<R>,
}

impl<R: Read + Seek> ZipEntries<R> {
    /// Reads the zip's central directory.
    pub(crate) fn open(reader: R) -> Result<Self, ArchiveError> {
        Ok(ZipEntries { zip: zip::ZipArchive::new(reader).map_err(ArchiveError::NotZip)? })
    }

    /// Whether it holds AndroidManifest.xml (an APK's, or an AAB module's):
    /// then it is an Android package whatever its name.
    pub(crate) fn holds_android_manifest(&self) -> bool {
        self.zip.index_for_name("AndroidManifest.xml").is_some() || self.zip.index_for_name("manifest/AndroidManifest.xml").is_some()
    }

    /// Calls `each` for every entry, in the central directory's order.
    pub(crate) fn for_each(&mut self, each: EntryVisitor<'_>) -> Result<(), ArchiveError> {
        for index in 0..self.zip.len() {
            let mut entry = self.zip.by_index(index).map_err(|error| ArchiveError::ZipEntry { index, error })?;
            let stored = entry.compression() == zip::CompressionMethod::Stored;
            each(Entry {
                name: entry.name().to_string(),
                len: entry.size(),
                is_file: entry.is_file(),
                header: EntryHeader::ZipLocal,
                header_offset: entry.header_start(),
                zip_data_offset: if stored { entry.data_start() } else { None },
                data: &mut entry,
            })?;
        }
        Ok(())
    }
}
