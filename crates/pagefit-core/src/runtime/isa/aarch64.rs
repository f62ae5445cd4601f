//! AArch64: adrp+add for addresses, movz for constants, `cmp` (subs to xzr)
//! and b.cond for the guard.

use crate::runtime::guard::{Insn, Op, Operand};

use crate::runtime::registers::{sign_extend, Registers};

/// Register 31 is xzr when it is a `subs` destination.
const ZERO: u32 = 31;

pub(crate) fn decode(code: &[u8], vaddr: u64, emit: &mut dyn FnMut(Insn)) {
    let mut pages = Registers::default();
    for (i, word) in code.chunks_exact(4).enumerate() {
        let address = vaddr + 4 * i as u64;
        let w = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        let rd = w & 31;
        let rn = (w >> 5) & 31;
        let op = if w & 0x9f00_0000 == 0x9000_0000 {
            // adrp: the 4K page of pc plus a signed 21-bit page count.
            let pages_off = sign_extend(u64::from(((w >> 5) & 0x7ffff) << 2 | (w >> 29) & 3), 21) << 12;
            pages.set(rd, (address & !0xfff).wrapping_add(pages_off));
            Op::Other
        } else if w & 0xff80_0000 == 0x9100_0000 {
            // add xd, xn, #imm{, lsl #12}
            let imm = u64::from((w >> 10) & 0xfff) << (12 * ((w >> 22) & 1));
            match pages.get(rn) {
                Some(page) => Op::Address { reg: rd as u16, value: page.wrapping_add(imm) },
                None => Op::Other,
            }
        } else if w & 0x7f80_0000 == 0x7100_0000 && rd == ZERO {
            // cmp xn|wn, #imm{, lsl #12}
            let imm = u64::from((w >> 10) & 0xfff) << (12 * ((w >> 22) & 1));
            Op::Compare { flags: 0, lhs: rn as u16, rhs: Operand::Immediate(imm) }
        } else if w & 0x7f20_fc00 == 0x6b00_0000 && rd == ZERO {
            // cmp xn|wn, xm|wm (shifted register, no shift)
            Op::Compare { flags: 0, lhs: rn as u16, rhs: Operand::Register(((w >> 16) & 31) as u16) }
        } else if w & 0x7f80_0000 == 0x3100_0000 || w & 0x7f80_0000 == 0x7200_0000 || w & 0x7f20_0000 == 0x6a00_0000 {
            // adds/cmn, ands/tst: flags this analysis does not model.
            Op::Compare { flags: 0, lhs: rn as u16, rhs: Operand::Unknown }
        } else if w & 0x7f80_0000 == 0x5280_0000 {
            // movz xd|wd, #imm16, lsl #(16 * hw)
            Op::Constant { reg: rd as u16, value: u64::from((w >> 5) & 0xffff) << (16 * ((w >> 21) & 3)) }
        } else if w & 0xff00_0010 == 0x5400_0000 {
            let target = address.wrapping_add(sign_extend(u64::from((w >> 5) & 0x7ffff), 19) << 2);
            Op::Branch { target, conditional: true, flags: 0, operands: None }
        } else if w & 0x7e00_0000 == 0x3400_0000 {
            // cbz/cbnz: a test against zero, never a page-size guard.
            let target = address.wrapping_add(sign_extend(u64::from((w >> 5) & 0x7ffff), 19) << 2);
            Op::Branch { target, conditional: true, flags: u8::MAX, operands: None }
        } else if w & 0xfc00_0000 == 0x1400_0000 {
            let target = address.wrapping_add(sign_extend(u64::from(w & 0x03ff_ffff), 26) << 2);
            Op::Branch { target, conditional: false, flags: 0, operands: None }
        } else {
            Op::Other
        };
        emit(Insn { address, op });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::registers::{decoded, little_endian};

    fn ops(words: &[u32], vaddr: u64) -> Vec<Op> {
        decoded(decode, &little_endian(words), vaddr)
    }

    #[test]
    fn decodes_jemalloc_guard_words() {
        // From jemalloc 5.3's pages_boot built by aarch64-linux-gnu-gcc 12
        // (objdump): cmp x0, #0x1, lsl #12; b.hi 44830; ...; adrp x0, 83000;
        // add x0, x0, #0x28; cmp x0, #0x10, lsl #12.
        let decoded = ops(&[0xf140_041f, 0x5400_1768], 0x44540);
        assert_eq!(decoded[0], Op::Compare { flags: 0, lhs: 0, rhs: Operand::Immediate(0x1000) });
        assert_eq!(decoded[1], Op::Branch { target: 0x44830, conditional: true, flags: 0, operands: None });
        assert_eq!(ops(&[0xf000_01e0, 0x9100_a000], 0x44830)[1], Op::Address { reg: 0, value: 0x83028 });
        assert_eq!(ops(&[0xf140_401f], 0)[0], Op::Compare { flags: 0, lhs: 0, rhs: Operand::Immediate(0x10000) });
        // mov x1, #0x10000 (movz, hw 1); cmp x0, x1
        assert_eq!(ops(&[0xd2a0_0021], 0)[0], Op::Constant { reg: 1, value: 0x10000 });
        assert_eq!(ops(&[0xeb01_001f], 0)[0], Op::Compare { flags: 0, lhs: 0, rhs: Operand::Register(1) });
    }
}
