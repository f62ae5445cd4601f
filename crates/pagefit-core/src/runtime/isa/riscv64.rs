//! RISC-V 64 with the C extension: auipc+addi for addresses, lui/addi/li
//! (and their compressed forms) for constants, and branches that compare
//! two registers themselves.

use crate::runtime::guard::{Insn, Op};

use crate::runtime::registers::{sign_extend, Registers};

/// x0 reads as zero; x1 is the return address (a call writes it).
const ZERO: u32 = 0;

/// What the decoder knows each register holds.
#[derive(Default)]
struct State {
    constants: Registers,
    pc_high: Registers,
}

impl State {
    /// `reg` was written by something other than a constant or address load.
    fn clobber(&mut self, reg: u32) -> Op {
        self.constants.clear(reg);
        self.pc_high.clear(reg);
        Op::Other
    }
    fn constant(&mut self, reg: u32, value: u64) -> Op {
        self.clobber(reg);
        if reg == ZERO {
            return Op::Other;
        }
        self.constants.set(reg, value);
        Op::Constant { reg: reg as u16, value }
    }
    /// `rd = rs1 + imm`: completes auipc+addi or lui+addi, or clobbers.
    fn add_immediate(&mut self, rd: u32, rs1: u32, imm: u64, word: bool) -> Op {
        let fit = |v: u64| if word { sign_extend(v & 0xffff_ffff, 32) } else { v };
        if rs1 == ZERO {
            return self.constant(rd, fit(imm));
        }
        if let Some(high) = self.pc_high.get(rs1).filter(|_| !word) {
            self.clobber(rd);
            return Op::Address { reg: rd as u16, value: high.wrapping_add(imm) };
        }
        match self.constants.get(rs1) {
            Some(value) => self.constant(rd, fit(value.wrapping_add(imm))),
            None => self.clobber(rd),
        }
    }
    /// A call clobbers every caller-saved register; forget them all.
    fn call(&mut self) -> Op {
        *self = State::default();
        Op::Other
    }
}

fn branch(address: u64, offset: u64, operands: Option<(u32, u32)>) -> Op {
    Op::Branch {
        target: address.wrapping_add(offset),
        conditional: operands.is_some(),
        flags: 0,
        operands: operands.map(|(a, b)| (a as u16, b as u16)),
    }
}

fn decode_32(w: u32, address: u64, state: &mut State) -> Op {
    let rd = (w >> 7) & 31;
    let rs1 = (w >> 15) & 31;
    let upper = sign_extend(u64::from(w & 0xffff_f000), 32);
    match w & 0x7f {
        0x37 => state.constant(rd, upper),
        0x17 => {
            state.clobber(rd);
            state.pc_high.set(rd, address.wrapping_add(upper));
            Op::Other
        }
        0x13 | 0x1b if (w >> 12) & 7 == 0 => state.add_immediate(rd, rs1, sign_extend(u64::from(w >> 20), 12), w & 0x7f == 0x1b),
        0x63 => {
            let offset = u64::from((w >> 31) & 1) << 12
                | u64::from((w >> 7) & 1) << 11
                | u64::from((w >> 25) & 0x3f) << 5
                | u64::from((w >> 8) & 0xf) << 1;
            branch(address, sign_extend(offset, 13), Some((rs1, (w >> 20) & 31)))
        }
        0x6f => {
            let offset = u64::from((w >> 31) & 1) << 20
                | u64::from((w >> 21) & 0x3ff) << 1
                | u64::from((w >> 20) & 1) << 11
                | u64::from((w >> 12) & 0xff) << 12;
            if rd == ZERO {
                branch(address, sign_extend(offset, 21), None)
            } else {
                state.call()
            }
        }
        0x67 => state.call(),
        // Loads, register arithmetic and system instructions write rd.
        0x03 | 0x33 | 0x3b | 0x73 => state.clobber(rd),
        _ => Op::Other,
    }
}

