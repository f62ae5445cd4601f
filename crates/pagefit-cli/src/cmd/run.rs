//! `pagefit run`: load a program with pagefit's own loader and become it.

use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use object::read::ReadCache;
use pagefit_core::elf::{parse, ParseOptions};
use pagefit_core::fat::select::{select_record, HostTarget, PageSource, RecordFit, RecordSelection};
use pagefit_core::fat::{is_fat, largest_ok_page, FatFile};
use pagefit_core::page::PageSize;
use pagefit_core::run::plan::{GapPolicy, MappingSource, RobustPlan};
use pagefit_loader::{HugeText, LoadError, RunOptions, RunReport, HOST_CLASS, HOST_MACHINE};
use serde::Serialize;

use crate::args::format::Format;
use crate::args::run::RunArgs;

/// How binfmt_misc runs a FatELF file (flags `PF`, see `binfmt.rs`):
/// `pagefit PATH ARGV0 ARGS...`. Recognised when PATH is not a subcommand
/// and names a file that starts with the FatELF magic; the result is the
/// `run` it stands for.
pub fn binfmt_invocation(argv: &[OsString]) -> Option<RunArgs> {
    let mut argv = argv.iter().skip(1).cloned();
    let path = argv.next()?;
    let name = path.to_str().unwrap_or_default();
    if name.starts_with('-') || name == "help" || <crate::args::Command as clap::Subcommand>::has_subcommand(name) {
        return None;
    }
    let mut magic = [0u8; 4];
    File::open(&path).and_then(|mut file| file.read_exact(&mut magic)).ok()?;
    if !is_fat(&magic) {
        return None;
    }
    // The kernel passes an empty argv[0] when the program was executed without one.
    let argv0 = argv.next().unwrap_or_default();
    Some(RunArgs { binfmt_argv0: Some(argv0), ..RunArgs::plain(path, argv.collect()) })
}

/// `pagefit run ...` parsed with the `run` subcommand's arguments alone:
/// building every subcommand's arguments, as [`crate::args::Cli`] does, took
/// more time than the rest of pagefit's startup. Anything but a clean parse
/// (help, an error) gives `None`, so that the full parser handles it as always.
pub fn run_invocation(argv: &[OsString]) -> Option<RunArgs> {
    let argv = argv.get(1..)?;
    let (subcommand, words) = argv.split_first()?;
    if subcommand != "run" {
        return None;
    }
    plain_run_invocation(words).or_else(|| parse_run_args(argv.iter().cloned()).ok())
}

/// `run ARGS...` through clap, with the `run` subcommand's parser alone.
fn parse_run_args<I: IntoIterator<Item = T>, T: Into<OsString> + Clone>(argv: I) -> Result<RunArgs, clap::Error> {
    let matches = <RunArgs as Args>::augment_args(clap::Command::new("run")).try_get_matches_from(argv)?;
    <RunArgs as clap::FromArgMatches>::from_arg_matches(&matches)
}

/// The common case, `pagefit run PROGRAM [ARG ARGS...]` where neither
/// PROGRAM nor ARG looks like an option, taken apart without clap: clap's
/// parser code is spread over pagefit's text, and every page of it the
/// kernel maps in on first use costs more than the parse. Clap reads the
/// same words the same way (tested): options are still recognised right
/// after PROGRAM, but from the first plain ARG on, all is the program's.
fn plain_run_invocation(words: &[OsString]) -> Option<RunArgs> {
    let (program, args) = words.split_first()?;
    let looks_like_option = |word: &OsString| word.as_encoded_bytes().starts_with(b"-");
    if looks_like_option(program) || args.first().is_some_and(looks_like_option) {
        return None;
    }
    Some(RunArgs::plain(program.clone(), args.to_vec()))
}

