//! One entry point for every archive kind: hands the file to its reader.

use std::fs::File;
use std::path::Path;

use crate::compression::Compression;
use crate::deb_reader::scan_deb;
use crate::detect::{is_android_package, ArchiveKind};
use crate::error::ArchiveError;
use crate::fat_reader::scan_fat;
use crate::image::{self, Container};
use crate::member::Visitor;
use crate::tar_reader::scan_tar;
use crate::zip_reader::scan_zip;

/// Calls `visit` for every ELF file inside the archive at `path`, named
/// `path!/member` (`path!record0 (x86_64)` for FatELF records, `path!/usr/lib/x.so`
/// for an image's final filesystem, `path!linux/arm64!/usr/lib/x.so` when it
/// holds several images).
pub fn scan(path: &Path, kind: ArchiveKind, visit: Visitor<'_>) -> Result<(), ArchiveError> {
    let display = path.display().to_string();
    let file = File::open(path).map_err(ArchiveError::Open)?;
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
