//! Why an archive could not be read.
//!
//! Each message names where it went wrong: the member
//! (`outer.apk!/lib/arm64-v8a/libfoo.so`), the zip entry's index, or the
//! file of an image (`index.json`, `blobs/sha256/…`). A message about the
//! archive as a whole (`not a readable zip: …`) is printed after the
//! archive's own path by the caller, as `pagefit check` does
//! (`app.apk: not a readable zip: …`).
//!
//! The message includes the underlying error's, so [`std::error::Error::source`]
//! returns `None` (a chain printed whole would say it twice); the underlying
//! error is a field of the variant.

use std::fmt;
use std::io;

/// An archive, or a member of it, that could not be read.
#[derive(Debug)]
#[non_exhaustive]
pub enum ArchiveError {
    /// The archive file (or an image's tar) cannot be opened: `cannot read: …`.
    Open(io::Error),
    /// Not a zip that can be read (no central directory, truncated…): `not a readable zip: …`.
    NotZip(zip::result::ZipError),
    /// A zip entry that cannot be read, by its index in the central directory: `zip entry 3: …`.
    ZipEntry { index: usize, error: zip::result::ZipError },
    /// Not an ar archive, or an ar entry header that cannot be read: `not a readable .deb (ar archive): …`.
    NotDeb(io::Error),
    /// A Debian package without a `data.tar*` member.
    DebWithoutData,
    /// A compressed stream whose decoder cannot start: `cannot decompress: …`
    /// (`cannot decompress a layer: …` for an image layer).
    Decompress { layer: bool, error: io::Error },
    /// A tar stream that cannot be read: `not a readable tar: …` (`not a readable layer tar: …`).
    NotTar { layer: bool, error: io::Error },
    /// A tar entry that cannot be read: `tar: …` (`layer tar: …`).
    TarEntry { layer: bool, error: io::Error },
    /// An image layer whose first bytes cannot be read: `layer: …`.
    Layer(io::Error),
    /// Reading a member failed, or a file of an image: `outer.zip!/lib/x.so: …`, `index.json: …`.
    Member { path: String, error: io::Error },
    /// An archive nested deeper than pagefit opens, by its header's offset
    /// in the archive that holds it: `a.zip!/b.zip!/c.zip!/d.zip!/e.zip!/f.zip:
    /// an archive nested deeper than 4 levels (zip local header at offset
    /// 0x1e2); not opened`.
    TooDeep { path: String, header: EntryHeader, offset: u64, limit: usize },
    /// A nested archive that cannot be read: `a.tgz!/b.aar: not a readable zip: …`.
    Nested { path: String, error: Box<ArchiveError> },
    /// A file an image's metadata names is missing: `blobs/sha256/…: not in the image`.
    NotInImage { name: String },
    /// Image metadata that is not JSON: `index.json: not valid JSON: …`.
    Json { name: String, error: serde_json::Error },
    /// Image metadata that is JSON but not what it should hold:
    /// `manifest.json: not a list of images`, `index.json: bad digest "…"`.
    Metadata { name: String, problem: String },
    /// A FatELF file that is not valid; the message gives the offset.
    #[cfg(feature = "fat")]
    Fat(pagefit_core::fat::FatError),
    /// A FatELF file, read by a build without the `fat` feature.
    FatUnsupported,
}

/// The header an entry's offset is that of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryHeader {
    /// A zip entry's local header, in the zip.
    ZipLocal,
    /// A tar entry's header, in the uncompressed tar.
    Tar,
}

impl ArchiveError {
    /// What went wrong reading the member (or image file) `path`.
    pub(crate) fn member(path: impl Into<String>, error: io::Error) -> ArchiveError {
        ArchiveError::Member { path: path.into(), error }
    }

    /// This error, met reading the nested archive `path`: named by it unless
    /// it names a member already.
    pub(crate) fn inside(self, path: &str) -> ArchiveError {
        match self {
            ArchiveError::Member { .. } | ArchiveError::TooDeep { .. } | ArchiveError::Nested { .. } => self,
            error => ArchiveError::Nested { path: path.to_string(), error: Box::new(error) },
        }
    }

    pub(crate) fn metadata(name: &str, problem: impl Into<String>) -> ArchiveError {
        ArchiveError::Metadata { name: name.to_string(), problem: problem.into() }
    }
}

