//! The rewrite planner behind `pagefit fix`: a pure function from a parsed
//! file, a page size P and a strategy to the new program and section headers
//! and the list of output pieces that make up the rewritten file.
//!
//! Two phases, as `object`'s writer does: [`plan_rewrite`] decides every
//! offset (this module), then the caller streams the pieces in order
//! (copy an input range, write literal bytes, leave zeros).
//!
//! relayout and merge keep every virtual address, so nothing in the image
//! that holds an address (relocations, symbols, dynamic tags, DWARF) needs to
//! change; rebase moves every address by Δ and patches what holds one:
//!
//! - **relayout** moves file contents so that `p_offset ≡ p_vaddr (mod P)` and
//!   sets `p_align = P`. PT_LOADs that share a P-page must have the same flags;
//!   they become one segment, with any bss between them written as zeros.
//! - **merge** does the same for PT_LOADs with different flags that share a
//!   P-page, giving the merged segment the union of their flags. The cost is
//!   reported in words.
//! - **rebase** (ET_DYN only) shifts the image by Δ so that the first
//!   writable segment's first 4K page starts a P-page, then lays it out as
//!   merge does: read-only data joins code, RELRO joins the data, and nothing
//!   becomes writable and executable. Every value holding an address moves by
//!   Δ ([`rebase`]); the file is refused when one cannot be accounted for.
//!
//! In all three, PT_GNU_RELRO is trimmed (or extended into nothing) so that no
//! loader's rounding to P makes a page that is written read-only or takes
//! execute from code, and every file offset (e_phoff, e_shoff, p_offset,
//! sh_offset) is moved with the bytes it points at.

use crate::elf::{ElfFile, ElfKind, Platform, Prot, Role};
use crate::page::PageSize;
use crate::predict::check::default_loaders;
use crate::predict::effect::Outcome;
use crate::predict::input::LoadInput;
use crate::predict::model::LoaderModel;
use crate::predict::plan::{baseline, plan_against, BASELINE_PAGE};
use object::elf;
use object::ReadRef;

use super::headers::{RawHeaders, RawProgramHeader};
use super::layout::{plan_layout, Shift};
use super::plan::{Refusal, RewritePlan, Strategy};
use super::rebase;

/// The loaders a fixed file must be `ok` under: the kernel for programs,
/// bionic for anything Android, and glibc (old and new), musl and bionic for
/// other shared objects (the same bytes must load under whichever the system has).
pub fn target_loaders(file: &ElfFile) -> Vec<LoaderModel> {
    match (file.platform, file.role) {
        (Platform::Android, _) => vec![LoaderModel::Bionic],
        (_, Role::SharedObject) => vec![LoaderModel::Glibc, LoaderModel::Glibc234, LoaderModel::Musl, LoaderModel::Bionic],
        _ => default_loaders(file),
    }
}

/// Plans rewriting `file` (parsed from `data` with at least section headers
/// and their names) so that it loads at page size `page` exactly as at 4K.
///
/// With [`Strategy::Auto`], relayout, rebase and merge are tried in that
/// order; the plan returned is the first whose new headers the load planner
/// calls `ok` at `page` under every [`target_loaders`] model. On failure every
/// strategy's refusal is returned.
pub fn plan_rewrite<'data, R: ReadRef<'data>>(
    data: R,
    file: &ElfFile,
    page: PageSize,
    strategy: Strategy,
) -> Result<RewritePlan, Vec<Refusal>> {
    let headers = RawHeaders::read(data).map_err(|e| vec![Refusal { strategy, reason: e.to_string() }])?;
    let order: &[Strategy] = match strategy {
        Strategy::Auto => &[Strategy::Relayout, Strategy::Rebase, Strategy::Merge],
        Strategy::Relayout => &[Strategy::Relayout],
        Strategy::Rebase => &[Strategy::Rebase],
        Strategy::Merge => &[Strategy::Merge],
    };
    let mut refused = Vec::new();
    for &candidate in order {
        let attempt = match candidate {
            Strategy::Rebase => plan_rebase(data, &headers, file, page),
            _ => plan_layout(&headers, file, page, candidate == Strategy::Merge, None),
        }
        .and_then(|plan| refuse_android_wx(file, plan))
        .and_then(|plan| prove_loads_ok(file, &plan).map(|()| plan));
        match attempt {
            Ok(mut plan) => {
                plan.strategy = candidate;
                plan.refused = refused;
                return Ok(plan);
            }
            Err(reason) => refused.push(Refusal { strategy: candidate, reason }),
        }
    }
    Err(refused)
}

/// bionic refuses W+X segments for apps targeting API 26 and later.
fn refuse_android_wx(file: &ElfFile, plan: RewritePlan) -> Result<RewritePlan, String> {
    if file.platform == Platform::Android && plan.writable_executable {
        return Err("the merged segment would be writable and executable, and bionic refuses such libraries: \"has load segments that are both writable and executable\"".into());
    }
    Ok(plan)
}

