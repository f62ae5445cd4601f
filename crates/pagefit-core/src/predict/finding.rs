//! Findings: structural facts about a layout at page size P, each with the
//! byte-level effects it causes under one loader. Findings are data; the
//! renderers in [`crate::render::report`] turn them into text, JSON or SARIF.

use serde::Serialize;

use crate::elf::{ProgramHeader, Prot};
use crate::page::PageSize;
use crate::predict::effect::{Clobber, Effect, Severity};
use crate::predict::input::LoadInput;
use crate::predict::memory::AddrRange;
use crate::predict::model::{AlignmentRule, CongruenceRule, LoaderModel, Rejection, RejectionCause, RelroEndRounding, PLAY_PAGE};

/// The kinds of finding. Their names are part of the JSON and SARIF contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum FindingKind {
    /// `p_vaddr - p_offset` is not a multiple of P.
    NonCongruent,
    /// Two PT_LOADs touch one P-page.
    SharedPage,
    /// A PT_LOAD's p_align is below P.
    AlignBelowPage,
    /// PT_GNU_RELRO's start is not on a P boundary.
    RelroStart,
    /// PT_GNU_RELRO's end is not on a P boundary.
    RelroEnd,
    /// Android's rule: RELRO must be a prefix or start on 16K, a suffix or end on 16K.
    AndroidRelro,
    /// glibc 2.36+: the first and last PT_LOAD share a page.
    FirstLastOverlap,
    /// A segment's bss is cleared or mapped on a page another segment uses.
    BssOnSharedPage,
    /// bionic compat's copy-and-protect layout.
    CompatLayout,
    /// The object has no PT_LOAD.
    NoLoadSegments,
    /// PT_GNU_RELRO, rounded to pages, covers addresses nothing is mapped at.
    RelroOverHole,
    /// Bytes that differ from the 4K load for a reason none of the above covers.
    Remapped,
    /// A library stored uncompressed in a zip (APK) at a file offset that is
    /// not a multiple of P: bionic cannot map it from the package.
    ZipAlignment,
    /// A runtime linked in was built for pages smaller than P (jemalloc's
    /// `LG_PAGE`): every allocation fails, whatever the program headers say.
    RuntimePageSize,
}

impl FindingKind {
    /// Every kind, for SARIF rule tables.
    pub const ALL: [FindingKind; 14] = [
        FindingKind::NonCongruent,
        FindingKind::SharedPage,
        FindingKind::AlignBelowPage,
        FindingKind::RelroStart,
        FindingKind::RelroEnd,
        FindingKind::AndroidRelro,
        FindingKind::FirstLastOverlap,
        FindingKind::BssOnSharedPage,
        FindingKind::CompatLayout,
        FindingKind::NoLoadSegments,
        FindingKind::RelroOverHole,
        FindingKind::Remapped,
        FindingKind::ZipAlignment,
        FindingKind::RuntimePageSize,
    ];

