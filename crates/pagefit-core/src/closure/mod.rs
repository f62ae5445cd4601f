//! Dependency closures: every file a program loads, found the way glibc's
//! ld.so searches for them, without running anything (`ldd` runs the program).
//!
//! The search is a pure function of the files it is shown: the caller
//! provides them through [`TargetFiles`], which may read a sysroot instead of
//! `/`. For each DT_NEEDED name, in breadth-first order as ld.so loads them:
//!
//! 1. a name with a `/` is a path (with `$ORIGIN`, `$LIB` and `$PLATFORM` expanded);
//! 2. a name already loaded (by the name it was asked for or by its DT_SONAME,
//!    or the same file reached by another path) is not searched again;
//! 3. DT_RPATH of the object that needs it, then of the object that loaded
//!    that one, up to the program; skipped when the needing object has DT_RUNPATH;
//! 4. `LD_LIBRARY_PATH`;
//! 5. DT_RUNPATH of the needing object only;
//! 6. the directories of `/etc/ld.so.conf` (what `ldconfig` puts in the
//!    cache), following `include` lines;
//! 7. the default directories, multiarch first (`/lib/<triple>`,
//!    `/usr/lib/<triple>`, `/lib`, `/usr/lib`), unless DF_1_NODEFLIB.
//!
//! A candidate of another ELF class, byte order or machine is skipped, as
//! ld.so does. `$LIB` expands to Debian's `lib/<triple>`.

use std::collections::VecDeque;

use serde::Serialize;

use crate::elf::ElfFile;
use crate::page::PageSize;
use crate::predict::check::FileReport;
use crate::predict::effect::Outcome;

/// A path on the target system.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TargetPath {
    /// The path as ld.so would see it.
    pub path: String,
    /// Whether it lies under the sysroot (absolute search directories, the
    /// interpreter) rather than where the program itself was given (paths
    /// derived from the `$ORIGIN` of a program outside the sysroot).
    pub in_sysroot: bool,
}

/// What opening a candidate gave.
#[derive(Debug)]
pub enum Opened {
    /// Nothing there.
    NotFound,
    /// An ELF file.
    Elf {
        /// Its parsed headers (with dynamic strings).
        file: Box<ElfFile>,
        /// Device and inode: the same file reached by two paths is loaded once.
        identity: (u64, u64),
        /// Where the file really is on this machine.
        host_path: String,
    },
    /// A file that cannot be used (not ELF, truncated, unreadable), with the reason.
    Invalid(String),
}

/// The files a closure is resolved against.
pub trait TargetFiles {
    /// Opens and parses a candidate.
    fn open_elf(&mut self, path: &TargetPath) -> Opened;
    /// Reads a text file under the sysroot (`/etc/ld.so.conf`).
    fn read_text(&mut self, path: &str) -> Option<String>;
    /// The names in a directory under the sysroot (for `include` globs).
    fn list_dir(&mut self, dir: &str) -> Vec<String>;
}

/// What the search uses besides the files.
#[derive(Clone, Debug, Default)]
pub struct SearchOptions {
    /// `LD_LIBRARY_PATH`'s directories.
    pub library_path: Vec<String>,
}

/// How an object was found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum FoundVia {
    /// The program itself.
    Program,
    /// Its PT_INTERP.
    Interpreter,
    /// A DT_NEEDED name that is a path.
    Path,
    /// A DT_RPATH entry (unexpanded) of `owner` (an index into the objects).
    Rpath {
        /// The object whose DT_RPATH it is.
        owner: usize,
        /// The entry as written (`$ORIGIN/sub`).
        entry: String,
    },
    /// An `LD_LIBRARY_PATH` directory.
    LibraryPath {
        /// The directory.
        entry: String,
    },
    /// A DT_RUNPATH entry of the needing object.
    Runpath {
        /// The entry as written.
        entry: String,
    },
    /// A directory of `/etc/ld.so.conf`.
    LdSoConf {
        /// The directory.
        entry: String,
    },
    /// A default directory.
    DefaultDir {
        /// The directory.
        entry: String,
    },
}

