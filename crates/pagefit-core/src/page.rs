//! Page sizes: parsing (`16k`, `64K`, `2m`, `0x4000`, `16384`), display and rounding.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A memory page size in bytes: a power of two of at least 1 KiB.
///
/// The page size is always a parameter of the core; nothing here asks the
/// running system for its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct PageSize(u64);

impl<'de> Deserialize<'de> for PageSize {
    /// From the number of bytes [`Serialize`] writes.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<PageSize, D::Error> {
        let bytes = u64::deserialize(d)?;
        PageSize::new(bytes)
            .ok_or_else(|| serde::de::Error::custom(format!("{bytes} is not a page size (a power of two of at least 1 KiB)")))
    }
}

impl PageSize {
    /// 4 KiB, the page size most ELF files are linked for.
    pub const K4: PageSize = PageSize(4096);
    /// 16 KiB (Apple silicon, Android 15+ devices, some aarch64 kernels).
    pub const K16: PageSize = PageSize(16 << 10);
    /// 64 KiB (ppc64le and many aarch64 server kernels).
    pub const K64: PageSize = PageSize(64 << 10);
    /// 2 MiB (huge pages; also the largest page size `max_ok_page_size` tries).
    pub const M2: PageSize = PageSize(2 << 20);

    /// Returns the page size if `bytes` is a power of two of at least 1 KiB.
    pub fn new(bytes: u64) -> Option<PageSize> {
        (bytes.is_power_of_two() && bytes >= 1024).then_some(PageSize(bytes))
    }

    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }

    fn mask(self) -> u64 {
        self.0 - 1
    }

    /// Rounds `address` down to the start of its page.
    pub fn align_down(self, address: u64) -> u64 {
        address & !self.mask()
    }

    /// Rounds `address` up to a page boundary; `None` on overflow.
    pub fn align_up(self, address: u64) -> Option<u64> {
        address.checked_add(self.mask()).map(|a| a & !self.mask())
    }

    /// The offset of `address` within its page.
    pub fn offset_in_page(self, address: u64) -> u64 {
        address & self.mask()
    }

    /// True when `value` is a multiple of the page size.
    pub fn divides(self, value: u64) -> bool {
        self.offset_in_page(value) == 0
    }

    /// The next larger page size, if it fits in a `u64`.
    pub fn doubled(self) -> Option<PageSize> {
        self.0.checked_mul(2).map(PageSize)
    }

    /// Every page size from `self` up to and including `last`, doubling.
    pub fn up_to(self, last: PageSize) -> impl Iterator<Item = PageSize> {
        std::iter::successors(Some(self), move |p| p.doubled().filter(|n| *n <= last))
    }
}

impl fmt::Display for PageSize {
    /// Prints `4K`, `16K`, `64K`, `2M`; other sizes in bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        if b >= 1 << 20 && b % (1 << 20) == 0 {
            write!(f, "{}M", b >> 20)
        } else if b % 1024 == 0 {
            write!(f, "{}K", b >> 10)
        } else {
            write!(f, "{b}")
        }
    }
}

/// Why a page size string did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageSizeParseError(String);

impl fmt::Display for PageSizeParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid page size {:?}: expected a power of two of at least 1K such as 4k, 16k, 64k, 2m, 16384 or 0x4000", self.0)
    }
}

impl std::error::Error for PageSizeParseError {}

impl FromStr for PageSize {
    type Err = PageSizeParseError;

    fn from_str(text: &str) -> Result<PageSize, PageSizeParseError> {
        let error = || PageSizeParseError(text.to_string());
        let lower = text.trim().to_ascii_lowercase();
        let (digits, shift) = match lower.trim_end_matches("ib").trim_end_matches('b') {
            s if s.ends_with('k') => (&s[..s.len() - 1], 10),
            s if s.ends_with('m') => (&s[..s.len() - 1], 20),
            s if s.ends_with('g') => (&s[..s.len() - 1], 30),
            s => (s, 0),
        };
        let number = match digits.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => digits.parse::<u64>(),
        }
        .map_err(|_| error())?;
        let bytes = number.checked_mul(1u64 << shift).ok_or_else(error)?;
        PageSize::new(bytes).ok_or_else(error)
    }
}

/// Parses a comma-separated list such as `16k,64k`, keeping the order and dropping repeats.
pub fn parse_page_size_list(text: &str) -> Result<Vec<PageSize>, PageSizeParseError> {
    let mut sizes = Vec::new();
    for part in text.split(',').filter(|p| !p.trim().is_empty()) {
        let size: PageSize = part.parse()?;
        if !sizes.contains(&size) {
            sizes.push(size);
        }
    }
    if sizes.is_empty() {
        return Err(PageSizeParseError(text.to_string()));
    }
    Ok(sizes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_usual_spellings() {
        for (text, bytes) in [("4k", 4096), ("16K", 16384), ("64KiB", 65536), ("2m", 2 << 20), ("16384", 16384), ("0x10000", 65536)] {
            assert_eq!(text.parse::<PageSize>().unwrap().bytes(), bytes, "{text}");
        }
        for bad in ["", "3k", "12288", "0", "k", "99999999999999999999k", "512"] {
            assert!(bad.parse::<PageSize>().is_err(), "{bad}");
        }
    }

    #[test]
    fn displays_and_rounds() {
        assert_eq!(PageSize::K16.to_string(), "16K");
        assert_eq!(PageSize::M2.to_string(), "2M");
        assert_eq!(PageSize::K16.align_down(0x60ec1a0), 0x60ec000);
        assert_eq!(PageSize::K16.align_up(0x60ec1a0), Some(0x60f0000));
        assert_eq!(PageSize::K16.align_up(u64::MAX), None);
        let sizes: Vec<_> = PageSize::K4.up_to(PageSize::K64).collect();
        assert_eq!(sizes, [PageSize::K4, PageSize(8192), PageSize::K16, PageSize(32768), PageSize::K64]);
        assert_eq!(parse_page_size_list("16k,64k,16k").unwrap(), [PageSize::K16, PageSize::K64]);
    }
}
