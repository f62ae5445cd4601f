//! `cargo xtask android`: the Android libraries of real packages
//! (realworld/manifest.tsv, arch `android`), fetched and checked against
//! their sha256, judged at 16K as shipped and fixed.
//!
//! No kernel here runs bionic, so the proof is the one `pagefit fix` makes
//! for every output (its memory image at 16K holds what the input's held
//! at 4K), then a check of the output under the models Android inputs get
//! (`bionic`, the device, and `play`, the store): every fixed library must
//! be ok under both. Each AAR is also fixed whole (`pagefit fix X.aar -o`),
//! and its libraries must come out as the one-file fixes did.
//!
//! The table this prints is the one in README.md.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use pagefit_core::elf::{parse, ElfFile, ParseOptions, Platform};
use pagefit_core::fix::report::{FixReport, FixStatus};
use pagefit_core::page::PageSize;
use pagefit_core::predict::check::{check_file, CheckOptions, FileReport};
use pagefit_core::predict::effect::Outcome;

use crate::artifacts::{fetch, manifest, Artifact};
use crate::fixrun::pagefit_fix;
use crate::setup::run;

/// Android's page size.
const PAGE: &str = "16k";

/// One library: where it is, what check said as shipped, and what fix did.
struct Library {
    /// `package/android/x.aar!/jni/arm64-v8a/libx.so` or `package/.../libx.so`.
    name: String,
    bits: u8,
    /// Outcome per model (bionic, play) at 16K, as shipped.
    shipped: BTreeMap<String, Outcome>,
    /// The peers' rule: every PT_LOAD's p_align is at least 16K.
    aligned: bool,
    /// What `pagefit fix` did, when the library was not ok.
    fix: Option<FixReport>,
}

impl Library {
    fn ok_as_shipped(&self) -> bool {
        self.shipped.values().all(|&o| o == Outcome::Ok)
    }
}

/// A package's libraries and its AARs' whole-archive fixes.
struct Package {
    id: String,
    libraries: Vec<Library>,
    /// AARs fixed whole, and those refused (a library in them could not be fixed).
    archives_fixed: usize,
    archives_refused: usize,
}

/// Parses a library's bytes as an Android library: inside an Android
/// package, Android's models apply whatever its notes say (as `pagefit
/// check` does).
fn parse_android(bytes: &[u8], name: &str) -> Result<ElfFile> {
    let mut elf = parse(bytes, ParseOptions { sections: true, ..ParseOptions::default() }).with_context(|| name.to_string())?;
    elf.platform = Platform::Android;
    Ok(elf)
}

/// Judges an Android library at 16K.
fn judge(elf: &ElfFile, name: &str) -> Result<FileReport> {
    let options = CheckOptions { page_sizes: vec![page()?], findings: false, all_abis: true, ..CheckOptions::default() };
    Ok(check_file(elf, name, name, &options))
}

fn page() -> Result<PageSize> {
    PAGE.parse().map_err(|e| anyhow::anyhow!("{PAGE}: {e}"))
}

fn outcomes(report: &FileReport) -> BTreeMap<String, Outcome> {
    report.results.iter().map(|r| (r.loader.name().to_string(), r.outcome)).collect()
}

/// Fixes `input` at 16K into `output`; the reports (one for an ELF file, one
/// per member for an archive).
fn fix(pagefit: &Path, input: &Path, output: &Path) -> Result<Vec<FixReport>> {
    let _ = fs_err::remove_file(output);
    Ok(pagefit_fix(pagefit, PAGE, &[OsStr::new("-o"), output.as_os_str(), input.as_os_str()])?.0)
}

/// The `.so` members of an AAR under `jni/`, with their bytes.
fn aar_libraries(path: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let mut zip = zip::ZipArchive::new(fs_err::File::open(path)?).with_context(|| path.display().to_string())?;
    let mut found = Vec::new();
    for index in 0..zip.len() {
        let mut entry = zip.by_index(index)?;
        let name = entry.name().to_string();
        if entry.is_file() && name.starts_with("jni/") && name.ends_with(".so") {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).with_context(|| format!("{}!/{name}", path.display()))?;
            found.push((name, bytes));
        }
    }
    Ok(found)
}

/// Every file under `dir`, sorted.
fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in walkdir::WalkDir::new(dir).follow_links(false).sort_by_file_name() {
        let entry = entry?;
        if entry.file_type().is_file() {
            found.push(entry.into_path());
        }
    }
    Ok(found)
}

