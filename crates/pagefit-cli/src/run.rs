//! `pagefit run`: load a program with pagefit's own loader and become it.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use pagefit_core::page::PageSize;
use pagefit_core::robust::{GapPolicy, MappingSource, RobustPlan};
use pagefit_loader::{LoadError, RunOptions, RunReport};

use crate::cli::Format;

const RUN_EXAMPLES: &str = "\
Examples:
  pagefit run ./app-4k --flag                 run a 4K program on a 16K or 64K kernel
  pagefit run --page-size 16k ./prog          emulate a 16K kernel on a 4K host (AT_PAGESZ = 16384)
  pagefit run --page-size 16k --as-kernel ./prog   what Linux itself would do at 16K
  pagefit run --report -- ./prog -x           print every mapping and composed page on stderr first
  pagefit run --fix-deps ./app-4k             also fix its 4K libraries (cached) and load those

Exit status: the program's. pagefit's own errors exit 2; --as-kernel dies by SIGSEGV
where the kernel would.";

/// `pagefit run` arguments.
#[derive(Args, Debug)]
#[command(after_help = RUN_EXAMPLES)]
pub struct RunArgs {
    /// Plan every mapping with this page size and report it as AT_PAGESZ
    /// (default: the host's). Larger than the host's: emulation.
    #[arg(long, value_name = "P")]
    pub page_size: Option<PageSize>,
    /// Map the program and its interpreter as Linux binfmt_elf would at P,
    /// without the robust fixes (non-congruent segments die with SIGSEGV).
    #[arg(long)]
    pub as_kernel: bool,
    /// What to do with pages between segments: extend the previous file
    /// mapping over them, unmap them (like the kernel), or leave them
    /// reserved PROT_NONE (like glibc). --as-kernel always unmaps them.
    #[arg(long, value_name = "POLICY", default_value = "extend", value_parser = gap_policy)]
    pub gaps: GapPolicy,
    /// Place the program's and interpreter's text on 2 MiB boundaries where
    /// its file offset allows, and ask for transparent huge pages there
    /// (MADV_HUGEPAGE, then MADV_COLLAPSE).
    #[arg(long)]
    pub thp: bool,
    /// Print every mapping (file-backed or composed), its protection, and
    /// what each composed page costs, on stderr before the program starts.
    #[arg(long)]
    pub report: bool,
    /// The report's format.
    #[arg(long, value_enum, default_value = "text", requires = "report")]
    pub format: Format,
    /// Fix every library of the program's closure that is not ok at P into
    /// $XDG_CACHE_HOME/pagefit (content-addressed) and put those copies first
    /// in the program's LD_LIBRARY_PATH.
    #[arg(long)]
    pub fix_deps: bool,
    /// The program (searched in PATH when it has no slash).
    pub program: OsString,
    /// Its arguments, passed through verbatim.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<OsString>,
}

fn gap_policy(text: &str) -> Result<GapPolicy, String> {
    match text {
        "extend" => Ok(GapPolicy::Extend),
        "unmap" => Ok(GapPolicy::Unmap),
        "none" => Ok(GapPolicy::None),
        _ => Err(format!("unknown gap policy {text:?}: expected extend, unmap or none")),
    }
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let page_size = args.page_size.unwrap_or_else(pagefit_loader::host_page_size);
    let options = RunOptions { page_size, guest_page_size: PageSize::K4, as_kernel: args.as_kernel, gaps: args.gaps, thp: args.thp };
    let path = find_program(&args.program);
    if args.fix_deps {
        crate::fix_deps::prepare_environment(&path, page_size)?;
    }
    let argv: Vec<OsString> = std::iter::once(args.program.clone()).chain(args.args).collect();
    let loaded = pagefit_loader::prepare(&path, argv, options).and_then(pagefit_loader::Prepared::load);
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
        match args.format {
            Format::Text => write_report(&mut stderr, loaded.report())?,
            Format::Json => writeln!(stderr, "{}", serde_json::to_string(loaded.report())?)?,
        }
    }
    loaded.start()
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
            writeln!(out, "  {:x}-{:x} text offered to huge pages: {}", huge.range.start, huge.range.end, huge.outcome)?;
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
