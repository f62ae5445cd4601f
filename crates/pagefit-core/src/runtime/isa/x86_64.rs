//! x86-64, decoded with iced-x86: rip-relative lea for addresses, mov
//! immediate for constants, cmp and jcc for the guard. Any other instruction
//! that writes the flags hides an earlier compare.

use iced_x86::{Decoder, DecoderOptions, FlowControl, Instruction, Mnemonic, OpKind, Register, RflagsBits};

use crate::runtime::guard::{Insn, Op, Operand};

fn register(reg: Register) -> u16 {
    reg.full_register() as u16
}

fn immediate(instruction: &Instruction, operand: u32) -> Option<u64> {
    matches!(
        instruction.op_kind(operand),
        OpKind::Immediate8
            | OpKind::Immediate16
            | OpKind::Immediate32
            | OpKind::Immediate64
            | OpKind::Immediate8to32
            | OpKind::Immediate8to64
            | OpKind::Immediate32to64
    )
    .then(|| instruction.immediate(operand))
}

fn op(instruction: &Instruction) -> Op {
    let destination = (instruction.op_count() > 0 && instruction.op_kind(0) == OpKind::Register).then(|| instruction.op0_register());
    match instruction.mnemonic() {
        Mnemonic::Lea if instruction.is_ip_rel_memory_operand() => {
            Op::Address { reg: register(instruction.op0_register()), value: instruction.ip_rel_memory_address() }
        }
        Mnemonic::Mov => match (destination, immediate(instruction, 1)) {
            (Some(reg), Some(value)) => Op::Constant { reg: register(reg), value },
            _ => Op::Other,
        },
        Mnemonic::Cmp => match destination {
            Some(reg) => {
                let rhs = match immediate(instruction, 1) {
                    Some(value) => Operand::Immediate(value),
                    None if instruction.op_kind(1) == OpKind::Register => Operand::Register(register(instruction.op1_register())),
                    None => Operand::Unknown,
                };
                Op::Compare { flags: 0, lhs: register(reg), rhs }
            }
            None => Op::Compare { flags: 0, lhs: u16::MAX, rhs: Operand::Unknown },
        },
        _ => match instruction.flow_control() {
            FlowControl::ConditionalBranch if instruction.is_jcc_short_or_near() => {
                Op::Branch { target: instruction.near_branch_target(), conditional: true, flags: 0, operands: None }
            }
            FlowControl::UnconditionalBranch if instruction.is_jmp_short_or_near() => {
                Op::Branch { target: instruction.near_branch_target(), conditional: false, flags: 0, operands: None }
            }
            _ if instruction.rflags_modified() & (RflagsBits::CF | RflagsBits::ZF) != 0 => {
                Op::Compare { flags: 0, lhs: u16::MAX, rhs: Operand::Unknown }
            }
            _ => Op::Other,
        },
    }
}

pub(crate) fn decode(code: &[u8], vaddr: u64, emit: &mut dyn FnMut(Insn)) {
    let mut decoder = Decoder::with_ip(64, code, vaddr, DecoderOptions::NONE);
    let mut instruction = Instruction::default();
    while decoder.can_decode() {
        decoder.decode_out(&mut instruction);
        emit(Insn { address: instruction.ip(), op: op(&instruction) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_jemalloc_guard_bytes() {
        // From jemalloc 5.3's pages_boot built by gcc 12 (objdump):
        // 64997: cmp $0x1000,%rax; 6499d: ja 64bc0; 649a3: lea 0x5cc51(%rip),%rdx
        let bytes = [0x48, 0x3d, 0x00, 0x10, 0x00, 0x00, 0x0f, 0x87, 0x1d, 0x02, 0x00, 0x00, 0x48, 0x8d, 0x15, 0x51, 0xcc, 0x05, 0x00];
        let mut out = Vec::new();
        decode(&bytes, 0x64997, &mut |i| out.push(i));
        let rax = Register::RAX as u16;
        assert_eq!(out[0].op, Op::Compare { flags: 0, lhs: rax, rhs: Operand::Immediate(0x1000) });
        assert_eq!(out[1], Insn { address: 0x6499d, op: Op::Branch { target: 0x64bc0, conditional: true, flags: 0, operands: None } });
        assert_eq!(out[2].op, Op::Address { reg: Register::RDX as u16, value: 0xc15fb });
    }
}
