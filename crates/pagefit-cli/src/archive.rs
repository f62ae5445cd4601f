//! Reading ELF files out of archives without extracting anything to disk:
//! the zip family (APK, AAB, AAR, APEX, JAR, .apks), Debian packages (ar,
//! then data.tar.*), tar archives, plain or compressed, and FatELF files
//! (`app.fat!record0 (x86_64)`). One member is in memory at a time;
//! compressed streams are decoded as they are read.

use std::fs::File;
use std::io::{self, Cursor, Read, Seek};
use std::path::Path;

use crate::image::{self, record_entry, Container, TarIndex};
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

/// An archive that could not be read: the message names the member or offset.
pub type ArchiveError = String;

/// The archive formats pagefit reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchiveKind {
    /// PK\x03\x04: APK, AAB, AAR, APEX, JAR, .apks, zip.
    Zip,
    /// `!<arch>\n`: a Debian package.
    Deb,
    /// A tar stream, maybe compressed.
    Tar(Compression),
    /// FatELF: several ELF builds, one per record.
    Fat,
}

/// How a tar stream is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Xz,
    Zstd,
    Bzip2,
}

impl Compression {
    pub fn from_magic(prefix: &[u8]) -> Option<Compression> {
        if prefix.starts_with(&[0x1f, 0x8b]) {
            Some(Compression::Gzip)
        } else if prefix.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Some(Compression::Xz)
        } else if prefix.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Some(Compression::Zstd)
        } else if prefix.starts_with(b"BZh") {
            Some(Compression::Bzip2)
        } else {
            None
        }
    }

    pub fn decoder<'r>(self, reader: impl Read + 'r) -> io::Result<Box<dyn Read + 'r>> {
        Ok(match self {
            Compression::None => Box::new(reader),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
            Compression::Xz => Box::new(liblzma::read::XzDecoder::new(reader)),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(reader)?),
            Compression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(reader)),
        })
    }
}

/// Recognises an archive from the first bytes of a file (at least 512 for tar).
pub fn detect(prefix: &[u8]) -> Option<ArchiveKind> {
    if prefix.starts_with(b"PK\x03\x04") {
        Some(ArchiveKind::Zip)
    } else if pagefit_core::fat::is_fat(prefix) {
        Some(ArchiveKind::Fat)
    } else if prefix.starts_with(b"!<arch>\n") {
        Some(ArchiveKind::Deb)
    } else if prefix.len() >= 262 && &prefix[257..262] == b"ustar" {
        Some(ArchiveKind::Tar(Compression::None))
    } else {
        Compression::from_magic(prefix).map(ArchiveKind::Tar)
    }
}

/// Zips that are Android packages.
const ANDROID_SUFFIXES: &[&str] = &[".apk", ".aab", ".aar", ".apex", ".apks", ".capex"];
/// Zips followed when nested in another zip.
const NESTED_ZIP_SUFFIXES: &[&str] = &[".apk", ".zip", ".jar", ".aar", ".apex", ".capex"];
/// Every archive name `has_archive_name` recognises, beyond the Android ones.
const OTHER_ARCHIVE_SUFFIXES: &[&str] = &[".jar", ".zip", ".deb", ".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.zst", ".tar.bz2"];

fn ends_with_any(name: &str, suffixes: &[&str]) -> bool {
    let lower = name.to_ascii_lowercase();
    suffixes.iter().any(|suffix| lower.ends_with(suffix))
}

/// Whether a zip with this name is an Android package.
fn is_android_package(name: &str) -> bool {
    ends_with_any(name, ANDROID_SUFFIXES)
}

/// Archives found while walking a directory are opened only when their name
/// says so (a named file is recognised by its contents alone).
pub fn has_archive_name(path: &Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    ends_with_any(&name, ANDROID_SUFFIXES) || ends_with_any(&name, OTHER_ARCHIVE_SUFFIXES)
}

/// How deep nested archives are followed (an APK inside .apks is depth 1).
const MAX_NESTING: usize = 2;

/// Calls `visit` for every ELF file inside the archive at `path`.
pub fn scan(path: &Path, kind: ArchiveKind, visit: &mut dyn FnMut(Member)) -> Result<(), ArchiveError> {
    let display = path.display().to_string();
    let file = File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let android = is_android_package(&display);
    match kind {
        ArchiveKind::Zip => scan_zip(file, &display, android, 0, visit),
        ArchiveKind::Deb => scan_deb(file, &display, visit),
        ArchiveKind::Tar(Compression::None) => match image::uncompressed_tar_image(path)? {
            Some(container) => image::scan(&container, &display, visit),
            None => scan_tar(file, Compression::None, &display, visit).map(drop),
        },
        // A compressed tar is read once as a plain tar; if it turns out to
        // hold an image, its layers are read afterwards.
        ArchiveKind::Tar(compression) => {
            let entries = scan_tar(file, compression, &display, visit)?;
            if image::is_image(&entries) {
                image::scan(&Container::Tar { path: path.to_path_buf(), compression, entries }, &display, visit)?;
            }
            Ok(())
        }
        ArchiveKind::Fat => scan_fat(file, &display, visit),
    }
}

