//! pagefit-loader: the userspace ELF loader behind `pagefit run`.
//!
//! It executes plans made by `pagefit-core`'s pure planner
//! ([`pagefit_core::run::plan`]) and decides nothing about layout itself:
//!
//! 1. [`prepare`] opens the program and its PT_INTERP, refuses what a
//!    userspace loader cannot honour (setuid/setgid files, a foreign
//!    `e_machine`, fixed addresses that collide with pagefit's own mappings)
//!    and plans both;
//! 2. [`Prepared::load`] reserves each object's span, maps and fills every
//!    page, applies protections after all contents are in place, and lays
//!    out a fresh, guarded initial stack with an auxv built from the host's;
//! 3. [`Loaded::start`] makes the process look like the program's (name,
//!    signals, its own descriptors, `PR_SET_MM` where permitted) and jumps to the
//!    interpreter's (or the program's) entry point.
//!
//! What cannot be made identical to `execve`: `/proc/self/exe` stays
//! pagefit unless `PR_SET_MM_EXE_FILE` is permitted (CAP_SYS_RESOURCE, and
//! on kernels that check it, the old executable unmapped, which pagefit's
//! own image is not), so the loader expands the program's `$ORIGIN` itself
//! ([`pagefit_core::run::origin`]); `/proc/self/cmdline` and `environ`
//! move to the new stack only with CAP_SYS_RESOURCE; pagefit's own image
//! and heap stay mapped; the program's `brk` heap continues pagefit's.
//!
//! All of the project's `unsafe` code is in this crate: [`sys`] (system
//! calls through `rustix`), `arch/<arch>.rs` (the entry jump) and
//! [`startup_arena`] (pagefit's global allocator).
#![deny(missing_docs)]
#![deny(unsafe_code)]

#[cfg_attr(target_arch = "x86_64", path = "arch/x86_64.rs")]
#[cfg_attr(target_arch = "aarch64", path = "arch/aarch64.rs")]
#[cfg_attr(target_arch = "powerpc64", path = "arch/powerpc64.rs")]
#[cfg_attr(target_arch = "arm", path = "arch/arm.rs")]
mod arch;
mod host;
pub mod source;
pub mod startup_arena;
mod sys;

use std::ffi::OsString;
use std::fs::File;
use std::ops::Range;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};

use object::read::ReadCache;
use pagefit_core::elf::{parse, ElfClass, ElfFile, ElfKind, ParseOptions, ProgramHeader, Prot};
use pagefit_core::page::PageSize;
use pagefit_core::predict::memory::AddrRange;
use pagefit_core::run::origin::{expand_origin, OriginExpansion};
use pagefit_core::run::plan::{
    huge_page_text, plan_as_kernel, plan_robust_embedded, relro_for_robust_load, rewrite_program_headers, GapPolicy, HugePageText,
    MappingSource, PlanError, RobustPlan,
};
use pagefit_core::run::stack::{auxv, build_stack, StackRequest};
use serde::Serialize;

use host::HostAuxv;
use source::FileSource;

/// How to run a program.
#[derive(Clone, Copy, Debug)]
pub struct RunOptions {
    /// The page size every mapping decision uses and AT_PAGESZ reports.
    pub page_size: PageSize,
    /// The page size programs are linked for (whose image the robust plan reproduces).
    pub guest_page_size: PageSize,
    /// Map like Linux binfmt_elf at `page_size` instead of robustly.
    pub as_kernel: bool,
    /// Gap handling for the robust plan.
    pub gaps: GapPolicy,
    /// Transparent huge pages for text.
    pub thp: HugeText,
}

/// What `--thp` and `--thp-copy` ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HugeText {
    /// Text where the plan puts it.
    Off,
    /// Text on 2 MiB boundaries where its file offset allows, with
    /// `MADV_HUGEPAGE` and `MADV_COLLAPSE` on its file mapping.
    Advise,
    /// As `Advise`, and where the kernel refuses to collapse the file
    /// mapping (file text needs CONFIG_READ_ONLY_THP_FOR_FS), a private
    /// anonymous copy of those 2 MiB chunks, which it can back with huge
    /// pages: faster text for private memory.
    Copy,
}

