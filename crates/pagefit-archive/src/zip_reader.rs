//! The zip family (APK, AAB, AAR, APEX, JAR, .apks, zip): its ELF members,
//! and those of the zips nested in it.

use std::io::{Cursor, Read, Seek};

use crate::detect::{is_android_package, is_nested_zip_name};
use crate::error::ArchiveError;
use crate::member::{read_up_to, Member, Visitor};
use crate::sparse::SparseFile;

/// How deep nested archives are followed (an APK inside .apks is depth 1).
const MAX_NESTING: usize = 2;
/// The largest nested zip read into memory (the zip format needs to seek); a
/// larger one is an error, not an allocation a zip bomb chooses.
const MAX_NESTED_ZIP: u64 = 512 << 20;

/// Visits the ELF members of the zip `reader`, named `outer`; `android` when
/// it is (or is inside) an Android package. A zip nested past
/// [`MAX_NESTING`] is not opened: the other members are still visited, then
/// the first such zip is the error.
pub(crate) fn scan_zip<R: Read + Seek>(
    reader: R,
    outer: &str,
    android: bool,
    depth: usize,
    visit: Visitor<'_>,
) -> Result<(), ArchiveError> {
    let mut zip = zip::ZipArchive::new(reader).map_err(ArchiveError::NotZip)?;
    // A zip holding AndroidManifest.xml is an Android package whatever its name.
    let android =
        android || zip.index_for_name("AndroidManifest.xml").is_some() || zip.index_for_name("manifest/AndroidManifest.xml").is_some();
    let mut too_deep = None;
    for index in 0..zip.len() {
        let mut entry = zip.by_index(index).map_err(|error| ArchiveError::ZipEntry { index, error })?;
        if !entry.is_file() {
            continue;
        }
        let name = entry.name().to_string();
        let path = format!("{outer}!/{name}");
        let nested = is_nested_zip_name(&name);
        let mut magic = [0u8; 4];
        let stored = entry.compression() == zip::CompressionMethod::Stored;
        let data_offset = entry.data_start();
        let got = match read_up_to(&mut entry, &mut magic) {
            Ok(got) => got,
            Err(e) => return Err(ArchiveError::member(path, e)),
        };
        let is_elf = got == 4 && &magic == b"\x7fELF";
        let is_zip = nested && got == 4 && &magic == b"PK\x03\x04";
        if !is_elf && !is_zip {
            continue;
        }
        if is_zip && depth >= MAX_NESTING {
            too_deep.get_or_insert(ArchiveError::TooDeep { path, offset: entry.header_start(), limit: MAX_NESTING });
            continue;
        }
        let len = entry.size();
        let mut rest = Cursor::new(magic[..got].to_vec()).chain(entry);
        if is_elf {
            let data = match SparseFile::read(&mut rest, len) {
                Ok(data) => data,
                Err(e) => return Err(ArchiveError::member(path, e)),
            };
            visit(Member { path, data, android, zip_data_offset: if stored { data_offset } else { None } });
        } else {
            // A nested zip is read whole: the zip format needs to seek.
            if len > MAX_NESTED_ZIP {
                let why = format!("a nested zip of {len} bytes, over the {} MiB pagefit reads into memory", MAX_NESTED_ZIP >> 20);
                return Err(ArchiveError::member(path, std::io::Error::other(why)));
            }
            let mut bytes = Vec::new();
            if let Err(e) = rest.read_to_end(&mut bytes) {
                return Err(ArchiveError::member(path, e));
            }
            let inner_android = android || is_android_package(&name);
            match scan_zip(Cursor::new(bytes), &path, inner_android, depth + 1, visit) {
                Err(error @ ArchiveError::TooDeep { .. }) => _ = too_deep.get_or_insert(error),
                result => result?,
            }
        }
    }
    too_deep.map_or(Ok(()), Err)
}
