//! Writing Android's packed relocations (APS2) back after rebase changed
//! their offsets and addends, in the shape they were read in
//! ([`crate::elf::android_relocations`]): the same groups with the same
//! flags, so only the numbers change. A group whose relocations no longer
//! share what its flags say they share is an error.

use crate::elf::android_relocations::{
    PackedGroup, PackedRelocation, PackedRelocations, APS2_MAGIC, GROUPED_BY_ADDEND, GROUPED_BY_INFO, GROUPED_BY_OFFSET_DELTA,
    GROUP_HAS_ADDEND,
};

/// Appends `value`, a word of the class, as SLEB128 of its signed reading.
fn put(out: &mut Vec<u8>, value: u64, wide: bool) {
    let mut signed = if wide { value as i64 } else { i64::from(value as u32 as i32) };
    loop {
        let byte = (signed & 0x7f) as u8;
        signed >>= 7;
        let done = (signed == 0 && byte & 0x40 == 0) || (signed == -1 && byte & 0x40 != 0);
        out.push(if done { byte } else { byte | 0x80 });
        if done {
            return;
        }
    }
}

/// The bytes of `table`, magic included. `wide` is ELFCLASS64.
/// `table.initial_offset` is kept where the relocations leave it free.
pub fn encode(table: &PackedRelocations, wide: bool) -> Result<Vec<u8>, String> {
    let mask = if wide { u64::MAX } else { u64::from(u32::MAX) };
    let mut out = APS2_MAGIC.to_vec();
    // The initial offset is free unless a first group of two or more steps
    // by one delta from it; a shift then moves it with the relocations.
    let initial_offset = match table.groups.first().map(|g| (g.flags, g.relocations.as_slice())) {
        Some((flags, [first, second, ..])) if flags & GROUPED_BY_OFFSET_DELTA != 0 => {
            first.offset.wrapping_sub(second.offset.wrapping_sub(first.offset)) & mask
        }
        _ => table.initial_offset,
    };
    put(&mut out, table.relocations().count() as u64, wide);
    put(&mut out, initial_offset, wide);
    let mut previous = PackedRelocation { offset: initial_offset, info: 0, addend: 0 };
    for (index, group) in table.groups.iter().enumerate() {
        let first = *group.relocations.first().ok_or_else(|| format!("group {index} is empty"))?;
        let flags = group.flags;
        put(&mut out, group.relocations.len() as u64, wide);
        put(&mut out, flags, wide);
        let offset_delta = first.offset.wrapping_sub(previous.offset) & mask;
        if flags & GROUPED_BY_OFFSET_DELTA != 0 {
            put(&mut out, offset_delta, wide);
        }
        if flags & GROUPED_BY_INFO != 0 {
            put(&mut out, first.info, wide);
        }
        let addend_flags = flags & (GROUP_HAS_ADDEND | GROUPED_BY_ADDEND);
        let addend_per_relocation = addend_flags == GROUP_HAS_ADDEND;
        if addend_flags == GROUP_HAS_ADDEND | GROUPED_BY_ADDEND {
            put(&mut out, first.addend.wrapping_sub(previous.addend) & mask, wide);
            previous.addend = first.addend;
        } else if !addend_per_relocation {
            previous.addend = 0;
        }
        for relocation in &group.relocations {
            let delta = relocation.offset.wrapping_sub(previous.offset) & mask;
            if flags & GROUPED_BY_OFFSET_DELTA == 0 {
                put(&mut out, delta, wide);
            } else if delta != offset_delta {
                return Err(format!("group {index} steps its offsets by {offset_delta:#x}, but {:#x} is {delta:#x} on", relocation.offset));
            }
            if flags & GROUPED_BY_INFO == 0 {
                put(&mut out, relocation.info, wide);
            } else if relocation.info != first.info {
                return Err(format!(
                    "group {index} shares r_info {:#x}, but the relocation at {:#x} has {:#x}",
                    first.info, relocation.offset, relocation.info
                ));
            }
            if addend_per_relocation {
                put(&mut out, relocation.addend.wrapping_sub(previous.addend) & mask, wide);
            } else if relocation.addend != previous.addend {
                return Err(format!(
                    "group {index} shares the addend {:#x}, but the relocation at {:#x} has {:#x}",
                    previous.addend, relocation.offset, relocation.addend
                ));
            }
            previous = PackedRelocation { addend: if addend_per_relocation { relocation.addend } else { previous.addend }, ..*relocation };
        }
    }
    Ok(out)
}

/// How many packed relocations an image of `span` bytes can need: one per
/// word, at most 2^22 (96 MiB decoded), so a mangled group size is an error.
pub fn max_packed_relocations(span: u64, word_size: u64) -> usize {
    usize::try_from(span.checked_div(word_size).unwrap_or(0)).unwrap_or(usize::MAX).min(1 << 22)
}

