//! The load planner: (load segments, page size, loader model) → predicted
//! mappings, byte-level effects, findings and an outcome.
//!
//! [`plan`] is a pure function. It replays the loader at 4 KiB (the page
//! size the file was almost certainly tested with) and at P, and compares
//! both with the image the program headers ask for, byte range by byte range.
//! Sections, when known, say which bytes matter and what they are: code that
//! must stay executable, data that will be written, or padding nobody reads.

use std::collections::HashSet;

use serde::Serialize;

use crate::elf::{ProgramHeader, Prot, Section, Symbol};
use crate::page::PageSize;
use crate::predict::effect::{Clobber, Effect, Outcome, Severity};
use crate::predict::finding::Finding;
use crate::predict::input::LoadInput;
use crate::predict::memory::{AddrRange, Backing, Content, MemoryImage};
use crate::predict::model::{simulate, LoaderModel, Rejection};

/// One line of the predicted `/proc/pid/maps`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Mapping {
    /// First address (link-time; add the load bias for a PIE or library).
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// Protection, `r-x` style.
    pub prot: Prot,
    /// File offset of `start`, for file-backed mappings.
    pub offset: Option<u64>,
    /// The PT_LOAD (program header index) whose mapping call produced it.
    pub segment: Option<usize>,
}

/// The planner's answer for one (file, page size, loader).
#[derive(Clone, Debug, Serialize)]
pub struct LoadPlan {
    /// Page size P.
    pub page_size: PageSize,
    /// Loader model.
    pub loader: LoaderModel,
    /// The verdict.
    pub outcome: Outcome,
    /// For `rejected`, what the user sees.
    pub message: Option<String>,
    /// Explanations.
    pub findings: Vec<Finding>,
    /// Byte ranges that differ from the 4K load.
    pub effects: Vec<Effect>,
    /// The predicted memory map (empty when rejected).
    pub mappings: Vec<Mapping>,
}

/// The page size the comparison baseline is loaded at.
pub const BASELINE_PAGE: PageSize = PageSize::K4;

/// Plans loading `input` at page size `page` with `loader`.
pub fn plan(input: &LoadInput<'_>, page: PageSize, loader: LoaderModel) -> LoadPlan {
    plan_against(input, page, loader, &baseline(input, BASELINE_PAGE.min(page), loader))
}

/// The image to compare against: the loader's own load at `page`, or, when it
/// refuses the file even there, the image the program headers describe.
pub fn baseline(input: &LoadInput<'_>, page: PageSize, loader: LoaderModel) -> MemoryImage {
    simulate(input.layout(), page, loader).unwrap_or_else(|_| ideal_image(input, page))
}

/// [`plan`] with a baseline computed once by [`baseline`] for several page sizes.
pub fn plan_against(input: &LoadInput<'_>, page: PageSize, loader: LoaderModel, baseline: &MemoryImage) -> LoadPlan {
    let (image, rejection) = match simulate(input.layout(), page, loader) {
        Ok(image) => (image, None),
        Err(rejection) => (MemoryImage::new(), Some(rejection)),
    };
    let effects = if rejection.is_none() { compare(input, baseline, &image, Severity::Rejected) } else { Vec::new() };
    let findings = crate::predict::finding::findings(input, page, loader, rejection.as_ref(), &effects);
    let worst = effects.iter().map(|e| e.severity).chain(findings.iter().map(|f| f.severity)).max();
    let outcome = if rejection.is_some() { Outcome::Rejected } else { Outcome::from_severity(worst) };
    let message = match &rejection {
        Some(r) => Some(user_message(input, loader, r)),
        // Play's verdict is its findings; the first says why it rejects.
        None if loader == LoaderModel::Play => findings.iter().find(|f| f.severity == Severity::Rejected).map(|f| f.message.clone()),
        None => entry_fault(input, &image),
    };
    let mappings = image.vmas().iter().map(|r| mapping_of(r.range, r.prot, r.backing, r.segment)).collect();
    LoadPlan { page_size: page, loader, outcome, message, findings, effects, mappings }
}

