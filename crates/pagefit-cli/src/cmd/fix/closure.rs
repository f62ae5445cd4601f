//! `pagefit fix --closure BIN --out DIR`: the program and every library it
//! loads that is not ok at P, fixed into DIR so that the program finds them.
//!
//! Objects in the program's own directory tree (reached through `$ORIGIN`)
//! keep their relative places in DIR, so the program's and libraries' own
//! DT_RUNPATH/DT_RPATH find the fixed copies unchanged. Libraries from
//! elsewhere (the system's) that need fixing go to DIR/lib, and a launcher
//! script DIR/<program>.sh puts that first in LD_LIBRARY_PATH. An interpreter
//! that needs fixing goes to DIR/lib too, and the launcher runs the program
//! through it (`ld.so --library-path DIR/lib PROGRAM`), since the kernel
//! only ever maps the interpreter PT_INTERP names. Each file is
//! fixed and proven by the fix engine ([`fix_file`], the single-file
//! behaviour); then the closure is resolved again from DIR and every object
//! must be ok at P.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use pagefit_core::closure::{weakest_links, FoundVia};
use pagefit_core::elf::{parse, ParseOptions};
use pagefit_core::fix::report::{ClosureFixReport, ClosureObjectFix, FixStatus};
use pagefit_core::page::PageSize;
use pagefit_core::predict::check::{check_file, CheckOptions};
use pagefit_core::predict::model::LoaderModel;
use pagefit_core::render::fix::write_closure_fix_text;

use crate::args::fix::FixArgs;
use crate::args::format::Format;
use crate::closure::{check_objects, resolve_program, Search};
use crate::engine::fix_file;
use crate::output::write_atomically;