    /// The JSON name.
    pub fn name(self) -> &'static str {
        match self {
            FindingKind::NonCongruent => "NonCongruent",
            FindingKind::SharedPage => "SharedPage",
            FindingKind::AlignBelowPage => "AlignBelowPage",
            FindingKind::RelroStart => "RelroStart",
            FindingKind::RelroEnd => "RelroEnd",
            FindingKind::AndroidRelro => "AndroidRelro",
            FindingKind::FirstLastOverlap => "FirstLastOverlap",
            FindingKind::BssOnSharedPage => "BssOnSharedPage",
            FindingKind::CompatLayout => "CompatLayout",
            FindingKind::NoLoadSegments => "NoLoadSegments",
            FindingKind::RelroOverHole => "RelroOverHole",
            FindingKind::Remapped => "Remapped",
            FindingKind::ZipAlignment => "ZipAlignment",
            FindingKind::RuntimePageSize => "RuntimePageSize",
        }
    }

    /// One sentence on what the kind means, for SARIF rule descriptions and `--help`.
    pub fn summary(self) -> &'static str {
        match self {
            FindingKind::NonCongruent => {
                "p_vaddr - p_offset is not a multiple of the page size, so the segment cannot be mapped from the file"
            }
            FindingKind::SharedPage => "two PT_LOAD segments touch the same page; the later mapping replaces the page",
            FindingKind::AlignBelowPage => "a PT_LOAD's p_align is below the page size (rejected by bionic and glibc <= 2.34)",
            FindingKind::RelroStart => "PT_GNU_RELRO does not start on a page boundary; rounding protects bytes before it",
            FindingKind::RelroEnd => "PT_GNU_RELRO does not end on a page boundary; rounding leaves part writable or makes data read-only",
            FindingKind::AndroidRelro => "Android requires RELRO to be a prefix or start 16 KB aligned, and a suffix or end 16 KB aligned",
            FindingKind::FirstLastOverlap => "the first and last PT_LOAD share a page, which glibc 2.36+ rejects",
            FindingKind::BssOnSharedPage => "zeroing or mapping a segment's bss touches a page another segment uses",
            FindingKind::CompatLayout => "bionic's 16 KiB compat mode copies the image and protects it around one boundary",
            FindingKind::NoLoadSegments => "the object has no PT_LOAD segment",
            FindingKind::RelroOverHole => {
                "PT_GNU_RELRO rounded to pages covers unmapped addresses, so mprotect fails with ENOMEM and ld.so exits"
            }
            FindingKind::Remapped => "bytes end up with other contents or protections than at 4K",
            FindingKind::ZipAlignment => {
                "a library stored uncompressed in a zip starts at a file offset that is not a multiple of the page size, so bionic cannot map it"
            }
            FindingKind::RuntimePageSize => {
                "a runtime linked in (jemalloc) was built for smaller pages, so every allocation fails"
            }
        }
    }
}

/// A fact about the layout at P, with what it does under one loader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// What kind of finding.
    pub kind: FindingKind,
    /// How bad it is under this loader.
    pub severity: Severity,
    /// The PT_LOADs involved (program header indices).
    pub segments: Vec<usize>,
    /// The addresses involved.
    pub range: AddrRange,
    /// Sections in the range.
    pub sections: Vec<String>,
    /// Symbols touched by its effects.
    pub symbols: Vec<String>,
    /// For SharedPage: the segment whose mapping ends up owning the page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub winner: Option<usize>,
    /// For SharedPage: whether every shared byte keeps its content.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_intact: Option<bool>,
    /// The explanation in words.
    pub message: String,
    /// The byte ranges it changes (a subset of the plan's effects).
    pub effects: Vec<Effect>,
}

struct Context<'a, 'i> {
    input: &'a LoadInput<'i>,
    page: PageSize,
    loader: LoaderModel,
    rejection: Option<&'a Rejection>,
    effects: &'a [Effect],
}

impl Context<'_, '_> {
    fn finding(&self, kind: FindingKind, segments: Vec<usize>, range: AddrRange, message: String) -> Finding {
        let effects: Vec<Effect> = self.effects.iter().filter(|e| e.range.intersect(&range).is_some()).cloned().collect();
        let rejects = self
            .rejection
            .is_some_and(|r| rejection_kind(r.cause) == kind && (r.segment.is_none() || segments.contains(&r.segment.unwrap_or_default())));
        let severity = if rejects { Severity::Rejected } else { effects.iter().map(|e| e.severity).max().unwrap_or(Severity::Info) };
        let mut symbols: Vec<String> = Vec::new();
        for name in effects.iter().flat_map(|e| e.symbols.iter()) {
            if !symbols.contains(name) {
                symbols.push(name.clone());
            }
        }
        let consequences = describe_effects(&effects);
        let message = if consequences.is_empty() { message } else { format!("{message}: {consequences}") };
        Finding {
            kind,
            severity,
            segments,
            range,
            sections: self.sections_in(range),
            symbols,
            winner: None,
            bytes_intact: None,
            message,
            effects,
        }
    }

    fn sections_in(&self, range: AddrRange) -> Vec<String> {
        self.input.sections.iter().filter(|s| s.addr < range.end && range.start < s.end()).map(|s| s.name.clone()).collect()
    }

    /// The sections wholly inside `range`, by address: what Play compares
    /// to tell a RELRO that is its whole LOAD.
    fn sections_within(&self, range: AddrRange) -> Vec<(u64, u64)> {
        self.input.sections.iter().filter(|s| s.addr >= range.start && s.end() <= range.end).map(|s| (s.addr, s.size)).collect()
    }