/// The relocations of `table` encoded into `len` bytes: in the table's own
/// shape, or when that no longer fits (a shift makes offsets and addends
/// longer numbers), regrouped by [`regroup`]. bionic reads only as many
/// relocations as the count says (`for_all_packed_relocs` in
/// linker/linker_reloc_iterators.h stops there), so the zeros after them are never read.
pub fn encode_within(table: &PackedRelocations, wide: bool, len: usize) -> Result<Vec<u8>, String> {
    let mut bytes = encode(table, wide)?;
    if bytes.len() > len {
        let relocations: Vec<PackedRelocation> = table.relocations().copied().collect();
        let regrouped = encode(&regroup(&relocations), wide)?;
        if regrouped.len() > len {
            return Err(format!(
                "the packed relocations grow from {len} to {} bytes after the shift ({} regrouped) and no longer fit their table",
                bytes.len(),
                regrouped.len()
            ));
        }
        bytes = regrouped;
    }
    bytes.resize(len, 0);
    Ok(bytes)
}

/// The same relocations in the same order (the order bionic applies them
/// in), grouped greedily: runs of two or more with one `r_info` and one
/// offset step share both; the relocations between runs form one group,
/// sharing `r_info` if they all have one. A group's addends are shared when
/// equal and left out when all 0.
pub fn regroup(relocations: &[PackedRelocation]) -> PackedRelocations {
    let mut groups: Vec<PackedGroup> = Vec::new();
    let mut loose: Vec<PackedRelocation> = Vec::new();
    let mut previous_offset = 0u64;
    let mut start = 0;
    while start < relocations.len() {
        let first = relocations[start];
        let step = first.offset.wrapping_sub(previous_offset);
        let run = relocations[start..]
            .iter()
            .zip(std::iter::once(previous_offset).chain(relocations[start..].iter().map(|r| r.offset)))
            .take_while(|(r, before)| r.info == first.info && r.offset.wrapping_sub(*before) == step)
            .count();
        let taken = if run >= 2 { run } else { 1 };
        if run >= 2 {
            groups.extend(flush(&mut loose));
            let run = relocations[start..start + run].to_vec();
            groups.push(PackedGroup { flags: GROUPED_BY_INFO | GROUPED_BY_OFFSET_DELTA | addend_flags(&run), relocations: run });
        } else {
            loose.push(first);
        }
        previous_offset = relocations[start + taken - 1].offset;
        start += taken;
    }
    groups.extend(flush(&mut loose));
    PackedRelocations { initial_offset: 0, groups }
}

/// The relocations collected between runs, as one group.
fn flush(loose: &mut Vec<PackedRelocation>) -> Option<PackedGroup> {
    let relocations = std::mem::take(loose);
    let first = *relocations.first()?;
    let info = if relocations.iter().all(|r| r.info == first.info) { GROUPED_BY_INFO } else { 0 };
    Some(PackedGroup { flags: info | addend_flags(&relocations), relocations })
}

fn addend_flags(relocations: &[PackedRelocation]) -> u64 {
    match relocations.first() {
        Some(first) if relocations.iter().all(|r| r.addend == first.addend) => {
            if first.addend == 0 {
                0
            } else {
                GROUP_HAS_ADDEND | GROUPED_BY_ADDEND
            }
        }
        _ => GROUP_HAS_ADDEND,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::android_relocations::decode;

    fn relocation(offset: u64, info: u64, addend: u64) -> PackedRelocation {
        PackedRelocation { offset, info, addend }
    }

    #[test]
    fn every_group_shape_round_trips_in_both_classes() {
        for wide in [true, false] {
            let mask = if wide { u64::MAX } else { u64::from(u32::MAX) };
            let table = PackedRelocations {
                initial_offset: 0x1000,
                groups: vec![
                    PackedGroup { flags: 0x0f, relocations: vec![relocation(0x1008, 0x17, 0x2000), relocation(0x1010, 0x17, 0x2000)] },
                    PackedGroup {
                        flags: GROUP_HAS_ADDEND,
                        relocations: vec![relocation(0x1000, 0x401, 4), relocation(0x2000, 0x17, mask)],
                    },
                    PackedGroup { flags: GROUPED_BY_INFO, relocations: vec![relocation(0x1ff0, 0x16, 0)] },
                    PackedGroup { flags: 0x30, relocations: vec![relocation(0x10, 0x2, 0)] },
                ],
            };
            let bytes = encode(&table, wide).unwrap();
            assert_eq!(decode(&bytes, wide, true, 100).unwrap(), table);
        }
    }

    #[test]
    fn a_group_that_no_longer_shares_its_fields_is_refused() {
        let shared_addend = vec![relocation(0x1008, 0x17, 0x2000), relocation(0x1010, 0x17, 0x2004)];
        let table = PackedRelocations { initial_offset: 0x1000, groups: vec![PackedGroup { flags: 0x0f, relocations: shared_addend }] };
        assert!(encode(&table, true).unwrap_err().contains("shares the addend 0x2000"));
    }
}
