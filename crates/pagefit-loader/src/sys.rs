//! The system calls of loading, through `rustix`.
//!
//! # Safety
//!
//! Mapping with `MAP_FIXED` replaces whatever was at the address, so every
//! fixed mapping goes through a [`Reservation`]: address space this module
//! reserved itself (`PROT_NONE`, never handed out as a Rust reference), and
//! whose methods check that each range lies inside it. The rest is process
//! state that only matters after the jump: signal dispositions, the
//! alternate signal stack, descriptors.
#![allow(unsafe_code)]

use std::ffi::{c_void, CStr};
use std::fs::File;
use std::io;
use std::ptr::{null_mut, NonNull};

use pagefit_core::elf::Prot;
use rustix::mm::{MapFlags, MprotectFlags, ProtFlags};

/// Address space reserved `PROT_NONE` by the loader, to be filled with mappings.
#[derive(Debug)]
pub(crate) struct Reservation {
    start: usize,
    end: usize,
}

impl Reservation {
    /// Reserves `len` bytes anywhere the kernel likes, aligned to `align`
    /// (a power of two): the kernel never places it over an existing mapping.
    pub(crate) fn anywhere(len: usize, align: usize) -> io::Result<Reservation> {
        let padded = len.checked_add(align).ok_or(io::ErrorKind::OutOfMemory)?;
        // SAFETY: no fixed address: the kernel picks unused address space.
        let raw = unsafe { rustix::mm::mmap_anonymous(null_mut(), padded, ProtFlags::empty(), MapFlags::PRIVATE | MapFlags::NORESERVE) }?;
        let raw = raw as usize;
        let start = raw.next_multiple_of(align);
        let reservation = Reservation { start, end: start + len };
        // Give back the padding on both sides.
        // SAFETY: both ranges are parts of the mapping just made, outside the reservation.
        unsafe {
            if start > raw {
                rustix::mm::munmap(raw as *mut c_void, start - raw)?;
            }
            if raw + padded > reservation.end {
                rustix::mm::munmap(reservation.end as *mut c_void, raw + padded - reservation.end)?;
            }
        }
        Ok(reservation)
    }

    /// Reserves exactly `[start, start + len)`; fails with `EEXIST` if anything is mapped there.
    pub(crate) fn fixed(start: usize, len: usize) -> io::Result<Reservation> {
        let flags = MapFlags::PRIVATE | MapFlags::NORESERVE | MapFlags::FIXED_NOREPLACE;
        // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping.
        let raw = unsafe { rustix::mm::mmap_anonymous(start as *mut c_void, len, ProtFlags::empty(), flags) }?;
        if raw as usize != start {
            // Kernels before 4.17 treat the flag as a hint.
            // SAFETY: the mapping just made, at the address the kernel chose.
            unsafe { rustix::mm::munmap(raw, len)? };
            return Err(io::Error::from_raw_os_error(rustix::io::Errno::EXIST.raw_os_error()));
        }
        Ok(Reservation { start, end: start + len })
    }

    /// Gives the whole reservation back.
    pub(crate) fn release(self) -> io::Result<()> {
        // SAFETY: the range is this reservation's, which nothing else uses.
        unsafe { rustix::mm::munmap(self.start as *mut c_void, self.end - self.start) }?;
        Ok(())
    }

    /// First address.
    pub(crate) fn start(&self) -> usize {
        self.start
    }

    fn checked(&self, address: usize, len: usize) -> *mut c_void {
        assert!(
            address >= self.start && address.checked_add(len).is_some_and(|end| end <= self.end),
            "{address:#x}+{len:#x} outside the reservation"
        );
        address as *mut c_void
    }

    /// Maps `len` bytes of `file` from `offset` at `address` (`MAP_PRIVATE`).
    pub(crate) fn map_file(&mut self, address: usize, len: usize, prot: Prot, file: &File, offset: u64) -> io::Result<()> {
        let at = self.checked(address, len);
        // SAFETY: the range is inside this reservation, which nothing else uses.
        unsafe { rustix::mm::mmap(at, len, prot_flags(prot), MapFlags::PRIVATE | MapFlags::FIXED, file, offset) }?;
        Ok(())
    }