/// A started program whose entry point is not executable dies at its first instruction.
fn entry_fault(input: &LoadInput<'_>, image: &MemoryImage) -> Option<String> {
    let entry = input.entry?;
    let prot = image.region_at(entry).map(|r| r.prot);
    if prot.is_some_and(|p| p.is_executable()) || !input.loads.iter().any(|s| s.vaddr <= entry && entry < s.mem_end()) {
        return None;
    }
    let mapped = prot.map_or_else(|| "unmapped".to_string(), |p| format!("mapped {}", p.maps_string()));
    Some(format!("killed by SIGSEGV at start: the entry point {entry:#x} is on a page {mapped}"))
}

fn user_message(input: &LoadInput<'_>, loader: LoaderModel, rejection: &Rejection) -> String {
    loader.traits().rejection_format.replace("{name}", input.name).replace("{message}", &rejection.loader_message)
}

fn mapping_of(range: AddrRange, prot: Prot, backing: Backing, segment: Option<usize>) -> Mapping {
    let offset = match backing {
        Backing::File { shift } => u64::try_from(i128::from(range.start) + shift).ok(),
        Backing::Anonymous => None,
    };
    Mapping { start: range.start, end: range.end, prot, offset, segment }
}

/// The image the program headers describe, with RELRO read-only to the byte:
/// the baseline when the loader rejects the file even at 4K.
fn ideal_image(input: &LoadInput<'_>, page: PageSize) -> MemoryImage {
    let mut image = MemoryImage::new();
    for segment in &input.loads {
        let range = AddrRange::new(page.align_down(segment.vaddr), page.align_up(segment.mem_end()).unwrap_or(u64::MAX));
        image.map(range, segment.prot, Backing::File { shift: segment.file_shift() }, Some(segment.index));
        image.zero(AddrRange::new(segment.file_end(), segment.mem_end()));
    }
    if let Some(relro) = input.relro {
        image.protect(relro, Prot::R);
    }
    image
}

/// What the bytes of `[start, ..)` are and need, from the sections or, without
/// them, from the segment.
struct ByteRole<'s> {
    significant: bool,
    code: bool,
    written: bool,
    sections: Vec<&'s Section>,
}

fn byte_role<'s>(segment: &ProgramHeader, sections: &mut Covering<'s, Section>, at: u64) -> ByteRole<'s> {
    if sections.items.is_empty() {
        return ByteRole {
            significant: true,
            code: segment.prot.is_executable(),
            written: segment.prot.is_writable(),
            sections: Vec::new(),
        };
    }
    let covering = sections.at(at);
    ByteRole {
        significant: !covering.is_empty(),
        code: covering.iter().any(|s| s.is_code()),
        written: covering.iter().any(|s| s.is_writable()),
        sections: covering,
    }
}

/// The items (segments, sections) covering each of a rising sequence of
/// addresses, in table order: a sweep over the items sorted by start, so a
/// file with 65,535 sections costs no more than one scan of them per address.
struct Covering<'s, T> {
    items: &'s [T],
    /// Indexes into `items`, by start address.
    by_start: Vec<usize>,
    /// How many of `by_start` have started.
    started: usize,
    /// Items started and not yet ended.
    active: Vec<usize>,
    range: fn(&T) -> (u64, u64),
}

