//! `pagefit run --fix-deps`: every library of the program's closure that is
//! not ok at P is fixed (and proven) by `pagefit fix` into a content-addressed
//! cache, `$XDG_CACHE_HOME/pagefit/<content hash>-<P>/<name>`, and those
//! directories go first in the program's LD_LIBRARY_PATH, so that ld.so finds
//! the fixed copies before the originals (DT_RUNPATH comes after
//! LD_LIBRARY_PATH; an object's DT_RPATH would still come first).
//! The program and its interpreter need no fixing: the loader maps them.
//!
//! Emulating P on a smaller host page, ld.so would place the libraries where
//! the host kernel's `mmap(NULL)` does, on host-page boundaries, while its
//! bss clearing assumes P-aligned bases. The copies in `<hash>-<P>-emulated/`
//! therefore carry a larger `p_align` ([`emulation_alignment`]), so that
//! ld.so aligns them itself; libraries already ok at P get such a copy too.

use std::hash::Hasher;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use pagefit_core::check::CheckOptions;
use pagefit_core::closure::FoundVia;
use pagefit_core::page::PageSize;
use pagefit_core::robust::{emulation_alignment, raise_load_alignment};

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
    let emulated = page > pagefit_loader::host_page_size();
    let mut dirs = Vec::new();
    for (object, report) in closure.objects.iter().zip(&reports) {
        if matches!(object.via, FoundVia::Program | FoundVia::Interpreter) {
            continue;
        }
        let ok = report.passes(false);
        let needs_aligned_copy = emulated && object.file.loads().all(|load| load.align <= page.bytes());
        if ok && !needs_aligned_copy {
            continue;
        }
        let input = Path::new(&object.host_path);
        let hash = content_hash(input).with_context(|| format!("{}: cannot read", input.display()))?;
        let suffix = if emulated { "-emulated" } else { "" };
        let dir = cache.join(format!("{hash:016x}-{}{suffix}", page.bytes()));
        let fixed = dir.join(object.file_name());
        if !fixed.is_file() {
            std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
            // Written under a temporary name and renamed, so that an interrupted
            // run never leaves a half-written library for the next one to trust.
            let partial = dir.join(format!(".{}.partial", object.file_name()));
            if ok {
                std::fs::copy(input, &partial).with_context(|| format!("{}: cannot copy to {}", input.display(), partial.display()))?;
            } else {
                let report = fix_file(input, &partial, page, &[])?;
                let status = report["status"].as_str().unwrap_or("?");
                if status != "fixed" && status != "already-ok" {
                    bail!("--fix-deps: {} cannot be fixed for {page}: {}", input.display(), report["reason"].as_str().unwrap_or(status));
                }
            }
            if emulated {
                align_for_emulation(&partial, page)?;
            }
            std::fs::rename(&partial, &fixed).with_context(|| format!("{}: cannot rename to {}", partial.display(), fixed.display()))?;
        }
        dirs.push(dir);
    }
    Ok(dirs)
}

/// Raises the copy's PT_LOAD alignment past P, in place (the copy is ours).
fn align_for_emulation(copy: &Path, page: PageSize) -> anyhow::Result<()> {
    use std::os::unix::fs::FileExt;
    let shown = copy.display();
    let file = std::fs::OpenOptions::new().read(true).write(true).open(copy).with_context(|| format!("{shown}: cannot open"))?;
    let elf = pagefit_core::elf::parse(&object::read::ReadCache::new(&file), pagefit_core::elf::ParseOptions::default())
        .with_context(|| format!("{shown}: cannot parse"))?;
    let mut table = vec![0u8; elf.program_headers.len() * 56];
    file.read_exact_at(&mut table, elf.program_header_offset).with_context(|| format!("{shown}: cannot read the program headers"))?;
    raise_load_alignment(&mut table, emulation_alignment(page)).with_context(|| format!("{shown}: program headers"))?;
    file.write_all_at(&table, elf.program_header_offset).with_context(|| format!("{shown}: cannot write the program headers"))?;
    Ok(())
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
