//! The proof `pagefit fix` runs on what it wrote: the output's memory image
//! at P, under each target loader, holds the same bytes as the input's image
//! at 4K, and no byte loses a protection it needs.
//!
//! [`image_checks`] is pure: it replays the loaders on both files' headers and
//! returns, for every byte range of every input segment, where the expected
//! and the actual bytes come from. [`compare_contents`] then reads both files
//! through a [`ReadAt`] the caller provides, so the syscalls stay outside.

use serde::Serialize;

use crate::elf::{ElfFile, Prot};
use crate::memory::{AddrRange, Content};
use crate::model::{simulate, LoaderModel, SegmentLayout};
use crate::page::PageSize;
use crate::plan::{baseline, LoadInput, BASELINE_PAGE};

/// Where the bytes of a range come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum ByteSource {
    /// The file's bytes from this offset on.
    File {
        /// File offset of the range's first byte.
        offset: u64,
    },
    /// Zeros.
    Zero,
}

impl ByteSource {
    fn advanced(self, by: u64) -> ByteSource {
        match self {
            ByteSource::File { offset } => ByteSource::File { offset: offset + by },
            ByteSource::Zero => ByteSource::Zero,
        }
    }
}

/// One range whose bytes must be equal in the input's 4K image (`expected`,
/// read from the input) and the output's image at P (`actual`, read from the output).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ContentCheck {
    /// The addresses.
    pub range: AddrRange,
    /// The input's bytes there.
    pub expected: ByteSource,
    /// The output's bytes there.
    pub actual: ByteSource,
}

/// Lists, for every byte of every input PT_LOAD, where its bytes come from in
/// both images, and fails when the output at `page` leaves a byte unmapped or
/// takes away a protection it needs: read from anything, execute from code,
/// write from data that is written after relocation (RELRO is not).
/// `rewritten` holds addresses whose bytes change on purpose (header tables).
pub fn image_checks(
    input: &ElfFile,
    output: &ElfFile,
    page: PageSize,
    loaders: &[LoaderModel],
    rewritten: &[AddrRange],
) -> Result<Vec<ContentCheck>, String> {
    let before_input = LoadInput::from_elf(input, "input");
    let after_input = LoadInput::from_elf(output, "output");
    let relro = before_input.relro;
    let mut checks: Vec<ContentCheck> = Vec::new();
    for &loader in loaders {
        let before = baseline(&before_input, BASELINE_PAGE, loader);
        let after = simulate(SegmentLayout { loads: &after_input.loads, relro: after_input.relro }, page, loader)
            .map_err(|r| format!("{loader} refuses the output at {page}: {}", r.loader_message))?;
        for segment in &before_input.loads {
            let mut cuts = vec![segment.vaddr, segment.file_end(), segment.mem_end()];
            let within = |a: u64| segment.vaddr < a && a < segment.mem_end();
            for region in before.regions().iter().chain(after.regions()) {
                cuts.extend([region.range.start, region.range.end].into_iter().filter(|&a| within(a)));
            }
            for range in rewritten.iter().chain(relro.iter()) {
                cuts.extend([range.start, range.end].into_iter().filter(|&a| within(a)));
            }
            for section in &input.sections {
                cuts.extend([section.addr, section.end()].into_iter().filter(|&a| within(a)));
            }
            cuts.sort_unstable();
            cuts.dedup();
            for pair in cuts.windows(2) {
                let piece = AddrRange::new(pair[0], pair[1]);
                if piece.is_empty() || rewritten.iter().any(|r| r.start <= piece.start && piece.start < r.end) {
                    continue;
                }
                let at = piece.start;
                let what = || {
                    let names: Vec<&str> =
                        input.sections.iter().filter(|s| s.addr <= at && at < s.end()).map(|s| s.name.as_str()).collect();
                    if names.is_empty() {
                        format!("{at:#x}")
                    } else {
                        format!("{at:#x} ({})", names.join(", "))
                    }
                };
                let Some(region) = after.region_at(at) else {
                    return Err(format!("{} is not mapped by {loader} at {page}", what()));
                };
                let covering: Vec<_> = input.sections.iter().filter(|s| s.addr <= at && at < s.end()).collect();
                let (code, written) = if input.sections.is_empty() {
                    (segment.prot.is_executable(), segment.prot.is_writable())
                } else {
                    (covering.iter().any(|s| s.is_code()), covering.iter().any(|s| s.is_writable()))
                };
                let was = before.region_at(at).map_or(Prot::NONE, |r| r.prot);
                let now = region.prot;
                let in_relro = relro.is_some_and(|r| r.start <= at && at < r.end);
                let lost = |bit: Prot| was.contains(bit) && !now.contains(bit);
                if lost(Prot::R) || code && lost(Prot::X) || written && !in_relro && lost(Prot::W) {
                    return Err(format!("{} is {} at 4K but {} under {loader} at {page}", what(), was.maps_string(), now.maps_string()));
                }
                let expected = if at < segment.file_end() {
                    ByteSource::File { offset: segment.offset + (at - segment.vaddr) }
                } else {
                    ByteSource::Zero
                };
                let actual = match region.content {
                    Content::Zero => ByteSource::Zero,
                    Content::File { shift } => ByteSource::File {
                        offset: u64::try_from(i128::from(at) + shift).map_err(|_| format!("{} maps before the output's start", what()))?,
                    },
                };
                checks.push(ContentCheck { range: piece, expected, actual });
            }
        }
    }
    checks.sort_unstable();
    checks.dedup();
    Ok(coalesce(checks))
}

