//! pagefit-core: predicts how ELF files load at any page size.
//!
//! Everything here is pure: no syscalls, no `unsafe`, and the page size is
//! always a parameter. The pieces:
//!
//! - [`elf`] reads what a verdict needs through `object`'s low-level reader;
//! - [`model`] holds the loader models (kernel, glibc, glibc-2.34, musl,
//!   bionic, bionic-compat) as data plus a simulation of their mapping calls;
//! - [`plan`] is the load planner: (segments, page size, loader) → mappings,
//!   effects, findings and an outcome;
//! - [`check`] turns a parsed file into a report for several page sizes and
//!   loaders, and [`report`] renders reports as text or JSON, [`sarif`] as SARIF 2.1.0;
//! - [`closure`] finds every object a program loads, searching as ld.so does;
//! - [`robust`] plans how `pagefit run` maps an executable at any page size
//!   (file-backed pages where congruent, composed pages elsewhere), and how
//!   binfmt_elf would; [`stack`] lays out the initial stack;
//! - [`fat`] reads, validates and writes FatELF files (several ELF builds in
//!   one file), including pagefit's page-size variants (version 2), and
//!   [`fat_select`] chooses the record `pagefit run` loads;
//! - [`rewrite`] plans `pagefit fix`'s rewrite (new headers and output
//!   pieces), and [`verify`] proves a rewritten file loads as the input did.
//!
//! ```
//! use pagefit_core::{elf::{ProgramHeader, Prot}, model::LoaderModel, page::PageSize, plan::{plan, LoadInput, Outcome}};
//! // seed 001: RX ends at 0x60ec1a0, RW starts at 0x60ed1a0; both in one 16K page.
//! let rx = ProgramHeader { index: 2, p_type: 1, prot: Prot::RX, offset: 0x1000, vaddr: 0x401000, filesz: 0x5ceb1a0, memsz: 0x5ceb1a0, align: 0x4000 };
//! let rw = ProgramHeader { index: 3, p_type: 1, prot: Prot::RW, offset: 0x5ced1a0, vaddr: 0x60ed1a0, filesz: 0x1000, memsz: 0x2000, align: 0x4000 };
//! let input = LoadInput { name: "claude", loads: vec![rx, rw], relro: None, sections: &[], symbols: &[], entry: Some(0x401000) };
//! assert_eq!(plan(&input, PageSize::K4, LoaderModel::Kernel).outcome, Outcome::Ok);
//! assert_eq!(plan(&input, PageSize::K16, LoaderModel::Kernel).outcome, Outcome::Broken);
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod check;
pub mod closure;
pub mod elf;
pub mod error;
pub mod fat;
pub mod fat_select;
pub mod finding;
pub mod memory;
pub mod model;
pub mod origin;
pub mod page;
pub mod plan;
pub mod report;
pub mod rewrite;
pub mod robust;
pub mod sarif;
pub mod stack;
pub mod verify;
