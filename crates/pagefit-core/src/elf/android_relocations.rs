//! Android's packed relocations (`DT_ANDROID_REL`/`DT_ANDROID_RELA`, the
//! "APS2" format lld writes with `--pack-dyn-relocs=android`), decoded as
//! bionic's `for_all_packed_relocs` (linker/linker_reloc_iterators.h) reads
//! them: the magic "APS2", then SLEB128 numbers: the relocation count, the
//! initial offset, and groups, each a size, flags, the fields its flags
//! share across the group, then the fields each relocation has alone.
//! Offsets are deltas from the previous relocation's; addends too.
//!
//! Every number is a `size_t`, so arithmetic wraps at the word size. Only the
//! decoder lives here: rebase and its proof both read the format with it, as
//! both read ELF headers with `object`. The encoder belongs to `fix`.

use std::fmt;

/// The four bytes a packed relocation table starts with.
pub const APS2_MAGIC: &[u8; 4] = b"APS2";

/// Every relocation of a group has the group's `r_info`.
pub const GROUPED_BY_INFO: u64 = 1;
/// Every relocation of a group is the group's offset delta past the previous one.
pub const GROUPED_BY_OFFSET_DELTA: u64 = 2;
/// Every relocation of a group has the group's addend.
pub const GROUPED_BY_ADDEND: u64 = 4;
/// The group's relocations have addends (RELA only); without it they are 0.
pub const GROUP_HAS_ADDEND: u64 = 8;

/// One relocation, with every field the word size of its class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackedRelocation {
    /// `r_offset`: the place's link-time address.
    pub offset: u64,
    /// `r_info`: symbol index and type, as in `ElfN_Rel`.
    pub info: u64,
    /// `r_addend`, 0 in REL tables and groups without addends.
    pub addend: u64,
}

/// A group of relocations as the stream encodes it: its flags and what it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackedGroup {
    /// The group's flags word, unknown bits included (bionic ignores them).
    pub flags: u64,
    /// The group's relocations, never none: empty groups produce nothing and are dropped.
    pub relocations: Vec<PackedRelocation>,
}

/// A decoded APS2 table: enough to re-encode it with the same shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackedRelocations {
    /// The offset the first delta is added to.
    pub initial_offset: u64,
    /// The groups in stream order.
    pub groups: Vec<PackedGroup>,
}

impl PackedRelocations {
    /// Every relocation, in the order bionic applies them.
    pub fn relocations(&self) -> impl Iterator<Item = &PackedRelocation> {
        self.groups.iter().flat_map(|g| g.relocations.iter())
    }
}

/// Why a packed table cannot be read, with the byte offset into the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackedError {
    /// Bytes into the table (the magic included).
    pub at: usize,
    /// What is wrong there.
    pub message: String,
}

impl fmt::Display for PackedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the packed relocations at byte {}: {}", self.at, self.message)
    }
}

/// Reads SLEB128 numbers as bionic's `sleb128_decoder` does, into words of `mask`.
struct Sleb128Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    mask: u64,
}

impl Sleb128Reader<'_> {
    fn error(&self, message: impl Into<String>) -> PackedError {
        PackedError { at: self.at, message: message.into() }
    }

    fn next(&mut self) -> Result<u64, PackedError> {
        let (mut value, mut shift) = (0u64, 0u32);
        loop {
            let byte = *self.bytes.get(self.at).ok_or_else(|| self.error("the table ends inside a number"))?;
            self.at += 1;
            // Bits past the 64th cannot reach a word; bionic's shift would be undefined there.
            value |= u64::from(byte & 0x7f).checked_shl(shift).unwrap_or(0);
            shift = shift.saturating_add(7);
            if byte & 0x80 == 0 {
                if shift < 64 && byte & 0x40 != 0 {
                    value |= u64::MAX << shift;
                }
                return Ok(value & self.mask);
            }
        }
    }
}