    fn p(&self) -> String {
        self.page.to_string()
    }
}

fn rejection_kind(cause: RejectionCause) -> FindingKind {
    match cause {
        RejectionCause::NonCongruent => FindingKind::NonCongruent,
        RejectionCause::AlignBelowPage => FindingKind::AlignBelowPage,
        RejectionCause::FirstLastOverlap => FindingKind::FirstLastOverlap,
        RejectionCause::NoLoadSegments => FindingKind::NoLoadSegments,
        RejectionCause::RelroOverHole => FindingKind::RelroOverHole,
    }
}

fn segment_range(segment: &ProgramHeader) -> AddrRange {
    AddrRange::new(segment.vaddr, segment.mem_end())
}

fn label(segment: &ProgramHeader) -> String {
    format!("PT_LOAD[{}] ({})", segment.index, segment.prot.readelf_string().trim_end())
}

/// Computes every finding for one plan.
pub(crate) fn findings(
    input: &LoadInput<'_>,
    page: PageSize,
    loader: LoaderModel,
    rejection: Option<&Rejection>,
    effects: &[Effect],
) -> Vec<Finding> {
    let cx = Context { input, page, loader, rejection, effects };
    let mut out = Vec::new();
    if loader == LoaderModel::Play {
        play_rules(&cx, &mut out);
        return out;
    }
    if input.loads.is_empty() {
        out.push(cx.finding(FindingKind::NoLoadSegments, Vec::new(), AddrRange::new(0, 0), "the object has no PT_LOAD segment".into()));
        return out;
    }
    non_congruent(&cx, &mut out);
    align_below_page(&cx, &mut out);
    first_last_overlap(&cx, &mut out);
    relro_over_hole(&cx, &mut out);
    if rejection.is_none() {
        if loader == LoaderModel::BionicCompat && input.loads.iter().any(|s| s.align < page.bytes()) {
            let whole = AddrRange::new(input.loads[0].vaddr, input.loads.iter().map(|s| s.mem_end()).max().unwrap_or(0));
            let message = "compat mode reads every segment into anonymous memory and protects it around one boundary (RX below, RW above)"
                .to_string();
            out.push(cx.finding(FindingKind::CompatLayout, input.loads.iter().map(|s| s.index).collect(), whole, message));
        } else {
            shared_pages(&cx, &mut out);
            bss_on_shared_page(&cx, &mut out);
        }
        relro(&cx, &mut out);
    }
    if loader.traits().relro_end == RelroEndRounding::Up {
        android_relro(&cx, &mut out);
    }
    let unexplained: Vec<&Effect> = effects.iter().filter(|e| !out.iter().any(|f| f.effects.contains(e))).collect();
    if let (Some(first), Some(last)) = (unexplained.first(), unexplained.last()) {
        let range = AddrRange::new(first.range.start, last.range.end);
        out.push(cx.finding(FindingKind::Remapped, Vec::new(), range, "bytes differ from the 4K load".into()));
    }
    out
}

fn non_congruent(cx: &Context<'_, '_>, out: &mut Vec<Finding>) {
    let page = cx.page.bytes();
    for segment in cx.input.loads.iter().filter(|s| !s.is_congruent(page)) {
        let remainder = segment.vaddr.wrapping_sub(segment.offset) & (page - 1);
        let consequence = match cx.loader.traits().congruence {
            CongruenceRule::KillsProcess if segment.filesz > 0 => {
                "the kernel's mmap of it fails after the point of no return and the process dies with SIGSEGV".to_string()
            }
            CongruenceRule::KillsProcess => "it has no file bytes, so the kernel maps it anonymously".to_string(),
            CongruenceRule::Rejects(..) => "the dynamic linker refuses the object".to_string(),
            CongruenceRule::ShiftsSilently => {
                format!("it is mapped from the rounded-down offset, so its bytes come out shifted by {remainder:#x}")
            }
            CongruenceRule::Irrelevant => "compat mode copies the segment with pread, so this does not matter".to_string(),
        };
        let message = format!(
            "{}: p_vaddr {:#x} and p_offset {:#x} differ by {:#x} modulo {}; {consequence}",
            label(segment),
            segment.vaddr,
            segment.offset,
            remainder,
            cx.p()
        );
        out.push(cx.finding(FindingKind::NonCongruent, vec![segment.index], segment_range(segment), message));
    }
}