/// Every record of a FatELF file, validated first (a record whose ELF
/// header disagrees with it is an error for the whole file).
fn scan_fat(mut file: File, outer: &str, visit: &mut dyn FnMut(Member)) -> Result<(), ArchiveError> {
    let fat = pagefit_core::fat::FatFile::parse(&object::read::ReadCache::new(&file)).map_err(|e| e.to_string())?;
    for record in &fat.records {
        let path = format!("{outer}!{} ({})", record.name(), record.target.machine_label());
        file.seek(io::SeekFrom::Start(record.offset)).map_err(|e| format!("{path}: {e}"))?;
        // `parse` checked that every record lies inside the file.
        let data = SparseFile::read(&mut (&mut file).take(record.size), record.size).map_err(|e| format!("{path}: {e}"))?;
        visit(Member { path, data, android: false, zip_data_offset: None });
    }
    Ok(())
}

fn scan_zip<R: Read + Seek>(
    reader: R,
    outer: &str,
    android: bool,
    depth: usize,
    visit: &mut dyn FnMut(Member),
) -> Result<(), ArchiveError> {
    let mut zip = zip::ZipArchive::new(reader).map_err(|e| format!("not a readable zip: {e}"))?;
    // A zip holding AndroidManifest.xml is an Android package whatever its name.
    let android =
        android || zip.index_for_name("AndroidManifest.xml").is_some() || zip.index_for_name("manifest/AndroidManifest.xml").is_some();
    for index in 0..zip.len() {
        let mut entry = zip.by_index(index).map_err(|e| format!("zip entry {index}: {e}"))?;
        if !entry.is_file() {
            continue;
        }
        let name = entry.name().to_string();
        let path = format!("{outer}!/{name}");
        let nested = depth < MAX_NESTING && ends_with_any(&name, NESTED_ZIP_SUFFIXES);
        let mut magic = [0u8; 4];
        let stored = entry.compression() == zip::CompressionMethod::Stored;
        let data_offset = entry.data_start();
        let got = read_up_to(&mut entry, &mut magic).map_err(|e| format!("{path}: {e}"))?;
        let is_elf = got == 4 && &magic == b"\x7fELF";
        let is_zip = nested && got == 4 && &magic == b"PK\x03\x04";
        if !is_elf && !is_zip {
            continue;
        }
        let len = entry.size();
        let mut rest = Cursor::new(magic[..got].to_vec()).chain(entry);
        if is_elf {
            let data = SparseFile::read(&mut rest, len).map_err(|e| format!("{path}: {e}"))?;
            visit(Member { path, data, android, zip_data_offset: if stored { data_offset } else { None } });
        } else {
            // A nested zip is read whole: the zip format needs to seek.
            let mut bytes = Vec::new();
            rest.read_to_end(&mut bytes).map_err(|e| format!("{path}: {e}"))?;
            let inner_android = android || is_android_package(&name);
            scan_zip(Cursor::new(bytes), &path, inner_android, depth + 1, visit)?;
        }
    }
    Ok(())
}

fn scan_deb(file: File, outer: &str, visit: &mut dyn FnMut(Member)) -> Result<(), ArchiveError> {
    let mut deb = ar::Archive::new(file);
    let mut found_data = false;
    while let Some(entry) = deb.next_entry() {
        let mut entry = entry.map_err(|e| format!("not a readable .deb (ar archive): {e}"))?;
        let name = String::from_utf8_lossy(entry.header().identifier()).into_owned();
        if !name.starts_with("data.tar") {
            continue;
        }
        found_data = true;
        let mut magic = [0u8; 6];
        let got = read_up_to(&mut entry, &mut magic).map_err(|e| format!("{outer}!/{name}: {e}"))?;
        let compression = Compression::from_magic(&magic[..got]).unwrap_or(Compression::None);
        let stream = Cursor::new(magic[..got].to_vec()).chain(entry);
        scan_tar(stream, compression, outer, visit)?;
    }
    if found_data {
        Ok(())
    } else {
        Err("a .deb without data.tar".to_string())
    }
}

/// Visits a tar stream's ELF files; returns the index of its entries.
fn scan_tar(reader: impl Read, compression: Compression, outer: &str, visit: &mut dyn FnMut(Member)) -> Result<TarIndex, ArchiveError> {
    let decoder = compression.decoder(reader).map_err(|e| format!("cannot decompress: {e}"))?;
    let mut tar = tar::Archive::new(decoder);
    let entries = tar.entries().map_err(|e| format!("not a readable tar: {e}"))?;
    let mut index = TarIndex::new();
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("tar: {e}"))?;
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

/// Visits a tar entry of `len` bytes as the member `path` if it is an ELF file.
pub fn visit_if_elf(entry: &mut dyn Read, len: u64, path: String, visit: Visitor<'_>) -> Result<(), ArchiveError> {
    let mut magic = [0u8; 4];
    let got = read_up_to(entry, &mut magic).map_err(|e| format!("{path}: {e}"))?;
    if got < 4 || &magic != b"\x7fELF" {
        return Ok(());
    }
    let data = SparseFile::read(&mut Cursor::new(magic).chain(entry), len).map_err(|e| format!("{path}: {e}"))?;
    visit(Member { path, data, android: false, zip_data_offset: None });
    Ok(())
}

/// Reads until `buf` is full or the stream ends; returns how much was read.
pub fn read_up_to(reader: &mut (impl Read + ?Sized), buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}
