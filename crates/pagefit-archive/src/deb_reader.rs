//! Debian packages: an ar archive whose `data.tar*` member is a tar stream,
//! maybe compressed.

use std::io::{Cursor, Read};

use crate::compression::Compression;
use crate::error::ArchiveError;
use crate::member::{read_up_to, EntryVisitor};
use crate::tar_reader::for_each_entry;

/// Calls `each` for every entry of the data tar of the package `reader`,
/// named `outer`.
pub(crate) fn for_each_data_entry(reader: impl Read, outer: &str, each: EntryVisitor<'_>) -> Result<(), ArchiveError> {
    let mut deb = ar::Archive::new(reader);
    let mut found_data = false;
    while let Some(entry) = deb.next_entry() {
        let mut entry = entry.map_err(ArchiveError::NotDeb)?;
        let name = String::from_utf8_lossy(entry.header().identifier()).into_owned();
        if !name.starts_with("data.tar") {
            continue;
        }
        found_data = true;
        let mut magic = [0u8; 6];
        let got = read_up_to(&mut entry, &mut magic).map_err(|e| ArchiveError::member(format!("{outer}!/{name}"), e))?;
        let compression = Compression::from_magic(&magic[..got]).unwrap_or(Compression::None);
        let stream = Cursor::new(magic[..got].to_vec()).chain(entry);
        for_each_entry(stream, compression, each)?;
    }
    if found_data {
        Ok(())
    } else {
        Err(ArchiveError::DebWithoutData)
    }
}
