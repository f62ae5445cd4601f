//! pagefit-loader: the userspace ELF loader behind `pagefit run`.
//!
//! This crate will hold all of pagefit's unsafe code: `mmap` and friends
//! through `rustix`, and the per-architecture entry jump in `arch/`. It
//! executes plans made by `pagefit-core`'s pure planner and decides nothing
//! itself. It is intentionally empty until the `run` capability is built.
#![deny(missing_docs)]
