//! LoongArch64: pcalau12i+addi.d for addresses, lu12i.w/ori/addi for
//! constants, and branches that compare two registers themselves.

use crate::runtime::guard::{Insn, Op};

use crate::runtime::registers::{sign_extend, Registers};

const ZERO: u32 = 0;

pub(crate) fn decode(code: &[u8], vaddr: u64, emit: &mut dyn FnMut(Insn)) {
    let mut constants = Registers::default();
    let mut pc_high = Registers::default();
    for (i, word) in code.chunks_exact(4).enumerate() {
        let address = vaddr + 4 * i as u64;
        let w = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        let rd = w & 31;
        let rj = (w >> 5) & 31;
        let si12 = sign_extend(u64::from((w >> 10) & 0xfff), 12);
        let si20 = sign_extend(u64::from((w >> 5) & 0xfffff) << 12, 32);
        let branch = |offset: u64, bits: u32, operands: Option<(u32, u32)>| Op::Branch {
            target: address.wrapping_add(sign_extend(offset, bits) << 2),
            conditional: operands.is_some(),
            flags: 0,
            operands: operands.map(|(a, b)| (a as u16, b as u16)),
        };
        let known = |r: u32, c: &Registers| if r == ZERO { Some(0) } else { c.get(r) };
        let (op, written) = match (w >> 26, w >> 25, w >> 22) {
            (_, 0x0a, _) => (Some(si20), rd),
            (_, 0x0d, _) => {
                constants.clear(rd);
                pc_high.set(rd, (address & !0xfff).wrapping_add(si20));
                emit(Insn { address, op: Op::Other });
                continue;
            }
            // addi.w, addi.d
            (_, _, 0x00a | 0x00b) => {
                if let (Some(high), 0x00b) = (pc_high.get(rj), w >> 22) {
                    constants.clear(rd);
                    pc_high.clear(rd);
                    emit(Insn { address, op: Op::Address { reg: rd as u16, value: high.wrapping_add(si12) } });
                    continue;
                }
                let fit = |v: u64| if w >> 22 == 0x00a { sign_extend(v & 0xffff_ffff, 32) } else { v };
                (known(rj, &constants).map(|v| fit(v.wrapping_add(si12))), rd)
            }
            // ori: li for small values and the low half after lu12i.w.
            (_, _, 0x00e) => (known(rj, &constants).map(|v| v | u64::from((w >> 10) & 0xfff)), rd),
            (0x10 | 0x11, _, _) => {
                let offset = u64::from(w & 31) << 16 | u64::from((w >> 10) & 0xffff);
                emit(Insn { address, op: branch(offset, 21, Some((rj, ZERO))) });
                continue;
            }
            (0x14, _, _) => {
                let offset = u64::from(w & 0x3ff) << 16 | u64::from((w >> 10) & 0xffff);
                emit(Insn { address, op: branch(offset, 26, None) });
                continue;
            }
            (0x16..=0x1b, _, _) => {
                emit(Insn { address, op: branch(u64::from((w >> 10) & 0xffff), 16, Some((rj, rd))) });
                continue;
            }
            // bl and jirl: calls and returns clobber the caller-saved registers.
            (0x15 | 0x13, _, _) => {
                constants = Registers::default();
                pc_high = Registers::default();
                emit(Insn { address, op: Op::Other });
                continue;
            }
            // Stores (st.b to st.d, fst) write no register.
            (_, _, 0x0a4..=0x0a7 | 0x0ad | 0x0af) => (None, ZERO),
            _ => (None, rd),
        };
        constants.clear(written);
        pc_high.clear(written);
        let op = match op {
            Some(value) if written != ZERO => {
                constants.set(written, value);
                Op::Constant { reg: written as u16, value }
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

    fn ops(words: &[u32], vaddr: u64) -> Vec<Op> {
        decoded(decode, &little_endian(words), vaddr)
    }

    // Encodings from llvm-mc -triple=loongarch64 -show-encoding.
    #[test]
    fn decodes_guard_forms() {
        // lu12i.w $a1,1; ori $a1,$a1,1; bltu $a1,$a0,64 at 0x1008
        let decoded = ops(&[0x1400_0025, 0x0380_04a5, 0x6800_40a4], 0x1000);
        assert_eq!(decoded[0], Op::Constant { reg: 5, value: 0x1000 });
        assert_eq!(decoded[1], Op::Constant { reg: 5, value: 0x1001 });
        assert_eq!(decoded[2], Op::Branch { target: 0x1008 + 64, conditional: true, flags: 0, operands: Some((5, 4)) });
        // lu12i.w $t0,16; bgeu $a0,$a1,-64; b 128
        let decoded = ops(&[0x1400_020c, 0x6fff_c085, 0x5000_8000], 0x1000);
        assert_eq!(decoded[0], Op::Constant { reg: 12, value: 0x10000 });
        assert_eq!(decoded[1], Op::Branch { target: 0x1004 - 64, conditional: true, flags: 0, operands: Some((4, 5)) });
        assert_eq!(decoded[2], Op::Branch { target: 0x1008 + 128, conditional: false, flags: 0, operands: None });
        // pcalau12i $a0,3; addi.d $a0,$a0,40; addi.w $t1,$zero,7; beqz $a1,12; bl 100
        let decoded = ops(&[0x1a00_0064, 0x02c0_a084, 0x0280_1c0d, 0x4000_0ca0, 0x5400_6400], 0x5123);
        assert_eq!(decoded[1], Op::Address { reg: 4, value: 0x5000 + 0x3000 + 40 });
        assert_eq!(decoded[2], Op::Constant { reg: 13, value: 7 });
        assert_eq!(decoded[3], Op::Branch { target: 0x512f + 12, conditional: true, flags: 0, operands: Some((5, 0)) });
        assert_eq!(decoded[4], Op::Other);
    }
}
