//! `pagefit run --fix-deps`: every library of the program's closure that is
//! not ok at P is fixed (and proven) by `pagefit fix` into a content-addressed
//! cache, `$XDG_CACHE_HOME/pagefit/<content hash>-<P>/<name>`, and those
//! directories go first in the program's LD_LIBRARY_PATH, so that ld.so finds
//! the fixed copies before the originals (DT_RUNPATH comes after
//! LD_LIBRARY_PATH; an object's DT_RPATH would still come first).
//! The program and its interpreter need no fixing: the loader maps them.

use std::hash::Hasher;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use pagefit_core::check::CheckOptions;
use pagefit_core::closure::FoundVia;
use pagefit_core::page::PageSize;

use crate::closure::{check_objects, resolve_program, Search};
use crate::fix_closure::fix_file;

/// The cache directories holding the fixed libraries, in load order.
pub fn fixed_library_dirs(program: &Path, page: PageSize) -> anyhow::Result<Vec<PathBuf>> {
    let closure = resolve_program(program, &Search { sysroot: None, library_path: None }, false)?;
    if let Some(missing) = closure.unresolved.first() {
        bail!("--fix-deps: {}: {}", missing.name, missing.reason);
    }
    let options = CheckOptions { page_sizes: vec![page], findings: false, ..CheckOptions::default() };
    let reports = check_objects(&closure, &options);
    let cache = cache_dir()?;
    let mut dirs = Vec::new();
    for (object, report) in closure.objects.iter().zip(&reports) {
        if matches!(object.via, FoundVia::Program | FoundVia::Interpreter) || report.passes(false) {
            continue;
        }
        let input = Path::new(&object.host_path);
        let hash = content_hash(input).with_context(|| format!("{}: cannot read", input.display()))?;
        let dir = cache.join(format!("{hash:016x}-{}", page.bytes()));
        let name = object.file_name();
        let fixed = dir.join(name);
        if !fixed.is_file() {
            std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
            let report = fix_file(input, &fixed, page, &[])?;
            let status = report["status"].as_str().unwrap_or("?");
            if status != "fixed" && status != "already-ok" {
                bail!("--fix-deps: {} cannot be fixed for {page}: {}", input.display(), report["reason"].as_str().unwrap_or(status));
            }
        }
        dirs.push(dir);
    }
    Ok(dirs)
}

/// `$XDG_CACHE_HOME/pagefit`, else `~/.cache/pagefit`.
fn cache_dir() -> anyhow::Result<PathBuf> {
    let base = match (std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()), std::env::var_os("HOME")) {
        (Some(cache), _) => PathBuf::from(cache),
        (None, Some(home)) => PathBuf::from(home).join(".cache"),
        (None, None) => bail!("--fix-deps: neither XDG_CACHE_HOME nor HOME is set, so there is no cache for the fixed libraries"),
    };
    Ok(base.join("pagefit"))
}

/// A key for the library's bytes, read in chunks (libraries can be hundreds
/// of MiB): a copy fixed once serves every program that loads the same file.
fn content_hash(path: &Path) -> std::io::Result<u64> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = std::hash::DefaultHasher::new();
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        match std::io::Read::read(&mut file, &mut chunk)? {
            0 => return Ok(hasher.finish()),
            n => hasher.write(&chunk[..n]),
        }
    }
}
