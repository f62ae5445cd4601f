//! Which archive a file is: from its first bytes, and, for files found while
//! walking a directory, from its name.

use std::path::Path;

use crate::compression::Compression;

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

/// FatELF's magic number, 0x1F0E70FA, little-endian (as `pagefit_core::fat::MAGIC`).
const FAT_MAGIC: [u8; 4] = 0x1F0E_70FA_u32.to_le_bytes();

/// Recognises an archive from the first bytes of a file (at least 512 for tar).
pub fn detect(prefix: &[u8]) -> Option<ArchiveKind> {
    if prefix.starts_with(b"PK\x03\x04") {
        Some(ArchiveKind::Zip)
    } else if prefix.starts_with(&FAT_MAGIC) {
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
/// Zips followed when nested in another archive.
const NESTED_ZIP_SUFFIXES: &[&str] = &[".apk", ".aab", ".aar", ".apex", ".apks", ".capex", ".zip", ".jar", ".whl"];
/// Tars, plain or compressed.
const TAR_SUFFIXES: &[&str] = &[".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.zst", ".tzst", ".tar.bz2", ".tbz2"];
/// Debian packages.
const DEB_SUFFIXES: &[&str] = &[".deb", ".udeb"];

fn ends_with_any(name: &str, suffixes: &[&str]) -> bool {
    let lower = name.to_ascii_lowercase();
    suffixes.iter().any(|suffix| lower.ends_with(suffix))
}

/// Whether a zip with this name is an Android package.
pub(crate) fn is_android_package(name: &str) -> bool {
    ends_with_any(name, ANDROID_SUFFIXES)
}

/// The archives followed inside archives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NestedArchive {
    Zip,
    Tar(Compression),
    Deb,
}

/// The archive an archive's member is, when its name and its first bytes
/// (at least 512 of them for tar) agree on it.
pub(crate) fn nested_archive(name: &str, prefix: &[u8]) -> Option<NestedArchive> {
    let (kind, suffixes) = match detect(prefix)? {
        ArchiveKind::Zip => (NestedArchive::Zip, NESTED_ZIP_SUFFIXES),
        ArchiveKind::Tar(compression) => (NestedArchive::Tar(compression), TAR_SUFFIXES),
        ArchiveKind::Deb => (NestedArchive::Deb, DEB_SUFFIXES),
        ArchiveKind::Fat => return None,
    };
    ends_with_any(name, suffixes).then_some(kind)
}

/// Archives found while walking a directory are opened only when their name
/// says so (a named file is recognised by its contents alone).
pub fn has_archive_name(path: &Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    [ANDROID_SUFFIXES, NESTED_ZIP_SUFFIXES, TAR_SUFFIXES, DEB_SUFFIXES].iter().any(|suffixes| ends_with_any(&name, suffixes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_magics_are_recognised() {
        assert!(has_archive_name(Path::new("/x/App.APK")));
        assert!(has_archive_name(Path::new("pkg.tar.zst")));
        // A wheelhouse is a directory of wheels: a walk follows them.
        assert!(has_archive_name(Path::new("numpy-1.26.0-cp311-cp311-manylinux2014_aarch64.whl")));
        assert!(!has_archive_name(Path::new("libfoo.so")));
        assert!(is_android_package("a.apks") && !is_android_package("a.jar"));
        assert_eq!(nested_archive("splits/base.apk", b"PK\x03\x04"), Some(NestedArchive::Zip));
        assert_eq!(nested_archive("app.apks", b"PK\x03\x04"), Some(NestedArchive::Zip));
        assert_eq!(nested_archive("pkg.tgz", &[0x1f, 0x8b, 8]), Some(NestedArchive::Tar(Compression::Gzip)));
        assert_eq!(nested_archive("pool/x.deb", b"!<arch>\ndebian-binary"), Some(NestedArchive::Deb));
        // Name and magic must agree: a zip named .tar, a jar that is no zip, a resource that happens to be one.
        assert_eq!(nested_archive("x.tar", b"PK\x03\x04"), None);
        assert_eq!(nested_archive("x.jar", &[0x1f, 0x8b, 8]), None);
        assert_eq!(nested_archive("res/raw/data.bin", b"PK\x03\x04"), None);
        assert_eq!(detect(b"PK\x03\x04rest"), Some(ArchiveKind::Zip));
        assert_eq!(detect(b"!<arch>\ndebian-binary"), Some(ArchiveKind::Deb));
        assert_eq!(detect(&[0xfa, 0x70, 0x0e, 0x1f, 1, 0]), Some(ArchiveKind::Fat));
        assert_eq!(detect(&[0x1f, 0x8b, 8]), Some(ArchiveKind::Tar(Compression::Gzip)));
        assert_eq!(detect(b"\x7fELF\x02\x01\x01"), None);
        let mut ustar = [0u8; 512];
        ustar[257..262].copy_from_slice(b"ustar");
        assert_eq!(detect(&ustar), Some(ArchiveKind::Tar(Compression::None)));
    }

    #[cfg(feature = "fat")]
    #[test]
    fn the_fat_magic_is_pagefit_cores() {
        assert!(pagefit_core::fat::is_fat(&FAT_MAGIC));
    }
}
