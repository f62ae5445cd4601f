//! Finds the page size a runtime was compiled for by reading the guard that
//! compares the kernel's page size with it.
//!
//! jemalloc's `pages_boot` calls `sysconf(_SC_PAGESIZE)`, compares the result
//! with its compiled `PAGE` and, when the kernel's is larger, jumps to a block
//! that loads the address of "<jemalloc>: Unsupported system page size" and
//! prints it. The decoders in [`crate::runtime::isa`] turn machine code into
//! the few [`Op`]s this needs; [`guard_page_size`] finds the blocks that load
//! the message's address, the branches into them (or over them), and the
//! constant their condition compares with.

use std::collections::VecDeque;

/// A register number in the decoder's own numbering.
pub(crate) type Reg = u16;

/// The second operand of a comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Operand {
    Immediate(u64),
    Register(Reg),
    /// Flags set by an instruction this analysis does not model (`test`, `ands`).
    Unknown,
}

/// What one instruction does, as far as the guard analysis cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// `reg` now holds the address `value` (adrp+add, lea, auipc+addi, ...).
    Address {
        reg: Reg,
        value: u64,
    },
    /// `reg` now holds the constant `value`.
    Constant {
        reg: Reg,
        value: u64,
    },
    /// Sets condition field `flags` from `lhs` compared with `rhs`.
    Compare {
        flags: u8,
        lhs: Reg,
        rhs: Operand,
    },
    /// A branch to `target`. A conditional branch tests condition field
    /// `flags`, or compares two registers itself (`operands`, RISC-V and
    /// LoongArch).
    Branch {
        target: u64,
        conditional: bool,
        flags: u8,
        operands: Option<(Reg, Reg)>,
    },
    Other,
}

/// One decoded instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Insn {
    pub(crate) address: u64,
    pub(crate) op: Op,
}

/// How far before the message's address load the error block may start.
const BLOCK_LEAD: u64 = 32;
/// How many instructions before a branch its comparison may be.
const LOOKBACK: usize = 12;

/// Decodes machine code at `vaddr`, calling `emit` for each instruction.
pub(crate) type DecodeFn = dyn Fn(&[u8], u64, &mut dyn FnMut(Insn));
type Decode<'a> = &'a DecodeFn;

/// The compiled page size that guards `message` (a virtual address), with the
/// address of the branch that tests it. `None` when no guard is found or the
/// guards found disagree.
pub(crate) fn guard_page_size(decode: Decode, code: &[(u64, &[u8])], message: u64) -> Option<(u64, u64)> {
    let mut loads = Vec::new();
    for &(vaddr, bytes) in code {
        decode(bytes, vaddr, &mut |insn| {
            if matches!(insn.op, Op::Address { value, .. } if value == message) {
                loads.push(insn.address);
            }
        });
    }
    if loads.is_empty() {
        return None;
    }
    let mut found: Vec<(u64, u64)> = Vec::new();
    for &(vaddr, bytes) in code {
        let mut recent: VecDeque<Insn> = VecDeque::with_capacity(LOOKBACK + 1);
        decode(bytes, vaddr, &mut |insn| {
            if recent.len() == LOOKBACK + 1 {
                recent.pop_front();
            }
            recent.push_back(insn);
            let window = recent.make_contiguous();
            let last = window.len() - 1;
            let into_block = |target: u64| loads.iter().any(|&load| target <= load && load - target <= BLOCK_LEAD);
            match insn.op {
                // A branch into the error block.
                Op::Branch { target, .. } if into_block(target) => found.extend(branch_constant(window, last)),
                // The error block itself, reached by falling through a
                // branch that skips it.
                Op::Address { value, .. } if value == message => {
                    let skip = window.iter().rposition(|i| {
                        matches!(i.op, Op::Branch { conditional: true, target, .. } if target > insn.address)
                            && insn.address - i.address <= BLOCK_LEAD
                    });
                    found.extend(skip.and_then(|k| branch_constant(window, k)));
                }
                _ => {}
            }
        });
    }
    let (address, constant) = *found.first()?;
    found.iter().all(|&(_, c)| c == constant).then_some((address, constant))
}

/// The page size that the branch at `window[at]` compares with, and the
/// branch's address.
fn branch_constant(window: &[Insn], at: usize) -> Option<(u64, u64)> {
    let Op::Branch { conditional, flags, operands, .. } = window[at].op else { return None };
    if !conditional {
        // `bleu skip; j error` (a far error block): the condition is the
        // conditional branch just before the jump.
        let before = at.checked_sub(1)?;
        return matches!(window[before].op, Op::Branch { conditional: true, .. }).then(|| branch_constant(window, before)).flatten();
    }
    let constant = match operands {
        // The other operand is the kernel's page size (or a value derived from it).
        Some((a, b)) => [a, b].into_iter().filter_map(|r| constant_in(&window[..at], r)).find(|&c| page_size_of(c).is_some())?,
        None => {
            let compare = window[..at].iter().rposition(|i| matches!(i.op, Op::Compare { flags: f, .. } if f == flags))?;
            match window[compare].op {
                Op::Compare { rhs: Operand::Immediate(value), .. } => value,
                Op::Compare { lhs, rhs: Operand::Register(rhs), .. } => {
                    constant_in(&window[..compare], rhs).or_else(|| constant_in(&window[..compare], lhs))?
                }
                _ => return None,
            }
        }
    };
    page_size_of(constant).map(|page| (window[at].address, page))
}

