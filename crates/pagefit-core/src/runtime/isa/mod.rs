//! Per-architecture decoders: machine code to the [`Op`]s the guard
//! analysis reads. Each knows only the handful of instruction forms that
//! load an address or a constant, compare, and branch.

mod aarch64;
mod loongarch64;
mod ppc64;
mod riscv64;
mod x86_64;

use object::elf;

use crate::runtime::guard::{DecodeFn, Insn};

/// A decoder for `e_machine`, given every executable segment (ppc64 needs
/// them to find its TOC pointer); `None` for architectures not decoded.
pub(crate) fn decoder(machine: u16, code: &[(u64, &[u8])]) -> Option<Box<DecodeFn>> {
    match object::elf::Machine(machine) {
        elf::EM_AARCH64 => Some(Box::new(aarch64::decode)),
        elf::EM_X86_64 => Some(Box::new(x86_64::decode)),
        elf::EM_RISCV => Some(Box::new(riscv64::decode)),
        elf::EM_LOONGARCH => Some(Box::new(loongarch64::decode)),
        elf::EM_PPC64 => {
            let toc = ppc64::toc_pointer(code);
            Some(Box::new(move |bytes: &[u8], vaddr: u64, emit: &mut dyn FnMut(Insn)| ppc64::decode(bytes, vaddr, toc, emit)))
        }
        _ => None,
    }
}
