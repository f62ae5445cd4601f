//! FatELF files: every record, as the member `app.fat!record0 (x86_64)`.
//! pagefit-core parses and validates them, so this needs the `fat` feature.

use std::fs::File;

use crate::error::ArchiveError;
use crate::member::Visitor;
use crate::sparse::Hashing;

/// Every record of a FatELF file, validated first (a record whose ELF
/// header disagrees with it is an error for the whole file).
#[cfg(feature = "fat")]
pub(crate) fn scan_fat(mut file: File, outer: &str, hashing: Hashing, visit: Visitor<'_>) -> Result<(), ArchiveError> {
    use std::io::{Read, Seek, SeekFrom};

    use crate::member::Member;
    use crate::sparse::SparseFile;

    let fat = pagefit_core::fat::FatFile::parse(&object::read::ReadCache::new(&file)).map_err(ArchiveError::Fat)?;
    for record in &fat.records {
        let path = format!("{outer}!{} ({})", record.name(), record.target.machine_label());
        if let Err(e) = file.seek(SeekFrom::Start(record.offset)) {
            return Err(ArchiveError::member(path, e));
        }
        // `parse` checked that every record lies inside the file.
        let data = match SparseFile::read(&mut (&mut file).take(record.size), record.size, hashing) {
            Ok(data) => data,
            Err(e) => return Err(ArchiveError::member(path, e)),
        };
        visit(Member { path, data, android: false, zip_data_offset: None });
    }
    Ok(())
}

/// Without the `fat` feature, a FatELF file is an error naming the feature.
#[cfg(not(feature = "fat"))]
pub(crate) fn scan_fat(_file: File, _outer: &str, _hashing: Hashing, _visit: Visitor<'_>) -> Result<(), ArchiveError> {
    Err(ArchiveError::FatUnsupported)
}
