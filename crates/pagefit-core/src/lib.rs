//! pagefit-core: predicts how ELF files load at any page size.
//!
//! Everything here is pure: no syscalls, no `unsafe`, and the page size is
//! always a parameter. One folder per capability:
//!
//! - [`elf`] reads what a verdict needs through `object`'s low-level reader;
//! - [`predict`] holds the loader models (kernel, glibc, glibc-2.34, musl,
//!   bionic, bionic-compat) and the load planner: (segments, page size,
//!   loader) → mappings, effects, findings and an outcome; `predict::check`
//!   runs it for one file at several page sizes and loaders;
//! - [`closure`] finds every object a program loads, searching as ld.so does;
//! - [`fix`] plans `pagefit fix`'s rewrite (relayout, merge, rebase) and
//!   proves that a rewritten file loads as the input did;
//! - [`run`] plans how `pagefit run` maps an executable at any page size and
//!   lays out its initial stack;
//! - [`fat`] reads, validates and writes FatELF files and chooses the record
//!   `pagefit run` loads;
//! - [`runtime`] finds runtimes built for one page size (jemalloc) and
//!   reads the page size from the guard in their code;
//! - [`owners`] recognises which dependency ships a library from where a
//!   copy of it lies (Gradle, Maven, npm, pub) and ranks failing owners;
//! - [`render`] turns reports into text, JSON and SARIF.
//!
//! ```
//! use pagefit_core::elf::{ProgramHeader, Prot};
//! use pagefit_core::page::PageSize;
//! use pagefit_core::predict::{effect::Outcome, input::LoadInput, model::LoaderModel, plan::plan};
//! // seed 001: RX ends at 0x60ec1a0, RW starts at 0x60ed1a0; both in one 16K page.
//! let rx = ProgramHeader { index: 2, p_type: 1, prot: Prot::RX, offset: 0x1000, vaddr: 0x401000, filesz: 0x5ceb1a0, memsz: 0x5ceb1a0, align: 0x4000 };
//! let rw = ProgramHeader { index: 3, p_type: 1, prot: Prot::RW, offset: 0x5ced1a0, vaddr: 0x60ed1a0, filesz: 0x1000, memsz: 0x2000, align: 0x4000 };
//! let input = LoadInput { name: "claude", loads: vec![rx, rw], relro: None, sections: &[], symbols: &[], entry: Some(0x401000) };
//! assert_eq!(plan(&input, PageSize::K4, LoaderModel::Kernel).outcome, Outcome::Ok);
//! assert_eq!(plan(&input, PageSize::K16, LoaderModel::Kernel).outcome, Outcome::Broken);
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod closure;
pub mod elf;
pub mod error;
pub mod fat;
pub mod fix;
pub mod owners;
pub mod page;
pub mod predict;
pub mod render;
pub mod run;
pub mod runtime;
