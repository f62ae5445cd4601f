//! `pagefit check --closure BIN`: the program and every object it loads,
//! found as ld.so would (`pagefit_core::closure`), read from this machine or a sysroot.

use std::collections::VecDeque;
use std::io::Write;
use std::ops::Range;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use object::read::ReadCache;
use pagefit_core::closure::{self, resolve, Closure, FoundVia, Opened, SearchOptions, TargetFiles, TargetPath, WeakestLink};
use pagefit_core::elf::{parse, ParseOptions};
use pagefit_core::page::PageSize;
use pagefit_core::predict::check::{check_file, CheckOptions, FileReport};
use pagefit_core::predict::effect::Outcome;
use pagefit_core::render::report::{write_check_text, CheckDocument};
use pagefit_core::render::sarif::sarif_log;
use serde::Serialize;

use crate::args::format::CheckFormat;
use crate::args::CheckArgs;
use pagefit_loader::source::FileSource;

/// The files of the target system: `/`, or a sysroot whose absolute symlinks
/// point inside it.
struct HostFiles {
    sysroot: Option<PathBuf>,
    parse_options: ParseOptions,
    /// A program that is one record of a FatELF file: the file and the record's bytes.
    fat_record: Option<(PathBuf, Range<u64>)>,
}

impl HostFiles {
    fn host_path(&self, path: &TargetPath) -> PathBuf {
        match &self.sysroot {
            Some(root) if path.in_sysroot => resolve_in_root(root, &path.path),
            _ => PathBuf::from(&path.path),
        }
    }
}

/// Follows `path` inside `root` as if `root` were `/`: absolute symlinks and
/// `..` never leave it.
fn resolve_in_root(root: &Path, path: &str) -> PathBuf {
    const MAX_SYMLINKS: usize = 40;
    let mut resolved = PathBuf::new();
    let mut pending: VecDeque<String> = path.split('/').map(str::to_string).collect();
    let mut hops = 0;
    while let Some(component) = pending.pop_front() {
        match component.as_str() {
            "" | "." => continue,
            ".." => {
                resolved.pop();
                continue;
            }
            _ => {}
        }
        let candidate = resolved.join(&component);
        match std::fs::read_link(root.join(&candidate)) {
            Ok(target) if hops < MAX_SYMLINKS => {
                hops += 1;
                let target = target.to_string_lossy().into_owned();
                if target.starts_with('/') {
                    resolved = PathBuf::new();
                }
                for part in target.split('/').rev() {
                    pending.push_front(part.to_string());
                }
            }
            _ => resolved = candidate,
        }
    }
    root.join(resolved)
}

impl TargetFiles for HostFiles {
    fn open_elf(&mut self, path: &TargetPath) -> Opened {
        let host_path = self.host_path(path);
        let (source, metadata) = match FileSource::open(&host_path) {
            Ok(opened) => opened,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Opened::NotFound,
            Err(e) if e.kind() == std::io::ErrorKind::IsADirectory => return Opened::NotFound,
            Err(e) => return Opened::Invalid(format!("{}: {e}", host_path.display())),
        };
        let identity = (metadata.dev(), metadata.ino());
        let cache = ReadCache::new(source);
        let parsed = match &self.fat_record {
            Some((fat, record)) if *fat == host_path => parse(cache.range(record.start, record.end - record.start), self.parse_options),
            _ => parse(&cache, self.parse_options),
        };
        match parsed {
            Ok(file) => Opened::Elf { file: Box::new(file), identity, host_path: host_path.display().to_string() },
            Err(e) => Opened::Invalid(format!("{}: {e}", host_path.display())),
        }
    }

    fn read_text(&mut self, path: &str) -> Option<String> {
        std::fs::read_to_string(self.host_path(&TargetPath { path: path.to_string(), in_sysroot: true })).ok()
    }