/// One DT_NEEDED entry of an object.
#[derive(Clone, Debug, Serialize)]
pub struct Dependency {
    /// The name as written.
    pub name: String,
    /// The object it resolved to, if any.
    pub object: Option<usize>,
    /// Whether this entry loaded the object (false: it was already loaded).
    pub first: bool,
}

/// A loaded object.
#[derive(Clone, Debug, Serialize)]
pub struct LoadedObject {
    /// The name it was asked for (the DT_NEEDED string; the path for the program).
    pub name: String,
    /// Its path on the target.
    pub path: TargetPath,
    /// Where it is on this machine.
    pub host_path: String,
    /// The object whose DT_NEEDED loaded it (none for the program and interpreter).
    pub needed_by: Option<usize>,
    /// How it was found.
    pub via: FoundVia,
    /// Its DT_NEEDED entries, resolved.
    pub dependencies: Vec<Dependency>,
    /// The parsed file.
    #[serde(skip)]
    pub file: ElfFile,
    #[serde(skip)]
    identity: (u64, u64),
}

impl LoadedObject {
    /// The name loaders print for it: the last component of the name it was asked for.
    pub fn file_name(&self) -> &str {
        file_name(&self.name)
    }
}

/// A DT_NEEDED name that ld.so would fail on.
#[derive(Clone, Debug, Serialize)]
pub struct Unresolved {
    /// The name.
    pub name: String,
    /// The object that needs it.
    pub needed_by: usize,
    /// What ld.so would say, e.g. "cannot open shared object file".
    pub reason: String,
    /// Every path tried, in order.
    pub searched: Vec<String>,
}

/// A program and everything it loads.
#[derive(Clone, Debug, Serialize)]
pub struct Closure {
    /// Objects in load order: the program, its interpreter, then breadth-first.
    pub objects: Vec<LoadedObject>,
    /// Names that could not be resolved.
    pub unresolved: Vec<Unresolved>,
}

/// Resolves the closure of `program`, which must already be known to be an ELF file.
pub fn resolve(program: TargetPath, files: &mut dyn TargetFiles, options: &SearchOptions) -> Result<Closure, String> {
    let (file, identity, host_path) = match files.open_elf(&program) {
        Opened::Elf { file, identity, host_path } => (*file, identity, host_path),
        Opened::NotFound => return Err(format!("{}: no such file", program.path)),
        Opened::Invalid(reason) => return Err(reason),
    };
    let mut resolver = Resolver { files, options, closure: Closure { objects: Vec::new(), unresolved: Vec::new() }, ld_so_conf: None };
    let interpreter = file.interpreter.clone();
    resolver.closure.objects.push(LoadedObject {
        name: program.path.clone(),
        path: program,
        host_path,
        needed_by: None,
        via: FoundVia::Program,
        dependencies: Vec::new(),
        file,
        identity,
    });
    if let Some(interpreter) = interpreter {
        let path = TargetPath { path: interpreter.clone(), in_sysroot: true };
        match resolver.files.open_elf(&path) {
            Opened::Elf { file, identity, host_path } => resolver.closure.objects.push(LoadedObject {
                name: interpreter,
                path,
                host_path,
                needed_by: None,
                via: FoundVia::Interpreter,
                dependencies: Vec::new(),
                file: *file,
                identity,
            }),
            Opened::NotFound => resolver.unresolved(&interpreter, 0, "no such file (the program's interpreter)", vec![interpreter.clone()]),
            Opened::Invalid(reason) => resolver.unresolved(&interpreter, 0, &reason, vec![interpreter.clone()]),
        }
    }
    let mut queue: VecDeque<usize> = (0..resolver.closure.objects.len()).collect();
    while let Some(index) = queue.pop_front() {
        for name in resolver.closure.objects[index].file.dynamic.needed.clone() {
            let (object, first) = match resolver.already_loaded(&name) {
                Some(object) => (Some(object), false),
                None => match resolver.search(&name, index) {
                    Some((object, true)) => {
                        queue.push_back(object);
                        (Some(object), true)
                    }
                    Some((object, false)) => (Some(object), false),
                    None => (None, false),
                },
            };
            resolver.closure.objects[index].dependencies.push(Dependency { name, object, first });
        }
    }
    Ok(resolver.closure)
}

