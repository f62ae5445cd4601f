//! Runtime page-size assumptions: code that was compiled for one page size
//! and aborts on a kernel with larger pages, whatever the program headers say.
//!
//! jemalloc fixes its page size (`LG_PAGE`) when it is built and, at its first
//! allocation, prints "<jemalloc>: Unsupported system page size" and aborts
//! when `sysconf(_SC_PAGESIZE)` is larger. [`detect`] works in two steps:
//!
//! 1. it searches the PT_LOADs that are not writable (`.rodata` shares the
//!    text segment in older layouts) for that message, a chunk at a time;
//! 2. only in a file that holds it, it decodes the executable PT_LOADs and
//!    reads the compiled page size from the guard that
//!    compares the kernel's page size with it ([`guard`], [`isa`]).

mod guard;
mod isa;
mod registers;

use std::ops::Range;

use object::ReadRef;
use serde::{Deserialize, Serialize};

use crate::page::PageSize;

/// What jemalloc prints before it aborts on a kernel with larger pages.
pub const JEMALLOC_MESSAGE: &str = "<jemalloc>: Unsupported system page size";

/// The message as jemalloc's code holds it, `malloc_write`'s C string with
/// its newline and NUL. Put together at run time, so that programs holding
/// the bare text (pagefit itself) are not taken for jemalloc.
fn marker() -> Vec<u8> {
    [JEMALLOC_MESSAGE.as_bytes(), b"\n", &[0]].concat()
}

/// The largest executable segment [`detect`] reads; a guard in a larger one
/// is reported as unknown rather than read into memory.
const MAX_CODE_BYTES: u64 = 512 << 20;

/// A runtime with a page size compiled in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    /// jemalloc (`LG_PAGE`, from `--with-lg-page` or `JEMALLOC_SYS_WITH_LG_PAGE`).
    Jemalloc,
}

impl Runtime {
    /// The name used in text and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Jemalloc => "jemalloc",
        }
    }
}

/// A runtime found in a file, with the page size it was compiled for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimePageSize {
    /// Which runtime.
    pub runtime: Runtime,
    /// The compiled page size; `None` when the guard could not be read.
    pub page_size: Option<PageSize>,
    /// File offset of the runtime's page-size message.
    pub message_offset: u64,
    /// Address of the branch that compares the kernel's page size with the
    /// compiled one, when it was found.
    pub guard_address: Option<u64>,
}

impl RuntimePageSize {
    /// Whether the runtime aborts at `page`: `Some(true)` above the compiled
    /// page size, `None` when that is unknown.
    pub fn aborts_at(&self, page: PageSize) -> Option<bool> {
        self.page_size.map(|compiled| page > compiled)
    }

    /// Where it was found, readelf-style.
    pub fn location(&self) -> String {
        match self.guard_address {
            Some(address) => format!("guard at {address:#x}, message at offset {:#x}", self.message_offset),
            None => format!("message at offset {:#x}", self.message_offset),
        }
    }

    /// The consequence at `page`, in words.
    pub fn consequence(&self, page: PageSize) -> String {
        let name = self.runtime.name();
        match self.page_size {
            Some(compiled) if page > compiled => {
                format!(
                    "{name} was built for {compiled} pages; at {page} every allocation fails with `{JEMALLOC_MESSAGE}` \
                     (Rust programs abort, C programs get NULL from malloc)"
                )
            }
            Some(compiled) => format!("{name} was built for {compiled} pages, which covers {page}"),
            None => format!(
                "{name} is linked in, but the page size it was built for could not be read; \
                 built for pages smaller than {page}, every allocation fails with `{JEMALLOC_MESSAGE}`"
            ),
        }
    }

    /// What to do about it.
    pub fn remedy(&self) -> String {
        format!(
            "rebuild {} for the largest page size it must run on: JEMALLOC_SYS_WITH_LG_PAGE=16 (tikv-jemalloc-sys) \
             or ./configure --with-lg-page=16; a 64K build also runs on 4K and 16K kernels",
            self.runtime.name()
        )
    }
}

/// A PT_LOAD's file-backed bytes, as [`detect`] needs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// `p_offset`.
    pub offset: u64,
    /// `p_filesz`, clamped to the end of the file.
    pub len: u64,
    /// `p_vaddr`.
    pub vaddr: u64,
    /// PF_W.
    pub writable: bool,
    /// PF_X.
    pub executable: bool,
}

impl Segment {
    fn contains_offset(&self, offset: u64) -> bool {
        (self.offset..self.offset + self.len).contains(&offset)
    }
}

/// Finds [`JEMALLOC_MESSAGE`] in a stream of chunks, each given with its
/// file offset. Chunks of one range come in order; a chunk that does not
/// continue the previous one starts afresh.
#[derive(Debug)]
pub(crate) struct MessageSearch {
    needle: Vec<u8>,
    /// The last bytes fed (fewer than the needle), ending at `carry_end`.
    carry: Vec<u8>,
    carry_end: u64,
    found: Vec<u64>,
}