    fn list_dir(&mut self, dir: &str) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.host_path(&TargetPath { path: dir.to_string(), in_sysroot: true })) else {
            return Vec::new();
        };
        entries.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().into_owned()).collect()
    }
}

/// `--format json`: the usual `files` (one report per object, in load order)
/// plus the closure that links them.
#[derive(Serialize)]
struct ClosureDocument<'a> {
    #[serde(flatten)]
    check: CheckDocument,
    closure: ClosureJson<'a>,
}

#[derive(Serialize)]
struct ClosureJson<'a> {
    /// Objects in load order; `files[i]` is the report of `objects[i]`.
    objects: &'a [closure::LoadedObject],
    unresolved: &'a [closure::Unresolved],
    weakest_links: &'a [WeakestLink],
}

/// Where and how to look for a program's libraries.
pub struct Search<'a> {
    /// Resolve the interpreter, ld.so.conf and absolute directories under this root.
    pub sysroot: Option<&'a str>,
    /// The LD_LIBRARY_PATH to assume (default: the environment's, or none with a sysroot).
    pub library_path: Option<&'a str>,
}

/// Resolves the closure of `program` on this machine or in a sysroot.
pub fn resolve_program(program: &Path, search: &Search<'_>, section_names: bool) -> anyhow::Result<Closure> {
    resolve_program_record(program, None, search, section_names)
}

/// [`resolve_program`] for a program that is the byte range `record` of a
/// FatELF file (its `$ORIGIN` is the fat file's directory).
pub fn resolve_program_record(
    program: &Path,
    record: Option<Range<u64>>,
    search: &Search<'_>,
    section_names: bool,
) -> anyhow::Result<Closure> {
    let sysroot = search.sysroot.map(std::fs::canonicalize).transpose().context("--sysroot")?;
    let canonical = std::fs::canonicalize(program).with_context(|| format!("{}: cannot read", program.display()))?;
    // ld.so's $ORIGIN for the program is its real directory (from /proc/self/exe).
    let root = match sysroot.as_deref().and_then(|root| canonical.strip_prefix(root).ok()) {
        Some(inside) => TargetPath { path: format!("/{}", inside.display()), in_sysroot: true },
        None => TargetPath { path: canonical.display().to_string(), in_sysroot: false },
    };
    let library_path = match search.library_path {
        Some(list) => list.to_string(),
        None if sysroot.is_none() => std::env::var("LD_LIBRARY_PATH").unwrap_or_default(),
        None => String::new(),
    };
    let options = SearchOptions { library_path: library_path.split([':', ';']).filter(|d| !d.is_empty()).map(str::to_string).collect() };
    let mut files = HostFiles {
        sysroot,
        parse_options: ParseOptions { sections: true, section_names, dynamic_strings: true, runtime: true, ..ParseOptions::default() },
        fat_record: record.map(|range| (canonical.clone(), range)),
    };
    resolve(root, &mut files, &options).map_err(|e| anyhow::anyhow!(e))
}

/// Checks every object of a closure, each named as ld.so names it.
pub fn check_objects(closure: &Closure, options: &CheckOptions) -> Vec<FileReport> {
    closure.objects.iter().map(|object| check_file(&object.file, &object.host_path, object.file_name(), options)).collect()
}

