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
//! fixed and proven by `pagefit fix` itself (run as a child process, so the
//! closure mode has exactly the single-file behaviour); then the closure is
//! resolved again from DIR and every object must be ok at P.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context};
use pagefit_core::check::{check_file, CheckOptions};
use pagefit_core::closure::{weakest_links, FoundVia};
use pagefit_core::elf::{parse, ParseOptions};
use pagefit_core::model::LoaderModel;
use pagefit_core::page::PageSize;
use serde::Serialize;
use serde_json::Value;

use crate::cli::Format;
use crate::closure::{check_objects, resolve_program, Search};
use crate::fix::FixArgs;

/// What happened to one object of the closure.
#[derive(Serialize)]
struct ObjectOutcome {
    name: String,
    input: String,
    /// Where its copy is, if DIR holds one.
    output: Option<String>,
    /// fixed, already-ok, refused, verification-failed, or `kept` (ok, and left where it is).
    status: String,
    strategy: Option<String>,
    reason: Option<String>,
}

#[derive(Serialize)]
struct ClosureFixReport {
    program: String,
    out: String,
    page_size: PageSize,
    objects: Vec<ObjectOutcome>,
    /// The script that runs the program with DIR/lib first, when one was needed.
    launcher: Option<String>,
    /// Whether the closure resolved from DIR is ok at P.
    proven: bool,
    /// Why not, in words.
    problems: Vec<String>,
}

pub fn run(program: &Path, out: &Path, args: &FixArgs) -> anyhow::Result<ExitCode> {
    let page = args.page_size;
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
        let report = fix_one(&input, &destination, args)?;
        let status = report["status"].as_str().unwrap_or("?").to_string();
        let kept_in_place = !in_tree && status == "already-ok";
        if kept_in_place {
            std::fs::remove_file(&destination).with_context(|| format!("{}: cannot remove", destination.display()))?;
        }
        elsewhere_fixed |= !in_tree && status == "fixed";
        if object.via == FoundVia::Interpreter && status == "fixed" {
            interpreter_fixed = Some(destination.clone());
        }
        objects.push(ObjectOutcome {
            name: file_name.to_string(),
            input: object.host_path.clone(),
            output: (!kept_in_place && (status == "fixed" || status == "already-ok")).then(|| destination.display().to_string()),
            status: if kept_in_place { "kept".into() } else { status },
            strategy: report["strategy"].as_str().map(str::to_string),
            reason: report["reason"].as_str().map(str::to_string),
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
        Format::Text => write_text(&mut w, &report)?,
    }
    let refused = report.objects.iter().any(|o| o.output.is_none() && o.status != "kept");
    Ok(if report.proven && !refused { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn fix_one(input: &Path, output: &Path, args: &FixArgs) -> anyhow::Result<Value> {
    let mut extra = vec!["--strategy".to_string(), args.strategy.to_string()];
    if args.no_wx {
        extra.push("--no-wx".into());
    }
    fix_file(input, output, args.page_size, &extra)
}

/// `pagefit fix IN -o OUT --page-size P --format json [EXTRA...]`, by this
/// very executable; its JSON report (exit 2, an error, becomes an error).
pub fn fix_file(input: &Path, output: &Path, page: PageSize, extra: &[String]) -> anyhow::Result<Value> {
    let exe = std::env::current_exe().context("cannot find pagefit's own executable")?;
    let mut command = Command::new(exe);
    command.arg("fix").arg("--page-size").arg(page.bytes().to_string()).arg(input).arg("-o").arg(output);
    command.args(["--format", "json"]).args(extra);
    let result = command.output().context("cannot run pagefit fix")?;
    if result.status.code() == Some(2) {
        bail!("{}", String::from_utf8_lossy(&result.stderr).trim());
    }
    serde_json::from_slice(&result.stdout).with_context(|| format!("pagefit fix {}: no report", input.display()))
}

/// The script that runs the program with DIR/lib searched first, through
/// the fixed interpreter when there is one.
fn write_launcher(out: &Path, program_name: &str, interpreter: Option<&str>) -> anyhow::Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let path = out.join(format!("{program_name}.sh"));
    let run = match interpreter {
        Some(interpreter) => format!("exec \"$here/lib/{interpreter}\" --library-path \"$here/lib${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}\" \"$here/{program_name}\" \"$@\""),
        None => format!("LD_LIBRARY_PATH=\"$here/lib${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}\" exec \"$here/{program_name}\" \"$@\""),
    };
    let script = format!(
        "#!/bin/sh\n# Written by pagefit fix --closure: runs {program_name} with the libraries fixed for a larger page size first.\n\
         here=$(dirname \"$0\")\n{run}\n"
    );
    std::fs::write(&path, script).with_context(|| format!("{}: cannot write", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
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
    objects: &[ObjectOutcome],
    interpreter_copy: Option<&Path>,
) -> anyhow::Result<Vec<String>> {
    let mut closure = resolve_program(program, search, false)?;
    let mut problems: Vec<String> =
        closure.unresolved.iter().map(|u| format!("{}: {} (searched {})", u.name, u.reason, u.searched.join(", "))).collect();
    let options = CheckOptions { page_sizes: vec![page], findings: false, ..CheckOptions::default() };
    if let Some(copy) = interpreter_copy {
        closure.objects.retain(|o| o.via != FoundVia::Interpreter);
        let shown = copy.display().to_string();
        let file = parse(std::fs::read(copy).with_context(|| format!("{shown}: cannot read"))?.as_slice(), ParseOptions::default())
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
    for object in objects.iter().filter(|o| o.status == "fixed") {
        let copy = Path::new(object.output.as_deref().unwrap_or_default());
        let loaded = interpreter_copy == Some(copy) || closure.objects.iter().any(|o| Path::new(&o.host_path) == copy);
        if !loaded {
            problems.push(format!("{}: the fixed copy {} is not the one the program loads", object.name, copy.display()));
        }
    }
    Ok(problems)
}

fn write_text(w: &mut dyn Write, report: &ClosureFixReport) -> std::io::Result<()> {
    for object in &report.objects {
        let how = match (&object.strategy, &object.reason) {
            (Some(strategy), _) => format!(" ({strategy})"),
            (None, Some(reason)) => format!(": {reason}"),
            _ => String::new(),
        };
        let to = object.output.as_deref().map_or_else(String::new, |o| format!(" -> {o}"));
        writeln!(w, "{}: {}{how}{to}", object.name, object.status)?;
    }
    if let Some(launcher) = &report.launcher {
        writeln!(w, "run it with {launcher} (which searches {}/lib first)", report.out)?;
    }
    if report.proven {
        writeln!(w, "proven: the closure resolved from {} is ok at {}", report.out, report.page_size)?;
    } else {
        for problem in &report.problems {
            writeln!(w, "not proven: {problem}")?;
        }
    }
    Ok(())
}
