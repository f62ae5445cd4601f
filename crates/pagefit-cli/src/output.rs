//! Writing output files: the one way pagefit writes a file, all or nothing.

use std::fs::{File, Permissions};
use std::io::{BufWriter, IsTerminal, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::Context;
use tempfile::NamedTempFile;

/// A file being written next to its destination, so that the rename into
/// place is atomic; removed unless persisted.
pub struct StagedFile {
    temporary: NamedTempFile,
}

impl StagedFile {
    /// A new, empty file in `destination`'s directory with mode bits `mode`
    /// (set explicitly: the umask may have cleared bits the input had).
    pub fn create(destination: &Path, mode: u32) -> anyhow::Result<StagedFile> {
        let directory = directory_of(destination);
        let temporary = tempfile::Builder::new()
            .prefix(".pagefit-")
            .tempfile_in(directory)
            .with_context(|| format!("{}: cannot create a temporary file in {}", destination.display(), directory.display()))?;
        temporary
            .as_file()
            .set_permissions(Permissions::from_mode(mode))
            .with_context(|| format!("{}: chmod", temporary.path().display()))?;
        Ok(StagedFile { temporary })
    }

    /// The open file.
    pub fn file(&self) -> &File {
        self.temporary.as_file()
    }

    /// Where it is while it is being written.
    pub fn path(&self) -> &Path {
        self.temporary.path()
    }

    /// Renames the file over `destination`. With `durable` the file is synced
    /// first and the directory after: replacing a file must survive a crash
    /// (either the old or the new file). A new output is as durable as `cp`
    /// makes it, which is much faster on big files.
    pub fn persist(self, destination: &Path, durable: bool) -> anyhow::Result<()> {
        if durable {
            self.file().sync_all().with_context(|| format!("{}: fsync", self.path().display()))?;
        }
        self.temporary
            .persist(destination)
            .map_err(|e| e.error)
            .with_context(|| format!("{}: cannot rename the temporary file into place", destination.display()))?;
        if durable {
            let directory = directory_of(destination);
            File::open(directory).and_then(|d| d.sync_all()).with_context(|| format!("{}: cannot sync", directory.display()))?;
        }
        Ok(())
    }
}

fn directory_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Writes `path` all or nothing, durably. Outputs are executables: mode 0755.
pub fn write_atomically(path: &Path, write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> anyhow::Result<()> {
    let staged = StagedFile::create(path, 0o755)?;
    {
        let mut out = BufWriter::new(staged.file());
        write(&mut out).and_then(|()| out.flush()).with_context(|| format!("{}: cannot write", path.display()))?;
    }
    staged.persist(path, true)
}

/// A progress bar on stderr, shown on a terminal only and for `len` of 64 or more.
pub fn progress_bar(len: u64, unit: &str) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() || len < 64 {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(&format!("{{bar:40}} {{pos}}/{{len}} {unit} {{elapsed}}")) {
        bar.set_style(style);
    }
    bar
}
