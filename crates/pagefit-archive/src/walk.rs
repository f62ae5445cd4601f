//! What becomes of each entry of an archive, whatever its kind: an ELF file
//! is visited; an archive (a zip, a tar plain or compressed, a .deb, named
//! so and starting so) is opened and walked in turn, in any order (an AAR
//! in an npm tarball, a tarball in a zip, an APK in .apks in a tarball), up
//! to [`MAX_NESTING`] levels deep.
//!
//! A nested tar or .deb is a stream inside the stream of its holder. A
//! nested zip needs to seek, so it is copied out: into memory while the
//! chain of zips holding it stays within [`NESTED_ZIPS_IN_MEMORY`], else
//! into an anonymous temporary file within [`NESTED_ZIPS_ON_DISK`]; so that
//! memory stays bounded however deep and however large.

use std::io::{self, Cursor, Read, Seek};

use crate::compression::Compression;
use crate::deb_reader;
use crate::detect::{is_android_package, nested_archive, NestedArchive};
use crate::error::ArchiveError;
use crate::member::{read_elf, read_up_to, Entry, Visitor};
use crate::sparse::Hashing;
use crate::tar_reader;
use crate::zip_reader::ZipEntries;

/// How deep nested archives are opened: an archive inside the one named is
/// level 1, so `a.tgz!/b.apks!/c.apk!/lib/x.so` needs 2.
pub(crate) const MAX_NESTING: usize = 4;
/// The most a chain of nested zips (a zip, the zip that holds it, …) holds in memory.
const NESTED_ZIPS_IN_MEMORY: u64 = 64 << 20;
/// The most a chain of nested zips holds in temporary files; a nested zip
/// past both budgets is an error, not an allocation a zip bomb chooses.
const NESTED_ZIPS_ON_DISK: u64 = 2 << 30;
/// How much of an entry is read to tell what it is (a tar's magic is at 257).
const PREFIX_LEN: usize = 512;

/// Where an archive sits in the chain of archives that hold it.
#[derive(Clone, Copy)]
pub(crate) struct Nesting {
    /// 0 for the archive named, 1 for one inside it…
    depth: usize,
    /// It is, or is inside, an Android package.
    android: bool,
    /// What the zips holding it left of the budgets for nested zips.
    memory_left: u64,
    disk_left: u64,
}

impl Nesting {
    /// The archive named, an Android package or not.
    pub(crate) fn top(android: bool) -> Nesting {
        Nesting { depth: 0, android, memory_left: NESTED_ZIPS_IN_MEMORY, disk_left: NESTED_ZIPS_ON_DISK }
    }
}

/// Walks archives and the archives inside them, visiting their ELF files.
pub(crate) struct Walker<'v> {
    pub(crate) visit: Visitor<'v>,
    /// Whether ELF members are hashed as they are read.
    pub(crate) hashing: Hashing,
    /// The first archive nested past [`MAX_NESTING`]: the error once the rest has been walked.
    too_deep: Option<ArchiveError>,
}

