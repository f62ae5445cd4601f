//! `cargo xtask realworld`: third-party artifacts (realworld/manifest.tsv),
//! fetched and checked against their sha256, every ELF file in them run on
//! the real kernels, before and after `pagefit fix`.
//!
//! - A library is opened by a dlopen harness from a directory of its own, so
//!   that `$ORIGIN` finds nothing and its dependencies come from the
//!   artifact's *fixed* libraries (LD_LIBRARY_PATH): the answer is about this
//!   file alone. ld.so maps a library before it binds symbols, so "undefined
//!   symbol" (a Python extension outside Python) means it mapped.
//! - An executable runs with `--version`.
//!
//! pagefit's verdict (read in process from `pagefit_core`) must match on
//! every row, and every file that is not ok must load once fixed (or its
//! refusal is reported). aarch64 and armhf (4K and 16K arm64 kernels) and
//! ppc64le (4K and 64K kernels).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use pagefit_core::elf::{parse, ParseOptions, Role};
use pagefit_core::fix::report::{FixReport, FixStatus};
use pagefit_core::page::PageSize;
use pagefit_core::predict::check::{check_file, CheckOptions};
use pagefit_core::predict::effect::Outcome;

use crate::agreement::{parse_runs, Run};
use crate::artifacts::{fetch, manifest};
use crate::corpus::Row;
use crate::fixrun::pagefit_fix_one;
use crate::realkernel::build_pagefit_for;
use crate::rootproof::{self, PreparedRoot};
use crate::setup::{self, run};
use crate::vm::Initramfs;
use crate::Arch;

/// Extracts a wheel (zip), an npm tarball or a Debian package under `dir`.
fn unpack(archive: &Path, dir: &Path) -> Result<()> {
    let _ = fs_err::remove_dir_all(dir);
    fs_err::create_dir_all(dir)?;
    let name = archive.display().to_string();
    if name.ends_with(".deb") {
        run(Command::new("dpkg-deb").arg("-x").arg(archive).arg(dir))?;
    } else if name.ends_with(".tgz") {
        run(Command::new("tar").arg("-xzf").arg(archive).arg("-C").arg(dir))?;
    } else {
        let mut zip = zip::ZipArchive::new(fs_err::File::open(archive)?).with_context(|| name.clone())?;
        zip.extract(dir).with_context(|| format!("extract {name}"))?;
    }
    Ok(())
}

/// An ELF file of an artifact.
struct ElfMember {
    /// Path relative to the unpacked artifact.
    relative: String,
    executable: bool,
    /// pagefit's verdict at each page size.
    predicted: BTreeMap<String, Outcome>,
    /// What the peers' rule says at the large page size: every PT_LOAD's
    /// `p_align` is at least the page size.
    aligned: bool,
    /// What `pagefit fix` did at the large page size, if anything was needed.
    fix: Option<FixReport>,
}

/// The ELF files under `dir`; every other file is deleted (the VM needs
/// only these, and its initramfs lives in memory).
fn elf_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs_err::read_dir(&d)? {
            let path = entry?.path();
            let kind = fs_err::symlink_metadata(&path)?.file_type();
            if kind.is_dir() {
                stack.push(path);
                continue;
            }
            // A symbolic link stays when it leads to an ELF file (a soname's
            // link, which ld.so looks for); it is not a file of its own.
            let mut magic = [0u8; 4];
            let elf = std::fs::File::open(&path).and_then(|mut f| f.read_exact(&mut magic)).is_ok() && magic == *b"\x7fELF";
            match (elf, kind.is_symlink()) {
                (true, false) => found.push(path),
                (true, true) => {}
                (false, _) => fs_err::remove_file(&path)?,
            }
        }
    }
    found.sort();
    Ok(found)
}

