//! The rewrite plan: what `pagefit fix` writes and what it costs, as data.

use crate::elf::Prot;
use crate::page::PageSize;
use crate::predict::memory::AddrRange;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

use super::headers::{RawProgramHeader, RawSectionHeader};

/// How `pagefit fix` rewrites a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// The first of relayout, rebase and merge that works.
    Auto,
    /// Move file contents only; no permission changes.
    Relayout,
    /// Shift an ET_DYN image by a constant Δ, moving every address it holds.
    Rebase,
    /// Merge PT_LOADs that share a P-page into one with the union of their flags.
    Merge,
}

impl Strategy {
    /// The name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Auto => "auto",
            Strategy::Relayout => "relayout",
            Strategy::Rebase => "rebase",
            Strategy::Merge => "merge",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Strategy {
    type Err = String;
    fn from_str(text: &str) -> Result<Strategy, String> {
        [Strategy::Auto, Strategy::Relayout, Strategy::Rebase, Strategy::Merge]
            .into_iter()
            .find(|s| s.name() == text)
            .ok_or_else(|| format!("unknown strategy {text:?}; known strategies: auto, relayout, rebase, merge"))
    }
}

/// Where the bytes of one output piece come from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum PieceSource {
    /// The input's bytes from this offset on.
    Copy {
        /// Input file offset of the piece's first byte.
        from: u64,
    },
    /// Zeros (bss written into the file, padding).
    Zeros,
    /// New bytes: a rewritten header table.
    Bytes {
        /// What they are ("ELF header", "program headers", "section headers").
        what: &'static str,
        /// The bytes.
        #[serde(skip)]
        bytes: Vec<u8>,
    },
}

/// One contiguous run of the output file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OutputPiece {
    /// Output file offset.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
    /// What fills it.
    pub source: PieceSource,
}

impl OutputPiece {
    pub(crate) fn end(&self) -> u64 {
        self.offset + self.len
    }
}

/// A protection the rewritten file grants or keeps from bytes that had
/// another one: the price of the fix, in words and numbers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PermissionCost {
    /// The addresses affected.
    pub range: AddrRange,
    /// Bytes affected.
    pub bytes: u64,
    /// Protection in the input.
    pub before: Prot,
    /// Protection in the output.
    pub after: Prot,
    /// Sections in the range.
    pub sections: Vec<String>,
    /// The cost in words.
    pub message: String,
}

/// A strategy that does not apply, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// The strategy.
    pub strategy: Strategy,
    /// Why, in words.
    pub reason: String,
}

/// The complete rewrite: headers, pieces and what it costs.
#[derive(Clone, Debug, Serialize)]
pub struct RewritePlan {
    /// The strategy that produced it (never `auto`).
    pub strategy: Strategy,
    /// How far rebase moved every address (0 for relayout and merge).
    pub delta: u64,
    /// Target page size.
    pub page_size: PageSize,
    /// The new program header table, in table order.
    pub program_headers: Vec<RawProgramHeader>,
    /// The new section header table (empty for a file without one).
    pub section_headers: Vec<RawSectionHeader>,
    /// New `e_phoff`.
    pub phoff: u64,
    /// New `e_shoff` (0 without section headers).
    pub shoff: u64,
    /// The output file, piece by piece, sorted by offset; bytes between pieces are zeros.
    pub pieces: Vec<OutputPiece>,
    /// Length of the output file.
    pub output_len: u64,
    /// Loaded addresses whose bytes are rewritten on purpose (the ELF header
    /// and program header table when a segment maps them).
    pub rewritten: Vec<AddrRange>,
    /// Permissions gained or RELRO protection given up.
    pub costs: Vec<PermissionCost>,
    /// Some output PT_LOAD is both writable and executable.
    pub writable_executable: bool,
    /// Things the user should know that are not permission costs.
    pub warnings: Vec<String>,
    /// Strategies tried before this one, and why they did not apply.
    pub refused: Vec<Refusal>,
}
