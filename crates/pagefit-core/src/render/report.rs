//! Renderers: the same report data as text or JSON. Everything writes to a
//! `&mut dyn Write` so that output is golden-testable.

use std::io::{self, Write};

use serde::Serialize;

use crate::elf::ElfFile;
use crate::owners::Owner;
use crate::predict::check::FileReport;
use crate::predict::model::LoaderModel;
use crate::predict::plan::{LoadPlan, Mapping};

/// An input that could not be analysed.
#[derive(Clone, Debug, Serialize)]
pub struct InputError {
    /// The path as given.
    pub path: String,
    /// What went wrong, with the file offset when known.
    pub message: String,
}

/// The JSON document `pagefit check --format json` prints.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CheckDocument {
    /// One report per ELF file.
    pub files: Vec<FileReport>,
    /// Inputs that could not be analysed.
    pub errors: Vec<InputError>,
}

/// One line per file: the verdict per page size and the largest ok page size.
/// With `verbose`, each non-ok result's findings follow, indented.
pub fn write_check_text(w: &mut dyn Write, report: &FileReport, verbose: bool) -> io::Result<()> {
    let mut loaders: Vec<&str> = Vec::new();
    for result in &report.results {
        if !loaders.contains(&result.loader.name()) {
            loaders.push(result.loader.name());
        }
    }
    let verdicts: Vec<String> = report
        .results
        .iter()
        .map(|r| {
            if loaders.len() > 1 {
                format!("{} {} {}", r.page_size, r.loader, r.outcome.name())
            } else {
                format!("{} {}", r.page_size, r.outcome.name())
            }
        })
        .collect();
    let largest: Vec<String> = report
        .max_ok_page_size
        .iter()
        .map(|(loader, size)| format!("{loader} {}", size.map_or_else(|| "none".to_string(), |s| s.to_string())))
        .collect();
    let optional = if report.required { "" } else { " (not required)" };
    let runtimes: String = report
        .runtime
        .iter()
        .map(|r| format!("; {} built for {}", r.runtime.name(), r.page_size.map_or_else(|| "unknown".to_string(), |p| p.to_string())))
        .collect();
    let wheel = report.wheel_platform.as_ref().map_or(String::new(), |tag| format!("; wheel platform {tag}"));
    writeln!(
        w,
        "{}{}: {} {} {}{optional}: {}; largest ok page: {}{runtimes}{wheel}",
        report.path,
        owners_text(report.owners.as_deref()),
        serde_plain(&report.kind),
        report.machine,
        loaders.join("+"),
        verdicts.join(", "),
        largest.join(", ")
    )?;
    if verbose {
        for result in report.results.iter().filter(|r| r.outcome != crate::predict::effect::Outcome::Ok || !r.findings.is_empty()) {
            writeln!(w, "  {} {}: {}", result.page_size, result.loader, result.outcome.name())?;
            if let Some(message) = result.message.as_ref().filter(|m| !result.findings.iter().any(|f| &f.message == *m)) {
                writeln!(w, "    {message}")?;
            }
            for finding in &result.findings {
                writeln!(w, "    {} [{}] {}", finding.kind.name(), serde_plain(&finding.severity), finding.message)?;
            }
        }
    }
    Ok(())
}

/// ` (owner; owner)` after a path, when owners were looked for.
fn owners_text(owners: Option<&[Owner]>) -> String {
    match owners {
        None => String::new(),
        Some([]) => " (no owner found)".to_string(),
        Some(owners) => format!(" ({})", owners.iter().map(Owner::label).collect::<Vec<_>>().join("; ")),
    }
}

fn serde_plain<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// `pagefit explain` as text: the file's load segments, the predicted maps at
/// the baseline and at P side by side, and every finding in words.
pub fn write_explain_text(w: &mut dyn Write, path: &str, file: &ElfFile, baseline: &LoadPlan, plans: &[LoadPlan]) -> io::Result<()> {
    writeln!(w, "{path}: {} {}-bit {} {}", serde_plain(&file.kind), file.bits, file.machine_name(), serde_plain(&file.role))?;
    if let Some(interp) = &file.interpreter {
        writeln!(w, "interpreter: {interp}")?;
    }
    writeln!(w)?;
    writeln!(w, "Load segments:")?;
    writeln!(w, "  {:<10} {:<18} {:<18} {:<10} {:<10} {:<3} Align", "Index", "Offset", "VirtAddr", "FileSiz", "MemSiz", "Flg")?;
    for ph in file.program_headers.iter().filter(|p| p.p_type == object::elf::PT_LOAD.0 || p.p_type == object::elf::PT_GNU_RELRO.0) {
        let name = if ph.p_type == object::elf::PT_LOAD.0 { format!("LOAD[{}]", ph.index) } else { format!("RELRO[{}]", ph.index) };
        writeln!(
            w,
            "  {:<10} {:#018x} {:#018x} {:#010x} {:#010x} {:<3} {:#x}",
            name,
            ph.offset,
            ph.vaddr,
            ph.filesz,
            ph.memsz,
            ph.prot.readelf_string(),
            ph.align
        )?;
    }
    for plan in plans {
        writeln!(w)?;
        writeln!(w, "{} at {} under {}: {}", path, plan.page_size, plan.loader, plan.outcome.name())?;
        // A message that is a finding's own (Play's) is shown once, with the finding.
        if let Some(message) = plan.message.as_ref().filter(|m| !plan.findings.iter().any(|f| &f.message == *m)) {
            writeln!(w, "  {message}")?;
        }
        // Play maps nothing: its verdict is its findings.
        if plan.loader != LoaderModel::Play {
            writeln!(w)?;
            write_maps_side_by_side(w, baseline, plan)?;
        }
        if !plan.findings.is_empty() {
            writeln!(w)?;
            writeln!(w, "Findings:")?;
            for finding in &plan.findings {
                writeln!(w, "  - {} [{}]: {}", finding.kind.name(), serde_plain(&finding.severity), finding.message)?;
            }
        }
    }
    Ok(())
}

fn map_line(mapping: &Mapping) -> String {
    let offset = mapping.offset.map_or_else(|| "anon    ".to_string(), |o| format!("{o:08x}"));
    let segment = mapping.segment.map_or_else(String::new, |s| format!("LOAD[{s}]"));
    format!("{:08x}-{:08x} {}p {} {}", mapping.start, mapping.end, mapping.prot.maps_string(), offset, segment)
}

fn write_maps_side_by_side(w: &mut dyn Write, baseline: &LoadPlan, plan: &LoadPlan) -> io::Result<()> {
    let left: Vec<String> = baseline.mappings.iter().map(map_line).collect();
    let right: Vec<String> = plan.mappings.iter().map(map_line).collect();
    let width = left.iter().map(String::len).max().unwrap_or(0).max(24);
    let left_title = format!("at {} ({})", baseline.page_size, baseline.loader);
    writeln!(w, "  {left_title:<width$}   at {} ({})", plan.page_size, plan.loader)?;
    for row in 0..left.len().max(right.len()) {
        let l = left.get(row).map_or("", String::as_str);
        let r = right.get(row).map_or(if row == 0 { "(nothing mapped)" } else { "" }, String::as_str);
        writeln!(w, "  {l:<width$}   {r}")?;
    }
    Ok(())
}