/// pagefit's verdicts at `pages`, whether it is an executable, and the
/// peers' `p_align` rule at `big_page`.
fn predict(path: &Path, pages: &[&str], big_page: &str) -> Result<(bool, BTreeMap<String, Outcome>, bool)> {
    let data = fs_err::read(path)?;
    let elf =
        parse(data.as_slice(), ParseOptions { runtime: true, ..ParseOptions::default() }).with_context(|| path.display().to_string())?;
    let mut predicted = BTreeMap::new();
    for page in pages {
        let size: PageSize = page.parse().map_err(|e| anyhow::anyhow!("{page}: {e}"))?;
        let options = CheckOptions { page_sizes: vec![size], findings: false, ..CheckOptions::default() };
        predicted.insert(page.to_string(), check_file(&elf, "", "", &options).worst().unwrap_or(Outcome::Ok));
    }
    let big: PageSize = big_page.parse().map_err(|e| anyhow::anyhow!("{big_page}: {e}"))?;
    let aligned = elf.loads().all(|l| l.align >= big.bytes());
    // ld.so runs as a program too (`ld.so --version`), mapped by the kernel as pagefit judges it.
    Ok((matches!(elf.role, Role::Executable | Role::Interpreter), predicted, aligned))
}

/// An artifact, unpacked twice (as shipped, and fixed), with its ELF files.
pub struct Prepared {
    id: String,
    /// A Debian package: its libraries serve the other packages of the
    /// same boot, as on an installed system.
    system: bool,
    members: Vec<ElfMember>,
    /// What it adds to the VM's initramfs.
    bytes: u64,
}

/// Fetches, unpacks and fixes every artifact of `arch` into `out/artifacts`:
/// per artifact `ID/fixed/...` (its ELF files, those that are not ok fixed
/// in place) and `ID/alone/N/NAME` (each of those as shipped, in a
/// directory of its own).
pub fn prepare(arch: Arch, pagefit: &Path, out: &Path) -> Result<Vec<Prepared>> {
    let mut prepared = Vec::new();
    let out = &out.join("artifacts");
    let _ = fs_err::remove_dir_all(out);
    for artifact in manifest()?.into_iter().filter(|a| a.arch == Some(arch)) {
        let archive = fetch(&artifact)?;
        let id = artifact.id();
        let fixed = out.join(&id).join("fixed");
        unpack(&archive, &fixed)?;
        let mut members = Vec::new();
        let mut bytes = 0;
        for (index, path) in elf_files(&fixed)?.into_iter().enumerate() {
            let relative = path.strip_prefix(&fixed)?.display().to_string();
            let (executable, predicted, aligned) = predict(&path, &arch.page_sizes(), arch.big_page())?;
            bytes += fs_err::metadata(&path)?.len();
            let fix = if predicted.values().all(|o| *o == Outcome::Ok) {
                None
            } else {
                let alone = out.join(&id).join("alone").join(index.to_string());
                fs_err::create_dir_all(&alone)?;
                fs_err::copy(&path, alone.join(path.file_name().context("no file name")?))?;
                bytes += fs_err::metadata(&path)?.len();
                Some(pagefit_fix_one(pagefit, arch.big_page(), &[OsStr::new("--in-place"), path.as_os_str()])?.0)
            };
            members.push(ElfMember { relative, executable, predicted, aligned, fix });
        }
        let system = artifact.source.starts_with("deb");
        prepared.push(Prepared { id, system, members, bytes });
    }
    Ok(prepared)
}

/// The dlopen harness, cross-compiled for `arch`.
fn harness(arch: Arch, out: &Path) -> Result<PathBuf> {
    let source = out.join("dlopen-harness.c");
    fs_err::write(
        &source,
        "#include <dlfcn.h>\n#include <stdio.h>\n\
         int main(int argc, char **argv) {\n\
           void *h = dlopen(argv[1], RTLD_LAZY | RTLD_LOCAL);\n\
           if (!h) { printf(\"dlerror: %s\\n\", dlerror()); return 1; }\n\
           printf(\"loaded\\n\");\n  return 0;\n}\n",
    )?;
    let binary = out.join("dlopen-harness");
    // Linked for 64K pages, so that the harness itself loads on every kernel
    // (armhf's cross gcc links for 4K by default).
    run(Command::new(format!("{}-gcc", arch.triple()))
        .args(["-O1", "-Wl,-z,max-page-size=65536", "-Wl,-z,common-page-size=65536", "-o"])
        .arg(&binary)
        .arg(&source)
        .arg("-ldl"))?;
    Ok(binary)
}

