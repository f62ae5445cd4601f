//! `pagefit fix`: plan the rewrite in the core, stream it to a temporary file
//! next to the destination, prove the result, then rename it into place.
//!
//! Untouched ranges are copied with `std::io::copy` between files, which Linux
//! serves with `copy_file_range`; only header tables are held in memory.
//! [`fix_elf`] is that path for one ELF file; a FatELF file's records each
//! take it too (`fat_records`), and so does each ELF member of a zip or
//! wheel (`zip_members`), and each ELF file under a directory (`tree`).

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context};
use pagefit_core::fat::is_fat;
use pagefit_core::fix::report::FixStatus;
use pagefit_core::page::PageSize;
use pagefit_loader::source::FileSource;

use crate::args::fix::FixArgs;
use crate::engine::{fix_elf, ElfFix, FixRequest};

mod android_package;
mod closure;
mod fat_records;
mod finish;
mod tree;
mod zip_members;
mod zip_rewrite;

use android_package::is_android_package;
use finish::{backup_path, finish, keep_backup};
use zip::ZipArchive;

/// The page size Android packages are fixed for unless told: Android's 16 KB pages.
const ANDROID_PAGE: PageSize = PageSize::K16;

impl FixArgs {
    /// The page size asked for, or Android's (only Android packages reach
    /// here without one: [`require_page_size`] stops the others).
    pub fn page(&self) -> PageSize {
        self.page_size.unwrap_or(ANDROID_PAGE)
    }

    /// The engine's request.
    pub fn request(&self) -> FixRequest {
        FixRequest { page_size: self.page(), strategy: self.strategy, no_wx: self.no_wx, platform: None }
    }
}

/// Stops anything but an Android package without --page-size.
fn require_page_size(args: &FixArgs) -> anyhow::Result<()> {
    if args.page_size.is_none() {
        bail!("--page-size is required (it defaults to 16k only for Android packages: AAR, APK, AAB, .apks)");
    }
    Ok(())
}

pub fn run(args: &FixArgs) -> anyhow::Result<ExitCode> {
    let input_path = match (&args.input, &args.closure, &args.out) {
        (_, Some(program), Some(out)) => {
            require_page_size(args)?;
            return closure::run(program, out, args);
        }
        (Some(path), _, _) => path,
        _ => bail!("pagefit fix needs a file, or --closure BIN --out DIR"),
    };
    if input_path.is_dir() {
        require_page_size(args)?;
        return tree::run(args, input_path);
    }
    let shown = input_path.display().to_string();
    let (source, metadata) = FileSource::open(input_path).with_context(|| format!("{shown}: cannot read"))?;
    let backup = args.backup.then(|| backup_path(input_path));
    if let Some(backup) = backup.as_ref().filter(|b| b.symlink_metadata().is_ok()) {
        bail!("{shown}: the backup {} already exists", backup.display());
    }
    if let Some(output) = &args.output {
        if is_same_file(&metadata, output) {
            bail!("{shown}: the output {} is the input; use --in-place to replace it", output.display());
        }
    }
    let destination = (!args.dry_run).then(|| args.output.clone().unwrap_or_else(|| input_path.clone()));
    if source.prefix().starts_with(b"PK\x03\x04") {
        if !args.record.is_empty() || args.align.is_some() {
            bail!("{shown}: --record and --align are for FatELF files, and this is a zip");
        }
        let archive = ZipArchive::new(source.into_file()).with_context(|| format!("{shown}: not a readable zip"))?;
        if is_android_package(&shown, &archive) {
            return android_package::run(args, input_path, archive, destination.as_deref(), backup.as_deref());
        }
        require_page_size(args)?;
        return zip_members::run(args, input_path, archive, destination.as_deref(), backup.as_deref());
    }
    require_page_size(args)?;
    if is_fat(source.prefix()) {
        return fat_records::run(args, input_path, source.into_file(), &metadata, destination.as_deref(), backup.as_deref());
    }
    if !args.record.is_empty() || args.align.is_some() {
        bail!("{shown}: --record and --align are for FatELF files, and this is not one");
    }

    let ElfFix { mut report, written } = fix_elf(source, &metadata, input_path, &shown, destination.as_deref(), &args.request())?;
    report.output = args.output.as_ref().map(|o| o.display().to_string());
    match (report.status, written, &destination) {
        (FixStatus::AlreadyOk, _, Some(destination)) if args.output.is_some() => {
            std::fs::copy(input_path, destination).with_context(|| format!("{}: cannot write", destination.display()))?;
        }
        (FixStatus::Fixed, Some(written), Some(destination)) => {
            keep_backup(input_path, backup.as_deref())?;
            written.persist(destination, args.in_place)?;
            report.output = Some(destination.display().to_string());
        }
        _ => {}
    }
    finish(args, &[report], false)
}

fn is_same_file(input: &std::fs::Metadata, output: &Path) -> bool {
    std::fs::metadata(output).is_ok_and(|o| o.dev() == input.dev() && o.ino() == input.ino())
}