impl fmt::Display for ArchiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let layer = |layer: &bool| if *layer { "layer " } else { "" };
        match self {
            ArchiveError::Open(error) => write!(f, "cannot read: {error}"),
            ArchiveError::NotZip(error) => write!(f, "not a readable zip: {error}"),
            ArchiveError::ZipEntry { index, error } => write!(f, "zip entry {index}: {error}"),
            ArchiveError::NotDeb(error) => write!(f, "not a readable .deb (ar archive): {error}"),
            ArchiveError::DebWithoutData => write!(f, "a .deb without data.tar"),
            ArchiveError::Decompress { layer: false, error } => write!(f, "cannot decompress: {error}"),
            ArchiveError::Decompress { layer: true, error } => write!(f, "cannot decompress a layer: {error}"),
            ArchiveError::NotTar { layer: is_layer, error } => write!(f, "not a readable {}tar: {error}", layer(is_layer)),
            ArchiveError::TarEntry { layer: is_layer, error } => write!(f, "{}tar: {error}", layer(is_layer)),
            ArchiveError::Layer(error) => write!(f, "layer: {error}"),
            ArchiveError::Member { path, error } => write!(f, "{path}: {error}"),
            ArchiveError::TooDeep { path, header, offset, limit } => {
                let header = match header {
                    EntryHeader::ZipLocal => "zip local header",
                    EntryHeader::Tar => "tar header",
                };
                write!(f, "{path}: an archive nested deeper than {limit} levels ({header} at offset {offset:#x}); not opened")
            }
            ArchiveError::Nested { path, error } => write!(f, "{path}: {error}"),
            ArchiveError::NotInImage { name } => write!(f, "{name}: not in the image"),
            ArchiveError::Json { name, error } => write!(f, "{name}: not valid JSON: {error}"),
            ArchiveError::Metadata { name, problem } => write!(f, "{name}: {problem}"),
            #[cfg(feature = "fat")]
            ArchiveError::Fat(error) => write!(f, "{error}"),
            ArchiveError::FatUnsupported => write!(f, "a FatELF file: this build of pagefit-archive reads none (its `fat` feature is off)"),
        }
    }
}

impl std::error::Error for ArchiveError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_the_ones_pagefit_printed_before_the_error_type() {
        let io = || io::Error::new(io::ErrorKind::UnexpectedEof, "eof");
        let cases: Vec<(ArchiveError, &str)> = vec![
            (ArchiveError::Open(io()), "cannot read: eof"),
            (ArchiveError::NotDeb(io()), "not a readable .deb (ar archive): eof"),
            (ArchiveError::DebWithoutData, "a .deb without data.tar"),
            (ArchiveError::Decompress { layer: false, error: io() }, "cannot decompress: eof"),
            (ArchiveError::Decompress { layer: true, error: io() }, "cannot decompress a layer: eof"),
            (ArchiveError::NotTar { layer: false, error: io() }, "not a readable tar: eof"),
            (ArchiveError::NotTar { layer: true, error: io() }, "not a readable layer tar: eof"),
            (ArchiveError::TarEntry { layer: false, error: io() }, "tar: eof"),
            (ArchiveError::TarEntry { layer: true, error: io() }, "layer tar: eof"),
            (ArchiveError::Layer(io()), "layer: eof"),
            (ArchiveError::member("a.zip!/lib/x.so", io()), "a.zip!/lib/x.so: eof"),
            (
                ArchiveError::TooDeep { path: "a.zip!/b.zip!/c.zip".into(), header: EntryHeader::ZipLocal, offset: 0x1e2, limit: 4 },
                "a.zip!/b.zip!/c.zip: an archive nested deeper than 4 levels (zip local header at offset 0x1e2); not opened",
            ),
            (
                ArchiveError::TooDeep { path: "a.tgz!/b.tar".into(), header: EntryHeader::Tar, offset: 0x400, limit: 4 },
                "a.tgz!/b.tar: an archive nested deeper than 4 levels (tar header at offset 0x400); not opened",
            ),
            (
                ArchiveError::NotZip(zip::result::ZipError::InvalidArchive("no end of central directory".into())).inside("a.tgz!/b.aar"),
                "a.tgz!/b.aar: not a readable zip: invalid Zip archive: no end of central directory",
            ),
            (ArchiveError::member("a.zip!/b.so", io()).inside("a.zip"), "a.zip!/b.so: eof"),
            (ArchiveError::NotInImage { name: "blobs/sha256/ab".into() }, "blobs/sha256/ab: not in the image"),
            (ArchiveError::metadata("manifest.json", "not a list of images"), "manifest.json: not a list of images"),
        ];
        for (error, message) in cases {
            assert_eq!(error.to_string(), message);
        }
    }
}