/// The VM's commands: each library alone and fixed, each executable as
/// shipped and fixed. A Debian package's files find the fixed libraries of
/// every Debian package of the boot; any other artifact's, its own.
fn script(prepared: &[&Prepared]) -> String {
    let library_dirs = |artifact: &Prepared| -> Vec<String> {
        artifact
            .members
            .iter()
            .filter(|m| !m.executable)
            .filter_map(|m| Path::new(&m.relative).parent().map(|p| format!("/t/rw/{}/fixed/{}", artifact.id, p.display())))
            .collect()
    };
    let system_dirs: Vec<String> = prepared.iter().filter(|a| a.system).flat_map(|a| library_dirs(a)).collect();
    let mut script = String::new();
    for artifact in prepared {
        let id = &artifact.id;
        let mut dirs = library_dirs(artifact);
        if artifact.system {
            dirs.extend(system_dirs.iter().cloned());
        }
        dirs.sort();
        dirs.dedup();
        let path = dirs.join(":");
        for (index, member) in artifact.members.iter().enumerate() {
            let name = Path::new(&member.relative).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            // A file that needed no fix is the same in the fixed tree.
            let fixed = format!("/t/rw/{id}/fixed/{}", member.relative);
            let shipped = if member.fix.is_some() { format!("/t/rw/{id}/alone/{index}/{name}") } else { fixed.clone() };
            let runs = std::iter::once(("rw", shipped))
                .chain(member.fix.as_ref().filter(|r| r.status == FixStatus::Fixed).map(|_| ("rwfixed", fixed)));
            for (prefix, file) in runs {
                let command = if member.executable { format!("{file} --version") } else { format!("/t/rw/dlopen-harness {file}") };
                script.push_str(&format!(
                    "LD_LIBRARY_PATH={path} /bin/busybox timeout 60 {command} >/tmp/o 2>&1\n\
                     echo \"@@ {prefix}/{id}/{} rc=$?\"\ncat /tmp/o\n",
                    member.relative
                ));
            }
        }
    }
    script
}

/// The most artifact bytes one boot's initramfs holds (it lives in the VM's
/// 2 GiB of memory, with its cpio image).
const BATCH_BYTES: u64 = 320 << 20;

