//! Which record of a FatELF file `pagefit run` loads: a pure function of the
//! record table, the host and each candidate's largest ok page size.
//!
//! A record can run on the host when its machine and word size are the
//! host's, it is little-endian, and its OS ABI is one Linux runs (SYSV or GNU/Linux). Among
//! those, the ranking is, in order:
//!
//! 1. a record that loads exactly as at 4K at the page size P beats one that
//!    does not (a 16K host prefers a 64K-aligned build to a 4K one);
//! 2. among records ok at P, the smallest largest-ok page wins: the build
//!    linked closest to P (on a 4K host the 4K build, smaller and with fewer
//!    padding pages); among records not ok at P, the largest wins (the fewest
//!    pages the robust loader has to compose), and one not ok even at 4K or
//!    that could not be measured comes last;
//! 3. then the smaller record, then table order, so the choice never depends
//!    on anything but the file.
//!
//! The largest ok page is the record's own for version-2 page variants
//! (`max_page`) and measured by the caller otherwise (see
//! [`crate::fat::largest_ok_page`]), so this module reads no bytes.

use std::cmp::Ordering;
use std::fmt;

use object::elf;
use serde::{Serialize, Serializer};

use crate::elf::machine_name;
use crate::error::ParseError;
use crate::fat::{ByteOrder, FatFile, FatRecord, Target};
use crate::page::PageSize;

/// What `pagefit run` can load here: little-endian Linux programs for
/// `machine` with `bits`-bit words, mapped with pages of `page_size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct HostTarget {
    /// The host's `e_machine`.
    #[serde(serialize_with = "serialize_machine")]
    pub machine: u16,
    /// The host's word size: 32 or 64.
    pub bits: u8,
    /// The page size every mapping uses (the host's, or the emulated one).
    pub page_size: PageSize,
}

impl fmt::Display for HostTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}bit:le:sysv|linux with {} pages", machine_name(self.machine), self.bits, self.page_size)
    }
}

/// Why a record cannot run on the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "field", rename_all = "snake_case")]
pub enum Mismatch {
    /// Another CPU.
    Machine {
        /// The record's `e_machine`.
        #[serde(serialize_with = "serialize_machine")]
        record: u16,
    },
    /// Another word size than the host's.
    WordSize {
        /// The record's: 32 or 64.
        bits: u8,
    },
    /// Big-endian.
    ByteOrder,
    /// An OS ABI other than SYSV and GNU/Linux.
    OsAbi {
        /// `EI_OSABI`.
        osabi: u8,
    },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::Machine { record } => write!(f, "machine {}", machine_name(*record)),
            Mismatch::WordSize { bits } => write!(f, "{bits}-bit"),
            Mismatch::ByteOrder => f.write_str("big-endian"),
            Mismatch::OsAbi { osabi } => write!(f, "OS ABI {}", crate::fat::osabi_name(*osabi)),
        }
    }
}

/// Where a candidate's largest ok page size comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PageSource {
    /// Stored in the record (version 2, `maxpageN`).
    Recorded,
    /// Measured by pagefit's checker on the record's ELF file.
    Measured,
}

/// How one record fits the host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "fit", rename_all = "snake_case")]
pub enum RecordFit {
    /// It cannot run here.
    Foreign {
        /// Every field that differs from the host's.
        mismatches: Vec<Mismatch>,
    },
    /// It can run here.
    Candidate {
        /// The largest page size at which it loads exactly as at 4K; `None`
        /// when not even 4K, or when it could not be measured.
        largest_ok_page: Option<PageSize>,
        /// Where that comes from.
        source: PageSource,
        /// Whether it loads exactly as at 4K with the host's page size.
        ok_at_page: bool,
        /// Why it could not be measured, if it could not.
        unmeasured: Option<String>,
    },
}

/// What decided between the chosen record and the best of the others.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decider {
    /// No other record runs here.
    OnlyCandidate,
    /// The chosen record is ok at P and the other is not.
    OkAtPage,
    /// Both are ok at P; the chosen one's largest ok page is closer to P.
    CloserFit,
    /// Neither is ok at P; the chosen one is ok at a larger page size.
    LargerOkPage,
    /// Equal so far; the chosen record is smaller.
    SmallerRecord,
    /// Equal in all of the above; the chosen record comes first in the table.
    TableOrder,
}

/// One record and how it fits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RecordAssessment {
    /// `recordN`'s N.
    pub index: usize,
    /// Its target (`x86_64:64bit:le:sysv:osabiver0[:maxpageNk]`).
    #[serde(serialize_with = "serialize_display")]
    pub target: Target,
    /// Where its ELF file starts in the FatELF file.
    pub offset: u64,
    /// Its size.
    pub size: u64,
    /// How it fits the host.
    #[serde(flatten)]
    pub fit: RecordFit,
}

/// The outcome of [`select_record`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RecordSelection {
    /// What was asked for.
    pub host: HostTarget,
    /// The FatELF version (2: page variants).
    pub version: u16,
    /// The index of the record to load; `None` when no record runs here.
    pub chosen: Option<usize>,
    /// Why it beat the best other candidate.
    pub decided_by: Option<Decider>,
    /// Every record, in table order.
    pub records: Vec<RecordAssessment>,
}