fn align_below_page(cx: &Context<'_, '_>, out: &mut Vec<Finding>) {
    let page = cx.page.bytes();
    let android = cx.loader.traits().relro_end == RelroEndRounding::Up;
    for segment in cx.input.loads.iter().filter(|s| s.align < page || s.align % page != 0) {
        let consequence = match cx.loader.traits().alignment {
            AlignmentRule::Ignored if cx.loader == LoaderModel::BionicCompat => "compat mode engages".to_string(),
            AlignmentRule::Ignored => "this loader does not check p_align".to_string(),
            AlignmentRule::EachMultipleOfPage(message) => format!("glibc <= 2.34 refuses it: {message}"),
            AlignmentRule::SmallestAtLeastPage(_) => "the linker refuses it unless 16 KiB compat mode is on".to_string(),
        };
        let message = if android {
            format!(
                "{}: {} KB LOAD section alignment, but {} KB is required; {consequence}",
                label(segment),
                segment.align / 1024,
                page / 1024
            )
        } else {
            format!("{}: p_align {:#x} is below the {} page; {consequence}", label(segment), segment.align, cx.p())
        };
        out.push(cx.finding(FindingKind::AlignBelowPage, vec![segment.index], AddrRange::new(segment.vaddr, segment.vaddr), message));
    }
}

fn first_last_overlap(cx: &Context<'_, '_>, out: &mut Vec<Finding>) {
    let Some(rejection) = cx.rejection.filter(|r| r.cause == RejectionCause::FirstLastOverlap) else { return };
    let loads = &cx.input.loads;
    let (first, last) = (&loads[0], &loads[loads.len() - 1]);
    let range = AddrRange::new(cx.page.align_down(last.vaddr), cx.page.align_up(first.file_end()).unwrap_or(u64::MAX));
    let message = format!(
        "the first segment {} ends at {:#x} and the last segment {} starts at {:#x}, inside the same {} page; glibc 2.36+ (BZ #28838) refuses it: {}",
        label(first),
        first.file_end(),
        label(last),
        last.vaddr,
        cx.p(),
        rejection.loader_message
    );
    out.push(cx.finding(FindingKind::FirstLastOverlap, vec![first.index, last.index], range, message));
}

fn relro_over_hole(cx: &Context<'_, '_>, out: &mut Vec<Finding>) {
    let (Some(_), Some(relro)) = (cx.rejection.filter(|r| r.cause == RejectionCause::RelroOverHole), cx.input.relro) else { return };
    let range = AddrRange::new(cx.page.align_down(relro.start), cx.page.align_down(relro.end));
    let message = format!(
        "PT_GNU_RELRO {:#x}-{:#x} rounded to {} pages is {:#x}-{:#x}, which includes addresses no segment maps; the kernel leaves holes between segments, so the libc's mprotect fails with ENOMEM and the program exits with status 127",
        relro.start,
        relro.end,
        cx.p(),
        range.start,
        range.end
    );
    out.push(cx.finding(FindingKind::RelroOverHole, Vec::new(), range, message));
}

fn page_span(page: PageSize, segment: &ProgramHeader) -> AddrRange {
    AddrRange::new(page.align_down(segment.vaddr), page.align_up(segment.mem_end()).unwrap_or(u64::MAX))
}