/// Boots the 4K and the large-page kernel of `arch` with the prepared
/// artifacts (and `root`, the whole-root proof's two roots), in as many boots
/// as their size needs; the outputs by page size.
pub fn boot(
    arch: Arch,
    out: &Path,
    prepared: &[Prepared],
    root: Option<&PreparedRoot>,
    timeout: Duration,
) -> Result<Vec<(String, String)>> {
    let busybox = setup::busybox(arch)?;
    let harness = harness(arch, out)?;
    let mut batches: Vec<Vec<&Prepared>> = vec![Vec::new()];
    for artifact in prepared {
        let last = batches.last_mut().expect("one batch");
        if !last.is_empty() && last.iter().map(|a| a.bytes).sum::<u64>() + artifact.bytes > BATCH_BYTES {
            batches.push(vec![artifact]);
        } else {
            last.push(artifact);
        }
    }
    let mut outputs: Vec<(String, String)> = arch.page_sizes().iter().map(|p| (p.to_string(), String::new())).collect();
    for (index, batch) in batches.into_iter().enumerate() {
        let initramfs = Initramfs::new(&out.join(format!("{}-root", arch.name())), arch, &busybox)?;
        for artifact in &batch {
            initramfs.add(&out.join("artifacts").join(&artifact.id), &format!("rw/{}", artifact.id))?;
        }
        initramfs.add(&harness, "rw/dlopen-harness")?;
        // What the artifacts need from the system besides glibc.
        for lib in ["libgcc_s.so.1", "libstdc++.so.6"] {
            initramfs.add(&setup::vm_sysroot(arch, arch.big_page()).join("lib").join(lib), &format!("../lib/{}/{lib}", arch.triple()))?;
        }
        let mut script = script(&batch);
        // The roots go with the first batch, and the cross-built pagefit that runs from one.
        if let Some(root) = root.filter(|_| index == 0) {
            for (dir, dest) in root.directories() {
                initramfs.add(dir, dest)?;
            }
            initramfs.add(&build_pagefit_for(arch)?, rootproof::PAGEFIT_IN_VM)?;
            script.push_str(&rootproof::script());
        }
        for (page, output) in outputs.iter_mut() {
            let kernel = setup::kernel(arch, page)?;
            output.push_str(&initramfs.boot(arch, &kernel, &script, timeout)?);
        }
    }
    Ok(outputs)
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Observed {
    /// Mapped: opened, or failed later on an undefined symbol, a symbol
    /// version newer than the VM's glibc, a missing dependency or no room in
    /// the static TLS block; or an executable that ran as on the 4K kernel (the same
    /// exit status and output, whatever they are).
    Loaded,
    /// ld.so refused to map it.
    Rejected,
    /// Killed by a signal, or an executable that ran otherwise than at 4K.
    Failed,
}

fn observe(run: &Run, reference: Option<&Run>, executable: bool) -> Observed {
    if executable {
        return match reference {
            Some(reference) if run.rc == reference.rc && run.output == reference.output => Observed::Loaded,
            _ if run.output.contains("not page-aligned") => Observed::Rejected,
            _ => Observed::Failed,
        };
    }
    match run.rc {
        0 => Observed::Loaded,
        1 if ["not page-aligned", "failed to map segment", "memory protection"].iter().any(|m| run.output.contains(m)) => {
            Observed::Rejected
        }
        // Errors ld.so reports only after the library is mapped.
        1 if ["undefined symbol", "cannot open shared object", "static TLS block", "' not found (required by"]
            .iter()
            .any(|m| run.output.contains(m)) =>
        {
            Observed::Loaded
        }
        _ => Observed::Failed,
    }
}

/// The observation and, for a failure, its first line of output.
fn describe(observed: Observed, run: &Run) -> String {
    match run.output.lines().next().filter(|_| run.rc != 0) {
        Some(line) => format!("{observed:?} (rc {}: {})", run.rc, line.trim()),
        None => format!("{observed:?} (rc {})", run.rc),
    }
}

/// Whether a verdict and an observation agree: ok and degraded load;
/// rejected is refused by ld.so (an executable, by the kernel); broken does
/// not run as at 4K (for a library opened alone, any ending but a refusal).
fn agrees(predicted: Outcome, observed: Observed, executable: bool) -> bool {
    match predicted {
        Outcome::Ok | Outcome::Degraded => observed == Observed::Loaded,
        // The kernel refuses an executable by SIGSEGV at exec.
        Outcome::Rejected if executable => observed != Observed::Loaded,
        Outcome::Rejected => observed == Observed::Rejected,
        Outcome::Broken if executable => observed != Observed::Loaded,
        Outcome::Broken => observed != Observed::Rejected,
    }
}

/// The rows of `arch`: every ELF file as shipped at every page size, and
/// every fixed one on the large-page kernel.
pub fn compare(arch: Arch, prepared: &[Prepared], boots: &[(String, String)]) -> Vec<Row> {
    let mut rows = Vec::new();
    let reference = boots.iter().find(|(page, _)| page == "4k").map(|(_, o)| parse_runs(o)).unwrap_or_default();
    for (page, output) in boots {
        let runs = parse_runs(output);
        for artifact in prepared {
            for member in &artifact.members {
                let name = format!("{}/{}", artifact.id, member.relative);
                let shipped_reference = reference.iter().find(|r| r.name == format!("rw/{name}"));
                let predicted = member.predicted[page.as_str()];
                let check = |observed: Observed| agrees(predicted, observed, member.executable);
                let why = format!("pagefit says {}", predicted.name());
                rows.push(row(arch, page, "rw", &name, predicted.name().into(), &runs, shipped_reference, member.executable, &check, &why));
                // The fixed copy, on the large-page kernel.
                let Some(report) = member.fix.as_ref().filter(|r| r.status == FixStatus::Fixed && page != "4k") else { continue };
                let strategy = report.strategy.map_or("-".to_string(), |s| s.name().to_string());
                let loads = |observed: Observed| observed == Observed::Loaded;
                let predicted = format!("fixed by {strategy}: loads");
                let why = "the fixed file does not load";
                rows.push(row(arch, page, "rwfixed", &name, predicted, &runs, shipped_reference, member.executable, &loads, why));
            }
        }
    }
    rows
}

/// One row: the run `PREFIX/NAME` at `page`, observed against the 4K
/// kernel's run of the file as shipped, and whether `expected` holds.
#[allow(clippy::too_many_arguments)]
fn row(
    arch: Arch,
    page: &str,
    prefix: &str,
    name: &str,
    predicted: String,
    runs: &[Run],
    reference: Option<&Run>,
    executable: bool,
    expected: &dyn Fn(Observed) -> bool,
    why: &str,
) -> Row {
    let (observed, problems) = match runs.iter().find(|r| r.name == format!("{prefix}/{name}")) {
        Some(run) => {
            let observed = observe(run, reference, executable);
            (describe(observed, run), if expected(observed) { Vec::new() } else { vec![why.to_string()] })
        }
        None => ("missing".into(), vec!["the VM printed no result".into()]),
    };
    Row { run: format!("{}/{prefix}/{name}", arch.name()), page: page.to_string(), observed, predicted, problems }
}

/// Per artifact: how many ELF files, how many not ok, which strategy fixed
/// each, and why the others were refused.
pub fn fix_summary(prepared: &[Prepared]) -> String {
    let mut text = String::new();
    let mut totals: BTreeMap<String, usize> = BTreeMap::new();
    for artifact in prepared {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        let mut refusals = Vec::new();
        for member in &artifact.members {
            let Some(report) = &member.fix else { continue };
            let key = match (report.status, report.strategy) {
                (FixStatus::Fixed, Some(strategy)) => strategy.name().to_string(),
                (status, _) => {
                    refusals.push(format!("{}: {}", member.relative, report.reason.as_deref().unwrap_or(status.name())));
                    status.name().to_string()
                }
            };
            *counts.entry(key.clone()).or_default() += 1;
            *totals.entry(key).or_default() += 1;
        }
        let not_ok: usize = counts.values().sum();
        let list: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
        text.push_str(&format!("{}: {} ELF files, {not_ok} not ok: {}\n", artifact.id, artifact.members.len(), list.join(", ")));
        for refusal in refusals {
            text.push_str(&format!("  {refusal}\n"));
        }
    }
    let list: Vec<String> = totals.iter().map(|(k, n)| format!("{n} {k}")).collect();
    text.push_str(&format!("fixes in all: {}\n", list.join(", ")));
    text
}

/// The peers' rule (`p_align` at least the page size) against the large-page
/// kernel, for comparison: (agreed, files, files it passes that fail, files it
/// fails that map).
pub fn peer_rule(prepared: &[Prepared], boots: &[(String, String)], big_page: &str) -> (usize, usize, Vec<String>, usize) {
    let reference = boots.iter().find(|(page, _)| page == "4k").map(|(_, o)| parse_runs(o)).unwrap_or_default();
    let Some((_, output)) = boots.iter().find(|(page, _)| page == big_page) else { return (0, 0, Vec::new(), 0) };
    let runs = parse_runs(output);
    let (mut agreed, mut total, mut passed_but_fail, mut failed_but_map) = (0, 0, Vec::new(), 0);
    for artifact in prepared {
        for member in &artifact.members {
            let name = format!("rw/{}/{}", artifact.id, member.relative);
            let Some(run) = runs.iter().find(|r| r.name == name) else { continue };
            let maps = observe(run, reference.iter().find(|r| r.name == name), member.executable) == Observed::Loaded;
            total += 1;
            match (member.aligned, maps) {
                (true, false) => passed_but_fail.push(format!("{}/{}", artifact.id, member.relative)),
                (false, true) => failed_but_map += 1,
                _ => agreed += 1,
            }
        }
    }
    (agreed, total, passed_but_fail, failed_but_map)
}