    /// Maps zeroed anonymous memory at `address`.
    pub(crate) fn map_anonymous(&mut self, address: usize, len: usize, prot: Prot) -> io::Result<()> {
        let at = self.checked(address, len);
        // SAFETY: as in `map_file`.
        unsafe { rustix::mm::mmap_anonymous(at, len, prot_flags(prot), MapFlags::PRIVATE | MapFlags::FIXED) }?;
        Ok(())
    }

    /// Reads `len` bytes of `file` at `offset` into mapped, writable memory at `address`.
    pub(crate) fn copy_from_file(&mut self, address: usize, len: usize, file: &File, offset: u64) -> io::Result<()> {
        let at = self.checked(address, len);
        // SAFETY: the range is inside this reservation and was mapped writable
        // by the caller; no Rust reference points into it, so a temporary
        // exclusive slice is sound.
        let buffer = unsafe { std::slice::from_raw_parts_mut(at.cast::<u8>(), len) };
        std::os::unix::fs::FileExt::read_exact_at(file, buffer, offset)
    }

    /// Writes `bytes` into mapped, writable memory at `address`.
    pub(crate) fn write(&mut self, address: usize, bytes: &[u8]) {
        let at = self.checked(address, bytes.len());
        // SAFETY: as in `copy_from_file`; `bytes` cannot point into the reservation.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), at.cast::<u8>(), bytes.len()) };
    }

    /// Clears mapped, writable memory.
    pub(crate) fn zero(&mut self, address: usize, len: usize) {
        let at = self.checked(address, len);
        // SAFETY: as in `copy_from_file`.
        unsafe { std::ptr::write_bytes(at.cast::<u8>(), 0, len) };
    }

    /// `mprotect`.
    pub(crate) fn protect(&mut self, address: usize, len: usize, prot: Prot) -> io::Result<()> {
        let at = self.checked(address, len);
        let flags = MprotectFlags::from_bits_truncate(prot_flags(prot).bits());
        // SAFETY: changes protections inside this reservation only.
        unsafe { rustix::mm::mprotect(at, len, flags) }?;
        Ok(())
    }

    /// `MADV_HUGEPAGE` on `[address, address + len)`: the kernel may back
    /// it with transparent huge pages, at fault time for anonymous memory.
    pub(crate) fn advise_huge_pages(&mut self, address: usize, len: usize) -> io::Result<()> {
        let at = self.checked(address, len);
        // SAFETY: advice changes how the kernel backs pages of this
        // reservation, never their contents.
        unsafe { rustix::mm::madvise(at, len, rustix::mm::Advice::LinuxHugepage) }?;
        Ok(())
    }