fn shared_pages(cx: &Context<'_, '_>, out: &mut Vec<Finding>) {
    let loads = &cx.input.loads;
    for (i, earlier) in loads.iter().enumerate() {
        for later in &loads[i + 1..] {
            let Some(shared) = page_span(cx.page, earlier).intersect(&page_span(cx.page, later)) else { continue };
            let same_delta = earlier.file_shift() == later.file_shift();
            let (first_mapped, last_mapped) = if earlier.vaddr <= later.vaddr { (earlier, later) } else { (later, earlier) };
            let mut finding = cx.finding(FindingKind::SharedPage, vec![earlier.index, later.index], shared, String::new());
            let intact = !finding.effects.iter().any(|e| e.clobbered.is_some());
            let victim_bytes = AddrRange::new(shared.start.max(first_mapped.vaddr), first_mapped.mem_end().min(shared.end));
            let mut message = format!(
                "{} and {} share the {} page {:#x}-{:#x}; {} is mapped last and wins",
                label(earlier),
                label(later),
                cx.p(),
                shared.start,
                shared.end,
                label(last_mapped)
            );
            if last_mapped.vaddr > shared.start && !victim_bytes.is_empty() {
                message.push_str(&format!(
                    ": it is widened down to {:#x} and covers the last {:#x} bytes of {}",
                    shared.start,
                    victim_bytes.len(),
                    name_bytes(cx, victim_bytes, first_mapped)
                ));
            }
            message.push_str(if same_delta { " (same file delta, so file bytes stay right)" } else { " (different file delta)" });
            let consequences = describe_effects(&finding.effects);
            if !consequences.is_empty() {
                message.push_str(": ");
                message.push_str(&consequences);
            }
            finding.message = message;
            finding.winner = Some(last_mapped.index);
            finding.bytes_intact = Some(intact);
            out.push(finding);
        }
    }
}

fn name_bytes(cx: &Context<'_, '_>, range: AddrRange, segment: &ProgramHeader) -> String {
    let sections = cx.sections_in(range);
    if sections.is_empty() {
        label(segment)
    } else {
        sections.join("/")
    }
}

fn bss_on_shared_page(cx: &Context<'_, '_>, out: &mut Vec<Finding>) {
    let loads = &cx.input.loads;
    for segment in loads.iter().filter(|s| s.memsz > s.filesz) {
        let zero_from = if segment.filesz > 0 { segment.file_end() } else { cx.page.align_down(segment.vaddr) };
        let zeroed = AddrRange::new(zero_from, cx.page.align_up(segment.mem_end()).unwrap_or(u64::MAX));
        for other in loads.iter().filter(|o| o.index != segment.index) {
            let Some(hit) = zeroed.intersect(&segment_range(other)) else { continue };
            let message = format!(
                "the bss of {} ({:#x}-{:#x}) is cleared or mapped with page granularity over {:#x}-{:#x}, which belongs to {}",
                label(segment),
                segment.file_end(),
                segment.mem_end(),
                hit.start,
                hit.end,
                label(other)
            );
            out.push(cx.finding(FindingKind::BssOnSharedPage, vec![segment.index, other.index], hit, message));
        }
    }
}

fn relro(cx: &Context<'_, '_>, out: &mut Vec<Finding>) {
    let Some(relro) = cx.input.relro else { return };
    let page = cx.page;
    let rounds_down = cx.loader.traits().relro_end == RelroEndRounding::Down;
    if rounds_down && page.align_down(relro.start) == page.align_down(relro.end) {
        let message = format!(
            "PT_GNU_RELRO {:#x}-{:#x} does not contain a whole {} page, so rounding leaves nothing to protect and it stays writable after relocation",
            relro.start,
            relro.end,
            cx.p()
        );
        out.push(cx.finding(FindingKind::RelroEnd, Vec::new(), relro, message));
        return;
    }
    if !page.divides(relro.start) {
        let rounded = page.align_down(relro.start);
        let message = format!(
            "PT_GNU_RELRO starts at {:#x}, not on a {} boundary: it is rounded down to {rounded:#x}, so {rounded:#x}-{:#x} becomes read-only as well",
            relro.start,
            cx.p(),
            relro.start
        );
        out.push(cx.finding(FindingKind::RelroStart, Vec::new(), AddrRange::new(rounded, relro.start), message));
    }
    if !page.divides(relro.end) {
        let (range, message) = match cx.loader.traits().relro_end {
            RelroEndRounding::Down => {
                let rounded = page.align_down(relro.end);
                (
                    AddrRange::new(rounded, relro.end),
                    format!("PT_GNU_RELRO ends at {:#x}, not on a {} boundary: it is rounded down to {rounded:#x}, so {rounded:#x}-{:#x} stays writable after relocation", relro.end, cx.p(), relro.end),
                )
            }
            RelroEndRounding::Up => {
                let rounded = page.align_up(relro.end).unwrap_or(u64::MAX);
                (
                    AddrRange::new(relro.end, rounded),
                    format!("PT_GNU_RELRO ends at {:#x}, not on a {} boundary: it is rounded up to {rounded:#x}, so {:#x}-{rounded:#x} becomes read-only", relro.end, cx.p(), relro.end),
                )
            }
        };
        out.push(cx.finding(FindingKind::RelroEnd, Vec::new(), range, message));
    }
}

