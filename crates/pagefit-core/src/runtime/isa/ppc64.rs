//! 64-bit Power (little-endian, ELFv2): TOC-relative addis+addi for
//! addresses, li/lis for constants, cmp[l]di/cmp[l]d and bc for the guard.

use std::collections::BTreeMap;

use crate::runtime::guard::{Insn, Op, Operand};

use crate::runtime::registers::{sign_extend, Registers};

/// r2 holds the TOC pointer; r12 the function's own address at its global entry.
const TOC: u32 = 2;
const ENTRY: u32 = 12;

fn words(code: &[u8]) -> impl Iterator<Item = u32> + '_ {
    code.chunks_exact(4).map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
}

fn d_form(w: u32) -> (u32, u32, u32, u64) {
    (w >> 26, (w >> 21) & 31, (w >> 16) & 31, sign_extend(u64::from(w & 0xffff), 16))
}

/// The TOC pointer, from the functions' global entry sequences (`addis
/// r2,r12,hi; addi r2,r2,lo` relative to the function, or `lis r2,hi; addi
/// r2,r2,lo` absolute in non-PIC code): the value most of them compute.
pub(crate) fn toc_pointer(code: &[(u64, &[u8])]) -> Option<u64> {
    let mut votes: BTreeMap<u64, usize> = BTreeMap::new();
    for &(vaddr, bytes) in code {
        let mut previous: Option<(u64, u32)> = None;
        for (i, w) in words(bytes).enumerate() {
            let address = vaddr + 4 * i as u64;
            if let Some((at, high)) = previous {
                let (opcode, rt, ra, low) = d_form(w);
                let (_, _, high_ra, high_si) = d_form(high);
                if opcode == 14 && rt == TOC && ra == TOC {
                    let base = if high_ra == ENTRY { at } else { 0 };
                    *votes.entry(base.wrapping_add(high_si << 16).wrapping_add(low)).or_default() += 1;
                }
            }
            let (opcode, rt, ra, _) = d_form(w);
            previous = (opcode == 15 && rt == TOC && (ra == ENTRY || ra == 0)).then_some((address, w));
        }
    }
    votes.into_iter().max_by_key(|&(_, n)| n).map(|(toc, _)| toc)
}

pub(crate) fn decode(code: &[u8], vaddr: u64, toc: Option<u64>, emit: &mut dyn FnMut(Insn)) {
    let mut high = Registers::default();
    let mut constants = Registers::default();
    for (i, w) in words(code).enumerate() {
        let address = vaddr + 4 * i as u64;
        let (opcode, rt, ra, si) = d_form(w);
        let op = match opcode {
            // addis: lis when ra is 0, else a high part relative to ra.
            15 => {
                high.clear(rt);
                constants.clear(rt);
                if ra == 0 {
                    constants.set(rt, si << 16);
                    Op::Constant { reg: rt as u16, value: si << 16 }
                } else {
                    if let Some(base) = if ra == TOC { toc } else { None } {
                        high.set(rt, base.wrapping_add(si << 16));
                    }
                    Op::Other
                }
            }
            // addi: li when ra is 0; completes an address after addis.
            14 => {
                let op = if ra == 0 {
                    Op::Constant { reg: rt as u16, value: si }
                } else if let Some(base) = high.get(ra).or(if ra == TOC { toc } else { None }) {
                    Op::Address { reg: rt as u16, value: base.wrapping_add(si) }
                } else if let Some(value) = constants.get(ra) {
                    Op::Constant { reg: rt as u16, value: value.wrapping_add(si) }
                } else {
                    Op::Other
                };
                high.clear(rt);
                constants.clear(rt);
                if let Op::Constant { value, .. } = op {
                    constants.set(rt, value);
                }
                op
            }
            // ori ra,rs,ui: lis+ori builds 32-bit constants.
            24 => match constants.get(rt) {
                Some(value) => {
                    let value = value | u64::from(w & 0xffff);
                    constants.set(ra, value);
                    Op::Constant { reg: ra as u16, value }
                }
                None => Op::Other,
            },
            // cmpli / cmpi crf, L, ra, imm
            10 => Op::Compare { flags: (rt >> 2) as u8, lhs: ra as u16, rhs: Operand::Immediate(u64::from(w & 0xffff)) },
            11 => Op::Compare { flags: (rt >> 2) as u8, lhs: ra as u16, rhs: Operand::Immediate(si) },
            // cmp / cmpl crf, L, ra, rb
            31 if matches!((w >> 1) & 0x3ff, 0 | 32) => {
                Op::Compare { flags: (rt >> 2) as u8, lhs: ra as u16, rhs: Operand::Register(((w >> 11) & 31) as u16) }
            }
            // bc BO, BI, target (relative, no link)
            16 if w & 3 == 0 => {
                let target = address.wrapping_add(sign_extend(u64::from(w & 0xfffc), 16));
                let always = rt & 0x14 == 0x14;
                Op::Branch { target, conditional: !always, flags: (ra >> 2) as u8, operands: None }
            }
            // b target (relative, no link)
            18 if w & 3 == 0 => {
                let target = address.wrapping_add(sign_extend(u64::from(w & 0x03ff_fffc), 26));
                Op::Branch { target, conditional: false, flags: 0, operands: None }
            }
            _ => Op::Other,
        };
        emit(Insn { address, op });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::registers::{decoded, little_endian};

    fn ops(words: &[u32], vaddr: u64, toc: Option<u64>) -> Vec<Op> {
        decoded(|b, v, emit| decode(b, v, toc, emit), &little_endian(words), vaddr)
    }

    // Words from jemalloc 5.3's pages_boot built by powerpc64le-linux-gnu-gcc 12.
    #[test]
    fn toc_from_global_entry() {
        let code = little_endian(&[0x3c4c_000b, 0x3842_5ff0]);
        assert_eq!(toc_pointer(&[(0x61f10, &code)]), Some(0x117f00));
    }

    #[test]
    fn decodes_jemalloc_guard_words() {
        // cmpldi cr1,r3,4096 at 61f38; bgt cr1,62340 at 61f44
        assert_eq!(ops(&[0x28a3_1000], 0, None)[0], Op::Compare { flags: 1, lhs: 3, rhs: Operand::Immediate(4096) });
        assert_eq!(ops(&[0x4185_03fc], 0x61f44, None)[0], Op::Branch { target: 0x62340, conditional: true, flags: 1, operands: None });
        // addis r3,r2,-5; addi r3,r3,1328 with TOC 0x117f00
        assert_eq!(ops(&[0x3c62_fffb, 0x3863_0530], 0x62340, Some(0x117f00))[1], Op::Address { reg: 3, value: 0xc8430 });
        // lis r9,1; cmpld cr1,r3,r9 (the 64K build)
        let decoded = ops(&[0x3d20_0001, 0x7ca3_4840], 0, None);
        assert_eq!(decoded[0], Op::Constant { reg: 9, value: 0x10000 });
        assert_eq!(decoded[1], Op::Compare { flags: 1, lhs: 3, rhs: Operand::Register(9) });
    }
}
