//! The compressions of tar streams (a tarball, a .deb's data.tar.*, an image
//! layer), recognised by their magic and decoded as they are read.

use std::io::{self, Read};

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
    /// The compression whose magic `prefix` starts with (`None` for none known).
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

    /// A stream of `reader`'s bytes, decompressed.
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
