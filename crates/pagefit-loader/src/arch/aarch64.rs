//! The jump into a loaded program on aarch64.
#![allow(unsafe_code)]

/// Sets the stack pointer to `sp` and branches to `entry`, with every other
/// general register zero, as the kernel leaves them after `execve`. The
/// AAPCS64 process start reads `x0` as a function to register with
/// `atexit`; zero means none.
///
/// # Safety
///
/// `sp` must point at a valid initial stack (argc, argv, envp, auxv),
/// 16-byte aligned, and `entry` at the first instruction of a loaded
/// program or interpreter. Nothing of the caller survives: the function never returns.
#[unsafe(naked)]
pub unsafe extern "C" fn jump_to_entry(entry: usize, sp: usize) -> ! {
    core::arch::naked_asm!(
        "mov sp, x1",
        "mov x16, x0",
        "mov x0, xzr",
        "mov x1, xzr",
        "mov x2, xzr",
        "mov x3, xzr",
        "mov x4, xzr",
        "mov x5, xzr",
        "mov x6, xzr",
        "mov x7, xzr",
        "mov x8, xzr",
        "mov x9, xzr",
        "mov x10, xzr",
        "mov x11, xzr",
        "mov x12, xzr",
        "mov x13, xzr",
        "mov x14, xzr",
        "mov x15, xzr",
        "mov x17, xzr",
        "mov x29, xzr",
        "mov x30, xzr",
        "br x16",
    )
}

/// The signature glibc registers its rseq areas with on aarch64 (`RSEQ_SIG`, little-endian).
#[cfg(target_env = "gnu")]
pub const RSEQ_SIGNATURE: u32 = 0xd428_bc00;

/// The thread pointer (`TPIDR_EL0`).
#[cfg(target_env = "gnu")]
pub fn thread_pointer() -> usize {
    let pointer: usize;
    // SAFETY: reading the thread register has no side effect.
    unsafe { core::arch::asm!("mrs {}, tpidr_el0", out(reg) pointer, options(nomem, nostack, preserves_flags)) };
    pointer
}