impl RunArgs {
    /// `pagefit run PROGRAM ARGS...` with every option at its default.
    fn plain(program: OsString, args: Vec<OsString>) -> RunArgs {
        RunArgs {
            page_size: None,
            as_kernel: false,
            gaps: GapPolicy::Extend,
            thp: false,
            thp_copy: false,
            report: false,
            format: Format::Text,
            fix_deps: false,
            program,
            args,
            binfmt_argv0: None,
        }
    }
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let page_size = args.page_size.unwrap_or_else(pagefit_loader::host_page_size);
    let thp = match (args.thp, args.thp_copy) {
        (_, true) => HugeText::Copy,
        (true, false) => HugeText::Advise,
        (false, false) => HugeText::Off,
    };
    let options = RunOptions { page_size, guest_page_size: PageSize::K4, as_kernel: args.as_kernel, gaps: args.gaps, thp };
    let path = match args.binfmt_argv0 {
        Some(_) => PathBuf::from(&args.program),
        None => find_program(&args.program),
    };
    let file = pagefit_loader::open(&path, "program")?;
    let fat = choose_fat_record(&path, &file, page_size)?;
    let embedded = fat.as_ref().map(|(_, record)| record.clone());
    refuse_runtime_abort(&path, &file, embedded.as_ref(), page_size)?;
    if args.fix_deps {
        crate::fix_deps::prepare_environment(&path, embedded.clone(), page_size)?;
    }
    let argv0 = args.binfmt_argv0.unwrap_or_else(|| args.program.clone());
    let argv: Vec<OsString> = std::iter::once(argv0).chain(args.args).collect();
    let loaded = pagefit_loader::prepare(&path, file, embedded, argv, options).and_then(pagefit_loader::Prepared::load);
    let loaded = match loaded {
        Ok(loaded) => loaded,
        Err(LoadError::KilledAtExec(reason)) => {
            let _ = writeln!(std::io::stderr(), "pagefit: {reason}");
            pagefit_loader::die_like_the_kernel()
        }
        Err(error) => anyhow::bail!(error),
    };
    if args.report {
        let mut stderr = std::io::stderr().lock();
        let fat_record = fat.as_ref().map(|(selection, _)| selection);
        match args.format {
            Format::Text => {
                if let Some(selection) = fat_record {
                    write_selection(&mut stderr, &path, selection)?;
                }
                write_report(&mut stderr, loaded.report())?
            }
            Format::Json => writeln!(stderr, "{}", serde_json::to_string(&JsonReport { fat_record, run: loaded.report() })?)?,
        }
    }
    loaded.start()
}

/// Refuses to start a program whose runtime (jemalloc) was built for smaller
/// pages than the kernel's: it would abort at its first allocation. A file
/// that does not parse is left to the loader, which names the problem.
fn refuse_runtime_abort(path: &Path, file: &File, record: Option<&Range<u64>>, page_size: PageSize) -> anyhow::Result<()> {
    // No runtime is built for pages below 4K: at 4K nothing aborts, so the
    // common start skips a second read of the program.
    if page_size <= PageSize::K4 {
        return Ok(());
    }
    let options = ParseOptions { runtime: true, ..ParseOptions::default() };
    let cache = ReadCache::new(file);
    let parsed = match record {
        Some(range) => parse(cache.range(range.start, range.end - range.start), options),
        None => parse(&cache, options),
    };
    let Ok(elf) = parsed else { return Ok(()) };
    match elf.runtime.iter().find(|r| r.aborts_at(page_size) == Some(true)) {
        Some(runtime) => bail!("{}: not started: {}\n  remedy: {}", path.display(), runtime.consequence(page_size), runtime.remedy()),
        None => Ok(()),
    }
}

/// `--report --format json`: the run report, with the FatELF record choice first.
#[derive(Serialize)]
struct JsonReport<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    fat_record: Option<&'a RecordSelection>,
    #[serde(flatten)]
    run: &'a RunReport,
}

/// For a FatELF file: which record to load at `page_size` and why, and its
/// byte range. `None` for anything else (the loader judges ELF files).
fn choose_fat_record(path: &Path, file: &File, page_size: PageSize) -> anyhow::Result<Option<(RecordSelection, Range<u64>)>> {
    let mut magic = [0u8; 4];
    let read = std::os::unix::fs::FileExt::read_at(file, &mut magic, 0).with_context(|| format!("{}: cannot read", path.display()))?;
    if !is_fat(&magic[..read]) {
        return Ok(None);
    }
    let cache = ReadCache::new(file);
    let fat = FatFile::parse(&cache).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let host = HostTarget { machine: HOST_MACHINE, bits: HOST_CLASS.word_bytes() as u8 * 8, page_size };
    let selection = select_record(&fat, host, |record| largest_ok_page(cache.range(record.offset, record.size)));
    let Some(chosen) = selection.chosen_record() else {
        let mut listing = Vec::new();
        write_records(&mut listing, &selection)?;
        bail!("{}: no record runs on this host ({host}):\n{}", path.display(), String::from_utf8_lossy(&listing).trim_end());
    };
    let range = chosen.offset..chosen.offset + chosen.size;
    Ok(Some((selection, range)))
}

