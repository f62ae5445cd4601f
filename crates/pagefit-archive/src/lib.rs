//! Reading ELF files out of archives without extracting anything to disk:
//! the zip family (APK, AAB, AAR, APEX, JAR, .apks), Debian packages (ar,
//! then data.tar.*), tar archives, plain or compressed, container images
//! (`docker save` tarballs and OCI layouts) and, with the `fat` feature,
//! FatELF files (`app.fat!record0 (x86_64)`). One member is in memory at a
//! time, and of a large one only the ranges a verdict reads
//! ([`SparseFile`]); compressed streams are decoded as they are read.
//!
//! Archives inside archives are followed in any order (an AAR in an npm
//! tarball: `pkg.tgz!/package/android/x.aar!/jni/arm64-v8a/libx.so`), up
//! to four levels of nesting; a member of an Android package, at any depth,
//! is Android's. A nested zip needs to seek, so it is copied into memory
//! (at most 64 MiB for a chain of nested zips) or an anonymous temporary
//! file (at most 2 GiB); nested tars and .debs are streams.
//!
//! The modules import one another in one direction only, so there is no
//! import cycle (`lib.rs` only declares them and re-exports):
//!
//! ```text
//! scan        ─► walk, image, fat_reader, tar_reader, detect, member, sparse, compression, error
//! image       ─► walk, tar_reader, member, sparse, compression, error
//! walk        ─► zip_reader, deb_reader, tar_reader, detect, member, sparse, compression, error
//! deb_reader  ─► tar_reader, member, compression, error
//! zip_reader  ─► member, error
//! fat_reader  ─► member, sparse, error
//! tar_reader  ─► member, compression, error
//! detect      ─► compression
//! member      ─► sparse, error
//! error, sparse, compression: import no module of the crate
//! ```

mod compression;
mod deb_reader;
mod detect;
mod error;
mod fat_reader;
pub mod image;
mod member;
mod scan;
mod sparse;
mod tar_reader;
mod walk;
mod zip_reader;

pub use compression::Compression;
pub use detect::{detect, has_archive_name, ArchiveKind};
pub use error::{ArchiveError, EntryHeader};
pub use member::{Member, Visitor};
pub use scan::scan;
pub use sparse::{Hashing, SparseFile};