/// Android Studio / Play: RELRO must be a prefix of its segment or start on
/// 16 KB, and a suffix or end on 16 KB.
fn android_relro(cx: &Context<'_, '_>, out: &mut Vec<Finding>) {
    let Some(relro) = cx.input.relro else { return };
    // Android Studio's rule: the containing LOAD is the last one starting at or below RELRO.
    let Some(segment) = cx.input.loads.iter().filter(|s| s.vaddr <= relro.start).max_by_key(|s| s.vaddr) else { return };
    let kb = cx.page.bytes() / 1024;
    if segment.vaddr != relro.start && !cx.page.divides(relro.start) {
        let message = format!("RELRO is not a prefix and its start is not {kb} KB aligned");
        out.push(cx.finding(FindingKind::AndroidRelro, vec![segment.index], AddrRange::new(relro.start, relro.start), message));
    }
    if segment.mem_end() != relro.end && !cx.page.divides(relro.end) {
        let message = format!("RELRO is not a suffix and its end is not {kb} KB aligned");
        out.push(cx.finding(FindingKind::AndroidRelro, vec![segment.index], AddrRange::new(relro.end, relro.end), message));
    }
}

/// What to do about a LOAD or RELRO that Play rejects.
const PLAY_RELINK: &str = "relink with -Wl,-z,max-page-size=16384 -Wl,-z,common-page-size=16384 (NDK r28 and later do by default)";

/// Google Play's 16 KB check of a 64-bit library, as Android Studio's
/// `com.android.ide.common.pagealign` (PageAlignUtils.kt, which says it
/// matches Play's own checker) and AOSP's `elfpolicy` (`VerifyLoadSegmentsAlignment`,
/// `VerifyRelroSegments`) write it. Every finding rejects. The messages
/// start with Play Console's own words. 32-bit ABIs are exempted by
/// `check::apply_play_abi`, stored members' zip offsets by `check::apply_zip_alignment`.
fn play_rules(cx: &Context<'_, '_>, out: &mut Vec<Finding>) {
    let required = PLAY_PAGE.bytes();
    let mut reject = |kind, segments: Vec<usize>, range, message: String| {
        let mut finding = cx.finding(kind, segments, range, message);
        finding.severity = Severity::Rejected;
        out.push(finding);
    };
    // Only the smallest p_align is reported; elfpolicy fails it when below
    // 16 KB, Android Studio when not a multiple of 16 KB.
    if let Some(smallest) = cx.input.loads.iter().min_by_key(|s| s.align).filter(|s| s.align < required || !PLAY_PAGE.divides(s.align)) {
        let message = format!(
            "{} LOAD section alignment, but 16 KB is required: {}; {PLAY_RELINK}, or run `pagefit fix --page-size 16k`",
            human_size(smallest.align),
            play_header(&label(smallest), segment_range(smallest), smallest.align)
        );
        reject(FindingKind::AlignBelowPage, vec![smallest.index], AddrRange::new(smallest.vaddr, smallest.vaddr), message);
    }
    let Some(relro) = cx.input.relro else { return };
    let relro_header = play_header("PT_GNU_RELRO", relro, 1);
    let not_prefix = "RELRO is not a prefix and its start is not 16 KB aligned";
    let not_suffix = "RELRO is not a suffix and its end is not 16 KB aligned";
    let mut by_address: Vec<&ProgramHeader> = cx.input.loads.iter().collect();
    by_address.sort_by_key(|s| s.vaddr);
    // The containing LOAD is the last one starting at or below RELRO's start.
    let Some(position) = by_address.iter().rposition(|s| s.vaddr <= relro.start) else {
        let message = format!("{not_prefix}: {relro_header} starts below every PT_LOAD; {PLAY_RELINK}");
        reject(FindingKind::AndroidRelro, Vec::new(), AddrRange::new(relro.start, relro.start), message);
        return;
    };
    let load = by_address[position];
    if let Some(next) = by_address.get(position + 1).filter(|next| relro.end > next.vaddr) {
        let message =
            format!("{not_suffix}: {relro_header} runs into {}, which starts at {:#010x}; {PLAY_RELINK}", label(next), next.vaddr);
        reject(FindingKind::AndroidRelro, vec![load.index, next.index], AddrRange::new(next.vaddr, relro.end), message);
        return;
    }
    // Exempt: RELRO holds the same sections as its LOAD, so the LOAD's own alignment covers it.
    if cx.sections_within(relro) == cx.sections_within(segment_range(load)) {
        return;
    }
    if relro.start != load.vaddr && !PLAY_PAGE.divides(relro.start) {
        let message = format!(
            "{not_prefix}: {relro_header} starts {:#x} into {} ({:#010x}), {:#x} past a 16 KB boundary; {PLAY_RELINK}",
            relro.start - load.vaddr,
            label(load),
            load.vaddr,
            PLAY_PAGE.offset_in_page(relro.start)
        );
        reject(FindingKind::AndroidRelro, vec![load.index], AddrRange::new(relro.start, relro.start), message);
    }
    if relro.end != load.mem_end() && !PLAY_PAGE.divides(relro.end) {
        let message = format!(
            "{not_suffix}: {relro_header} ends {:#x} before the end of {} ({:#010x}), {:#x} past a 16 KB boundary; {PLAY_RELINK}",
            load.mem_end().saturating_sub(relro.end),
            label(load),
            load.mem_end(),
            PLAY_PAGE.offset_in_page(relro.end)
        );
        reject(FindingKind::AndroidRelro, vec![load.index], AddrRange::new(relro.end, relro.end), message);
    }
}

