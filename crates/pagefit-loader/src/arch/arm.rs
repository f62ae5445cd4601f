//! The jump into a loaded program on 32-bit Arm (armhf, EABI).
#![allow(unsafe_code)]

/// Sets the stack pointer to `sp` and branches to `entry`, with r0-r12 and
/// lr zero, as the kernel's `start_thread` leaves them. The EABI `_start`
/// reads r0 as a function to register with `atexit`; zero means none. So
/// that no register need hold it, `entry` is left in the word below the
/// new stack and loaded straight into pc, which interworks as `bx` does: an
/// odd `entry` starts in Thumb state, as the kernel starts an odd `e_entry`.
///
/// # Safety
///
/// `sp` must point at a valid initial stack (argc, argv, envp, auxv),
/// 8-byte aligned, with writable memory below it, and `entry` at the first
/// instruction of a loaded program or interpreter. Nothing of the caller
/// survives: the function never returns.
#[unsafe(naked)]
#[rustfmt::skip]
pub unsafe extern "C" fn jump_to_entry(entry: usize, sp: usize) -> ! {
    core::arch::naked_asm!(
        "str r0, [r1, #-4]",
        "mov sp, r1",
        "mov r0, #0", "mov r1, #0", "mov r2, #0", "mov r3, #0", "mov r4, #0", "mov r5, #0", "mov r6, #0",
        "mov r7, #0", "mov r8, #0", "mov r9, #0", "mov r10, #0", "mov r11, #0", "mov r12, #0", "mov lr, #0",
        "ldr pc, [sp, #-4]",
    )
}

/// The signature glibc registers its rseq areas with on arm (`RSEQ_SIG`, little-endian).
#[cfg(target_env = "gnu")]
pub const RSEQ_SIGNATURE: u32 = 0xe7f5_def3;

/// The thread pointer (TPIDRURO), which glibc's `__rseq_offset` is relative to.
#[cfg(target_env = "gnu")]
pub fn thread_pointer() -> usize {
    let pointer: usize;
    // SAFETY: reading the user read-only thread register has no side effect.
    unsafe { core::arch::asm!("mrc p15, 0, {}, c13, c0, 3", out(reg) pointer, options(nomem, nostack, preserves_flags)) };
    pointer
}