fn decode_16(h: u16, address: u64, state: &mut State) -> Op {
    let h = u32::from(h);
    let rd = (h >> 7) & 31;
    let imm6 = sign_extend(u64::from((h >> 12) & 1) << 5 | u64::from((h >> 2) & 31), 6);
    let bit = |n: u32, to: u32| u64::from((h >> n) & 1) << to;
    match (h & 3, h >> 13) {
        (1, 0) => state.add_immediate(rd, rd, imm6, false),
        (1, 1) => state.add_immediate(rd, rd, imm6, true),
        (1, 2) => state.constant(rd, imm6),
        (1, 3) if rd != 2 => state.constant(rd, imm6 << 12),
        (1, 5) => {
            let offset = bit(12, 11)
                | bit(11, 4)
                | bit(10, 9)
                | bit(9, 8)
                | bit(8, 10)
                | bit(7, 6)
                | bit(6, 7)
                | bit(5, 3)
                | bit(4, 2)
                | bit(3, 1)
                | bit(2, 5);
            branch(address, sign_extend(offset, 12), None)
        }
        (1, 6 | 7) => {
            let offset = bit(12, 8) | bit(11, 4) | bit(10, 3) | bit(6, 7) | bit(5, 6) | bit(4, 2) | bit(3, 1) | bit(2, 5);
            branch(address, sign_extend(offset, 9), Some((8 + ((h >> 7) & 7), ZERO)))
        }
        // c.jalr: a call.
        (2, 4) if (h >> 12) & 1 == 1 && (h >> 2) & 31 == 0 && rd != 0 => state.call(),
        // c.mv, c.add, c.slli, c.lwsp/ldsp write rd; c.addi4spn and quadrant 1's
        // arithmetic write rd' (registers x8 to x15).
        (2, 0 | 2 | 3 | 4) => state.clobber(rd),
        (0, 0 | 2 | 3) => state.clobber(8 + ((h >> 2) & 7)),
        (1, 4) => state.clobber(8 + ((h >> 7) & 7)),
        _ => Op::Other,
    }
}

pub(crate) fn decode(code: &[u8], vaddr: u64, emit: &mut dyn FnMut(Insn)) {
    let mut state = State::default();
    let mut at = 0;
    while at + 2 <= code.len() {
        let address = vaddr + at as u64;
        let low = u16::from_le_bytes([code[at], code[at + 1]]);
        let op = if low & 3 != 3 {
            at += 2;
            decode_16(low, address, &mut state)
        } else if at + 4 <= code.len() {
            let w = u32::from_le_bytes([code[at], code[at + 1], code[at + 2], code[at + 3]]);
            at += 4;
            decode_32(w, address, &mut state)
        } else {
            break;
        };
        emit(Insn { address, op });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::registers::decoded;

    fn ops(bytes: &[u8], vaddr: u64) -> Vec<Op> {
        decoded(decode, bytes, vaddr)
    }

    // Encodings from llvm-mc -triple=riscv64 -mattr=+c -show-encoding.
    #[test]
    fn compressed_constants_and_branches() {
        // c.lui a5,1; c.addi a5,1; bgeu a5,a0,32 at 0x100
        let decoded = ops(&[0x85, 0x67, 0x85, 0x07, 0x63, 0xf0, 0xa7, 0x02], 0xfc);
        assert_eq!(decoded[0], Op::Constant { reg: 15, value: 0x1000 });
        assert_eq!(decoded[1], Op::Constant { reg: 15, value: 0x1001 });
        assert_eq!(decoded[2], Op::Branch { target: 0x120, conditional: true, flags: 0, operands: Some((15, 10)) });
        // c.lui a5,16 (64K); c.li a4,12; c.j 64; c.beqz a0,20
        let decoded = ops(&[0xc1, 0x67, 0x31, 0x47, 0x81, 0xa0, 0x11, 0xc9], 0);
        assert_eq!(decoded[0], Op::Constant { reg: 15, value: 0x10000 });
        assert_eq!(decoded[1], Op::Constant { reg: 14, value: 12 });
        assert_eq!(decoded[2], Op::Branch { target: 4 + 64, conditional: false, flags: 0, operands: None });
        assert_eq!(decoded[3], Op::Branch { target: 6 + 20, conditional: true, flags: 0, operands: Some((10, 0)) });
    }

    #[test]
    fn addresses_jumps_and_calls() {
        // auipc a0,2; addi a0,a0,44; bltu a0,a5,-32; jal ra,80; c.addi a5,1
        let bytes = [0x17, 0x25, 0, 0, 0x13, 0x05, 0xc5, 0x02, 0xe3, 0x60, 0xf5, 0xfe, 0xef, 0, 0, 0x05, 0x85, 0x07];
        let decoded = ops(&bytes, 0x1000);
        assert_eq!(decoded[1], Op::Address { reg: 10, value: 0x1000 + 0x2000 + 44 });
        assert_eq!(decoded[2], Op::Branch { target: 0x1008 - 32, conditional: true, flags: 0, operands: Some((10, 15)) });
        // After the call a5 is unknown, so a5 + 1 is not a constant.
        assert_eq!(decoded[4], Op::Other);
    }
}