/// A program header as Play Console and Android Studio print it
/// (`PT_GNU_RELRO start: 0x001ecc20 end: 0x00203000 align: 0x00000001`).
fn play_header(name: &str, range: AddrRange, align: u64) -> String {
    format!("{name} start: {:#010x} end: {:#010x} align: {align:#010x}", range.start, range.end)
}

/// Android Studio's sizes: `4 KB`, or bytes when not a whole number of KB.
pub fn human_size(bytes: u64) -> String {
    if bytes >= 1024 && bytes % 1024 == 0 {
        format!("{} KB", bytes / 1024)
    } else {
        format!("{bytes} B")
    }
}

/// Words for a list of effects, one clause each, joined with `; `.
pub fn describe_effects(effects: &[Effect]) -> String {
    effects.iter().map(describe_effect).collect::<Vec<_>>().join("; ")
}

/// Words for one effect: `.plt, .iplt 0x60ec000-0x60ec1a0 reads as zeros and turns r-x → rw-; execution there finds zeros`.
pub fn describe_effect(effect: &Effect) -> String {
    let range = format!("{:#x}-{:#x}", effect.range.start, effect.range.end);
    let what = if effect.sections.is_empty() { range } else { format!("{} {range}", effect.sections.join(", ")) };
    let mut parts: Vec<String> = Vec::new();
    match effect.clobbered {
        Some(Clobber::Zeros) => parts.push("reads as zeros".into()),
        Some(Clobber::FileBytes { offset }) => parts.push(format!("holds the file bytes at offset {offset:#x} instead of its own")),
        None => {}
    }
    match (effect.before, effect.after) {
        (Some(before), Some(after)) if before != after => parts.push(format!("turns {} → {}", before.maps_string(), after.maps_string())),
        (Some(_), None) => parts.push("is not mapped".into()),
        _ => {}
    }
    let lost = |bit: Prot| effect.before.is_some_and(|b| b.contains(bit)) && !effect.after.is_some_and(|a| a.contains(bit));
    let mut text = format!("{what} {}", parts.join(" and "));
    if effect.code && effect.clobbered == Some(Clobber::Zeros) {
        text.push_str("; execution there finds zeros");
    } else if effect.code && effect.clobbered.is_some() {
        text.push_str("; execution there runs the wrong bytes");
    } else if effect.code && lost(Prot::X) {
        text.push_str("; code there cannot execute");
    } else if effect.severity == Severity::Broken && lost(Prot::W) {
        text.push_str("; writes there fault");
    }
    if !effect.symbols.is_empty() {
        text.push_str(&format!(" (symbols: {})", effect.symbols.join(", ")));
    }
    text
}

#[cfg(test)]
#[path = "play_tests.rs"]
mod play_tests;
