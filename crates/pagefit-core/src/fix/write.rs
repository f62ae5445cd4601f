//! Writing a [`RewritePlan`]'s output: [`write_plan`] walks the pieces once,
//! for any [`PieceSink`] (the CLI's file, which it streams, or memory through
//! [`render`]), so every output is written by the same code.

use std::io;

use super::plan::{PieceSource, RewritePlan};

/// Where a plan's output goes. It starts empty; bytes never written read as zeros.
pub trait PieceSink {
    /// Writes `bytes` at output offset `offset`.
    fn write_at(&mut self, bytes: &[u8], offset: u64) -> io::Result<()>;
    /// Copies `len` input bytes from input offset `from` to output offset
    /// `offset`, failing if the input ends first.
    fn copy_at(&mut self, from: u64, len: u64, offset: u64) -> io::Result<()>;
    /// Sets the output's length.
    fn set_len(&mut self, len: u64) -> io::Result<()>;
}

/// Writes the plan's pieces into `sink`: zero pieces and the bytes between
/// pieces are left unwritten (holes in a file), then the length is set.
pub fn write_plan<S: PieceSink + ?Sized>(plan: &RewritePlan, sink: &mut S) -> io::Result<()> {
    for piece in &plan.pieces {
        match &piece.source {
            PieceSource::Zeros => {}
            PieceSource::Bytes { bytes, .. } => sink.write_at(bytes, piece.offset)?,
            PieceSource::Copy { from } => sink.copy_at(*from, piece.len, piece.offset)?,
        }
    }
    sink.set_len(plan.output_len)
}

/// The plan's output in memory, from the input's bytes. Outputs longer than
/// `max_len` are refused with [`io::ErrorKind::FileTooLarge`] (a plan can
/// write gigabytes of bss as zeros); a copy past the input's end is
/// [`io::ErrorKind::UnexpectedEof`].
pub fn render(plan: &RewritePlan, input: &[u8], max_len: u64) -> io::Result<Vec<u8>> {
    let mut sink = Memory { input, out: Vec::new(), max_len };
    write_plan(plan, &mut sink)?;
    Ok(sink.out)
}

/// [`render`]'s sink.
struct Memory<'a> {
    input: &'a [u8],
    out: Vec<u8>,
    max_len: u64,
}

impl Memory<'_> {
    /// The output bytes `offset..offset + len`, grown with zeros to reach them.
    fn range(&mut self, offset: u64, len: u64) -> io::Result<&mut [u8]> {
        let end = offset.checked_add(len).filter(|&end| end <= self.max_len).ok_or_else(too_large)?;
        let (start, end) = (usize::try_from(offset).map_err(|_| too_large())?, usize::try_from(end).map_err(|_| too_large())?);
        if self.out.len() < end {
            self.out.resize(end, 0);
        }
        Ok(&mut self.out[start..end])
    }
}

fn too_large() -> io::Error {
    io::Error::new(io::ErrorKind::FileTooLarge, "the output is larger than the in-memory limit")
}

impl PieceSink for Memory<'_> {
    fn write_at(&mut self, bytes: &[u8], offset: u64) -> io::Result<()> {
        self.range(offset, bytes.len() as u64)?.copy_from_slice(bytes);
        Ok(())
    }

    fn copy_at(&mut self, from: u64, len: u64, offset: u64) -> io::Result<()> {
        let input = self.input;
        let source = usize::try_from(from)
            .ok()
            .zip(usize::try_from(len).ok())
            .and_then(|(from, len)| input.get(from..from.checked_add(len)?))
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::UnexpectedEof, format!("the input ends before {len} bytes at offset {from:#x}"))
            })?;
        self.range(offset, len)?.copy_from_slice(source);
        Ok(())
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        if len > self.max_len {
            return Err(too_large());
        }
        self.out.resize(usize::try_from(len).map_err(|_| too_large())?, 0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fix::plan::{OutputPiece, Strategy};
    use crate::page::PageSize;

    fn plan(pieces: Vec<OutputPiece>, output_len: u64) -> RewritePlan {
        RewritePlan {
            strategy: Strategy::Relayout,
            delta: 0,
            page_size: PageSize::K16,
            program_headers: Vec::new(),
            section_headers: Vec::new(),
            phoff: 0,
            shoff: 0,
            pieces,
            output_len,
            rewritten: Vec::new(),
            costs: Vec::new(),
            writable_executable: false,
            warnings: Vec::new(),
            refused: Vec::new(),
        }
    }

    #[test]
    fn pieces_land_at_their_offsets_and_gaps_read_as_zeros() {
        let pieces = vec![
            OutputPiece { offset: 0, len: 2, source: PieceSource::Bytes { what: "ELF header", bytes: vec![7, 8] } },
            OutputPiece { offset: 4, len: 2, source: PieceSource::Zeros },
            OutputPiece { offset: 8, len: 3, source: PieceSource::Copy { from: 1 } },
        ];
        assert_eq!(render(&plan(pieces, 12), b"abcd", 12).unwrap(), [7, 8, 0, 0, 0, 0, 0, 0, b'b', b'c', b'd', 0]);
    }

    #[test]
    fn a_copy_past_the_input_and_an_output_past_the_limit_are_errors() {
        let copy = vec![OutputPiece { offset: 0, len: 8, source: PieceSource::Copy { from: 2 } }];
        assert_eq!(render(&plan(copy, 8), b"abcd", 64).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        let zeros = vec![OutputPiece { offset: 0, len: 1 << 40, source: PieceSource::Zeros }];
        assert_eq!(render(&plan(zeros, 1 << 40), b"abcd", 64 << 20).unwrap_err().kind(), io::ErrorKind::FileTooLarge);
    }
}