impl<'v> Walker<'v> {
    pub(crate) fn new(visit: Visitor<'v>, hashing: Hashing) -> Walker<'v> {
        Walker { visit, hashing, too_deep: None }
    }

    /// The end of the walk: an error if an archive was nested too deep to open.
    pub(crate) fn finish(self) -> Result<(), ArchiveError> {
        self.too_deep.map_or(Ok(()), Err)
    }

    /// Walks the zip `reader`, named `outer`.
    pub(crate) fn zip<R: Read + Seek>(&mut self, reader: R, outer: &str, nesting: Nesting) -> Result<(), ArchiveError> {
        let mut zip = ZipEntries::open(reader)?;
        let nesting = Nesting { android: nesting.android || zip.holds_android_manifest(), ..nesting };
        zip.for_each(&mut |entry| self.entry(outer, nesting, entry))
    }

    /// Walks the tar stream `reader`, named `outer`.
    pub(crate) fn tar(&mut self, reader: impl Read, compression: Compression, outer: &str, nesting: Nesting) -> Result<(), ArchiveError> {
        tar_reader::for_each_entry(reader, compression, &mut |entry| self.entry(outer, nesting, entry))
    }

    /// Walks the Debian package `reader`, named `outer` (its data tar's
    /// files are named as the package's: `pkg.deb!/usr/bin/tool`).
    pub(crate) fn deb(&mut self, reader: impl Read, outer: &str, nesting: Nesting) -> Result<(), ArchiveError> {
        deb_reader::for_each_data_entry(reader, outer, &mut |entry| self.entry(outer, nesting, entry))
    }

    /// Visits `entry` of the archive `outer` if it is an ELF file, walks it
    /// if it is an archive, and passes over anything else.
    pub(crate) fn entry(&mut self, outer: &str, nesting: Nesting, entry: Entry<'_>) -> Result<(), ArchiveError> {
        if !entry.is_file {
            return Ok(());
        }
        let path = format!("{outer}!/{}", entry.name);
        let mut prefix = [0u8; PREFIX_LEN];
        let got = read_up_to(entry.data, &mut prefix).map_err(|e| ArchiveError::member(path.as_str(), e))?;
        let prefix = &prefix[..got];
        let mut data = Cursor::new(prefix).chain(entry.data);
        if prefix.starts_with(b"\x7fELF") {
            let member = read_elf(&mut data, entry.len, path, nesting.android, entry.zip_data_offset, self.hashing)?;
            (self.visit)(member);
            return Ok(());
        }
        let Some(kind) = nested_archive(&entry.name, prefix) else { return Ok(()) };
        if nesting.depth >= MAX_NESTING {
            let error = ArchiveError::TooDeep { path, header: entry.header, offset: entry.header_offset, limit: MAX_NESTING };
            self.too_deep.get_or_insert(error);
            return Ok(());
        }
        let inner = Nesting { depth: nesting.depth + 1, android: nesting.android || is_android_package(&entry.name), ..nesting };
        let walked = match kind {
            NestedArchive::Zip => self.nested_zip(&mut data, entry.len, &path, inner),
            NestedArchive::Tar(compression) => self.tar(data, compression, &path, inner),
            NestedArchive::Deb => self.deb(data, &path, inner),
        };
        walked.map_err(|error| error.inside(&path))
    }

    /// Copies the nested zip `data` of `len` bytes out, into memory or a
    /// temporary file as the budgets allow, and walks it.
    fn nested_zip(&mut self, data: &mut dyn Read, len: u64, path: &str, nesting: Nesting) -> Result<(), ArchiveError> {
        let mut data = data.take(len);
        let failed = |e| ArchiveError::member(path, e);
        if len <= nesting.memory_left {
            // Within the budget, so within usize.
            let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
            data.read_to_end(&mut bytes).map_err(failed)?;
            whole(bytes.len() as u64, len).map_err(failed)?;
            self.zip(Cursor::new(bytes), path, Nesting { memory_left: nesting.memory_left - len, ..nesting })
        } else if len <= nesting.disk_left {
            let mut file = tempfile::tempfile().map_err(failed)?;
            let copied = io::copy(&mut data, &mut file).map_err(failed)?;
            whole(copied, len).and_then(|()| file.rewind()).map_err(failed)?;
            self.zip(file, path, Nesting { disk_left: nesting.disk_left - len, ..nesting })
        } else {
            let why = format!(
                "a nested zip of {len} bytes, over the {} MiB left of the {} MiB a chain of nested zips may take",
                nesting.disk_left >> 20,
                NESTED_ZIPS_ON_DISK >> 20
            );
            Err(ArchiveError::member(path, io::Error::other(why)))
        }
    }
}

/// A nested zip shorter than its header says is truncated.
fn whole(copied: u64, len: u64) -> io::Result<()> {
    if copied < len {
        let why = format!("truncated: the data ends after {copied} of its {len} bytes");
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, why));
    }
    Ok(())
}