impl<'s, T> Covering<'s, T> {
    fn new(items: &'s [T], range: fn(&T) -> (u64, u64)) -> Covering<'s, T> {
        let mut by_start: Vec<usize> = (0..items.len()).collect();
        by_start.sort_by_key(|&i| range(&items[i]).0);
        Covering { items, by_start, started: 0, active: Vec::new(), range }
    }

    /// The items covering `at`, which is no lower than the last address asked for.
    fn at(&mut self, at: u64) -> Vec<&'s T> {
        while let Some(&next) = self.by_start.get(self.started).filter(|&&i| (self.range)(&self.items[i]).0 <= at) {
            self.active.push(next);
            self.started += 1;
        }
        let (items, range) = (self.items, self.range);
        self.active.retain(|&i| at < range(&items[i]).1);
        let mut covering = self.active.clone();
        covering.sort_unstable();
        covering.into_iter().map(|i| &items[i]).collect()
    }
}

/// Compares the baseline and predicted images over every byte of every
/// segment, in address order. Stops after the first effect as severe as
/// `stop_at`: a verdict needs only the worst effect, a yes/no only the first.
fn compare(input: &LoadInput<'_>, baseline: &MemoryImage, predicted: &MemoryImage, stop_at: Severity) -> Vec<Effect> {
    let mut cuts: Vec<u64> = Vec::new();
    for segment in &input.loads {
        cuts.extend([segment.vaddr, segment.file_end(), segment.mem_end()]);
    }
    for section in input.sections {
        cuts.extend([section.addr, section.end()]);
    }
    for region in baseline.regions().iter().chain(predicted.regions()) {
        cuts.extend([region.range.start, region.range.end]);
    }
    cuts.sort_unstable();
    cuts.dedup();
    let mut segments = Covering::new(&input.loads, |s| (s.vaddr, s.mem_end()));
    let mut sections = Covering::new(input.sections, |s| (s.addr, s.end()));
    let mut effects: Vec<Effect> = Vec::new();
    for pair in cuts.windows(2) {
        let piece = AddrRange::new(pair[0], pair[1]);
        let Some(&segment) = segments.at(piece.start).first() else { continue };
        let role = byte_role(segment, &mut sections, piece.start);
        if !role.significant {
            continue;
        }
        let wanted = if piece.start < segment.file_end() { Content::File { shift: segment.file_shift() } } else { Content::Zero };
        let before = baseline.region_at(piece.start).map(|r| r.prot);
        let now = predicted.region_at(piece.start);
        let after = now.map(|r| r.prot);
        let clobbered = match now.map(|r| r.content) {
            Some(content) if content != wanted => Some(match content {
                Content::Zero => Clobber::Zeros,
                Content::File { .. } => Clobber::FileBytes { offset: content.file_offset_at(piece.start).unwrap_or_default() },
            }),
            _ => None,
        };
        let lost = |bit: Prot| before.is_some_and(|b| b.contains(bit)) && !after.is_some_and(|a| a.contains(bit));
        let severity = if clobbered.is_some()
            || after.is_none() && before.is_some()
            || lost(Prot::R)
            || role.code && lost(Prot::X)
            || role.written && lost(Prot::W)
        {
            Severity::Broken
        } else if before.is_some() && before != after {
            Severity::Degraded
        } else {
            continue;
        };
        let sections: Vec<String> = role.sections.iter().map(|s| s.name.clone()).collect();
        if let Some(last) = effects.last_mut() {
            let continues = last.range.end == piece.start
                && last.severity == severity
                && last.before == before
                && last.after == after
                && last.code == role.code
                && same_clobber_source(last, clobbered);
            if continues {
                last.range.end = piece.end;
                last.sections.extend(sections);
                continue;
            }
        }
        effects.push(Effect { range: piece, severity, before, after, clobbered, code: role.code, sections, symbols: Vec::new() });
        if severity >= stop_at {
            break;
        }
    }
    for effect in &mut effects {
        // Each name once, where it first appeared (a merged effect took every piece's names).
        let mut seen = HashSet::new();
        effect.sections.retain(|name| seen.insert(name.clone()));
        effect.symbols = symbols_in(input.symbols, effect.range);
    }
    effects
}