fn write_selection(out: &mut dyn Write, path: &Path, selection: &RecordSelection) -> std::io::Result<()> {
    writeln!(
        out,
        "pagefit run: {}: FatELF version {}, {} records, for {}",
        path.display(),
        selection.version,
        selection.records.len(),
        selection.host
    )?;
    write_records(out, selection)?;
    if let (Some(chosen), Some(decider)) = (selection.chosen_record(), selection.decided_by) {
        let page = selection.host.page_size;
        let mapped = if page.divides(chosen.offset) {
            format!("mapped from the file at {:#x}, no copy", chosen.offset)
        } else {
            format!("mapped from the file at {:#x}, not a multiple of {page}: pages that cannot be file-backed are composed", chosen.offset)
        };
        writeln!(out, "  chosen: record{}, {decider}; {mapped}", chosen.index)?;
        if !selection.chosen_is_ok_at_page() {
            writeln!(
                out,
                "  no record loads at {} exactly as at 4K: record{} runs through the robust load below",
                selection.host.page_size, chosen.index
            )?;
        }
    }
    Ok(())
}

/// One line per record: target, place, and how it fits the host.
fn write_records(out: &mut dyn Write, selection: &RecordSelection) -> std::io::Result<()> {
    for record in &selection.records {
        let fit = match &record.fit {
            RecordFit::Foreign { mismatches } => {
                let why: Vec<String> = mismatches.iter().map(ToString::to_string).collect();
                format!("not for this host: {}", why.join(", "))
            }
            RecordFit::Candidate { largest_ok_page, source, ok_at_page, unmeasured } => {
                let source = match source {
                    PageSource::Recorded => "recorded",
                    PageSource::Measured => "measured",
                };
                let largest = match (largest_ok_page, unmeasured) {
                    (_, Some(why)) => format!("largest ok page unknown: {why}"),
                    (Some(page), None) => format!("largest ok page {page} ({source})"),
                    (None, None) => format!("not ok even at 4K ({source})"),
                };
                let verdict = if *ok_at_page { "ok" } else { "not ok" };
                format!("runs here, {verdict} at {}; {largest}", selection.host.page_size)
            }
        };
        let marker = if selection.chosen == Some(record.index) { "*" } else { " " };
        writeln!(out, " {marker}record{} {} at {:#x}, {} bytes: {fit}", record.index, record.target, record.offset, record.size)?;
    }
    Ok(())
}

/// `PROG` as execvp finds it: a name without a slash is looked up in PATH.
fn find_program(program: &OsString) -> PathBuf {
    let path = Path::new(program);
    if program.as_encoded_bytes().contains(&b'/') {
        return path.to_path_buf();
    }
    std::env::var_os("PATH")
        .and_then(|dirs| std::env::split_paths(&dirs).map(|dir| dir.join(path)).find(|candidate| candidate.is_file()))
        .unwrap_or_else(|| path.to_path_buf())
}

fn write_report(out: &mut dyn Write, report: &RunReport) -> std::io::Result<()> {
    writeln!(out, "pagefit run: {} load at {} (AT_PAGESZ {})", report.mode, report.page_size, report.page_size.bytes())?;
    for object in &report.objects {
        write_plan(out, &object.path, object.bias, &object.plan)?;
        for huge in &object.huge_pages {
            let private = match huge.private_bytes {
                0 => String::new(),
                bytes => format!(" ({} KiB private)", bytes >> 10),
            };
            writeln!(out, "  {:x}-{:x} text offered to huge pages: {}{private}", huge.range.start, huge.range.end, huge.outcome)?;
        }
        for expansion in &object.origin_expanded {
            writeln!(
                out,
                "  {} {} expanded to {} (ld.so would take $ORIGIN from /proc/self/exe, which is pagefit)",
                expansion.entry, expansion.original, expansion.expanded
            )?;
        }
        if let Some(relro) = object.relro_advertised {
            writeln!(
                out,
                "  PT_GNU_RELRO advertised as {:#x}-{:#x} (whole pages), so that protecting it spares the code and data below",
                relro.start, relro.end
            )?;
        }
    }
    writeln!(out, "  stack {:x}-{:x} rw-p, sp {:#x}", report.stack.start, report.stack.end, report.stack.sp)
}

