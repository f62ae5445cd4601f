//! Turning command-line paths into a list of files: directories are walked
//! and `-` reads paths from stdin. Files are not stat'ed here: the workers
//! do that on the open file, in parallel, and the caller drops a file reached
//! twice (through a symlink or a repeated path) by its identity.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use pagefit_archive::image;

/// The directories `pagefit check` scans when given no path.
pub const DEFAULT_ROOTS: &[&str] =
    &["/usr/bin", "/usr/sbin", "/usr/lib", "/usr/lib64", "/usr/libexec", "/bin", "/sbin", "/lib", "/lib64", "/opt"];

/// A path to check, and whether the user named it (named files must be ELF).
pub struct Candidate {
    /// Path as it will be printed.
    pub path: PathBuf,
    /// Named explicitly, rather than found while walking a directory.
    pub named: bool,
}

/// Expands `args` into candidates plus errors for named paths that do not
/// exist. Paths read from stdin are taken as they come: a directory among
/// them is reported by the worker and walked afterwards.
pub fn collect(args: &[String]) -> (Vec<Candidate>, Vec<(String, String)>) {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    if args.is_empty() {
        for root in DEFAULT_ROOTS.iter().map(PathBuf::from).filter(|p| p.is_dir()) {
            walk(root, &mut files);
        }
    }
    for arg in args {
        if arg == "-" {
            let lines = std::io::stdin().lock().lines().map_while(Result::ok);
            files.extend(lines.filter(|l| !l.is_empty()).map(|line| Candidate { path: PathBuf::from(line), named: true }));
            continue;
        }
        match std::fs::metadata(arg) {
            // An OCI image layout is one input, read as an image.
            Ok(m) if m.is_dir() && !image::is_oci_layout(std::path::Path::new(arg)) => walk(PathBuf::from(arg), &mut files),
            Ok(_) => files.push(Candidate { path: PathBuf::from(arg), named: true }),
            Err(e) => errors.push((arg.clone(), format!("cannot read: {e}"))),
        }
    }
    (files, errors)
}

/// Adds every regular file under `root`, and every symlink to one; symlinks
/// to directories are not followed.
pub fn walk(root: PathBuf, files: &mut Vec<Candidate>) {
    for entry in walkdir::WalkDir::new(root).follow_links(false).sort_by_file_name().into_iter().filter_map(Result::ok) {
        let file_type = entry.file_type();
        if file_type.is_file() || (file_type.is_symlink() && entry.path().is_file()) {
            files.push(Candidate { path: entry.into_path(), named: false });
        }
    }
}

/// The name loaders print for an object: its file name.
pub fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}