/// Rebase: choose Δ, account for every address the file holds, then lay the
/// shifted headers out as merge does, refusing a writable and executable result.
fn plan_rebase<'data, R: ReadRef<'data>>(data: R, headers: &RawHeaders, file: &ElfFile, page: PageSize) -> Result<RewritePlan, String> {
    if file.kind != ElfKind::Dyn {
        return Err("rebase moves the load address, which only ET_DYN objects (shared objects, PIEs) allow".into());
    }
    if file.role == Role::Interpreter {
        return Err("a dynamic linker relocates itself and finds its load base from __ehdr_start, assuming it is linked at 0".into());
    }
    if file.role == Role::Executable && file.interpreter.is_none() {
        return Err("a static PIE relocates itself and finds its load base from __ehdr_start, assuming it is linked at 0".into());
    }
    if !file.sections_read {
        return Err("without section headers the symbol tables and GOT cannot be found to move their addresses".into());
    }
    let delta = choose_delta(headers, page)?;
    rebase::check_eh_frame_hdr(data, headers)?;
    let patches = rebase::address_patches(data, headers, file, delta)?;
    rebase::patches_clear_of_headers(headers, &patches)?;
    rebase::agree_with_sections(data, headers, &patches, delta)?;
    let shifted_headers = headers.shifted(delta)?;
    let mut shifted_file = file.clone();
    for section in &mut shifted_file.sections {
        section.addr += delta;
    }
    let mut plan = plan_layout(&shifted_headers, &shifted_file, page, true, Some(Shift { delta, patches }))?;
    if plan.writable_executable {
        return Err(format!(
            "after a shift by {delta:#x}, writable and executable segments would still share {page} pages (a writable segment precedes code)"
        ));
    }
    let debug: Vec<&str> = headers.sections.iter().filter(|s| s.name.starts_with(".debug_")).map(|s| s.name.as_str()).collect();
    if !debug.is_empty() {
        plan.warnings.push(format!(
            "debug info ({}) is not adjusted: debuggers will see every address in it off by Δ = {delta:#x}",
            debug.join(", ")
        ));
    }
    plan.warnings.push(format!("every address moved by Δ = {delta:#x}: symbols, relocations, dynamic tags, program and section headers"));
    Ok(plan)
}

/// Δ puts the first 4K page of the first writable PT_LOAD at a P boundary.
/// It is a multiple of 4K and of every alignment the image asks for (sections,
/// PT_TLS), so aligned data stays aligned and TLS offsets do not change; the
/// 4K page is free of read-only bytes because the input loads at 4K.
fn choose_delta(headers: &RawHeaders, page: PageSize) -> Result<u64, String> {
    let mut loads: Vec<&RawProgramHeader> =
        headers.program_headers.iter().filter(|ph| ph.p_type == elf::PT_LOAD.0 && ph.p_memsz > 0).collect();
    loads.sort_by_key(|ph| ph.p_vaddr);
    let first_writable = loads
        .iter()
        .position(|ph| Prot::from_p_flags(ph.p_flags).is_writable())
        .ok_or("no segment is writable, so there is no boundary between code and data to move")?;
    let read_only_end = loads[..first_writable].iter().map(|ph| ph.p_vaddr + ph.p_memsz).max().unwrap_or(0);
    let alignment = headers
        .sections
        .iter()
        .filter(|s| s.is_alloc())
        .map(|s| s.sh_addralign)
        .chain(headers.program_headers.iter().filter(|ph| ph.p_type == elf::PT_TLS.0).map(|ph| ph.p_align))
        .filter(|a| a.is_power_of_two())
        .fold(BASELINE_PAGE.bytes(), u64::max);
    let boundary = loads[first_writable].p_vaddr & !(alignment - 1);
    if boundary < read_only_end {
        return Err(format!(
            "read-only bytes end at {read_only_end:#x}, after the {alignment:#x}-aligned start {boundary:#x} of the writable data (Δ must be a multiple of {alignment:#x}, the largest alignment of a 4K page, a section or PT_TLS)"
        ));
    }
    let delta = page.offset_in_page(page.bytes() - page.offset_in_page(boundary));
    if delta == 0 {
        return Err(format!("the boundary between code and data ({boundary:#x}) is already on a {page} boundary"));
    }
    Ok(delta)
}

/// The new headers as the planner sees them, before anything is written.
fn rewritten_file(file: &ElfFile, plan: &RewritePlan) -> ElfFile {
    let mut out = file.clone();
    out.program_headers = plan.program_headers.iter().enumerate().map(|(i, ph)| ph.widened(i)).collect();
    out.program_header_offset = plan.phoff;
    out.file_len = plan.output_len;
    if out.entry != 0 {
        out.entry += plan.delta;
    }
    // Sections move by Δ (0 but for rebase), and their offsets with their segments.
    for section in &mut out.sections {
        if let Some(new) = plan.section_headers.iter().find(|s| s.name == section.name && s.sh_addr == section.addr + plan.delta) {
            section.offset = new.sh_offset;
            section.addr = new.sh_addr;
        }
    }
    out
}

/// The pure half of verification, run before anything is written: the new
/// headers load `ok` under every target loader at every page size from 4K to
/// P (a file fixed for 64K still runs on 4K and 16K kernels).
fn prove_loads_ok(file: &ElfFile, plan: &RewritePlan) -> Result<(), String> {
    let out = rewritten_file(file, plan);
    let input = LoadInput::from_elf(&out, "output");
    for loader in target_loaders(file) {
        let base = baseline(&input, BASELINE_PAGE, loader);
        for page in BASELINE_PAGE.up_to(plan.page_size) {
            let planned = plan_against(&input, page, loader, &base);
            if planned.outcome != Outcome::Ok {
                let why = planned
                    .message
                    .or_else(|| planned.findings.first().map(|f| f.message.clone()))
                    .unwrap_or_else(|| "the mapping differs from the 4K mapping".into());
                return Err(format!("the rewritten headers would still be {} under {loader} at {page}: {why}", planned.outcome.name()));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "strategies_tests.rs"]
mod tests;