struct Resolver<'a> {
    files: &'a mut dyn TargetFiles,
    options: &'a SearchOptions,
    closure: Closure,
    ld_so_conf: Option<Vec<String>>,
}

/// A candidate directory and how to describe a find there.
struct Candidate {
    dir: TargetPath,
    via: FoundVia,
}

impl Resolver<'_> {
    fn unresolved(&mut self, name: &str, needed_by: usize, reason: &str, searched: Vec<String>) {
        self.closure.unresolved.push(Unresolved { name: name.to_string(), needed_by, reason: reason.to_string(), searched });
    }

    fn already_loaded(&self, name: &str) -> Option<usize> {
        self.closure
            .objects
            .iter()
            .position(|object| object.name == name || object.path.path == name || object.file.dynamic.soname.as_deref() == Some(name))
    }

    /// Finds `name` for the object at `loader`: the object it resolved to
    /// and whether it is new (pushed last), or none when it is recorded as unresolved.
    fn search(&mut self, name: &str, loader: usize) -> Option<(usize, bool)> {
        let mut searched = Vec::new();
        let mut other_class = false;
        let candidates = if name.contains('/') {
            let expanded = self.expand(name, loader);
            vec![(TargetPath { path: expanded.path, in_sysroot: expanded.in_sysroot }, FoundVia::Path)]
        } else {
            self.search_dirs(loader).into_iter().map(|candidate| (join(&candidate.dir, name), candidate.via)).collect()
        };
        for (path, via) in candidates {
            if searched.contains(&path.path) {
                continue;
            }
            searched.push(path.path.clone());
            match self.files.open_elf(&path) {
                Opened::NotFound => {}
                Opened::Invalid(reason) => {
                    self.unresolved(name, loader, &reason, searched);
                    return None;
                }
                Opened::Elf { file, identity, host_path } => {
                    let program = &self.closure.objects[0].file;
                    if file.bits != program.bits {
                        other_class = true;
                        continue;
                    }
                    if file.machine != program.machine || file.little_endian != program.little_endian {
                        continue;
                    }
                    if let Some(same) = self.closure.objects.iter().position(|o| o.identity == identity) {
                        return Some((same, false));
                    }
                    self.closure.objects.push(LoadedObject {
                        name: name.to_string(),
                        path,
                        host_path,
                        needed_by: Some(loader),
                        via,
                        dependencies: Vec::new(),
                        file: *file,
                        identity,
                    });
                    return Some((self.closure.objects.len() - 1, true));
                }
            }
        }
        let reason = if other_class {
            format!("wrong ELF class: ELFCLASS{}", if self.closure.objects[0].file.bits == 64 { 32 } else { 64 })
        } else {
            "cannot open shared object file: No such file or directory".to_string()
        };
        self.unresolved(name, loader, &reason, searched);
        None
    }

    /// The directories searched for a plain name needed by `loader`, in order.
    fn search_dirs(&mut self, loader: usize) -> Vec<Candidate> {
        let mut dirs = Vec::new();
        let objects = &self.closure.objects;
        if objects[loader].file.dynamic.runpath.is_none() {
            let mut chain = Some(loader);
            let mut did_program = false;
            while let Some(index) = chain {
                did_program |= index == 0;
                self.push_rpath(&mut dirs, index);
                chain = self.closure.objects[index].needed_by;
            }
            if !did_program {
                self.push_rpath(&mut dirs, 0);
            }
        }
        for entry in &self.options.library_path {
            dirs.push(Candidate {
                dir: TargetPath { path: entry.clone(), in_sysroot: true },
                via: FoundVia::LibraryPath { entry: entry.clone() },
            });
        }
        if let Some(runpath) = self.closure.objects[loader].file.dynamic.runpath.clone() {
            for entry in split_path_list(&runpath) {
                dirs.push(Candidate { dir: self.expand(entry, loader), via: FoundVia::Runpath { entry: entry.to_string() } });
            }
        }
        let no_default_libs = self.closure.objects[loader].file.dynamic.flags_1 & object::elf::DF_1_NODEFLIB.0 != 0;
        if !no_default_libs {
            for entry in self.ld_so_conf_dirs() {
                dirs.push(Candidate { dir: TargetPath { path: entry.clone(), in_sysroot: true }, via: FoundVia::LdSoConf { entry } });
            }
            let triple = multiarch_triple(&self.closure.objects[0].file);
            let mut defaults = Vec::new();
            if let Some(triple) = triple {
                defaults.push(format!("/lib/{triple}"));
                defaults.push(format!("/usr/lib/{triple}"));
            }
            defaults.extend(["/lib".to_string(), "/usr/lib".to_string()]);
            for entry in defaults {
                dirs.push(Candidate { dir: TargetPath { path: entry.clone(), in_sysroot: true }, via: FoundVia::DefaultDir { entry } });
            }
        }
        dirs
    }

    fn push_rpath(&self, dirs: &mut Vec<Candidate>, owner: usize) {
        let object = &self.closure.objects[owner];
        // The program's DT_RPATH is ignored when it has DT_RUNPATH.
        if owner == 0 && object.file.dynamic.runpath.is_some() {
            return;
        }
        if let Some(rpath) = &object.file.dynamic.rpath {
            for entry in split_path_list(rpath) {
                dirs.push(Candidate { dir: self.expand(entry, owner), via: FoundVia::Rpath { owner, entry: entry.to_string() } });
            }
        }
    }

    /// Expands `$ORIGIN`, `$LIB` and `$PLATFORM` (also in `${...}` form) for the object at `owner`.
    fn expand(&self, text: &str, owner: usize) -> TargetPath {
        let object = &self.closure.objects[owner];
        let origin = object.path.path.rsplit_once('/').map_or(".", |(dir, _)| if dir.is_empty() { "/" } else { dir });
        let program = &self.closure.objects[0].file;
        let lib = multiarch_triple(program).map_or_else(|| "lib".to_string(), |t| format!("lib/{t}"));
        let platform = program.machine_name();
        let mut expanded = text.to_string();
        let mut uses_origin = false;
        for (token, value) in [("ORIGIN", origin), ("LIB", lib.as_str()), ("PLATFORM", platform.as_str())] {
            for form in [format!("${{{token}}}"), format!("${token}")] {
                if expanded.contains(&form) {
                    uses_origin |= token == "ORIGIN";
                    expanded = expanded.replace(&form, value);
                }
            }
        }
        // A directory relative to $ORIGIN lives wherever its object does.
        let in_sysroot = if uses_origin { object.path.in_sysroot } else { true };
        TargetPath { path: expanded, in_sysroot }
    }

    /// The directories listed in `/etc/ld.so.conf` and the files it includes
    /// (read once, at most [`MAX_LD_SO_CONF_FILES`] of them).
    fn ld_so_conf_dirs(&mut self) -> Vec<String> {
        if self.ld_so_conf.is_none() {
            let mut dirs = Vec::new();
            let mut seen = Vec::new();
            self.read_ld_so_conf("/etc/ld.so.conf", &mut dirs, &mut seen);
            self.ld_so_conf = Some(dirs);
        }
        self.ld_so_conf.clone().unwrap_or_default()
    }

    fn read_ld_so_conf(&mut self, path: &str, dirs: &mut Vec<String>, seen: &mut Vec<String>) {
        if seen.len() >= MAX_LD_SO_CONF_FILES || seen.iter().any(|s| s == path) {
            return;
        }
        seen.push(path.to_string());
        let Some(text) = self.files.read_text(path) else { return };
        let conf_dir = path.rsplit_once('/').map_or("/", |(dir, _)| dir);
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            if let Some(patterns) = line.strip_prefix("include").filter(|rest| rest.starts_with([' ', '\t'])) {
                for pattern in patterns.split_whitespace() {
                    let pattern = if pattern.starts_with('/') { pattern.to_string() } else { format!("{conf_dir}/{pattern}") };
                    for included in self.glob(&pattern) {
                        self.read_ld_so_conf(&included, dirs, seen);
                    }
                }
            } else if line.starts_with("hwcap") || line.is_empty() {
                continue;
            } else {
                for dir in line.split([':', ',', ' ', '\t']).filter(|d| !d.is_empty()) {
                    let dir = dir.split('=').next().unwrap_or(dir).trim_end_matches('/');
                    if !dirs.iter().any(|d| d == dir) {
                        dirs.push(dir.to_string());
                    }
                }
            }
        }
    }

    /// Files matching a pattern whose wildcards are in the last component.
    fn glob(&mut self, pattern: &str) -> Vec<String> {
        let (dir, name_pattern) = pattern.rsplit_once('/').unwrap_or((".", pattern));
        if !name_pattern.contains(['*', '?', '[']) {
            return vec![pattern.to_string()];
        }
        let mut names: Vec<String> = self.files.list_dir(dir).into_iter().filter(|name| wildcard_match(name_pattern, name)).collect();
        names.sort();
        names.into_iter().map(|name| format!("{dir}/{name}")).collect()
    }
}