impl MessageSearch {
    pub(crate) fn new() -> MessageSearch {
        MessageSearch { needle: marker(), carry: Vec::new(), carry_end: 0, found: Vec::new() }
    }

    /// Searches `chunk`, which starts at file offset `offset`.
    pub(crate) fn feed(&mut self, offset: u64, chunk: &[u8]) {
        let needle = &self.needle;
        if self.carry_end != offset {
            self.carry.clear();
        }
        let mut window = std::mem::take(&mut self.carry);
        let start = offset - window.len() as u64;
        window.extend_from_slice(chunk);
        self.found.extend(memchr::memmem::find_iter(&window, needle).map(|at| start + at as u64));
        let keep = window.len().min(needle.len() - 1);
        window.drain(..window.len() - keep);
        self.carry = window;
        self.carry_end = offset + chunk.len() as u64;
    }

    /// File offsets of every occurrence, each once, in order.
    pub(crate) fn finish(mut self) -> Vec<u64> {
        self.found.sort_unstable();
        self.found.dedup();
        self.found
    }
}

/// The compiled page size for each message found at `message_offsets`,
/// given the bytes of every executable segment (as `(vaddr, bytes)`).
fn analyze(machine: u16, segments: &[Segment], message_offsets: &[u64], code: &[(u64, &[u8])]) -> Vec<RuntimePageSize> {
    let decoder = isa::decoder(machine, code);
    message_offsets
        .iter()
        .map(|&message_offset| {
            let message_vaddr = segments.iter().find(|s| s.contains_offset(message_offset)).map(|s| s.vaddr + (message_offset - s.offset));
            let guard =
                decoder.as_ref().zip(message_vaddr).and_then(|(decode, vaddr)| guard::guard_page_size(decode.as_ref(), code, vaddr));
            RuntimePageSize {
                runtime: Runtime::Jemalloc,
                page_size: guard.and_then(|(_, page)| PageSize::new(page)),
                message_offset,
                guard_address: guard.map(|(address, _)| address),
            }
        })
        .collect()
}

/// How much of a read-only segment [`detect`] reads at once.
const CHUNK: u64 = 1 << 20;

/// Both steps over the PT_LOADs `segments` of an `e_machine` file, reading
/// `data` in chunks; a range that cannot be read is skipped. The message is
/// searched for in the file ranges `read_only` (`.rodata`, when the section
/// headers say where it is), or else in every PT_LOAD that is not writable.
pub fn detect<'data, R: ReadRef<'data>>(data: R, machine: u16, read_only: &[Range<u64>], segments: &[Segment]) -> Vec<RuntimePageSize> {
    let mut search = MessageSearch::new();
    let whole_segments: Vec<Range<u64>>;
    let read_only = if read_only.is_empty() {
        whole_segments = segments.iter().filter(|s| !s.writable).map(|s| s.offset..s.offset + s.len).collect();
        &whole_segments
    } else {
        read_only
    };
    for range in read_only.iter().map(|r| Segment { offset: r.start, len: r.end - r.start, vaddr: 0, writable: false, executable: false }) {
        for start in (0..range.len).step_by(CHUNK as usize) {
            if let Ok(bytes) = data.read_bytes_at(range.offset + start, CHUNK.min(range.len - start)) {
                search.feed(range.offset + start, bytes);
            }
        }
    }
    let found = search.finish();
    if found.is_empty() {
        return Vec::new();
    }
    let code: Vec<(u64, &[u8])> = segments
        .iter()
        .filter(|r| r.executable && r.len <= MAX_CODE_BYTES)
        .filter_map(|r| Some((r.vaddr, data.read_bytes_at(r.offset, r.len).ok()?)))
        .collect();
    analyze(machine, segments, &found, &code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_is_found_across_chunk_boundaries_and_only_in_contiguous_ones() {
        let mut data = vec![b'x'; 100];
        data.extend(marker());
        data.extend([b'y'; 50]);
        for chunk in [1, 7, 40, 41, 42, 200] {
            let mut search = MessageSearch::new();
            for (i, piece) in data.chunks(chunk).enumerate() {
                search.feed(1000 + (i * chunk) as u64, piece);
            }
            assert_eq!(search.finish(), vec![1100], "chunks of {chunk}");
        }
        // Two ranges that do not touch: the halves do not join.
        let mut search = MessageSearch::new();
        search.feed(0, &data[..120]);
        search.feed(5000, &data[120..]);
        assert!(search.finish().is_empty());
        // The bare text, without jemalloc's newline and NUL, is not jemalloc.
        let mut search = MessageSearch::new();
        search.feed(0, JEMALLOC_MESSAGE.as_bytes());
        assert!(search.finish().is_empty());
    }
}
