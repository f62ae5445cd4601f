//! A global allocator that serves a process's first allocations from a
//! fixed arena in `.bss` and everything after from another allocator.
//!
//! `pagefit run` makes a few hundred small allocations before it hands the
//! process over, and never frees most of them in time to matter. musl's
//! allocator gives each size class its own `mmap` and returns it with
//! `munmap` as soon as it empties: a score of system calls and fresh page
//! faults per start. The arena costs only the pages actually touched, with
//! no system call. Long jobs (`check` of a tree) use the arena up in their
//! first moments and then run on the fallback allocator; what the arena
//! holds is never reused, so at most its size is lost.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The arena's size. `pagefit run /bin/true` uses about 100 KiB of it.
const ARENA_BYTES: usize = 512 * 1024;

/// The allocator; install it with `#[global_allocator]`. Allocations that
/// do not fit in the arena go to `Fallback`.
pub struct StartupArena<Fallback> {
    /// Offset of the first free byte of `memory`.
    used: AtomicUsize,
    memory: UnsafeCell<[u8; ARENA_BYTES]>,
    fallback: Fallback,
}

// SAFETY: the arena's bytes are handed out in disjoint blocks, claimed with
// atomic compare-and-swap on `used`; no two threads get the same byte.
unsafe impl<Fallback: Sync> Sync for StartupArena<Fallback> {}

impl<Fallback> StartupArena<Fallback> {
    /// An empty arena in front of `fallback`, for a `static`.
    pub const fn new(fallback: Fallback) -> Self {
        Self { used: AtomicUsize::new(0), memory: UnsafeCell::new([0; ARENA_BYTES]), fallback }
    }

    fn base(&self) -> usize {
        self.memory.get() as usize
    }

    fn contains(&self, ptr: *mut u8) -> bool {
        (self.base()..self.base() + ARENA_BYTES).contains(&(ptr as usize))
    }

    /// Claims a block of `layout` from the arena, or `None` when it is full.
    fn claim(&self, layout: Layout) -> Option<*mut u8> {
        let base = self.base();
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let start = (base + used).checked_next_multiple_of(layout.align())? - base;
            let end = start.checked_add(layout.size()).filter(|end| *end <= ARENA_BYTES)?;
            match self.used.compare_exchange_weak(used, end, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Some(self.memory.get().cast::<u8>().wrapping_add(start)),
                Err(current) => used = current,
            }
        }
    }

    /// Grows or shrinks the arena's most recent block where it lies, so a
    /// growing `Vec` or `String` does not leave a trail of copies.
    fn resize_last(&self, ptr: *mut u8, old_size: usize, new_size: usize) -> bool {
        let start = ptr as usize - self.base();
        let Some(new_end) = start.checked_add(new_size).filter(|end| *end <= ARENA_BYTES) else { return false };
        self.used.compare_exchange(start + old_size, new_end, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }
}

// SAFETY: every block is either claimed from the arena (aligned, in bounds,
// disjoint, see `claim`) or comes from the fallback, and goes back to where it
// came from: arena blocks are recognised by address.
unsafe impl<Fallback: GlobalAlloc> GlobalAlloc for StartupArena<Fallback> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match self.claim(layout) {
            Some(ptr) => ptr,
            // SAFETY: the caller's layout has a non-zero size, as `alloc` requires.
            None => unsafe { self.fallback.alloc(layout) },
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match self.claim(layout) {
            // Arena bytes are zero until first handed out, but a block given
            // back by `resize_last` may be handed out again.
            Some(ptr) => {
                // SAFETY: `claim` returned `layout.size()` writable bytes at `ptr`.
                unsafe { ptr.write_bytes(0, layout.size()) };
                ptr
            }
            // SAFETY: as in `alloc`.
            None => unsafe { self.fallback.alloc_zeroed(layout) },
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if self.contains(ptr) {
            // Give the most recent block back; others stay until exit.
            self.resize_last(ptr, layout.size(), 0);
        } else {
            // SAFETY: `ptr` came from the fallback with this layout.
            unsafe { self.fallback.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !self.contains(ptr) {
            // SAFETY: `ptr` came from the fallback with this layout.
            return unsafe { self.fallback.realloc(ptr, layout, new_size) };
        }
        // A block shrinks where it lies (giving the tail back if it is the
        // arena's last), and the last block also grows there.
        if self.resize_last(ptr, layout.size(), new_size) || new_size <= layout.size() {
            return ptr;
        }
        // SAFETY: the caller guarantees `new_size` with this alignment is a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: as in `alloc`.
        let new_ptr = unsafe { self.alloc(new_layout) };
        if !new_ptr.is_null() {
            // SAFETY: both blocks hold at least min(old, new) bytes and are disjoint.
            unsafe { std::ptr::copy_nonoverlapping(ptr, new_ptr, layout.size().min(new_size)) };
        }
        new_ptr
    }
}

#[cfg(test)]
mod tests {
    use std::alloc::System;

    use super::*;

    #[test]
    fn blocks_are_aligned_disjoint_and_go_to_the_fallback_when_full() {
        let arena = StartupArena::new(System);
        let small = Layout::from_size_align(24, 8).unwrap();
        let aligned = Layout::from_size_align(100, 64).unwrap();
        // SAFETY: non-zero layouts; every block is freed with its own layout.
        unsafe {
            let a = arena.alloc(small);
            let b = arena.alloc(aligned);
            assert!(arena.contains(a) && arena.contains(b));
            assert_eq!(b as usize % 64, 0);
            assert!(b as usize >= a as usize + 24);
            let huge = Layout::from_size_align(ARENA_BYTES, 8).unwrap();
            let c = arena.alloc(huge);
            assert!(!c.is_null() && !arena.contains(c));
            c.write_bytes(0xaa, ARENA_BYTES);
            arena.dealloc(c, huge);
            arena.dealloc(b, aligned);
            arena.dealloc(a, small);
        }
    }

    #[test]
    fn the_last_block_grows_in_place_and_others_move_with_their_contents() {
        let arena = StartupArena::new(System);
        let layout = Layout::from_size_align(16, 8).unwrap();
        // SAFETY: non-zero layouts; each block is resized or freed with its current layout.
        unsafe {
            let first = arena.alloc(layout);
            first.write_bytes(7, 16);
            let grown = arena.realloc(first, layout, 4096);
            assert_eq!(grown, first);
            let second = arena.alloc(layout);
            let grown_layout = Layout::from_size_align(4096, 8).unwrap();
            let moved = arena.realloc(grown, grown_layout, 8192);
            assert_ne!(moved, grown);
            assert!(moved as usize > second as usize);
            assert_eq!(std::slice::from_raw_parts(moved, 16), &[7; 16]);
            // A freed last block is handed out again, zeroed when asked.
            moved.write_bytes(9, 8192);
            arena.dealloc(moved, Layout::from_size_align(8192, 8).unwrap());
            let zeroed = arena.alloc_zeroed(grown_layout);
            assert_eq!(zeroed, moved);
            assert!(std::slice::from_raw_parts(zeroed, 4096).iter().all(|b| *b == 0));
            // A block that is not the last shrinks where it lies.
            let after = arena.alloc(layout);
            assert_eq!(arena.realloc(zeroed, grown_layout, 8), zeroed);
            arena.dealloc(after, layout);
        }
    }
}