/// The most ld.so.conf files a closure reads. Includes relative to the
/// including file's directory, through a directory link to itself
/// (`conf.d/loop -> .`, two `*.conf` files each including `loop/*.conf`),
/// name new files at every level and double at each: ldconfig stops only at
/// PATH_MAX. A real system reads a few dozen.
const MAX_LD_SO_CONF_FILES: usize = 256;

fn join(dir: &TargetPath, name: &str) -> TargetPath {
    let separator = if dir.path.ends_with('/') || dir.path.is_empty() { "" } else { "/" };
    TargetPath { path: format!("{}{separator}{name}", dir.path), in_sysroot: dir.in_sysroot }
}

/// DT_RPATH/DT_RUNPATH/LD_LIBRARY_PATH lists: `:`-separated; an empty entry means the current directory.
fn split_path_list(list: &str) -> impl Iterator<Item = &str> {
    list.split(':').map(|entry| if entry.is_empty() { "." } else { entry })
}

/// `*` and `?` matching, for ld.so.conf's `include` lines.
fn wildcard_match(pattern: &str, name: &str) -> bool {
    fn matches(pattern: &[u8], name: &[u8]) -> bool {
        match pattern.split_first() {
            None => name.is_empty(),
            Some((b'*', rest)) => (0..=name.len()).any(|skip| matches(rest, &name[skip..])),
            Some((b'?', rest)) => !name.is_empty() && matches(rest, &name[1..]),
            Some((&c, rest)) => name.first() == Some(&c) && matches(rest, &name[1..]),
        }
    }
    // Hidden files are not matched by `*`, as with glob(3).
    (pattern.starts_with('.') || !name.starts_with('.')) && matches(pattern.as_bytes(), name.as_bytes())
}