fn write_plan(out: &mut dyn Write, path: &str, bias: u64, plan: &RobustPlan) -> std::io::Result<()> {
    writeln!(out, "{path}: bias {bias:#x}, span {:#x}-{:#x}", plan.span.start, plan.span.end)?;
    for mapping in &plan.mappings {
        let (start, end) = (mapping.range.start.wrapping_add(bias), mapping.range.end.wrapping_add(bias));
        let what = match &mapping.source {
            MappingSource::File { offset } => format!("file offset {offset:#x}"),
            MappingSource::Composed { copies } => {
                let bytes: u64 = copies.iter().map(|c| c.destination.len()).sum();
                format!("composed: {bytes} bytes copied from the file")
            }
            MappingSource::Anonymous => "anonymous (bss)".into(),
            MappingSource::Reserved => "reserved gap".into(),
        };
        let zero: u64 = mapping.zero.iter().map(|z| z.len()).sum();
        let zero = if zero > 0 { format!(", {zero} bytes cleared") } else { String::new() };
        writeln!(out, "  {start:x}-{end:x} {}p {what}{zero}", mapping.prot.maps_string())?;
    }
    for gap in &plan.unmapped {
        writeln!(out, "  {:x}-{:x} unmapped gap", gap.start.wrapping_add(bias), gap.end.wrapping_add(bias))?;
    }
    let private_kib = plan.composed.len() as u64 * plan.page_size.bytes() / 1024;
    writeln!(out, "  composed pages: {} ({private_kib} KiB private)", plan.composed.len())?;
    for page in &plan.composed {
        let segments: Vec<String> = page.contributors.iter().map(|i| format!("PT_LOAD[{i}]")).collect();
        let cost = if page.added == pagefit_core::elf::Prot::NONE {
            "no permission added".to_string()
        } else {
            format!("{} bytes gain {}", page.widened_bytes, page.added.maps_string())
        };
        writeln!(
            out,
            "    {:x} {}p from {}: {} bytes copied, {cost}",
            page.page.start.wrapping_add(bias),
            page.prot.maps_string(),
            segments.join(" + "),
            page.bytes_copied
        )?;
    }
    for page in &plan.widened {
        writeln!(
            out,
            "    {:x} {}p file-backed, shared by congruent segments: {} bytes gain {}",
            page.page.start.wrapping_add(bias),
            page.prot.maps_string(),
            page.widened_bytes,
            page.added.maps_string()
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clap_parse(words: &[&str]) -> RunArgs {
        parse_run_args(std::iter::once("run").chain(words.iter().copied())).unwrap()
    }

    #[test]
    fn the_plain_parse_agrees_with_clap_wherever_it_answers() {
        let cases: &[&[&str]] =
            &[&["/bin/true"], &["ls", "/", "-l", "--color=never"], &["prog", "x", "--report", "--page-size", "16k", "--"], &["./a b", ""]];
        for words in cases {
            let owned: Vec<OsString> = words.iter().map(OsString::from).collect();
            let plain = plain_run_invocation(&owned).expect("no option before the program");
            assert_eq!(format!("{plain:?}"), format!("{:?}", clap_parse(words)), "{words:?}");
        }
        let left_to_clap: [&[&str]; 6] = [&["--report", "prog"], &["prog", "--report"], &["ls", "-l"], &["-h"], &["--", "prog"], &[]];
        for words in left_to_clap {
            let owned: Vec<OsString> = words.iter().map(OsString::from).collect();
            assert!(plain_run_invocation(&owned).is_none(), "{words:?} is left to clap");
        }
    }
}
