//! What the planner needs to know about an object.

use crate::elf::{ElfFile, ProgramHeader, Role, Section, Symbol};
use crate::predict::memory::AddrRange;
use crate::predict::model::SegmentLayout;

/// What the planner needs to know about an object.
#[derive(Clone, Debug)]
pub struct LoadInput<'a> {
    /// The name a loader would print (the file name).
    pub name: &'a str,
    /// PT_LOAD headers in table order.
    pub loads: Vec<ProgramHeader>,
    /// PT_GNU_RELRO, if present.
    pub relro: Option<AddrRange>,
    /// Allocated sections sorted by address; empty when unknown.
    pub sections: &'a [Section],
    /// Function and object symbols sorted by address.
    pub symbols: &'a [Symbol],
    /// `e_entry`, for objects that are started (executables and interpreters).
    pub entry: Option<u64>,
}

impl<'a> LoadInput<'a> {
    /// Builds the input from a parsed file.
    pub fn from_elf(file: &'a ElfFile, name: &'a str) -> LoadInput<'a> {
        LoadInput {
            name,
            loads: file.loads().cloned().collect(),
            relro: file
                .header_of_type(object::elf::PT_GNU_RELRO)
                .filter(|r| r.memsz > 0)
                .map(|r| AddrRange::new(r.vaddr, r.vaddr.saturating_add(r.memsz))),
            sections: &file.sections,
            symbols: &file.symbols,
            entry: matches!(file.role, Role::Executable | Role::Interpreter).then_some(file.entry),
        }
    }

    pub(crate) fn layout(&self) -> SegmentLayout<'_> {
        SegmentLayout { loads: &self.loads, relro: self.relro }
    }
}