    /// `MADV_COLLAPSE` (Linux 6.1+): huge pages for the advised range now,
    /// rather than whenever khugepaged comes by.
    pub(crate) fn collapse_into_huge_pages(&mut self, address: usize, len: usize) -> io::Result<()> {
        // Not in rustix's Advice; the value of MADV_COLLAPSE in the kernel's uapi headers.
        const MADV_COLLAPSE: i32 = 25;
        let at = self.checked(address, len);
        // SAFETY: collapsing keeps contents and protections.
        if unsafe { libc::madvise(at, len, MADV_COLLAPSE) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// `munmap` (gaps that the plan gives back).
    pub(crate) fn unmap(&mut self, address: usize, len: usize) -> io::Result<()> {
        let at = self.checked(address, len);
        // SAFETY: unmaps part of this reservation, which no reference points into.
        unsafe { rustix::mm::munmap(at, len) }?;
        Ok(())
    }
}

fn prot_flags(prot: Prot) -> ProtFlags {
    let mut flags = ProtFlags::empty();
    for (bit, flag) in [(Prot::R, ProtFlags::READ), (Prot::W, ProtFlags::WRITE), (Prot::X, ProtFlags::EXEC)] {
        if prot.contains(bit) {
            flags |= flag;
        }
    }
    flags
}

/// Reads the NUL-terminated string the host's auxv points at (AT_PLATFORM).
pub(crate) fn host_string(address: usize) -> Option<Vec<u8>> {
    if address == 0 {
        return None;
    }
    // SAFETY: the kernel put this string on our initial stack, which stays
    // mapped and unmodified for the life of the process.
    Some(unsafe { CStr::from_ptr(address as *const std::ffi::c_char) }.to_bytes().to_vec())
}

/// This process's auxiliary vector as the kernel gave it, in one system call
/// (`PR_GET_AUXV`, Linux 6.4); `None` where the kernel is older.
pub(crate) fn auxv_bytes() -> Option<Vec<u8>> {
    const PR_GET_AUXV: libc::c_int = 0x4155_5856;
    // A few dozen entries of two words; the kernel says how many bytes it has.
    let mut buffer = vec![0u8; 1024];
    // SAFETY: the kernel writes at most `buffer.len()` bytes into `buffer`.
    let len = unsafe { libc::prctl(PR_GET_AUXV, buffer.as_mut_ptr(), buffer.len(), 0 as libc::c_ulong, 0 as libc::c_ulong) };
    let len = usize::try_from(len).ok().filter(|len| *len <= buffer.len())?;
    buffer.truncate(len);
    Some(buffer)
}

/// A saved signal mask.
pub(crate) struct SignalMask(libc::sigset_t);

/// Blocks every signal while the image is half built, returning the old mask.
pub(crate) fn block_signals() -> io::Result<SignalMask> {
    // SAFETY: sigfillset and sigprocmask write only into the local sets.
    unsafe {
        let mut all = std::mem::zeroed::<libc::sigset_t>();
        let mut old = std::mem::zeroed::<libc::sigset_t>();
        libc::sigfillset(&mut all);
        if libc::sigprocmask(libc::SIG_SETMASK, &all, &mut old) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(SignalMask(old))
    }
}

/// Restores the mask `block_signals` returned.
pub(crate) fn restore_signal_mask(mask: &SignalMask) -> io::Result<()> {
    // SAFETY: reads the saved set only.
    if unsafe { libc::sigprocmask(libc::SIG_SETMASK, &mask.0, null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Resets signal dispositions as `execve` does: handled signals go back to
/// the default, ignored ones stay ignored. Only the signals this process
/// itself can have given a disposition are looked at: the kernel reset every
/// handler when it ran pagefit, and since then only Rust's runtime has set
/// any (handlers for SIGSEGV and SIGBUS, installed only where the default
/// was in place; SIGPIPE ignored). SIGPIPE goes back to the default: the
/// parent's choice for it is lost, and the default is what a shell gives.
/// The alternate signal stack is dropped.
pub(crate) fn reset_signal_dispositions() {
    for signal in [libc::SIGSEGV, libc::SIGBUS, libc::SIGPIPE] {
        // SAFETY: querying a disposition writes only into `current`.
        let mut current = unsafe { std::mem::zeroed::<libc::sigaction>() };
        if unsafe { libc::sigaction(signal, null_mut(), &mut current) } != 0 {
            continue;
        }
        let ignored = current.sa_sigaction == libc::SIG_IGN;
        if current.sa_sigaction == libc::SIG_DFL || ignored && signal != libc::SIGPIPE {
            continue;
        }
        set_default_disposition(signal);
    }
    // SAFETY: SS_DISABLE registers no memory.
    unsafe {
        let disable = libc::stack_t { ss_sp: null_mut(), ss_flags: libc::SS_DISABLE, ss_size: 0 };
        libc::sigaltstack(&disable, null_mut());
    }
}

fn set_default_disposition(signal: i32) {
    // SAFETY: the default disposition runs no code in this process.
    unsafe {
        let mut default = std::mem::zeroed::<libc::sigaction>();
        default.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(signal, &default, null_mut());
    }
}

/// The host page size, for the emulation's SIGBUS handler.
static HOST_PAGE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(4096);

/// Emulation only: a P-page kernel zero-fills the part of a file's last
/// P-page past the end of the file, but this 4K host raises SIGBUS on host
/// pages wholly past it, which ld.so touches when it clears a library's bss
/// at P. This handler gives such a page anonymous zeros, readable and
/// writable, and returns, so the access is retried. Any other SIGBUS gets
/// the default disposition back and kills the process as it would have.
/// The handler stays installed in the program until it installs its own.
pub(crate) fn zero_fill_pages_past_end_of_file(host_page: usize) {
    HOST_PAGE.store(host_page, std::sync::atomic::Ordering::Relaxed);
    // SAFETY: the handler only makes system calls (async-signal-safe), and
    // its code stays mapped: pagefit's image is never unmapped.
    unsafe {
        let mut action = std::mem::zeroed::<libc::sigaction>();
        action.sa_sigaction = zero_fill_on_sigbus as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO;
        libc::sigaction(libc::SIGBUS, &action, null_mut());
    }
}

extern "C" fn zero_fill_on_sigbus(_signal: i32, info: *mut libc::siginfo_t, _context: *mut c_void) {
    let page = HOST_PAGE.load(std::sync::atomic::Ordering::Relaxed);
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let (code, address) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    if code == libc::BUS_ADRERR && address != 0 {
        let flags = MapFlags::PRIVATE | MapFlags::FIXED;
        // SAFETY: replaces one page that cannot be read or written anyway
        // (it lies past the end of its file) with zeros.
        let mapped =
            unsafe { rustix::mm::mmap_anonymous((address & !(page - 1)) as *mut c_void, page, ProtFlags::READ | ProtFlags::WRITE, flags) };
        if mapped.is_ok() {
            return;
        }
    }
    set_default_disposition(libc::SIGBUS);
}

/// Unregisters the rseq area pagefit's glibc registered for this thread.
///
/// The kernel keeps writing the CPU number into a registered area, which
/// lies in pagefit's leftover TLS; and the program's glibc cannot register
/// its own while one is registered. If the kernel refuses, the program runs
/// without rseq (its glibc falls back to system calls). musl registers none.
#[cfg(target_env = "gnu")]
pub(crate) fn unregister_rseq() {
    extern "C" {
        // glibc 2.35+: where this thread's rseq area is, relative to the thread pointer, and its size (0: none).
        static __rseq_offset: isize;
        static __rseq_size: std::ffi::c_uint;
    }
    const RSEQ_FLAG_UNREGISTER: i32 = 1;
    // SAFETY: plain reads of two constants glibc sets before main.
    let (offset, size) = unsafe { (__rseq_offset, __rseq_size) };
    if size == 0 {
        return;
    }
    let area = crate::arch::thread_pointer().wrapping_add_signed(offset);
    // The kernel wants the length it was given at registration: 32 up to
    // glibc 2.39, the feature size rounded up to 32 after.
    for length in [32, size.next_multiple_of(32)] {
        // SAFETY: unregistering only stops the kernel's writes into the area.
        if unsafe { libc::syscall(libc::SYS_rseq, area, length, RSEQ_FLAG_UNREGISTER, crate::arch::RSEQ_SIGNATURE) } == 0 {
            return;
        }
    }
}

/// Which kernel-side descriptor addresses `PR_SET_MM` could move to the new program.
pub(crate) fn set_mm_addresses(entries: &[(rustix::process::VirtualMemoryMapAddress, usize)]) -> io::Result<()> {
    for (option, address) in entries {
        // SAFETY: these only change what /proc/pid/{cmdline,environ} and brk
        // report and use; the addresses are the new program's own.
        unsafe { rustix::process::set_virtual_memory_map_address(*option, NonNull::new(*address as *mut c_void)) }?;
    }
    Ok(())
}

/// Dies the way the kernel kills a process it could not map: SIGSEGV.
pub(crate) fn die_by_sigsegv() -> ! {
    // Rust's own SIGSEGV handler would swallow a signal that does not come from a fault.
    set_default_disposition(libc::SIGSEGV);
    // SAFETY: unblocking one signal in a local set.
    unsafe {
        let mut segv = std::mem::zeroed::<libc::sigset_t>();
        libc::sigemptyset(&mut segv);
        libc::sigaddset(&mut segv, libc::SIGSEGV);
        libc::sigprocmask(libc::SIG_UNBLOCK, &segv, null_mut());
    }
    let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::SEGV);
    std::process::exit(139)
}

/// Jumps to `entry` with the stack pointer at `sp`.
///
/// # Safety
///
/// As for the per-arch `jump_to_entry`: a complete initial stack at `sp`
/// and a loaded program at `entry`.
pub(crate) unsafe fn jump(entry: usize, sp: usize) -> ! {
    // SAFETY: forwarded to the caller.
    unsafe { crate::arch::jump_to_entry(entry, sp) }
}
