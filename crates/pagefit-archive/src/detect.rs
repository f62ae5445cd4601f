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
/// Zips followed when nested in another zip.
const NESTED_ZIP_SUFFIXES: &[&str] = &[".apk", ".zip", ".jar", ".aar", ".apex", ".capex"];
/// Every archive name `has_archive_name` recognises, beyond the Android ones.
const OTHER_ARCHIVE_SUFFIXES: &[&str] =
    &[".jar", ".zip", ".whl", ".deb", ".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.zst", ".tar.bz2"];

fn ends_with_any(name: &str, suffixes: &[&str]) -> bool {
    let lower = name.to_ascii_lowercase();
    suffixes.iter().any(|suffix| lower.ends_with(suffix))
}

/// Whether a zip with this name is an Android package.
pub(crate) fn is_android_package(name: &str) -> bool {
    ends_with_any(name, ANDROID_SUFFIXES)
}

/// Whether a zip member with this name is followed as a nested zip.
pub(crate) fn is_nested_zip_name(name: &str) -> bool {
    ends_with_any(name, NESTED_ZIP_SUFFIXES)
}

/// Archives found while walking a directory are opened only when their name
/// says so (a named file is recognised by its contents alone).
pub fn has_archive_name(path: &Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    ends_with_any(&name, ANDROID_SUFFIXES) || ends_with_any(&name, OTHER_ARCHIVE_SUFFIXES)
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
        assert!(is_nested_zip_name("splits/base.apk") && !is_nested_zip_name("base.apks"));
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