/// Joins ranges that continue each other on both sides.
fn coalesce(checks: Vec<ContentCheck>) -> Vec<ContentCheck> {
    let mut out: Vec<ContentCheck> = Vec::with_capacity(checks.len());
    for check in checks {
        if let Some(last) = out.last_mut() {
            let len = last.range.len();
            if last.range.end == check.range.start
                && last.expected.advanced(len) == check.expected
                && last.actual.advanced(len) == check.actual
            {
                last.range.end = check.range.end;
                continue;
            }
        }
        out.push(check);
    }
    out
}

/// Positioned reads, implemented by the caller (`pread` on a file, or a slice in tests).
pub trait ReadAt {
    /// Fills `buf` with the bytes at `offset`, failing at the end of the data.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()>;
}

impl ReadAt for [u8] {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let start = usize::try_from(offset).ok().filter(|&s| s.checked_add(buf.len()).is_some_and(|end| end <= self.len()));
        let start = start.ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(&self[start..start + buf.len()]);
        Ok(())
    }
}

/// How much of the two files [`compare_contents`] reads at a time.
const COMPARE_CHUNK: usize = 256 * 1024;

/// What [`compare_contents`] compared.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ComparedBytes {
    /// Ranges compared.
    pub ranges: usize,
    /// Bytes compared.
    pub bytes: u64,
}

/// Compares the bytes of every check. `Ok(Err(message))` names the first
/// address where the images differ; `Err` is a read error.
pub fn compare_contents<I: ReadAt + ?Sized, O: ReadAt + ?Sized>(
    checks: &[ContentCheck],
    input: &I,
    output: &O,
) -> std::io::Result<Result<ComparedBytes, String>> {
    let mut expected = vec![0u8; COMPARE_CHUNK];
    let mut actual = vec![0u8; COMPARE_CHUNK];
    let mut compared = ComparedBytes::default();
    for check in checks {
        compared.ranges += 1;
        compared.bytes += check.range.len();
        // Zeros against zeros need no reading (a bss can be gigabytes).
        if check.expected == ByteSource::Zero && check.actual == ByteSource::Zero {
            continue;
        }
        let mut at = check.range.start;
        while at < check.range.end {
            let len = usize::try_from(check.range.end - at).unwrap_or(COMPARE_CHUNK).min(COMPARE_CHUNK);
            let done = at - check.range.start;
            fill(&mut expected[..len], check.expected.advanced(done), input)?;
            fill(&mut actual[..len], check.actual.advanced(done), output)?;
            // Slice equality is a memcmp; the byte loop runs only to name a difference.
            if expected[..len] != actual[..len] {
                let i = expected[..len].iter().zip(&actual[..len]).position(|(a, b)| a != b).unwrap_or(0);
                return Ok(Err(format!(
                    "the byte at {:#x} is {:#04x} in the input's 4K image but {:#04x} in the output's",
                    at + i as u64,
                    expected[i],
                    actual[i]
                )));
            }
            at += len as u64;
        }
    }
    Ok(Ok(compared))
}

fn fill<F: ReadAt + ?Sized>(buf: &mut [u8], source: ByteSource, file: &F) -> std::io::Result<()> {
    match source {
        ByteSource::Zero => {
            buf.fill(0);
            Ok(())
        }
        ByteSource::File { offset } => file.read_exact_at(buf, offset),
    }
}
