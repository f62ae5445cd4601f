//! What a load does to the bytes the program headers ask for: each
//! affected range's [`Effect`], its [`Severity`], and the [`Outcome`] of a
//! whole load.

use serde::Serialize;

use crate::elf::Prot;
use crate::predict::memory::AddrRange;

/// How bad a finding or effect is, in increasing order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; changes nothing at run time.
    Info,
    /// Bytes get weaker or different protections.
    Degraded,
    /// Code loses execute, bytes are clobbered, or a write will fault.
    Broken,
    /// The loader refuses the object.
    Rejected,
}

/// The verdict for one (file, page size, loader).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Mapped exactly as at 4K.
    Ok,
    /// Runs, but some bytes get weaker or different protections.
    Degraded,
    /// Code loses execute, bytes are clobbered, or a write will fault.
    Broken,
    /// The loader refuses the object.
    Rejected,
}

impl Outcome {
    /// The lowercase name used in text and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Degraded => "degraded",
            Outcome::Broken => "broken",
            Outcome::Rejected => "rejected",
        }
    }
    pub(crate) fn from_severity(severity: Option<Severity>) -> Outcome {
        match severity {
            None | Some(Severity::Info) => Outcome::Ok,
            Some(Severity::Degraded) => Outcome::Degraded,
            Some(Severity::Broken) => Outcome::Broken,
            Some(Severity::Rejected) => Outcome::Rejected,
        }
    }
}

/// How the bytes of an affected range were damaged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "with")]
pub enum Clobber {
    /// The bytes read as zeros.
    Zeros,
    /// The bytes come from another place in the file.
    FileBytes {
        /// File offset that now supplies the first byte of the range.
        offset: i128,
    },
}

/// A byte range whose protection or content differs from the 4K load.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Effect {
    /// The affected addresses.
    pub range: AddrRange,
    /// Degraded or broken.
    pub severity: Severity,
    /// Protection at 4K (`None`: unmapped).
    pub before: Option<Prot>,
    /// Protection at P (`None`: unmapped).
    pub after: Option<Prot>,
    /// Set when the bytes are no longer the file's.
    pub clobbered: Option<Clobber>,
    /// Whether the range holds instructions.
    pub code: bool,
    /// Sections touched.
    pub sections: Vec<String>,
    /// Symbols touched (at most a few).
    pub symbols: Vec<String>,
}
