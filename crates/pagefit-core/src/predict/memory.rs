//! A simulated address space: what a loader leaves in memory, at byte precision.
//!
//! Loader models replay their `mmap`/`mprotect`/`memset` calls on a
//! [`MemoryImage`]; the planner then compares the result with the image the
//! ELF file asks for. Addresses are link-time virtual addresses (load bias 0):
//! every loader keeps the bias a multiple of the page size, so page structure
//! is the same.

use serde::{Deserialize, Serialize};

use crate::elf::Prot;

/// A half-open address range `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AddrRange {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
}

impl AddrRange {
    /// `[start, end)`.
    pub fn new(start: u64, end: u64) -> AddrRange {
        AddrRange { start, end }
    }
    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }
    /// True when the range holds no byte.
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
    /// The common part of two ranges, if any.
    pub fn intersect(&self, other: &AddrRange) -> Option<AddrRange> {
        let r = AddrRange::new(self.start.max(other.start), self.end.min(other.end));
        (!r.is_empty()).then_some(r)
    }
}

/// Where the bytes of a region come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Content {
    /// File bytes: the byte at address `a` is the file byte at `a + shift`.
    File {
        /// File offset minus address.
        shift: i128,
    },
    /// Zeros (anonymous memory, or cleared by the loader).
    Zero,
}

impl Content {
    /// The file offset that supplies `address`, for file content.
    pub fn file_offset_at(&self, address: u64) -> Option<i128> {
        match self {
            Content::File { shift } => Some(i128::from(address) + shift),
            Content::Zero => None,
        }
    }
}

/// What backs a mapping, as `/proc/pid/maps` would show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backing {
    /// A private file mapping.
    File {
        /// File offset minus address.
        shift: i128,
    },
    /// Anonymous memory.
    Anonymous,
}

/// A run of bytes with one protection, one backing and one content source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// Addresses covered.
    pub range: AddrRange,
    /// Current protection.
    pub prot: Prot,
    /// The mapping behind it.
    pub backing: Backing,
    /// The bytes in it now.
    pub content: Content,
    /// The PT_LOAD (program header index) whose mapping call created it.
    pub segment: Option<usize>,
}

/// A simulated address space: sorted, non-overlapping regions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryImage {
    regions: Vec<Region>,
}

impl MemoryImage {
    /// An empty address space.
    pub fn new() -> MemoryImage {
        MemoryImage::default()
    }

    /// The regions, sorted by address.
    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    /// Splits regions at `range`'s bounds and returns the index span inside it.
    fn carve(&mut self, range: AddrRange) -> std::ops::Range<usize> {
        for cut in [range.start, range.end] {
            if let Some(i) = self.regions.iter().position(|r| r.range.start < cut && cut < r.range.end) {
                let mut tail = self.regions[i];
                tail.range.start = cut;
                self.regions[i].range.end = cut;
                self.regions.insert(i + 1, tail);
            }
        }
        let first = self.regions.iter().position(|r| r.range.start >= range.start).unwrap_or(self.regions.len());
        let last = self.regions[first..].iter().position(|r| r.range.start >= range.end).map_or(self.regions.len(), |n| first + n);
        first..last
    }

    /// `mmap(MAP_FIXED)`: replaces whatever was in `range`.
    pub fn map(&mut self, range: AddrRange, prot: Prot, backing: Backing, segment: Option<usize>) {
        if range.is_empty() {
            return;
        }
        let span = self.carve(range);
        let content = match backing {
            Backing::File { shift } => Content::File { shift },
            Backing::Anonymous => Content::Zero,
        };
        self.regions.splice(span, [Region { range, prot, backing, content, segment }]);
    }

    /// `munmap`.
    pub fn unmap(&mut self, range: AddrRange) {
        if range.is_empty() {
            return;
        }
        let span = self.carve(range);
        self.regions.drain(span);
    }

    /// `mprotect`: changes the protection of whatever is mapped in `range`.
    pub fn protect(&mut self, range: AddrRange, prot: Prot) {
        if range.is_empty() {
            return;
        }
        let span = self.carve(range);
        for region in &mut self.regions[span] {
            region.prot = prot;
        }
    }

    /// `memset(0)` on mapped bytes in `range`; the mapping stays as it was.
    pub fn zero(&mut self, range: AddrRange) {
        self.set_content(range, Content::Zero);
    }

    /// Writes `content` over the mapped bytes in `range` (a `memset` or `pread`).
    pub fn set_content(&mut self, range: AddrRange, content: Content) {
        if range.is_empty() {
            return;
        }
        let span = self.carve(range);
        for region in &mut self.regions[span] {
            region.content = content;
        }
    }

    /// Whether every byte of `range` is mapped (`mprotect` fails with ENOMEM otherwise).
    pub fn is_fully_mapped(&self, range: AddrRange) -> bool {
        let mut next = range.start;
        for region in self.regions.iter().filter(|r| r.range.end > range.start && r.range.start < range.end) {
            if region.range.start > next {
                return false;
            }
            next = region.range.end;
        }
        next >= range.end
    }

    /// The region holding `address`.
    pub fn region_at(&self, address: u64) -> Option<&Region> {
        let i = self.regions.partition_point(|r| r.range.end <= address);
        self.regions.get(i).filter(|r| r.range.start <= address)
    }

    /// Merges neighbours that `/proc/pid/maps` would show as one line.
    pub fn vmas(&self) -> Vec<Region> {
        let mut out: Vec<Region> = Vec::new();
        for region in &self.regions {
            if let Some(last) = out.last_mut() {
                let same = last.range.end == region.range.start
                    && last.prot == region.prot
                    && last.backing == region.backing
                    && last.segment == region.segment;
                if same {
                    last.range.end = region.range.end;
                    if last.content != region.content {
                        last.content = Content::Zero;
                    }
                    continue;
                }
            }
            out.push(*region);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_mappings_replace_earlier_ones() {
        let mut image = MemoryImage::new();
        image.map(AddrRange::new(0, 0x4000), Prot::RX, Backing::File { shift: 0 }, Some(1));
        image.map(AddrRange::new(0x3000, 0x8000), Prot::RW, Backing::File { shift: 0x1000 }, Some(2));
        assert_eq!(image.region_at(0x2fff).unwrap().prot, Prot::RX);
        assert_eq!(image.region_at(0x3000).unwrap().prot, Prot::RW);
        assert_eq!(image.region_at(0x3000).unwrap().content, Content::File { shift: 0x1000 });
        image.zero(AddrRange::new(0x3800, 0x4000));
        assert_eq!(image.region_at(0x3900).unwrap().content, Content::Zero);
        image.protect(AddrRange::new(0, 0x1000), Prot::R);
        assert_eq!(image.region_at(0).unwrap().prot, Prot::R);
        image.unmap(AddrRange::new(0x5000, 0x6000));
        assert!(image.region_at(0x5800).is_none());
        assert_eq!(image.regions().len(), 6);
        assert_eq!(image.vmas().len(), 4);
    }
}