impl RecordSelection {
    /// The chosen record's assessment.
    pub fn chosen_record(&self) -> Option<&RecordAssessment> {
        self.chosen.and_then(|index| self.records.get(index))
    }

    /// Whether the chosen record loads exactly as at 4K at the host's page
    /// size (otherwise only the robust loader runs it correctly).
    pub fn chosen_is_ok_at_page(&self) -> bool {
        matches!(self.chosen_record().map(|r| &r.fit), Some(RecordFit::Candidate { ok_at_page: true, .. }))
    }
}

/// The fields of `target` that keep it from running on `host`.
pub fn mismatches(target: &Target, host: &HostTarget) -> Vec<Mismatch> {
    let mut found = Vec::new();
    if target.machine != host.machine {
        found.push(Mismatch::Machine { record: target.machine });
    }
    if target.word_size.bits() != host.bits {
        found.push(Mismatch::WordSize { bits: target.word_size.bits() });
    }
    if target.byte_order != ByteOrder::Little {
        found.push(Mismatch::ByteOrder);
    }
    if target.osabi != elf::ELFOSABI_SYSV.0 && target.osabi != elf::ELFOSABI_GNU.0 {
        found.push(Mismatch::OsAbi { osabi: target.osabi });
    }
    found
}

/// Chooses the record of `fat` to load on `host` (ranking in the module
/// docs). `measure` gives the largest ok page of a candidate that does not
/// record one (version 1, or version 2 with `maxpage` 0); it is called only
/// for records that can run here.
pub fn select_record(
    fat: &FatFile,
    host: HostTarget,
    mut measure: impl FnMut(&FatRecord) -> Result<Option<PageSize>, ParseError>,
) -> RecordSelection {
    let records: Vec<RecordAssessment> = fat
        .records
        .iter()
        .map(|record| {
            let mismatches = mismatches(&record.target, &host);
            let fit = if !mismatches.is_empty() {
                RecordFit::Foreign { mismatches }
            } else {
                let (largest_ok_page, source, unmeasured) = match record.target.max_page {
                    Some(page) => (Some(page), PageSource::Recorded, None),
                    None => match measure(record) {
                        Ok(page) => (page, PageSource::Measured, None),
                        Err(error) => (None, PageSource::Measured, Some(error.to_string())),
                    },
                };
                let ok_at_page = largest_ok_page.is_some_and(|page| page >= host.page_size);
                RecordFit::Candidate { largest_ok_page, source, ok_at_page, unmeasured }
            };
            RecordAssessment { index: record.index, target: record.target, offset: record.offset, size: record.size, fit }
        })
        .collect();
    let mut ranked: Vec<&RecordAssessment> = records.iter().filter(|r| matches!(r.fit, RecordFit::Candidate { .. })).collect();
    ranked.sort_by(|a, b| compare(a, b).0);
    let chosen = ranked.first().map(|r| r.index);
    let decided_by = match ranked.as_slice() {
        [] => None,
        [_] => Some(Decider::OnlyCandidate),
        [best, next, ..] => Some(compare(best, next).1),
    };
    RecordSelection { host, version: fat.version, chosen, decided_by, records }
}

/// Orders two candidates, best first, and says which criterion decided.
fn compare(a: &RecordAssessment, b: &RecordAssessment) -> (Ordering, Decider) {
    let fit = |r: &RecordAssessment| match r.fit {
        RecordFit::Candidate { largest_ok_page, ok_at_page, .. } => (ok_at_page, largest_ok_page),
        RecordFit::Foreign { .. } => (false, None),
    };
    let ((a_ok, a_page), (b_ok, b_page)) = (fit(a), fit(b));
    let criteria = [
        (b_ok.cmp(&a_ok), Decider::OkAtPage),
        // Both ok at P (the first criterion settled mixed pairs): the
        // smaller largest-ok page first. Neither: the larger first, `None`
        // (not even 4K, or unmeasured) last.
        if a_ok { (a_page.cmp(&b_page), Decider::CloserFit) } else { (b_page.cmp(&a_page), Decider::LargerOkPage) },
        (a.size.cmp(&b.size), Decider::SmallerRecord),
        (a.index.cmp(&b.index), Decider::TableOrder),
    ];
    criteria.into_iter().find(|(order, _)| order.is_ne()).unwrap_or((Ordering::Equal, Decider::TableOrder))
}

impl fmt::Display for Decider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Decider::OnlyCandidate => "the only record for this host",
            Decider::OkAtPage => "the only candidate that loads at this page size exactly as at 4K",
            Decider::CloserFit => "ok at this page size and linked closest to it (the smallest largest-ok page)",
            Decider::LargerOkPage => "no candidate is ok at this page size; this one is ok at the largest",
            Decider::SmallerRecord => "as good as another candidate, and smaller",
            Decider::TableOrder => "as good as another candidate of the same size, and first in the table",
        })
    }
}

fn serialize_display<S: Serializer, T: fmt::Display>(value: &T, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

fn serialize_machine<S: Serializer>(machine: &u16, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&machine_name(*machine))
}

#[cfg(test)]
#[path = "select_tests.rs"]
mod tests;
