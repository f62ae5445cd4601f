//! `pagefit run --fix-deps`: every library of the program's closure that is
//! not ok at P is fixed (and proven) by the fix engine into a content-addressed
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

use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use pagefit_core::closure::FoundVia;
use pagefit_core::elf::{ElfFile, ParseOptions};
use pagefit_core::page::PageSize;
use pagefit_core::predict::check::CheckOptions;
use pagefit_core::run::plan::{emulation_alignment, raise_load_alignment};
use sha2::{Digest, Sha256};

use crate::closure::{check_objects, resolve_program_record, Search};
use crate::engine::{fix_file, FixRequest};
use crate::output::StagedFile;
use crate::owners::file_sha256;

/// The audit module (audit/pagefit-audit.c, built by build.rs for the target).
const AUDIT_MODULE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pagefit-audit.so"));

/// Makes the program's ld.so load fixed libraries: the cache directories of
/// its closure first in LD_LIBRARY_PATH, and the audit module in LD_AUDIT
/// for the libraries it opens later. The program's environment is pagefit's
/// own: the loader copies it onto the new stack.
/// `record`: the program is that byte range of a FatELF file.
pub fn prepare_environment(program: &Path, record: Option<Range<u64>>, page: PageSize) -> anyhow::Result<()> {
    let dirs = fixed_library_dirs(program, record, page)?;
    let inherited = std::env::var_os("LD_LIBRARY_PATH").map(|v| std::env::split_paths(&v).collect::<Vec<_>>()).unwrap_or_default();
    let joined = std::env::join_paths(dirs.iter().cloned().chain(inherited)).context("--fix-deps: a cache path holds ':'")?;
    let cache = cache_dir()?;
    let audit = install_audit_module(&cache)?;
    let exe = std::env::current_exe().context("cannot find pagefit's own executable")?;
    let mut audits = audit.into_os_string();
    if let Some(theirs) = std::env::var_os("LD_AUDIT").filter(|v| !v.is_empty()) {
        audits.push(":");
        audits.push(theirs);
    }
    std::env::set_var("LD_LIBRARY_PATH", joined);
    std::env::set_var("LD_AUDIT", audits);
    std::env::set_var("PAGEFIT_EXE", exe);
    std::env::set_var("PAGEFIT_PAGE_SIZE", page.bytes().to_string());
    std::env::set_var("PAGEFIT_CACHE", cache);
    Ok(())
}

/// The cache directories holding the fixed libraries, in load order.
fn fixed_library_dirs(program: &Path, record: Option<Range<u64>>, page: PageSize) -> anyhow::Result<Vec<PathBuf>> {
    let closure = resolve_program_record(program, record, &Search { sysroot: None, library_path: None }, false)?;
    if let Some(missing) = closure.unresolved.first() {
        bail!("--fix-deps: {}: {}", missing.name, missing.reason);
    }
    let options = CheckOptions { page_sizes: vec![page], findings: false, ..CheckOptions::default() };
    let reports = check_objects(&closure, &options);
    let mut dirs = Vec::new();
    for (object, report) in closure.objects.iter().zip(&reports) {
        if matches!(object.via, FoundVia::Program | FoundVia::Interpreter) {
            continue;
        }
        let copy = cached_copy(Path::new(&object.host_path), object.file_name(), &object.file, report.passes(false), page)?;
        dirs.extend(copy.and_then(|path| path.parent().map(Path::to_path_buf)));
    }
    Ok(dirs)
}

/// The copy of a library ld.so should load at P, made once: `None` when the
/// library itself will do. Not ok at P: fixed and proven by `pagefit fix`.
/// Emulated P: also given a `p_align` past P ([`emulation_alignment`]).
pub fn cached_copy(input: &Path, name: &str, file: &ElfFile, ok: bool, page: PageSize) -> anyhow::Result<Option<PathBuf>> {
    let emulated = page > pagefit_loader::host_page_size();
    let needs_aligned_copy = emulated && file.loads().all(|load| load.align <= page.bytes());
    if ok && !needs_aligned_copy {
        return Ok(None);
    }
    // A key for the library's bytes, stable across pagefit releases: a copy
    // fixed once serves every program that loads the same file.
    let hash = hex(&file_sha256(input).with_context(|| format!("{}: cannot read", input.display()))?);
    let suffix = if emulated { "-emulated" } else { "" };
    let dir = cache_dir()?.join(format!("{hash}-{}{suffix}", page.bytes()));
    let copy = dir.join(name);
    if copy.is_file() {
        return Ok(Some(copy));
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    // Written under a temporary name and renamed, so that an interrupted
    // run never leaves a half-written library for the next one to trust.
    let staged = StagedFile::create(&copy, 0o755)?;
    if ok {
        std::fs::copy(input, staged.path()).with_context(|| format!("{}: cannot copy to {}", input.display(), staged.path().display()))?;
    } else {
        let report = fix_file(input, staged.path(), &FixRequest::at(page))?;
        if !report.status.is_usable() {
            let why = report.reason.or_else(|| report.refused.first().map(|r| r.reason.clone())).unwrap_or_default();
            bail!("--fix-deps: {} cannot be fixed for {page}: {why}", input.display());
        }
    }
    if emulated {
        align_for_emulation(staged.path(), page)?;
    }
    staged.persist(&copy, false)?;
    Ok(Some(copy))
}

/// Writes the audit module into the cache once (named by its bytes) and returns its path.
fn install_audit_module(cache: &Path) -> anyhow::Result<PathBuf> {
    let dir = cache.join(format!("audit-{}", hex(&Sha256::digest(AUDIT_MODULE))));
    let module = dir.join("pagefit-audit.so");
    if !module.is_file() {
        std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
        crate::output::write_atomically(&module, |out| out.write_all(AUDIT_MODULE))?;
    }
    Ok(module)
}

/// Raises the copy's PT_LOAD alignment past P, in place (the copy is ours).
fn align_for_emulation(copy: &Path, page: PageSize) -> anyhow::Result<()> {
    use std::os::unix::fs::FileExt;
    let shown = copy.display();
    let file = std::fs::OpenOptions::new().read(true).write(true).open(copy).with_context(|| format!("{shown}: cannot open"))?;
    let elf = pagefit_core::elf::parse(&object::read::ReadCache::new(&file), ParseOptions { runtime: true, ..ParseOptions::default() })
        .with_context(|| format!("{shown}: cannot parse"))?;
    let mut table = vec![0u8; elf.program_headers.len() * elf.class().program_header_size()];
    file.read_exact_at(&mut table, elf.program_header_offset).with_context(|| format!("{shown}: cannot read the program headers"))?;
    raise_load_alignment(&mut table, elf.class(), emulation_alignment(page)).with_context(|| format!("{shown}: program headers"))?;
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

/// A digest in lowercase hex, for the cache's directory names.
fn hex(digest: &[u8]) -> String {
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}
