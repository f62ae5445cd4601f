//! The jump into a loaded program on ppc64le (ELFv2).
#![allow(unsafe_code)]

/// Sets the stack pointer (r1) to `sp` and branches to `entry` through the
/// count register, with r12 = `entry` as the ELFv2 global entry point wants
/// (the callee derives its TOC from it) and every other general register
/// zero, as the kernel's `start_thread` leaves them. glibc's `_start` finds
/// argc, argv, envp and auxv from r1.
///
/// # Safety
///
/// `sp` must point at a valid initial stack (argc, argv, envp, auxv),
/// 16-byte aligned, and `entry` at the global entry point of a loaded
/// program or interpreter. Nothing of the caller survives: the function never returns.
#[unsafe(naked)]
#[rustfmt::skip]
pub unsafe extern "C" fn jump_to_entry(entry: usize, sp: usize) -> ! {
    core::arch::naked_asm!(
        "mr 1, 4",
        "mr 12, 3",
        "mtctr 3",
        "li 0, 0",
        "mtlr 0",
        "li 2, 0", "li 3, 0", "li 4, 0", "li 5, 0", "li 6, 0", "li 7, 0", "li 8, 0", "li 9, 0",
        "li 10, 0", "li 11, 0", "li 13, 0", "li 14, 0", "li 15, 0", "li 16, 0", "li 17, 0",
        "li 18, 0", "li 19, 0", "li 20, 0", "li 21, 0", "li 22, 0", "li 23, 0", "li 24, 0",
        "li 25, 0", "li 26, 0", "li 27, 0", "li 28, 0", "li 29, 0", "li 30, 0", "li 31, 0",
        "bctr",
    )
}

/// The signature glibc registers its rseq areas with on powerpc (`RSEQ_SIG`).
#[cfg(target_env = "gnu")]
pub const RSEQ_SIGNATURE: u32 = 0x0fe5_000b;

/// The thread pointer (r13), which glibc's `__rseq_offset` is relative to.
#[cfg(target_env = "gnu")]
pub fn thread_pointer() -> usize {
    let pointer: usize;
    // SAFETY: copying r13 has no side effect.
    unsafe { core::arch::asm!("mr {}, 13", out(reg) pointer, options(nomem, nostack, preserves_flags)) };
    pointer
}
