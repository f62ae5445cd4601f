//! Writing output files.

use std::fs::{File, Permissions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::Context;

/// Writes `path` all or nothing: a temporary file in the same directory,
/// flushed to disk, then renamed over `path` (and the directory synced, so
/// the rename survives a crash). Outputs are executables: mode 0755.
pub fn write_atomically(path: &Path, write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> anyhow::Result<()> {
    let display = path.display();
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let mut temporary = tempfile::Builder::new()
        .prefix(".pagefit-")
        .tempfile_in(directory)
        .with_context(|| format!("{display}: cannot create a temporary file in {}", directory.display()))?;
    {
        let mut out = BufWriter::new(temporary.as_file_mut());
        write(&mut out).and_then(|()| out.flush()).with_context(|| format!("{display}: cannot write"))?;
    }
    let file = temporary.as_file();
    file.set_permissions(Permissions::from_mode(0o755))
        .and_then(|()| file.sync_all())
        .with_context(|| format!("{display}: cannot write"))?;
    temporary.persist(path).map_err(|e| e.error).with_context(|| format!("{display}: cannot rename the temporary file into place"))?;
    File::open(directory).and_then(|d| d.sync_all()).with_context(|| format!("{}: cannot sync", directory.display()))?;
    Ok(())
}