/// Debian's multiarch triple for the program's ABI.
pub fn multiarch_triple(file: &ElfFile) -> Option<&'static str> {
    use object::elf;
    Some(match (elf::Machine(file.machine), file.bits, file.little_endian) {
        (elf::EM_X86_64, 64, _) => "x86_64-linux-gnu",
        (elf::EM_X86_64, 32, _) => "x86_64-linux-gnux32",
        (elf::EM_386, _, _) => "i386-linux-gnu",
        (elf::EM_AARCH64, 64, true) => "aarch64-linux-gnu",
        (elf::EM_ARM, 32, true) => "arm-linux-gnueabihf",
        (elf::EM_PPC64, 64, true) => "powerpc64le-linux-gnu",
        (elf::EM_PPC64, 64, false) => "powerpc64-linux-gnu",
        (elf::EM_PPC, 32, false) => "powerpc-linux-gnu",
        (elf::EM_RISCV, 64, _) => "riscv64-linux-gnu",
        (elf::EM_S390, 64, _) => "s390x-linux-gnu",
        (elf::EM_LOONGARCH, 64, _) => "loongarch64-linux-gnu",
        (elf::EM_MIPS, 64, true) => "mips64el-linux-gnuabi64",
        (elf::EM_MIPS, 32, true) => "mipsel-linux-gnu",
        (elf::EM_SPARCV9, 64, _) => "sparc64-linux-gnu",
        _ => return None,
    })
}