fn same_clobber_source(previous: &Effect, next: Option<Clobber>) -> bool {
    match (previous.clobbered, next) {
        (None, None) | (Some(Clobber::Zeros), Some(Clobber::Zeros)) => true,
        (Some(Clobber::FileBytes { offset: a }), Some(Clobber::FileBytes { offset: b })) => a + i128::from(previous.range.len()) == b,
        _ => false,
    }
}

/// At most this many symbol names are listed per range.
const SYMBOLS_PER_RANGE: usize = 4;

fn symbols_in(symbols: &[Symbol], range: AddrRange) -> Vec<String> {
    let first = symbols.partition_point(|s| s.addr.saturating_add(s.size.max(1)) <= range.start);
    let touching: Vec<&Symbol> =
        symbols[first..].iter().take_while(|s| s.addr < range.end).filter(|s| s.addr.saturating_add(s.size.max(1)) > range.start).collect();
    let mut names: Vec<String> = touching.iter().take(SYMBOLS_PER_RANGE).map(|s| s.name.clone()).collect();
    if touching.len() > SYMBOLS_PER_RANGE {
        names.push(format!("and {} more", touching.len() - SYMBOLS_PER_RANGE));
    }
    names
}

/// Just the outcome and message of [`plan_against`], without building
/// findings or maps: what a one-line verdict needs.
pub fn verdict_against(input: &LoadInput<'_>, page: PageSize, loader: LoaderModel, baseline: &MemoryImage) -> (Outcome, Option<String>) {
    if loader == LoaderModel::Play {
        let planned = plan_against(input, page, loader, baseline);
        return (planned.outcome, planned.message);
    }
    match simulate(input.layout(), page, loader) {
        Err(rejection) => (Outcome::Rejected, Some(user_message(input, loader, &rejection))),
        Ok(image) => {
            let worst = compare(input, baseline, &image, Severity::Broken).iter().map(|e| e.severity).max();
            (Outcome::from_severity(worst), entry_fault(input, &image))
        }
    }
}

/// Whether `input` loads at `page` exactly as in `baseline`.
fn is_ok_at(input: &LoadInput<'_>, page: PageSize, loader: LoaderModel, baseline: &MemoryImage) -> bool {
    if loader == LoaderModel::Play {
        return plan_against(input, page, loader, baseline).outcome == Outcome::Ok;
    }
    simulate(input.layout(), page, loader).is_ok_and(|image| compare(input, baseline, &image, Severity::Info).is_empty())
}

/// The largest page size from 4K up to `limit` at which `input` is `ok`.
///
/// Every model except bionic compat and Play needs each file-backed segment congruent
/// modulo P to be `ok` (the others refuse it or shift its bytes), so the
/// search starts at the largest power of two dividing every `p_vaddr - p_offset`
/// and walks down to the first `ok`.
pub fn max_ok_page_size(input: &LoadInput<'_>, loader: LoaderModel, limit: PageSize) -> Option<PageSize> {
    max_ok_page_size_against(input, loader, limit, &baseline(input, BASELINE_PAGE, loader))
}

/// [`max_ok_page_size`] with the 4K baseline already computed.
pub fn max_ok_page_size_against(input: &LoadInput<'_>, loader: LoaderModel, limit: PageSize, baseline: &MemoryImage) -> Option<PageSize> {
    let congruence_bound = input
        .loads
        .iter()
        .filter(|s| s.filesz > 0 && !matches!(loader, LoaderModel::BionicCompat | LoaderModel::Play))
        .map(|s| s.vaddr.wrapping_sub(s.offset))
        .filter(|&delta| delta != 0)
        .map(|delta| 1u64 << delta.trailing_zeros())
        .min()
        .unwrap_or(u64::MAX);
    let candidates: Vec<PageSize> = PageSize::K4.up_to(limit).filter(|p| p.bytes() <= congruence_bound).collect();
    candidates.into_iter().rev().find(|&page| is_ok_at(input, page, loader, baseline))
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