/// The constant last loaded into `reg` in `window`, if the last write to it
/// was a constant.
fn constant_in(window: &[Insn], reg: Reg) -> Option<u64> {
    window.iter().rev().find_map(|i| match i.op {
        Op::Constant { reg: r, value } if r == reg => Some(Some(value)),
        Op::Address { reg: r, .. } if r == reg => Some(None),
        _ => None,
    })?
}

/// A guard compares with PAGE (`os_page > PAGE`) or PAGE + 1 (`os_page >=
/// PAGE + 1`); page sizes from 4K to 4M.
fn page_size_of(constant: u64) -> Option<u64> {
    let is_page = |c: u64| c.is_power_of_two() && (4096..=(4 << 20)).contains(&c);
    if is_page(constant) {
        Some(constant)
    } else {
        constant.checked_sub(1).filter(|&c| is_page(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESSAGE: u64 = 0x83028;

    /// A stand-in decoder: every 4 bytes is one `Insn` from the table.
    fn program(ops: Vec<Op>) -> impl Fn(&[u8], u64, &mut dyn FnMut(Insn)) {
        move |bytes: &[u8], vaddr: u64, emit: &mut dyn FnMut(Insn)| {
            for (i, op) in ops.iter().enumerate().take(bytes.len() / 4) {
                emit(Insn { address: vaddr + 4 * i as u64, op: *op });
            }
        }
    }

    fn run(ops: Vec<Op>) -> Option<(u64, u64)> {
        let bytes = vec![0; 4 * ops.len()];
        let decode = program(ops);
        guard_page_size(&decode, &[(0x1000, &bytes)], MESSAGE)
    }

    #[test]
    fn branch_into_error_block_gives_compared_page() {
        let ops = vec![
            Op::Compare { flags: 0, lhs: 0, rhs: Operand::Immediate(0x4000) },
            Op::Branch { target: 0x100c, conditional: true, flags: 0, operands: None },
            Op::Other,
            Op::Address { reg: 0, value: MESSAGE },
        ];
        assert_eq!(run(ops), Some((0x1004, 0x4000)));
    }

    #[test]
    fn register_compare_and_skip_over_block() {
        // lis r9,1; cmpld cr1,r3,r9; ble cr1,ok; <error block>
        let ops = vec![
            Op::Constant { reg: 9, value: 0x10000 },
            Op::Compare { flags: 1, lhs: 3, rhs: Operand::Register(9) },
            Op::Branch { target: 0x1100, conditional: true, flags: 1, operands: None },
            Op::Address { reg: 3, value: MESSAGE },
        ];
        assert_eq!(run(ops), Some((0x1008, 0x10000)));
    }

    #[test]
    fn register_branch_through_a_jump() {
        // lui t0,1; addi t0,t0,1; bltu a0,t0,skip; j error; ...; error: <load>
        let ops = vec![
            Op::Constant { reg: 5, value: 0x1001 },
            Op::Branch { target: 0x100c, conditional: true, flags: 0, operands: Some((10, 5)) },
            Op::Branch { target: 0x1010, conditional: false, flags: 0, operands: None },
            Op::Other,
            Op::Address { reg: 10, value: MESSAGE },
        ];
        assert_eq!(run(ops), Some((0x1004, 0x1000)));
    }

    #[test]
    fn no_guard_or_disagreeing_guards_are_unknown() {
        let unguarded = vec![Op::Other, Op::Address { reg: 0, value: MESSAGE }];
        assert_eq!(run(unguarded), None);
        let other_flags = vec![
            Op::Compare { flags: 0, lhs: 0, rhs: Operand::Immediate(0x4000) },
            Op::Compare { flags: 0, lhs: 0, rhs: Operand::Unknown },
            Op::Branch { target: 0x100c, conditional: true, flags: 0, operands: None },
            Op::Address { reg: 0, value: MESSAGE },
        ];
        assert_eq!(run(other_flags), None);
        let disagreeing = vec![
            Op::Compare { flags: 0, lhs: 0, rhs: Operand::Immediate(0x4000) },
            Op::Branch { target: 0x100c, conditional: true, flags: 0, operands: None },
            Op::Compare { flags: 0, lhs: 0, rhs: Operand::Immediate(0x1000) },
            Op::Address { reg: 0, value: MESSAGE },
            Op::Branch { target: 0x100c, conditional: true, flags: 0, operands: None },
        ];
        assert_eq!(run(disagreeing), None);
    }

    #[test]
    fn page_sizes_from_constants() {
        assert_eq!(page_size_of(0x1000), Some(0x1000));
        assert_eq!(page_size_of(0x4001), Some(0x4000));
        assert_eq!(page_size_of(0x10000), Some(0x10000));
        assert_eq!(page_size_of(0x1002), None);
        assert_eq!(page_size_of(30), None);
    }
}
