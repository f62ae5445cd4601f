//! `check --owners DIR...`: which dependency ships each library. The
//! directories (a Gradle cache, a Maven repository, `node_modules`, a pub
//! cache) are walked once; every ELF file in them, loose or inside an
//! archive, is hashed, and its owners are recognised from where it lies
//! (`pagefit_core::owners`). A checked library is then matched by the
//! SHA-256 of its whole content, not by name. The index keeps hashes and
//! owner names only.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use pagefit_archive::{self as archive, Hashing};
use pagefit_core::owners::{declared_group, layout_owner, maven_artifact, maven_owner, merge_owners, npm_package, Coordinates, Owner};
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::inputs::{walk, Candidate};

/// A file's content, as SHA-256.
pub type ContentHash = [u8; 32];

/// How many bytes archive detection looks at (a tar's magic is at 257).
const DETECT_PREFIX: usize = 512;

/// The owners of every ELF file found under the owner directories, by content.
pub struct OwnerIndex {
    by_content: HashMap<ContentHash, Vec<Owner>>,
}

/// A copy of a library that could not be read while indexing; the index is
/// built without it.
pub struct Unreadable {
    /// The file or archive, as a path.
    pub path: String,
    /// What went wrong.
    pub message: String,
}

impl OwnerIndex {
    /// Walks `dirs` and hashes every ELF file in them and in their archives.
    /// A directory that cannot be read is an error; a file in one that cannot
    /// be read (a truncated download in a cache) is returned, not fatal.
    pub fn build(dirs: &[String]) -> anyhow::Result<(OwnerIndex, Vec<Unreadable>)> {
        let mut candidates: Vec<(usize, Candidate)> = Vec::new();
        for dir in dirs {
            let metadata = std::fs::metadata(dir).map_err(|e| anyhow::anyhow!("--owners {dir}: cannot read: {e}"))?;
            if !metadata.is_dir() {
                anyhow::bail!("--owners {dir}: not a directory");
            }
            let root = Path::new(dir).components().count();
            let mut files = Vec::new();
            walk(dir.into(), &mut files);
            candidates.extend(files.into_iter().filter(|file| may_hold_a_library(&file.path)).map(|file| (root, file)));
        }
        let found: Vec<Result<Vec<(ContentHash, Owner)>, Unreadable>> =
            candidates.par_iter().map(|(root, candidate)| index_file(&candidate.path, *root)).collect();
        let mut by_content: HashMap<ContentHash, Vec<Owner>> = HashMap::new();
        let mut unreadable = Vec::new();
        for result in found {
            match result {
                Ok(copies) => copies.into_iter().for_each(|(hash, owner)| by_content.entry(hash).or_default().push(owner)),
                Err(error) => unreadable.push(error),
            }
        }
        for owners in by_content.values_mut() {
            *owners = merge_owners(std::mem::take(owners));
        }
        Ok((OwnerIndex { by_content }, unreadable))
    }

    /// The owners of a content (empty when nobody ships it).
    pub fn owners_of(&self, hash: &ContentHash) -> Vec<Owner> {
        self.by_content.get(hash).cloned().unwrap_or_default()
    }
}

/// Libraries are `lib*.so*` files, or members of archives.
fn may_hold_a_library(path: &Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    name.contains(".so") || archive::has_archive_name(path)
}

/// The ELF files at `path` (itself, or its archive's members) with their owners.
fn index_file(path: &Path, root: usize) -> Result<Vec<(ContentHash, Owner)>, Unreadable> {
    let unreadable = |message: String| Unreadable { path: path.display().to_string(), message };
    let mut prefix = Vec::with_capacity(DETECT_PREFIX);
    File::open(path).and_then(|file| file.take(DETECT_PREFIX as u64).read_to_end(&mut prefix)).map_err(|e| unreadable(e.to_string()))?;
    let mut copies: Vec<(ContentHash, String)> = Vec::new();
    if prefix.starts_with(b"\x7fELF") {
        copies.push((file_sha256(path).map_err(|e| unreadable(e.to_string()))?, path.display().to_string()));
    } else if let Some(kind) = archive::detect(&prefix).filter(|_| archive::has_archive_name(path)) {
        archive::scan(path, kind, Hashing::Sha256, &mut |member| copies.extend(member.data.sha256().map(|hash| (hash, member.path))))
            .map_err(|e| unreadable(e.to_string()))?;
    }
    if copies.is_empty() {
        return Ok(Vec::new());
    }
    let owners = owners_at(path, root);
    Ok(copies.into_iter().flat_map(|(hash, source)| owners.iter().map(move |o| (hash, o.clone().owner(source.clone())))).collect())
}

/// Who ships what lies at `path`: its place in a Gradle, Maven or pub
/// layout, and the npm package it is in.
fn owners_at(path: &Path, root: usize) -> Vec<Coordinates> {
    let text: Vec<String> = path.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    let components: Vec<&str> = text.iter().map(String::as_str).collect();
    let mut owners = Vec::new();
    if let Some(owner) = layout_owner(&components) {
        owners.push(owner);
    } else if let Some(artifact) = maven_artifact(&components) {
        let declared = declared_group_near(path, &artifact.artifact, &artifact.version);
        owners.push(maven_owner(&components, &artifact, declared.as_deref().and_then(declared_group), root));
    }
    if components.contains(&"node_modules") {
        owners.extend(npm_package_of(path));
    }
    owners
}

/// The text of the metadata that declares a Maven artifact's group: the
/// artifact directory's `maven-metadata*.xml`, else the version's POM.
fn declared_group_near(path: &Path, artifact: &str, version: &str) -> Option<String> {
    let version_dir = path.parent()?;
    let artifact_dir = version_dir.parent()?;
    [
        artifact_dir.join("maven-metadata.xml"),
        artifact_dir.join("maven-metadata-local.xml"),
        version_dir.join(format!("{artifact}-{version}.pom")),
    ]
    .iter()
    .find_map(|candidate| std::fs::read_to_string(candidate).ok())
}

/// The npm package `path` is in: the nearest `package.json` above it, up to
/// the `node_modules` directory.
fn npm_package_of(path: &Path) -> Option<Coordinates> {
    for directory in path.ancestors().skip(1) {
        if directory.file_name().is_some_and(|name| name == "node_modules") {
            return None;
        }
        if let Ok(text) = std::fs::read_to_string(directory.join("package.json")) {
            return npm_package(&text);
        }
    }
    None
}

/// The SHA-256 of a file's whole content, read in chunks (libraries can be
/// hundreds of MiB).
pub fn file_sha256(path: &Path) -> io::Result<ContentHash> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut chunk)? {
            0 => return Ok(hasher.finalize().into()),
            n => hasher.update(&chunk[..n]),
        }
    }
}