pub fn run(program: &str, args: &CheckArgs, options: &CheckOptions) -> anyhow::Result<ExitCode> {
    let search = Search { sysroot: args.sysroot.as_deref(), library_path: args.library_path.as_deref() };
    let closure = resolve_program(Path::new(program), &search, options.findings)?;
    let reports = check_objects(&closure, options);
    let links = closure::weakest_links(&closure, &reports, args.allow_degraded);

    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match args.format {
        CheckFormat::Text => write_tree(&mut out, &closure, &reports, &links, args.verbose)?,
        CheckFormat::Sarif => {
            serde_json::to_writer_pretty(&mut out, &sarif_log(&reports, &[]))?;
            writeln!(out)?;
        }
        CheckFormat::Json | CheckFormat::Jsonl => {
            let document = ClosureDocument {
                check: CheckDocument { files: reports, errors: Vec::new() },
                closure: ClosureJson { objects: &closure.objects, unresolved: &closure.unresolved, weakest_links: &links },
            };
            if args.format == CheckFormat::Json {
                serde_json::to_writer_pretty(&mut out, &document)?;
            } else {
                serde_json::to_writer(&mut out, &document)?;
            }
            writeln!(out)?;
        }
    }
    out.flush()?;
    Ok(if links.is_empty() && closure.unresolved.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// The dependency tree, each object under the first object that loaded it,
/// then the weakest links and unresolved names in words.
fn write_tree(out: &mut dyn Write, closure: &Closure, reports: &[FileReport], links: &[WeakestLink], verbose: bool) -> std::io::Result<()> {
    let program = &closure.objects[0];
    writeln!(out, "{} ({})", program.path.path, verdicts(&reports[0]))?;
    for (index, interpreter) in closure.objects.iter().enumerate().filter(|(_, o)| o.via == FoundVia::Interpreter) {
        writeln!(out, "├── [interpreter] {} ({}): {}", interpreter.name, verdicts(&reports[index]), interpreter.host_path)?;
    }
    write_dependencies(out, closure, reports, 0, "")?;
    for unresolved in &closure.unresolved {
        let by = closure.objects[unresolved.needed_by].file_name();
        writeln!(out, "{}, needed by {by}, cannot be loaded at any page size", unresolved.name)?;
        writeln!(out, "  error while loading shared libraries: {}: {}", unresolved.name, unresolved.reason)?;
        if verbose {
            writeln!(out, "  searched: {}", unresolved.searched.join(", "))?;
        }
    }
    for link in links {
        writeln!(out, "{}", link.explanation)?;
        if let Some(message) = &link.message {
            writeln!(out, "  {message}")?;
        }
    }
    if verbose {
        for report in reports.iter().filter(|r| !r.passes(false)) {
            writeln!(out)?;
            write_check_text(out, report, true)?;
        }
    }
    Ok(())
}

fn write_dependencies(out: &mut dyn Write, closure: &Closure, reports: &[FileReport], index: usize, indent: &str) -> std::io::Result<()> {
    let dependencies = &closure.objects[index].dependencies;
    for (n, dependency) in dependencies.iter().enumerate() {
        let last = n + 1 == dependencies.len();
        let (branch, next_indent) = if last { ("└── ", format!("{indent}    ")) } else { ("├── ", format!("{indent}│   ")) };
        match dependency.object {
            Some(object) if dependency.first => {
                let loaded = &closure.objects[object];
                writeln!(
                    out,
                    "{indent}{branch}{} ({}): {}{}",
                    dependency.name,
                    verdicts(&reports[object]),
                    loaded.host_path,
                    closure::via_words(&loaded.via)
                )?;
                write_dependencies(out, closure, reports, object, &next_indent)?;
            }
            Some(_) => writeln!(out, "{indent}{branch}{} (already loaded)", dependency.name)?,
            None => writeln!(out, "{indent}{branch}{} (NOT FOUND)", dependency.name)?,
        }
    }
    Ok(())
}

/// "16K ok, 64K rejected": the worst outcome over the loaders at each page size.
fn verdicts(report: &FileReport) -> String {
    let mut worst: Vec<(PageSize, Outcome)> = Vec::new();
    for result in &report.results {
        match worst.iter_mut().find(|(page, _)| *page == result.page_size) {
            Some((_, outcome)) => *outcome = (*outcome).max(result.outcome),
            None => worst.push((result.page_size, result.outcome)),
        }
    }
    worst.iter().map(|(page, outcome)| format!("{page} {}", outcome.name())).collect::<Vec<_>>().join(", ")
}