/// Why a program cannot be run.
#[derive(Debug)]
pub enum LoadError {
    /// A userspace loader cannot honour this (setuid, foreign machine, collisions).
    Refused(String),
    /// The file is not a loadable ELF program, or cannot be read.
    Invalid(String),
    /// Linux would kill the process at exec (`--as-kernel`): the reason.
    KilledAtExec(String),
    /// A system call failed while loading.
    System(String),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Refused(m) | LoadError::Invalid(m) | LoadError::KilledAtExec(m) | LoadError::System(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for LoadError {}

/// One ELF object to load, planned.
#[derive(Debug)]
struct PlannedObject {
    path: PathBuf,
    file: File,
    /// Where the ELF image starts in `file` (a FatELF record's offset, else 0).
    base: u64,
    /// The length of the whole file, which is where the kernel's zero-filled tail starts.
    file_len: u64,
    elf: ElfFile,
    plan: RobustPlan,
}

/// A program and its interpreter, checked and planned, nothing mapped yet.
#[derive(Debug)]
pub struct Prepared {
    options: RunOptions,
    program: PlannedObject,
    /// PT_GNU_RELRO as the robust load advertises it, when it must differ from the file's.
    program_relro: Option<AddrRange>,
    /// The program's DT_RPATH/DT_RUNPATH entries with `$ORIGIN` expanded.
    origin_expansions: Vec<OriginExpansion>,
    interpreter: Option<PlannedObject>,
    args: Vec<OsString>,
}

/// The host's page size, as the kernel reports it.
pub fn host_page_size() -> PageSize {
    PageSize::new(rustix::param::page_size() as u64).unwrap_or(PageSize::K4)
}

/// The machine this loader runs on, as an ELF `e_machine`.
pub const HOST_MACHINE: u16 = if cfg!(target_arch = "aarch64") {
    object::elf::EM_AARCH64.0
} else if cfg!(target_arch = "powerpc64") {
    object::elf::EM_PPC64.0
} else if cfg!(target_arch = "arm") {
    object::elf::EM_ARM.0
} else {
    object::elf::EM_X86_64.0
};

/// The ELF class of the programs this loader runs: its own pointer width.
pub const HOST_CLASS: ElfClass = if cfg!(target_pointer_width = "32") { ElfClass::Elf32 } else { ElfClass::Elf64 };

/// Checks and plans the program at `path`, already open as `file` (run with
/// `args`, `args[0]` included). With `embedded`, the program is that byte
/// range of the file (a FatELF record): its pages are mapped straight from
/// `file`, and `path` is still what the program is told it was run as
/// (AT_EXECFN, the process name).
pub fn prepare(
    path: &Path,
    file: File,
    embedded: Option<Range<u64>>,
    args: Vec<OsString>,
    options: RunOptions,
) -> Result<Prepared, LoadError> {
    let program = plan_object(path, file, embedded, options, "program")?;
    let interpreter = match &program.elf.interpreter {
        Some(name) => Some(plan_object(Path::new(name), open(Path::new(name), "interpreter")?, None, options, "interpreter")?),
        None => None,
    };
    for object in std::iter::once(&program).chain(&interpreter) {
        if object.elf.kind == ElfKind::Exec {
            check_fixed_range_is_free(object)?;
        }
    }
    let program_relro = match (options.as_kernel, program.elf.header_of_type(object::elf::PT_GNU_RELRO)) {
        (false, Some(relro)) => {
            let loads: Vec<_> = program.elf.loads().cloned().collect();
            relro_for_robust_load(&loads, AddrRange::new(relro.vaddr, relro.mem_end()), options.page_size)
        }
        _ => None,
    };
    // Without DT_RPATH or DT_RUNPATH there is no $ORIGIN to expand, nor a path to resolve.
    let search_paths = !program.elf.dynamic.search_path_entries.is_empty();
    let origin_expansions = match search_paths.then(|| std::fs::canonicalize(&program.path)) {
        Some(Ok(real)) => real.parent().map_or_else(Vec::new, |dir| expand_origin(&program.elf.dynamic, &dir.to_string_lossy())),
        // When it cannot be resolved, ld.so's own readlink would fail the same way; it leaves $ORIGIN unexpanded.
        _ => Vec::new(),
    };
    Ok(Prepared { options, program, program_relro, origin_expansions, interpreter, args })
}

/// Opens a program or interpreter, with the error `pagefit run` prints.
pub fn open(path: &Path, role: &str) -> Result<File, LoadError> {
    File::open(path).map_err(|e| LoadError::Invalid(format!("{}: cannot open the {role}: {e}", path.display())))
}

/// Parses and plans the ELF image in `file`, or in its byte range `embedded`.
fn plan_object(path: &Path, file: File, embedded: Option<Range<u64>>, options: RunOptions, role: &str) -> Result<PlannedObject, LoadError> {
    let shown = path.display();
    let metadata = file.metadata().map_err(|e| LoadError::Invalid(format!("{shown}: {e}")))?;
    if metadata.permissions().mode() & 0o6000 != 0 {
        return Err(LoadError::Refused(format!(
            "{shown}: refusing a setuid/setgid {role}: a userspace loader cannot give it the privileges execve would"
        )));
    }
    // The program's RPATH/RUNPATH strings are needed for `$ORIGIN`.
    let parse_options = ParseOptions { dynamic_strings: role == "program", ..ParseOptions::default() };
    let reader = FileSource::new(file, metadata.len()).map_err(|e| LoadError::Invalid(format!("{shown}: cannot read: {e}")))?;
    let cache = ReadCache::new(reader);
    let (base, parsed) = match &embedded {
        Some(record) => (record.start, parse(cache.range(record.start, record.end - record.start), parse_options)),
        None => (0, parse(&cache, parse_options)),
    };
    let elf = parsed.map_err(|e| match base {
        0 => LoadError::Invalid(format!("{shown}: {e}")),
        _ => LoadError::Invalid(format!("{shown}: the record at {base:#x}: {e} (offsets from the record's start)")),
    })?;
    if elf.machine != HOST_MACHINE || elf.class() != HOST_CLASS || !elf.little_endian {
        return Err(LoadError::Refused(format!(
            "{shown}: the {role} is for {} ({}-bit), this loader runs {} programs only",
            elf.machine_name(),
            elf.bits,
            pagefit_core::elf::machine_name(HOST_MACHINE)
        )));
    }
    if !matches!(elf.kind, ElfKind::Exec | ElfKind::Dyn) {
        return Err(LoadError::Invalid(format!("{shown}: not an executable or shared object")));
    }
    let loads: Vec<_> = elf.loads().cloned().collect();
    let planned = if options.as_kernel {
        // binfmt_elf would map the image from where it is in the file.
        let in_file = loads
            .iter()
            .map(|load| {
                let offset = load.offset.checked_add(base);
                offset.map(|offset| ProgramHeader { offset, ..load.clone() })
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| LoadError::Invalid(format!("{shown}: segments at {base:#x} end past 2^64")))?;
        plan_as_kernel(&in_file, options.page_size)
    } else {
        plan_robust_embedded(&loads, base, options.page_size, options.guest_page_size, options.gaps)
    };
    let plan = planned.map_err(|error| match (error, options.as_kernel) {
        (PlanError::Rejected(rejection), true) => LoadError::KilledAtExec(format!("{shown}: {}", rejection.loader_message)),
        (error, _) => LoadError::Invalid(format!("{shown}: cannot be loaded even at {}: {error}", options.guest_page_size)),
    })?;
    let file = cache.into_inner().into_file();
    Ok(PlannedObject { path: path.to_path_buf(), file, base, file_len: metadata.len(), elf, plan })
}

/// A non-PIE program's addresses are fixed: they must not overlap pagefit's own mappings.
fn check_fixed_range_is_free(object: &PlannedObject) -> Result<(), LoadError> {
    let span = object.plan.span;
    // A reservation made and given back answers; /proc/self/maps, slow to
    // generate, is read only to name what is in the way.
    let len = usize::try_from(span.len()).map_err(|_| LoadError::Invalid(format!("{}: a span too large", object.path.display())))?;
    match sys::Reservation::fixed(span.start as usize, len) {
        Ok(probe) => return probe.release().map_err(|e| LoadError::System(format!("munmap: {e}"))),
        Err(e) if e.raw_os_error() != Some(rustix::io::Errno::EXIST.raw_os_error()) => {
            return Err(LoadError::System(format!("{}: cannot reserve {:#x}-{:#x}: {e}", object.path.display(), span.start, span.end)));
        }
        Err(_) => {}
    }
    let maps = std::fs::read_to_string("/proc/self/maps").map_err(|e| LoadError::System(format!("/proc/self/maps: {e}")))?;
    for line in maps.lines() {
        let Some((range, rest)) = line.split_once(' ') else { continue };
        let Some((start, end)) = range.split_once('-') else { continue };
        let (Ok(start), Ok(end)) = (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16)) else { continue };
        if start < span.end && span.start < end {
            let owner = rest.split_whitespace().nth(4).unwrap_or("anonymous memory");
            return Err(LoadError::Refused(format!(
                "{}: its fixed addresses {:#x}-{:#x} collide with pagefit's own mapping {start:#x}-{end:#x} ({owner})",
                object.path.display(),
                span.start,
                span.end
            )));
        }
    }
    Ok(())
}

impl Prepared {
    /// The program header table to copy, when RELRO must be advertised trimmed.
    fn program_headers_for_robust_relro(&self) -> std::io::Result<Option<Vec<u8>>> {
        if self.program_relro.is_none() {
            return Ok(None);
        }
        let len = self.program.elf.program_headers.len() * HOST_CLASS.program_header_size();
        let mut table = vec![0u8; len];
        let offset = self.program.base + self.program.elf.program_header_offset;
        self.program.file.read_exact_at(&mut table, offset)?;
        Ok(Some(table))
    }

    /// Maps the program and interpreter and lays out the initial stack.
    /// Signals stay blocked from here until [`Loaded::start`].
    pub fn load(self) -> Result<Loaded, LoadError> {
        let system = |what: &str, e: std::io::Error| LoadError::System(format!("{what}: {e}"));
        let signal_mask = sys::block_signals().map_err(|e| system("sigprocmask", e))?;
        let host = HostAuxv::read().map_err(|e| system("/proc/self/auxv", e))?;
        let thp = self.options.thp;
        let mut program = map_object(&self.program, thp).map_err(|e| system(&format!("{}: mapping", self.program.path.display()), e))?;
        let interpreter = match &self.interpreter {
            Some(object) => Some(map_object(object, thp).map_err(|e| system(&format!("{}: mapping", object.path.display()), e))?),
            None => None,
        };
        let entry_of = |object: &PlannedObject, bias: u64| object.elf.entry.wrapping_add(bias);
        let program_entry = entry_of(&self.program, program.bias);
        let start_at = match (&self.interpreter, &interpreter) {
            (Some(object), Some(mapped)) => entry_of(object, mapped.bias),
            _ => program_entry,
        };
        let page = self.options.page_size.bytes();
        let program_headers = self.program_headers_for_robust_relro().map_err(|e| system("program headers", e))?;
        let headers_len = match (&program_headers, &self.interpreter) {
            (Some(table), Some(_)) => table.len(),
            _ => 0,
        };
        let origin_strings: Vec<Vec<u8>> = self.origin_expansions.iter().map(|e| [e.expanded.as_bytes(), b"\0"].concat()).collect();
        let above_top = headers_len + origin_strings.iter().map(Vec::len).sum::<usize>();
        let mut stack_area = StackArea::map(page, above_top).map_err(|e| system("initial stack", e))?;
        let strings_at = stack_area.top + headers_len as u64;
        let origin_expanded = self.expand_origin_in_memory(&mut program, &mut stack_area, strings_at, &origin_strings);
        let phdr = match program_headers {
            // glibc's static startup reads its program headers through
            // `__ehdr_start`, not AT_PHDR: a program without an interpreter
            // has its own table trimmed where it is mapped.
            Some(mut table) if self.interpreter.is_none() => {
                let at = self.in_image_program_headers()?;
                rewrite_program_headers(&mut table, HOST_CLASS, self.program_relro, at)
                    .map_err(|e| LoadError::Invalid(format!("{}: {e}", self.program.path.display())))?;
                write_into_image(&self.program, &mut program, at, &table)
                    .map_err(|e| system(&format!("{}: program headers", self.program.path.display()), e))?;
                at.wrapping_add(program.bias)
            }
            // A copy with PT_GNU_RELRO trimmed, just above the stack top.
            Some(mut table) => {
                let copy_at = stack_area.top;
                rewrite_program_headers(&mut table, HOST_CLASS, self.program_relro, copy_at.wrapping_sub(program.bias))
                    .map_err(|e| LoadError::Invalid(format!("{}: {e}", self.program.path.display())))?;
                stack_area.reservation.write(copy_at as usize, &table);
                copy_at
            }
            None => self.in_image_program_headers()?.wrapping_add(program.bias),
        };
        let plain_auxv = [
            (auxv::AT_SYSINFO_EHDR, host.value(auxv::AT_SYSINFO_EHDR)),
            (auxv::AT_MINSIGSTKSZ, host.value(auxv::AT_MINSIGSTKSZ)),
            (auxv::AT_HWCAP, host.value(auxv::AT_HWCAP)),
            (auxv::AT_PAGESZ, page),
            (auxv::AT_CLKTCK, host.value(auxv::AT_CLKTCK)),
            (auxv::AT_PHDR, phdr),
            (auxv::AT_PHENT, HOST_CLASS.program_header_size() as u64),
            (auxv::AT_PHNUM, self.program.elf.program_headers.len() as u64),
            (auxv::AT_BASE, interpreter.as_ref().map_or(0, |i| i.bias)),
            (auxv::AT_FLAGS, 0),
            (auxv::AT_ENTRY, program_entry),
            (auxv::AT_UID, host.value(auxv::AT_UID)),
            (auxv::AT_EUID, host.value(auxv::AT_EUID)),
            (auxv::AT_GID, host.value(auxv::AT_GID)),
            (auxv::AT_EGID, host.value(auxv::AT_EGID)),
            (auxv::AT_SECURE, host.value(auxv::AT_SECURE)),
            (auxv::AT_HWCAP2, host.value(auxv::AT_HWCAP2)),
            (auxv::AT_RSEQ_FEATURE_SIZE, host.value(auxv::AT_RSEQ_FEATURE_SIZE)),
            (auxv::AT_RSEQ_ALIGN, host.value(auxv::AT_RSEQ_ALIGN)),
        ];
        let args: Vec<Vec<u8>> = self.args.iter().map(|a| a.as_bytes().to_vec()).collect();
        let env: Vec<Vec<u8>> = std::env::vars_os().map(|(k, v)| [k.as_bytes(), b"=", v.as_bytes()].concat()).collect();
        let execfn = self.program.path.as_os_str().as_bytes().to_vec();
        let mut random = [0u8; 16];
        rustix::rand::getrandom(&mut random, rustix::rand::GetRandomFlags::empty()).map_err(|e| system("getrandom", e.into()))?;
        let platform = host.platform();
        let request = StackRequest {
            class: HOST_CLASS,
            args: &args,
            env: &env,
            execfn: &execfn,
            platform: platform.as_deref(),
            random,
            auxv: &plain_auxv,
        };
        let stack = stack_area.fill(&request).map_err(|e| system("initial stack", e))?;
        let objects = std::iter::once((&self.program, &program)).chain(self.interpreter.iter().zip(interpreter.iter()));
        let report = objects
            .map(|(object, mapped)| {
                let relro = if std::ptr::eq(object, &self.program) { self.program_relro } else { None };
                ObjectReport {
                    path: object.path.display().to_string(),
                    bias: mapped.bias,
                    plan: object.plan.clone(),
                    relro_advertised: relro,
                    origin_expanded: if std::ptr::eq(object, &self.program) { origin_expanded.clone() } else { Vec::new() },
                    huge_pages: mapped.huge_pages.clone(),
                }
            })
            .collect();
        let name = process_name(&self.program.path);
        Ok(Loaded {
            entry: start_at,
            emulated: self.options.page_size > host_page_size(),
            program_file: self.program.file,
            signal_mask,
            name,
            report: RunReport {
                mode: if self.options.as_kernel { "as-kernel" } else { "robust" },
                page_size: self.options.page_size,
                objects: report,
                stack: StackReport { start: stack.range.start, end: stack.range.end, sp: stack.sp },
            },
            stack,
        })
    }
}

impl Prepared {
    /// Where the program's own program header table is mapped, before the load bias.
    fn in_image_program_headers(&self) -> Result<u64, LoadError> {
        phdr_address(&self.program.elf)
            .ok_or_else(|| LoadError::Invalid(format!("{}: program headers are not in any PT_LOAD", self.program.path.display())))
    }

    /// Writes each expanded search path above the stack top (from `at`) and
    /// points its dynamic entry there. Only entries in pages the program may
    /// write anyway are changed (`.dynamic` is writable data, or RELRO that
    /// ld.so protects later); an entry in read-only memory keeps `$ORIGIN`.
    fn expand_origin_in_memory(
        &self,
        program: &mut MappedObject,
        stack_area: &mut StackArea,
        mut at: u64,
        strings: &[Vec<u8>],
    ) -> Vec<OriginExpansion> {
        let mut expanded = Vec::new();
        for (expansion, string) in self.origin_expansions.iter().zip(strings) {
            let value = AddrRange::new(expansion.value_vaddr, expansion.value_vaddr + HOST_CLASS.word_bytes() as u64);
            let writable = self
                .program
                .plan
                .mappings
                .iter()
                .any(|m| m.range.start <= value.start && value.end <= m.range.end && m.prot.contains(Prot::W));
            if writable {
                stack_area.reservation.write(at as usize, string);
                let d_val = expansion.value_for(at, program.bias);
                // The low word of the little-endian value: modulo 2^32 for ELF32, as ld.so adds.
                program.reservation.write(value.start.wrapping_add(program.bias) as usize, &d_val.to_le_bytes()[..HOST_CLASS.word_bytes()]);
                expanded.push(expansion.clone());
            }
            at += string.len() as u64;
        }
        expanded
    }
}

/// Where the program headers are in memory, before the load bias.
fn phdr_address(elf: &ElfFile) -> Option<u64> {
    if let Some(phdr) = elf.header_of_type(object::elf::PT_PHDR) {
        return Some(phdr.vaddr);
    }
    let offset = elf.program_header_offset;
    elf.loads().find(|s| s.offset <= offset && offset < s.offset + s.filesz).map(|s| s.vaddr + (offset - s.offset))
}

/// Writes `bytes` at link-time address `at` of a mapped object: each page
/// they touch is made writable for the write, then given its planned
/// protection back. Private mappings: the file is never changed.
fn write_into_image(object: &PlannedObject, mapped: &mut MappedObject, at: u64, bytes: &[u8]) -> std::io::Result<()> {
    let page = object.plan.page_size;
    let end = at + bytes.len() as u64;
    let runtime = |address: u64| address.wrapping_add(mapped.bias) as usize;
    let mut page_start = page.align_down(at);
    while page_start < end {
        let page_end = page_start + page.bytes();
        let mapping = object
            .plan
            .mappings
            .iter()
            .find(|m| m.range.start <= page_start && page_end <= m.range.end && m.source != MappingSource::Reserved)
            .ok_or(std::io::ErrorKind::AddrNotAvailable)?;
        let writable = mapping.prot.contains(Prot::W);
        if !writable {
            mapped.reservation.protect(runtime(page_start), page.bytes() as usize, Prot::RW)?;
        }
        let (from, to) = (at.max(page_start), end.min(page_end));
        mapped.reservation.write(runtime(from), &bytes[(from - at) as usize..(to - at) as usize]);
        if !writable {
            mapped.reservation.protect(runtime(page_start), page.bytes() as usize, mapping.prot)?;
        }
        page_start = page_end;
    }
    Ok(())
}

fn process_name(path: &Path) -> Vec<u8> {
    let name = path.file_name().map_or_else(|| path.as_os_str().as_bytes(), |n| n.as_bytes());
    name[..name.len().min(15)].to_vec()
}

struct MappedObject {
    /// Kept for writes after mapping.
    reservation: sys::Reservation,
    bias: u64,
    huge_pages: Vec<HugePageReport>,
}

/// Executes one plan: reserve the span, map and fill every mapping, give
/// gaps back, then apply the final protections.
fn map_object(object: &PlannedObject, thp: HugeText) -> std::io::Result<MappedObject> {
    let plan = &object.plan;
    let huge_text = if thp == HugeText::Off { Vec::new() } else { huge_page_text(plan) };
    let span = plan.span;
    let len = usize::try_from(span.len()).map_err(|_| std::io::ErrorKind::OutOfMemory)?;
    let (mut reservation, bias) = if object.elf.kind == ElfKind::Exec {
        (sys::Reservation::fixed(span.start as usize, len)?, 0u64)
    } else {
        // With huge-page text, a 2 MiB-aligned bias keeps address and file offset congruent mod 2 MiB.
        let alignment = if huge_text.is_empty() { plan.base_alignment } else { plan.base_alignment.max(PageSize::M2.bytes()) };
        let align = usize::try_from(alignment).map_err(|_| std::io::ErrorKind::InvalidInput)?;
        // Under emulation, ld.so maps a library's last segment up to a P
        // boundary past the space this smaller-page host gave it, over the
        // page above; a library often lands right below this object, in the
        // padding `anywhere` gave back. A guard of P below the object takes
        // that instead of its first page.
        let guard = if plan.page_size > host_page_size() { plan.page_size.bytes().next_multiple_of(alignment) } else { 0 };
        let guard = usize::try_from(guard).map_err(|_| std::io::ErrorKind::InvalidInput)?;
        let reservation = sys::Reservation::anywhere(len.checked_add(guard).ok_or(std::io::ErrorKind::OutOfMemory)?, align)?;
        let bias = ((reservation.start() + guard) as u64).wrapping_sub(span.start);
        (reservation, bias)
    };
    let at = |address: u64| address.wrapping_add(bias) as usize;
    for mapping in &plan.mappings {
        let (start, len) = (at(mapping.range.start), mapping.range.len() as usize);
        let first_prot = if mapping.needs_writes() { Prot::RW } else { mapping.prot };
        match &mapping.source {
            MappingSource::File { offset } => {
                // Under emulation the plan's last file page can reach past the
                // host pages that hold file bytes; a real P-page kernel would
                // zero-fill that tail, but touching it here would be SIGBUS.
                // So the tail becomes anonymous zeros.
                let file_pages_end = object.file_len.next_multiple_of(host_page_size().bytes());
                let file_len = usize::try_from(file_pages_end.saturating_sub(*offset)).unwrap_or(usize::MAX).min(len);
                if file_len > 0 {
                    reservation.map_file(start, file_len, first_prot, &object.file, *offset)?;
                }
                if file_len < len {
                    reservation.map_anonymous(start + file_len, len - file_len, first_prot)?;
                }
            }
            MappingSource::Composed { copies } => {
                reservation.map_anonymous(start, len, first_prot)?;
                for copy in copies {
                    reservation.copy_from_file(
                        at(copy.destination.start),
                        copy.destination.len() as usize,
                        &object.file,
                        copy.file_offset,
                    )?;
                }
            }
            MappingSource::Anonymous => reservation.map_anonymous(start, len, first_prot)?,
            MappingSource::Reserved => {}
        }
        for zero in &mapping.zero {
            reservation.zero(at(zero.start), zero.len() as usize);
        }
    }
    for gap in &plan.unmapped {
        reservation.unmap(at(gap.start), gap.len() as usize)?;
    }
    // Mappings filled while writable take their final protection now, unless that is read-write already.
    for mapping in plan.mappings.iter().filter(|m| m.needs_writes() && m.prot != Prot::RW) {
        reservation.protect(at(mapping.range.start), mapping.range.len() as usize, mapping.prot)?;
    }
    let huge_pages = huge_text
        .iter()
        .map(|chunk| offer_huge_pages(&mut reservation, &object.file, *chunk, bias, thp))
        .collect::<std::io::Result<_>>()?;
    Ok(MappedObject { reservation, bias, huge_pages })
}

/// Offers one whole, aligned chunk of file-mapped text to transparent huge
/// pages, and with [`HugeText::Copy`] copies it into anonymous memory where
/// the kernel will not collapse the file mapping.
fn offer_huge_pages(
    reservation: &mut sys::Reservation,
    file: &File,
    chunk: HugePageText,
    bias: u64,
    thp: HugeText,
) -> std::io::Result<HugePageReport> {
    let (start, len) = (chunk.range.start.wrapping_add(bias) as usize, chunk.range.len() as usize);
    let report = |outcome: String, private_bytes: u64| HugePageReport {
        range: AddrRange::new(start as u64, (start + len) as u64),
        outcome,
        private_bytes,
    };
    if let Err(error) = reservation.advise_huge_pages(start, len) {
        return Ok(report(format!("MADV_HUGEPAGE refused: {error}"), 0));
    }
    let refusal = match reservation.collapse_into_huge_pages(start, len) {
        Ok(()) => return Ok(report("collapsed into huge pages".into(), 0)),
        Err(error) => error,
    };
    if thp != HugeText::Copy {
        return Ok(report(format!("advised; MADV_COLLAPSE refused ({refusal}), khugepaged may collapse it later"), 0));
    }
    // Advised before the copy first touches it, so that its page faults
    // already take huge pages; a copy failing half-way fails the run.
    reservation.map_anonymous(start, len, Prot::RW)?;
    reservation.advise_huge_pages(start, len)?;
    reservation.copy_from_file(start, len, file, chunk.file_offset)?;
    reservation.protect(start, len, chunk.prot)?;
    let collapsed = match reservation.collapse_into_huge_pages(start, len) {
        Ok(()) => "collapsed into huge pages".to_string(),
        Err(error) => format!("MADV_COLLAPSE refused ({error}), huge pages only where the copy's faults got them"),
    };
    Ok(report(format!("file mapping not collapsed ({refusal}): copied into anonymous memory, {collapsed}"), len as u64))
}

/// The fresh stack: `RLIMIT_STACK` (8 MiB when unlimited, at most 256 MiB)
/// of lazily allocated memory, with a `PROT_NONE` guard of 1 MiB below it,
/// and room above its top for a rewritten program header table.
struct StackArea {
    reservation: sys::Reservation,
    bottom: u64,
    top: u64,
}

impl StackArea {
    fn map(page: u64, above_top: usize) -> std::io::Result<StackArea> {
        const GUARD: u64 = 1 << 20;
        let limit = rustix::process::getrlimit(rustix::process::Resource::Stack).current.unwrap_or(8 << 20);
        let size = limit.clamp(128 << 10, 256 << 20).next_multiple_of(page);
        let above = (above_top as u64).next_multiple_of(page);
        let total = usize::try_from(GUARD + size + above).map_err(|_| std::io::ErrorKind::OutOfMemory)?;
        let mut reservation = sys::Reservation::anywhere(total, page as usize)?;
        let bottom = reservation.start() as u64 + GUARD;
        // One mapping for the stack and the table above it: one VMA.
        reservation.map_anonymous(bottom as usize, (size + above) as usize, Prot::RW)?;
        Ok(StackArea { reservation, bottom, top: bottom + size })
    }

    fn fill(mut self, request: &StackRequest<'_>) -> std::io::Result<MappedStack> {
        let image = build_stack(request, self.top).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
        // The ABI's entry invariants: 16-byte alignment, and a stack that reads back.
        debug_assert_eq!(image.sp % 16, 0);
        debug_assert!(
            pagefit_core::run::stack::parse_stack(&image.bytes, image.base, image.sp, request.class).is_ok_and(|s| s.args == request.args)
        );
        self.reservation.write(image.base as usize, &image.bytes);
        Ok(MappedStack {
            range: AddrRange::new(self.bottom, self.top),
            sp: image.sp,
            arg_strings: image.arg_strings,
            env_strings: image.env_strings,
        })
    }
}

struct MappedStack {
    range: AddrRange,
    sp: u64,
    arg_strings: AddrRange,
    env_strings: AddrRange,
}

/// A loaded program, ready to start.
pub struct Loaded {
    entry: u64,
    /// Emulating a page size larger than the host's.
    emulated: bool,
    program_file: File,
    stack: MappedStack,
    signal_mask: sys::SignalMask,
    name: Vec<u8>,
    report: RunReport,
}

impl Loaded {
    /// What was mapped where, for `--report`.
    pub fn report(&self) -> &RunReport {
        &self.report
    }

    /// Becomes the program: process name, `PR_SET_MM` where permitted,
    /// signal dispositions and mask as `execve` leaves them, the loader's
    /// own descriptors closed, then the jump. Never returns, so nothing the
    /// caller still holds is dropped: close your own files before calling it.
    pub fn start(self) -> ! {
        let Loaded { entry, emulated, program_file, stack, signal_mask, mut name, report: _ } = self;
        name.push(0);
        if let Ok(name) = std::ffi::CStr::from_bytes_with_nul(&name) {
            let _ = rustix::thread::set_name(name);
        }
        use rustix::process::VirtualMemoryMapAddress as Field;
        let (args, env) = (stack.arg_strings, stack.env_strings);
        // Needs CAP_SYS_RESOURCE; without it /proc/self/cmdline keeps pagefit's arguments.
        let _ = sys::set_mm_addresses(&[
            (Field::ArgStart, args.start as usize),
            (Field::ArgEnd, args.end as usize),
            (Field::EnvironmentStart, env.start as usize),
            (Field::EnvironmentEnd, env.end as usize),
        ]);
        // Needs CAP_SYS_RESOURCE (and pagefit's own image unmapped on some
        // kernels); without it /proc/self/exe, and so the main program's
        // $ORIGIN, stay pagefit's.
        let _ = rustix::process::set_executable_file(std::os::fd::AsFd::as_fd(&program_file));
        // The loader's last open descriptor: every other file it opened was
        // closed when `prepare` and `load` let go of it.
        drop(program_file);
        sys::reset_signal_dispositions();
        if emulated {
            sys::zero_fill_pages_past_end_of_file(host_page_size().bytes() as usize);
        }
        #[cfg(target_env = "gnu")]
        sys::unregister_rseq();
        let _ = sys::restore_signal_mask(&signal_mask);
        #[allow(unsafe_code)]
        // SAFETY: `sp` points at the stack `build_stack` laid out and
        // `map_stack` wrote, and `entry` into an object `map_object` mapped
        // with its final protections.
        unsafe {
            sys::jump(entry as usize, stack.sp as usize)
        }
    }
}

/// Raises SIGSEGV with the default disposition, as the kernel kills a
/// process whose segments it cannot map after the point of no return.
pub fn die_like_the_kernel() -> ! {
    sys::die_by_sigsegv()
}

/// What `--report` prints.
#[derive(Debug, Serialize)]
pub struct RunReport {
    /// `robust` or `as-kernel`.
    pub mode: &'static str,
    /// The page size mappings were planned with (AT_PAGESZ).
    pub page_size: PageSize,
    /// The program, then its interpreter.
    pub objects: Vec<ObjectReport>,
    /// The initial stack.
    pub stack: StackReport,
}

/// One loaded object.
#[derive(Debug, Serialize)]
pub struct ObjectReport {
    /// Its path.
    pub path: String,
    /// The load bias (0 for fixed-address programs).
    pub bias: u64,
    /// The plan, in link-time addresses.
    pub plan: RobustPlan,
    /// PT_GNU_RELRO as the program was told it (through AT_PHDR, or for a
    /// program without an interpreter in its own mapped header table), when
    /// trimmed to whole pages; link-time addresses.
    pub relro_advertised: Option<AddrRange>,
    /// DT_RPATH/DT_RUNPATH entries whose `$ORIGIN` the loader expanded
    /// (ld.so would take it from /proc/self/exe, which is pagefit's).
    pub origin_expanded: Vec<OriginExpansion>,
    /// With `--thp`: the text ranges offered to transparent huge pages.
    pub huge_pages: Vec<HugePageReport>,
}

/// Text offered to transparent huge pages.
#[derive(Clone, Debug, Serialize)]
pub struct HugePageReport {
    /// Run-time addresses.
    pub range: AddrRange,
    /// What the kernel did with the advice.
    pub outcome: String,
    /// Private memory the range costs: its length when `--thp-copy` copied
    /// it into anonymous memory, else 0 (it stays shared file pages).
    pub private_bytes: u64,
}

/// Where the initial stack is.
#[derive(Debug, Serialize)]
pub struct StackReport {
    /// Lowest usable address.
    pub start: u64,
    /// One past the highest address.
    pub end: u64,
    /// The stack pointer at entry.
    pub sp: u64,
}