/// Android ABIs, as directory names.
const ABIS: [&str; 4] = ["arm64-v8a", "armeabi-v7a", "x86_64", "x86"];

fn is_android_library(relative: &str) -> bool {
    relative.ends_with(".so") && relative.split('/').any(|part| ABIS.contains(&part))
}

/// Judges a library, fixes it when it is not ok, and proves the fixed
/// output ok under every model; an error when a fixed output is not.
fn library(pagefit: &Path, name: String, bytes: &[u8], work: &Path) -> Result<Library> {
    let elf = parse_android(bytes, &name)?;
    let report = judge(&elf, &name)?;
    let big = page()?.bytes();
    let mut library =
        Library { aligned: elf.loads().all(|l| l.align >= big), bits: report.bits, shipped: outcomes(&report), fix: None, name };
    if library.ok_as_shipped() {
        return Ok(library);
    }
    let input = work.join("input.so");
    let output = work.join("output.so");
    fs_err::write(&input, bytes)?;
    let mut reports = fix(pagefit, &input, &output)?;
    let report = reports.pop().with_context(|| format!("pagefit fix {}: no report", library.name))?;
    if report.status == FixStatus::Fixed {
        let fixed = judge(&parse_android(&fs_err::read(&output)?, &library.name)?, &library.name)?;
        let after = outcomes(&fixed);
        anyhow::ensure!(
            after.values().all(|&o| o == Outcome::Ok),
            "{}: fixed by {:?}, but the output is not ok at 16K: {after:?}",
            library.name,
            report.strategy
        );
    }
    library.fix = Some(report);
    Ok(library)
}

/// Unpacks one package and judges and fixes every Android library in it.
fn package(pagefit: &Path, artifact: &Artifact, out: &Path) -> Result<Package> {
    let archive = fetch(artifact)?;
    let dir = out.join(artifact.id());
    let _ = fs_err::remove_dir_all(&dir);
    let unpacked = dir.join("unpacked");
    fs_err::create_dir_all(&unpacked)?;
    run(Command::new("tar").arg("-xzf").arg(&archive).arg("-C").arg(&unpacked))?;
    let work = dir.join("work");
    fs_err::create_dir_all(&work)?;
    let mut package = Package { id: artifact.id(), libraries: Vec::new(), archives_fixed: 0, archives_refused: 0 };
    for path in files_under(&unpacked)? {
        let relative = path.strip_prefix(&unpacked)?.display().to_string();
        if relative.ends_with(".aar") {
            let members = aar_libraries(&path)?;
            let mut needs_fix = false;
            for (member, bytes) in &members {
                let library = library(pagefit, format!("{relative}!/{member}"), bytes, &work)?;
                needs_fix |= !library.ok_as_shipped();
                package.libraries.push(library);
            }
            if needs_fix {
                whole_archive(pagefit, &path, &relative, &work, &mut package)?;
            }
        } else if is_android_library(&relative) {
            let bytes = fs_err::read(&path)?;
            package.libraries.push(library(pagefit, relative, &bytes, &work)?);
        }
    }
    let _ = fs_err::remove_dir_all(&dir);
    Ok(package)
}

/// Fixes an AAR whole and checks that it agrees with the one-file fixes:
/// written when each of its libraries was fixed (or ok), refused otherwise,
/// and every library in the written AAR ok under every model.
fn whole_archive(pagefit: &Path, path: &Path, relative: &str, work: &Path, package: &mut Package) -> Result<()> {
    let output = work.join("output.aar");
    let reports = fix(pagefit, path, &output)?;
    let prefix = format!("{relative}!/");
    let fixable = package
        .libraries
        .iter()
        .filter(|l| l.name.starts_with(&prefix))
        .all(|l| l.fix.as_ref().is_none_or(|f| f.status == FixStatus::Fixed));
    let written = output.exists();
    anyhow::ensure!(
        written == fixable,
        "{relative}: the whole-AAR fix {} but its libraries, fixed one by one, {}: {:?}",
        if written { "was written" } else { "was refused" },
        if fixable { "all were fixed" } else { "were not all fixed" },
        reports.iter().map(|r| (&r.path, r.status)).collect::<Vec<_>>()
    );
    if written {
        for (member, bytes) in aar_libraries(&output)? {
            let after = outcomes(&judge(&parse_android(&bytes, &member)?, &member)?);
            anyhow::ensure!(after.values().all(|&o| o == Outcome::Ok), "{relative}!/{member}: not ok after the AAR fix: {after:?}");
        }
        package.archives_fixed += 1;
    } else {
        package.archives_refused += 1;
    }
    Ok(())
}

