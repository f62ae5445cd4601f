//! `pagefit fix`'s text output: one report, or a closure's.

use std::io::{self, Write};

use crate::elf::Prot;
use crate::fix::headers::program_type_name;
use crate::fix::plan::{PieceSource, Strategy};
use crate::fix::report::{ClosureFixReport, FixReport, FixStatus};

/// Writes one file's (or FatELF record's) report.
pub fn write_fix_text(out: &mut dyn Write, report: &FixReport) -> io::Result<()> {
    let page = report.page_size;
    let strategy = match report.strategy {
        Some(Strategy::Rebase) => format!("rebase (Δ {:#x})", report.delta),
        Some(strategy) => strategy.name().to_string(),
        None => "-".to_string(),
    };
    let reason = report.reason.as_deref();
    match report.status {
        FixStatus::Fixed => {
            writeln!(out, "{}: fixed for {page} by {strategy} -> {}", report.path, report.output.as_deref().unwrap_or("?"))?
        }
        FixStatus::AlreadyOk => writeln!(out, "{}: already ok at {page}; nothing to fix", report.path)?,
        FixStatus::NotSelected => writeln!(out, "{}: not selected by --record; kept as it is", report.path)?,
        FixStatus::Kept => writeln!(out, "{}: ok at {page}; kept where it is", report.path)?,
        FixStatus::NotWritten => writeln!(out, "{}: fixed and proven for {page} by {strategy}; {}", report.path, reason.unwrap_or(""))?,
        FixStatus::Planned => writeln!(out, "{}: plan for {page} by {strategy} (dry run, nothing written)", report.path)?,
        FixStatus::Refused => writeln!(out, "{}: refused at {page}: {}", report.path, reason.unwrap_or("no strategy applies"))?,
        FixStatus::VerificationFailed => {
            writeln!(out, "{}: verification failed at {page} ({strategy}); output deleted: {}", report.path, reason.unwrap_or(""))?
        }
    }
    if let Some(remedy) = &report.remedy {
        writeln!(out, "  remedy: {remedy}")?;
    }
    for refusal in &report.refused {
        writeln!(out, "  {} refused: {}", refusal.strategy, refusal.reason)?;
    }
    for cost in &report.costs {
        writeln!(out, "  cost: {}", cost.message)?;
    }
    for warning in &report.warnings {
        writeln!(out, "  warning: {warning}")?;
    }
    if let Some(plan) = &report.plan {
        writeln!(out, "  program headers (e_phoff {:#x}):", plan.phoff)?;
        writeln!(out, "    {:<13} {:>10} {:>18} {:>10} {:>10} flg align", "type", "offset", "vaddr", "filesz", "memsz")?;
        for ph in &plan.program_headers {
            writeln!(
                out,
                "    {:<13} {:#010x} {:#018x} {:#010x} {:#010x} {} {:#x}",
                program_type_name(ph.p_type),
                ph.p_offset,
                ph.p_vaddr,
                ph.p_filesz,
                ph.p_memsz,
                Prot::from_p_flags(ph.p_flags).readelf_string(),
                ph.p_align
            )?;
        }
        writeln!(out, "  output: {} bytes in {} pieces:", plan.output_len, plan.pieces.len())?;
        for piece in &plan.pieces {
            let what = match &piece.source {
                PieceSource::Copy { from } => format!("copy input {from:#x}–{:#x}", from + piece.len),
                PieceSource::Zeros => "zeros".to_string(),
                PieceSource::Bytes { what, .. } => format!("new {what}"),
            };
            writeln!(out, "    {:#010x}–{:#010x} {what}", piece.offset, piece.offset + piece.len)?;
        }
    }
    if let Some(compared) = report.verified {
        writeln!(
            out,
            "  verified: ok at 4K to {page} under {}; its image equals the input's 4K image{} over {} ranges ({} bytes compared)",
            report.loaders.join(", "),
            if report.delta == 0 { String::new() } else { format!(" shifted by {:#x}, moved addresses as predicted,", report.delta) },
            compared.ranges,
            compared.bytes
        )?;
    }
    Ok(())
}

/// Writes a closure's report: one line per object, then the launcher and the proof.
pub fn write_closure_fix_text(out: &mut dyn Write, report: &ClosureFixReport) -> io::Result<()> {
    for object in &report.objects {
        let how = match (&object.strategy, &object.reason) {
            (Some(strategy), _) => format!(" ({strategy})"),
            (None, Some(reason)) => format!(": {reason}"),
            _ => String::new(),
        };
        let to = object.output.as_deref().map_or_else(String::new, |o| format!(" -> {o}"));
        writeln!(out, "{}: {}{how}{to}", object.name, object.status.name())?;
    }
    if let Some(launcher) = &report.launcher {
        writeln!(out, "run it with {launcher} (which searches {}/lib first)", report.out)?;
    }
    if report.proven {
        writeln!(out, "proven: the closure resolved from {} is ok at {}", report.out, report.page_size)?;
    } else {
        for problem in &report.problems {
            writeln!(out, "not proven: {problem}")?;
        }
    }
    Ok(())
}
