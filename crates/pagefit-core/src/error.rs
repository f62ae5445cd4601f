//! Errors that name where in the input they happened.

use std::fmt;

/// An input that cannot be analysed, with the file offset where the problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// What is wrong, in words.
    pub kind: ParseErrorKind,
    /// File offset of the offending structure, when one applies.
    pub offset: Option<u64>,
    /// Extra detail (sizes, counts, indices).
    pub detail: String,
}

/// The kinds of unreadable input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseErrorKind {
    /// The file does not start with the ELF magic.
    NotElf,
    /// A header, table or string runs past the end of the file.
    Truncated,
    /// A header field holds a value no loader would accept.
    InvalidHeader,
    /// A count or size is larger than the file could hold.
    AbsurdCount,
    /// Two PT_LOAD segments claim the same bytes of memory.
    OverlappingSegments,
    /// Address arithmetic on header values overflows.
    AddressOverflow,
}

impl ParseError {
    pub(crate) fn new(kind: ParseErrorKind, offset: Option<u64>, detail: impl Into<String>) -> Self {
        ParseError { kind, offset, detail: detail.into() }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            ParseErrorKind::NotElf => "not an ELF file",
            ParseErrorKind::Truncated => "truncated",
            ParseErrorKind::InvalidHeader => "invalid header",
            ParseErrorKind::AbsurdCount => "absurd count",
            ParseErrorKind::OverlappingSegments => "overlapping PT_LOAD segments",
            ParseErrorKind::AddressOverflow => "address overflow",
        };
        match self.offset {
            Some(offset) => write!(f, "{what} at offset {offset:#x}: {}", self.detail),
            None => write!(f, "{what}: {}", self.detail),
        }
    }
}

impl std::error::Error for ParseError {}
