//! What every proof shares: a fixture directory's MANIFEST and the rows of
//! the agreement table.

use std::path::Path;

use anyhow::{Context, Result};

/// A fixture directory's MANIFEST: each entry's name and how the VM runs it
/// (`-` for a library).
pub fn manifest_entries(dir: &Path) -> Result<Vec<(String, String)>> {
    let manifest = fs_err::read_to_string(dir.join("MANIFEST")).with_context(|| format!("{}/MANIFEST", dir.display()))?;
    Ok(manifest
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let fields: Vec<&str> = l.split('\t').collect();
            Some((fields.first()?.to_string(), fields.get(2)?.to_string()))
        })
        .collect())
}

/// One row of the table.
pub struct Row {
    /// `arch/run-name`.
    pub run: String,
    /// Kernel page size.
    pub page: String,
    /// What happened.
    pub observed: String,
    /// What pagefit said.
    pub predicted: String,
    /// Empty when they agree.
    pub problems: Vec<String>,
}