/// Why a library was refused: what rebase and merge said, with addresses
/// and segment numbers left out so that libraries refused for the same
/// reason group together (relayout's refusal, pages shared by segments of
/// different flags, is what every not-ok library has in common).
fn refusal_kind(report: &FixReport) -> String {
    let general = |reason: &str| {
        let reason = reason.split(": \"").next().unwrap_or(reason);
        let without_number = |word: &str| match word.strip_prefix("0x") {
            Some(hex) => format!("…{}", hex.trim_start_matches(|c: char| c.is_ascii_hexdigit())),
            None => word.to_string(),
        };
        reason.split_whitespace().filter(|w| !w.starts_with("PT_LOAD[")).map(without_number).collect::<Vec<_>>().join(" ")
    };
    let kinds: Vec<String> = report
        .refused
        .iter()
        .filter(|r| r.strategy.name() != "relayout")
        .map(|r| format!("{}: {}", r.strategy.name(), general(&r.reason)))
        .collect();
    match kinds.is_empty() {
        true => report.reason.as_deref().unwrap_or(report.status.name()).to_string(),
        false => kinds.join("; "),
    }
}

/// The table (Markdown) and the refusals, one line each.
fn table(packages: &[Package]) -> String {
    let mut text = String::from(
        "| package | libraries (64-bit + 32-bit) | ok as shipped | p_align ≥ 16K | fixed by relayout | rebase | merge (R into RX) | refused |\n|---|---|---|---|---|---|---|---|\n",
    );
    let mut refusals: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut totals = [0usize; 8];
    for package in packages {
        let count = |f: &dyn Fn(&Library) -> bool| package.libraries.iter().filter(|l| f(l)).count();
        let fixed_by = |name: &str| {
            count(&|l| l.fix.as_ref().is_some_and(|f| f.status == FixStatus::Fixed && f.strategy.is_some_and(|s| s.name() == name)))
        };
        let row = [
            count(&|l| l.bits == 64),
            count(&|l| l.bits == 32),
            count(&|l| l.ok_as_shipped()),
            count(&|l| l.aligned),
            fixed_by("relayout"),
            fixed_by("rebase"),
            fixed_by("merge"),
            count(&|l| l.fix.as_ref().is_some_and(|f| f.status != FixStatus::Fixed)),
        ];
        for (total, n) in totals.iter_mut().zip(row) {
            *total += n;
        }
        text.push_str(&format!(
            "| {} | {} + {} | {} | {} | {} | {} | {} | {} |\n",
            package.id, row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7]
        ));
        for library in &package.libraries {
            if let Some(report) = library.fix.as_ref().filter(|f| f.status != FixStatus::Fixed) {
                refusals.entry(refusal_kind(report)).or_default().push(format!("{}: {}", package.id, library.name));
            }
        }
    }
    text.push_str(&format!(
        "| **all** | {} + {} | {} | {} | {} | {} | {} | {} |\n",
        totals[0], totals[1], totals[2], totals[3], totals[4], totals[5], totals[6], totals[7]
    ));
    for (why, libraries) in refusals {
        text.push_str(&format!("refused ({}): {why}\n", libraries.len()));
        for library in libraries {
            text.push_str(&format!("  {library}\n"));
        }
    }
    let fixed: usize = packages.iter().map(|p| p.archives_fixed).sum();
    let refused: usize = packages.iter().map(|p| p.archives_refused).sum();
    text.push_str(&format!("AARs fixed whole: {fixed} written, {refused} refused (as their libraries were)\n"));
    text
}

/// Judges and fixes every Android package of the manifest; prints the table.
pub fn prove(pagefit: &Path, out: &Path) -> Result<()> {
    let packages: Vec<Package> =
        manifest()?.iter().filter(|a| a.arch.is_none()).map(|artifact| package(pagefit, artifact, out)).collect::<Result<_>>()?;
    print!("{}", table(&packages));
    let libraries: usize = packages.iter().map(|p| p.libraries.len()).sum();
    let fixed = packages.iter().flat_map(|p| &p.libraries).filter(|l| l.fix.as_ref().is_some_and(|f| f.status == FixStatus::Fixed)).count();
    println!("android: {libraries} libraries in {} packages; {fixed} fixed, each ok under bionic and play at 16K", packages.len());
    Ok(())
}
