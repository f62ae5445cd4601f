//! The `pagefit` command: a thin layer over `pagefit-core`, in `lib.rs`.

use std::process::ExitCode;

/// `run`'s start-up allocations come from the arena; what follows, from
/// glibc's malloc, or under musl from mimalloc: musl's malloc serialises
/// threads on one lock and returns memory with `munmap` (TLB shootdowns),
/// which made `check` of a tree six times slower.
#[cfg(not(target_env = "musl"))]
type Fallback = std::alloc::System;
#[cfg(target_env = "musl")]
type Fallback = mimalloc::MiMalloc;

#[global_allocator]
static ALLOCATOR: pagefit_loader::startup_arena::StartupArena<Fallback> = pagefit_loader::startup_arena::StartupArena::new(Fallback {});

fn main() -> ExitCode {
    ExitCode::from(pagefit_cli::run_cli(std::env::args_os().collect()))
}