/// Why a program cannot run at one page size: the first object in load order
/// that is not ok there (ld.so stops at it), and how it was reached.
#[derive(Clone, Debug, Serialize)]
pub struct WeakestLink {
    /// The page size.
    pub page_size: PageSize,
    /// Index of the object.
    pub object: usize,
    /// Its outcome there.
    pub outcome: Outcome,
    /// What the loader says or what goes wrong.
    pub message: Option<String>,
    /// The sentence for people.
    pub explanation: String,
}

/// For each page size of the reports (one per object, same order), the
/// weakest link, if the program cannot run there.
pub fn weakest_links(closure: &Closure, reports: &[FileReport], allow_degraded: bool) -> Vec<WeakestLink> {
    let limit = if allow_degraded { Outcome::Degraded } else { Outcome::Ok };
    let mut page_sizes: Vec<PageSize> = reports.first().map(|r| r.results.iter().map(|x| x.page_size).collect()).unwrap_or_default();
    page_sizes.dedup();
    let program_name = file_name(&closure.objects[0].path.path);
    let mut links = Vec::new();
    for page in page_sizes {
        let Some((index, result)) = reports.iter().enumerate().find_map(|(i, report)| {
            report.results.iter().filter(|r| r.page_size == page).max_by_key(|r| r.outcome).filter(|r| r.outcome > limit).map(|r| (i, r))
        }) else {
            continue;
        };
        let object = &closure.objects[index];
        let how = match (&object.via, object.needed_by) {
            (FoundVia::Program, _) => " itself".to_string(),
            (FoundVia::Interpreter, _) => format!(", the interpreter of {program_name},"),
            (via, Some(by)) => format!(", needed by {}{},", closure.objects[by].file_name(), via_words(via)),
            (_, None) => String::new(),
        };
        let explanation = format!(
            "{}{how} is the reason {program_name} cannot run with {} pages ({})",
            if index == 0 { program_name } else { object.file_name() },
            page,
            result.outcome.name()
        );
        links.push(WeakestLink { page_size: page, object: index, outcome: result.outcome, message: result.message.clone(), explanation });
    }
    links
}

/// " via $ORIGIN/sub" and the like.
pub fn via_words(via: &FoundVia) -> String {
    match via {
        FoundVia::Program | FoundVia::Interpreter => String::new(),
        FoundVia::Path => " by path".to_string(),
        FoundVia::Rpath { entry, .. } => format!(" via RPATH {entry}"),
        FoundVia::LibraryPath { entry } => format!(" via LD_LIBRARY_PATH {entry}"),
        FoundVia::Runpath { entry } => format!(" via {entry}"),
        FoundVia::LdSoConf { entry } => format!(" via ld.so.conf {entry}"),
        FoundVia::DefaultDir { entry } => format!(" in {entry}"),
    }
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_follow_glob() {
        assert!(wildcard_match("*.conf", "x86_64-linux-gnu.conf"));
        assert!(!wildcard_match("*.conf", "libc.conf.bak"));
        assert!(!wildcard_match("*.conf", ".hidden.conf"));
        assert!(wildcard_match("lib?.conf", "liba.conf"));
    }

    #[test]
    fn empty_path_entries_mean_the_current_directory() {
        assert_eq!(split_path_list("/a::/b").collect::<Vec<_>>(), ["/a", ".", "/b"]);
    }
}