/// Decodes an APS2 table. `wide` is ELFCLASS64 (64-bit `size_t`);
/// `explicit_addend` is DT_ANDROID_RELA (a DT_ANDROID_REL group with addends
/// is an error, as bionic's fatal "unexpected r_addend"). Decoding stops
/// after at most `max_relocations` relocations, so a group of 2^63
/// relocations that take no bytes each is an error, not a hang.
pub fn decode(bytes: &[u8], wide: bool, explicit_addend: bool, max_relocations: usize) -> Result<PackedRelocations, PackedError> {
    if bytes.get(..4) != Some(APS2_MAGIC) {
        return Err(PackedError { at: 0, message: "the table does not start with \"APS2\"".into() });
    }
    let mask = if wide { u64::MAX } else { u64::from(u32::MAX) };
    let mut reader = Sleb128Reader { bytes, at: 4, mask };
    let count = reader.next()?;
    let initial_offset = reader.next()?;
    let mut current = PackedRelocation { offset: initial_offset, info: 0, addend: 0 };
    let mut groups = Vec::new();
    let (mut index, mut decoded) = (0u64, 0usize);
    while index < count {
        let group_start = reader.at;
        let size = reader.next()?;
        let flags = reader.next()?;
        let offset_delta = if flags & GROUPED_BY_OFFSET_DELTA != 0 { Some(reader.next()?) } else { None };
        if flags & GROUPED_BY_INFO != 0 {
            current.info = reader.next()?;
        }
        let addend_flags = flags & (GROUP_HAS_ADDEND | GROUPED_BY_ADDEND);
        if !explicit_addend && flags & GROUP_HAS_ADDEND != 0 {
            return Err(PackedError { at: group_start, message: "a group has addends, which DT_ANDROID_REL does not allow".into() });
        }
        if addend_flags == GROUP_HAS_ADDEND | GROUPED_BY_ADDEND {
            current.addend = current.addend.wrapping_add(reader.next()?) & mask;
        } else if addend_flags != GROUP_HAS_ADDEND {
            current.addend = 0;
        }
        let remaining = max_relocations - decoded;
        if size > remaining as u64 {
            return Err(PackedError {
                at: group_start,
                message: format!("a group of {size} relocations passes the limit of {max_relocations}"),
            });
        }
        let mut relocations = Vec::with_capacity(0);
        for _ in 0..size {
            let delta = match offset_delta {
                Some(delta) => delta,
                None => reader.next()?,
            };
            current.offset = current.offset.wrapping_add(delta) & mask;
            if flags & GROUPED_BY_INFO == 0 {
                current.info = reader.next()?;
            }
            if addend_flags == GROUP_HAS_ADDEND {
                current.addend = current.addend.wrapping_add(reader.next()?) & mask;
            }
            relocations.push(current);
        }
        decoded += relocations.len();
        if !relocations.is_empty() {
            groups.push(PackedGroup { flags, relocations });
        }
        // bionic adds the group's size to its index; a group may run past the count.
        index = index.saturating_add(size);
    }
    Ok(PackedRelocations { initial_offset, groups })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grouped_run_of_relative_relocations_and_a_symbolic_one() {
        // count 3, initial 0x1000; group: 2 relocations, by offset delta 8,
        // by info 0x403, by addend +0x2000; group: 1, info per relocation, addends per relocation.
        let bytes = [b'A', b'P', b'S', b'2', 3, 0x80, 0x20, 2, 0x0f, 8, 0x83, 0x08, 0x80, 0xc0, 0x00, 1, 0x08, 0x10, 0x81, 0x08, 0x7f];
        let table = decode(&bytes, true, true, 16).unwrap();
        let all: Vec<_> = table.relocations().copied().collect();
        assert_eq!(
            all,
            [
                PackedRelocation { offset: 0x1008, info: 0x403, addend: 0x2000 },
                PackedRelocation { offset: 0x1010, info: 0x403, addend: 0x2000 },
                PackedRelocation { offset: 0x1020, info: 0x401, addend: 0x1fff },
            ]
        );
    }

    #[test]
    fn bad_tables_are_errors() {
        assert_eq!(decode(b"APS1", true, true, 16).unwrap_err().at, 0);
        assert!(decode(b"APS2\x01\x00", true, true, 16).unwrap_err().message.contains("ends inside"));
        // A group of 2^62 relocations that take no bytes each.
        let huge = [b'A', b'P', b'S', b'2', 0x7f, 0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0xc0, 0x00, 3, 8, 0];
        assert!(decode(&huge, true, true, 1000).unwrap_err().message.contains("limit of 1000"));
        // Addends in a REL table.
        assert!(decode(b"APS2\x01\x00\x01\x08\x08\x00", false, false, 16).unwrap_err().message.contains("DT_ANDROID_REL"));
    }
}
