//! Turning command-line paths into a list of files: directories are walked,
//! `-` reads paths from stdin, and a file reached twice (through a symlink or
//! a repeated argument) is checked once.

use std::collections::HashSet;
use std::io::BufRead;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

/// The directories `pagefit check` scans when given no path.
pub const DEFAULT_ROOTS: &[&str] =
    &["/usr/bin", "/usr/sbin", "/usr/lib", "/usr/lib64", "/usr/libexec", "/bin", "/sbin", "/lib", "/lib64", "/opt"];

/// A file to check, and whether the user named it (named files must be ELF).
pub struct Candidate {
    /// Path as it will be printed.
    pub path: PathBuf,
    /// Named explicitly, rather than found while walking a directory.
    pub named: bool,
    /// File length from the `stat` the walk already did.
    pub len: u64,
}

/// Expands `args` into candidates plus errors for paths that do not exist.
pub fn collect(args: &[String]) -> (Vec<Candidate>, Vec<(String, String)>) {
    let mut roots: Vec<(PathBuf, bool)> = Vec::new();
    if args.is_empty() {
        roots.extend(DEFAULT_ROOTS.iter().map(|r| (PathBuf::from(r), false)).filter(|(p, _)| p.exists()));
    }
    for arg in args {
        if arg == "-" {
            for line in std::io::stdin().lock().lines().map_while(Result::ok) {
                if !line.is_empty() {
                    roots.push((PathBuf::from(line), true));
                }
            }
        } else {
            roots.push((PathBuf::from(arg), true));
        }
    }
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for (root, named) in roots {
        let metadata = match std::fs::metadata(&root) {
            Ok(m) => m,
            Err(e) if named => {
                errors.push((root.display().to_string(), format!("cannot read: {e}")));
                continue;
            }
            Err(_) => continue,
        };
        if !metadata.is_dir() {
            if seen.insert((metadata.dev(), metadata.ino())) {
                files.push(Candidate { path: root, named, len: metadata.len() });
            }
            continue;
        }
        for entry in walkdir::WalkDir::new(&root).follow_links(false).sort_by_file_name() {
            let Ok(entry) = entry else { continue };
            // Symlinks to files count (deduplicated); symlinks to directories are not followed.
            let Ok(metadata) = std::fs::metadata(entry.path()) else { continue };
            if metadata.is_file() && metadata.len() >= 52 && seen.insert((metadata.dev(), metadata.ino())) {
                files.push(Candidate { path: entry.into_path(), named: false, len: metadata.len() });
            }
        }
    }
    (files, errors)
}
