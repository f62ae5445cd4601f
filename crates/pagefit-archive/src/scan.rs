//! One entry point for every archive kind: hands the file to its reader,
//! through the walk that follows the archives inside it.

use std::fs::File;
use std::path::Path;

use crate::compression::Compression;
use crate::detect::{is_android_package, ArchiveKind};
use crate::error::ArchiveError;
use crate::fat_reader::scan_fat;
use crate::image::{self, Container};
use crate::member::Visitor;
use crate::sparse::Hashing;
use crate::tar_reader::{for_each_entry, record_entry, TarIndex};
use crate::walk::{Nesting, Walker};

/// Calls `visit` for every ELF file inside the archive at `path`, named
/// `path!/member` (`path!/inner.aar!/member` inside a nested archive,
/// `path!record0 (x86_64)` for FatELF records, `path!/usr/lib/x.so` for an
/// image's final filesystem, `path!linux/arm64!/usr/lib/x.so` when it holds
/// several images). An archive nested too deep to open is an error once
/// every other member has been visited.
pub fn scan(path: &Path, kind: ArchiveKind, hashing: Hashing, visit: Visitor<'_>) -> Result<(), ArchiveError> {
    let display = path.display().to_string();
    let file = File::open(path).map_err(ArchiveError::Open)?;
    let walker = Walker::new(visit, hashing);
    match kind {
        ArchiveKind::Zip => walk(walker, |walker| walker.zip(file, &display, Nesting::top(is_android_package(&display)))),
        ArchiveKind::Deb => walk(walker, |walker| walker.deb(file, &display, Nesting::top(false))),
        ArchiveKind::Tar(Compression::None) => match image::uncompressed_tar_image(path)? {
            Some(container) => image::scan(&container, &display, hashing, walker.visit),
            None => walk(walker, |walker| walker.tar(file, Compression::None, &display, Nesting::top(false))),
        },
        ArchiveKind::Tar(compression) => walk(walker, |walker| compressed_tar(path, file, compression, walker)),
        ArchiveKind::Fat => scan_fat(file, &display, hashing, walker.visit),
    }
}

/// Runs a walk to its end.
fn walk<'v>(mut walker: Walker<'v>, run: impl FnOnce(&mut Walker<'v>) -> Result<(), ArchiveError>) -> Result<(), ArchiveError> {
    run(&mut walker)?;
    walker.finish()
}

/// A compressed tar is read once, as a plain tar, and indexed; if it turns
/// out to hold an image, its layers are read afterwards (so `docker save`'s
/// `layer.tar` files are left to that).
fn compressed_tar(path: &Path, file: File, compression: Compression, walker: &mut Walker<'_>) -> Result<(), ArchiveError> {
    let display = path.display().to_string();
    let mut entries = TarIndex::new();
    for_each_entry(file, compression, &mut |entry| {
        record_entry(&mut entries, &entry.name, None, entry.len);
        if image::is_docker_save_layer(&entry.name) {
            return Ok(());
        }
        walker.entry(&display, Nesting::top(false), entry)
    })?;
    if image::is_image(&entries) {
        image::scan(&Container::Tar { path: path.to_path_buf(), compression, entries }, &display, walker.hashing, &mut *walker.visit)?;
    }
    Ok(())
}
