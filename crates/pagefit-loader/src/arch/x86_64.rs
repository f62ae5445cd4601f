//! The jump into a loaded program on x86_64.
#![allow(unsafe_code)]

/// Sets the stack pointer to `sp` and jumps to `entry`, with every other
/// general register zero, as the kernel leaves them after `execve`. The
/// SysV ABI reads `rdx` at `_start` as a function to register with
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
        "mov rsp, rsi",
        "mov r11, rdi",
        "xor eax, eax",
        "xor ebx, ebx",
        "xor ecx, ecx",
        "xor edx, edx",
        "xor esi, esi",
        "xor edi, edi",
        "xor ebp, ebp",
        "xor r8d, r8d",
        "xor r9d, r9d",
        "xor r10d, r10d",
        "xor r12d, r12d",
        "xor r13d, r13d",
        "xor r14d, r14d",
        "xor r15d, r15d",
        "jmp r11",
    )
}

/// The signature glibc registers its rseq areas with on x86_64 (`RSEQ_SIG`).
#[cfg(target_env = "gnu")]
pub const RSEQ_SIGNATURE: u32 = 0x5305_3053;

/// The thread pointer: glibc's TCB starts with a pointer to itself at `fs:0`.
#[cfg(target_env = "gnu")]
pub fn thread_pointer() -> usize {
    let pointer: usize;
    // SAFETY: reads the TCB's self-pointer, which glibc sets up before main.
    unsafe { core::arch::asm!("mov {}, qword ptr fs:[0]", out(reg) pointer, options(nostack, readonly, preserves_flags)) };
    pointer
}