pub fn run(program: &Path, out: &Path, args: &FixArgs) -> anyhow::Result<ExitCode> {
    let page = args.page();
    let search = Search { sysroot: args.sysroot.as_deref(), library_path: Some("") };
    let closure = resolve_program(program, &search, false)?;
    if let Some(missing) = closure.unresolved.first() {
        bail!("{}: cannot fix a closure with a missing library: {}: {}", program.display(), missing.name, missing.reason);
    }
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
    let program_host = PathBuf::from(&closure.objects[0].host_path);
    let program_dir = program_host.parent().unwrap_or(Path::new("/")).to_path_buf();
    let program_name = program_host.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut objects = Vec::new();
    let mut elsewhere_fixed = false;
    let mut interpreter_fixed = None;
    for object in &closure.objects {
        let input = PathBuf::from(&object.host_path);
        let file_name = object.file_name();
        let (destination, in_tree) = match input.strip_prefix(&program_dir) {
            Ok(relative) => (out.join(relative), true),
            Err(_) => (out.join("lib").join(file_name), false),
        };
        if let Some(parent) = destination.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("{}: cannot create", parent.display()))?;
        }
        let report = fix_file(&input, &destination, &args.request())?;
        let kept_in_place = !in_tree && report.status == FixStatus::AlreadyOk;
        if kept_in_place {
            std::fs::remove_file(&destination).with_context(|| format!("{}: cannot remove", destination.display()))?;
        }
        let fixed = report.status == FixStatus::Fixed;
        elsewhere_fixed |= !in_tree && fixed;
        if object.via == FoundVia::Interpreter && fixed {
            interpreter_fixed = Some(destination.clone());
        }
        objects.push(ClosureObjectFix {
            name: file_name.to_string(),
            input: object.host_path.clone(),
            output: (!kept_in_place && report.status.is_usable()).then(|| destination.display().to_string()),
            status: if kept_in_place { FixStatus::Kept } else { report.status },
            strategy: report.strategy,
            reason: report.reason,
        });
    }
    let interpreter_name = interpreter_fixed.as_ref().and_then(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned());
    let launcher = if elsewhere_fixed { Some(write_launcher(out, &program_name, interpreter_name.as_deref())?) } else { None };
    let lib_dir = out.join("lib").display().to_string();
    let proof_search = Search { sysroot: args.sysroot.as_deref(), library_path: Some(if launcher.is_some() { &lib_dir } else { "" }) };
    let problems = prove(&out.join(&program_name), &proof_search, page, &objects, interpreter_fixed.as_deref())?;
    let report = ClosureFixReport {
        program: program.display().to_string(),
        out: out.display().to_string(),
        page_size: page,
        proven: problems.is_empty(),
        problems,
        objects,
        launcher,
    };
    let stdout = std::io::stdout();
    let mut w = stdout.lock();
    match args.format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut w, &report)?;
            writeln!(w)?;
        }
        Format::Text => write_closure_fix_text(&mut w, &report)?,
    }
    let refused = report.objects.iter().any(|o| o.output.is_none() && o.status != FixStatus::Kept);
    Ok(if report.proven && !refused { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// The script that runs the program with DIR/lib searched first, through
/// the fixed interpreter when there is one.
fn write_launcher(out: &Path, program_name: &str, interpreter: Option<&str>) -> anyhow::Result<String> {
    let path = out.join(format!("{program_name}.sh"));
    let run = match interpreter {
        Some(interpreter) => format!("exec \"$here/lib/{interpreter}\" --library-path \"$here/lib${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}\" \"$here/{program_name}\" \"$@\""),
        None => format!("LD_LIBRARY_PATH=\"$here/lib${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}\" exec \"$here/{program_name}\" \"$@\""),
    };
    let script = format!(
        "#!/bin/sh\n# Written by pagefit fix --closure: runs {program_name} with the libraries fixed for a larger page size first.\n\
         here=$(dirname \"$0\")\n{run}\n"
    );
    write_atomically(&path, |out| out.write_all(script.as_bytes()))?;
    Ok(path.display().to_string())
}

/// Resolves the closure again from the written program, as it will run, and
/// says what is not ok at P or does not come from DIR where a fixed copy is.
/// With a fixed interpreter, the launcher runs that copy (mapped by the
/// kernel) instead of PT_INTERP's, and it maps the program as it maps a library.
fn prove(
    program: &Path,
    search: &Search<'_>,
    page: PageSize,
    objects: &[ClosureObjectFix],
    interpreter_copy: Option<&Path>,
) -> anyhow::Result<Vec<String>> {
    let mut closure = resolve_program(program, search, false)?;
    let mut problems: Vec<String> =
        closure.unresolved.iter().map(|u| format!("{}: {} (searched {})", u.name, u.reason, u.searched.join(", "))).collect();
    let options = CheckOptions { page_sizes: vec![page], findings: false, ..CheckOptions::default() };
    if let Some(copy) = interpreter_copy {
        closure.objects.retain(|o| o.via != FoundVia::Interpreter);
        let shown = copy.display().to_string();
        let file = parse(
            std::fs::read(copy).with_context(|| format!("{shown}: cannot read"))?.as_slice(),
            ParseOptions { runtime: true, ..ParseOptions::default() },
        )
        .with_context(|| shown.clone())?;
        if !check_file(&file, &shown, &shown, &options).passes(false) {
            problems.push(format!("{shown}: the fixed interpreter is not ok at {page}"));
        }
        let as_library = CheckOptions { loaders: Some(vec![LoaderModel::Glibc]), ..options.clone() };
        if !check_file(&closure.objects[0].file, &closure.objects[0].host_path, "", &as_library).passes(false) {
            problems.push(format!("{}: not ok at {page} when the interpreter maps it", program.display()));
        }
    }
    let reports = check_objects(&closure, &options);
    problems.extend(weakest_links(&closure, &reports, false).into_iter().map(|link| link.explanation));
    for object in objects.iter().filter(|o| o.status == FixStatus::Fixed) {
        let copy = Path::new(object.output.as_deref().unwrap_or_default());
        let loaded = interpreter_copy == Some(copy) || closure.objects.iter().any(|o| Path::new(&o.host_path) == copy);
        if !loaded {
            problems.push(format!("{}: the fixed copy {} is not the one the program loads", object.name, copy.display()));
        }
    }
    Ok(problems)
}
