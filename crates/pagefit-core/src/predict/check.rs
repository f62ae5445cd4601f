//! From a parsed file to a report: which loaders apply, the verdict at each
//! requested page size, and the largest page size each loader is happy with.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::elf::{ElfFile, ElfKind, Platform, Role};
use crate::owners::Owner;
use crate::page::PageSize;
use crate::predict::effect::{Outcome, Severity};
use crate::predict::finding::{human_size, Finding, FindingKind};
use crate::predict::input::LoadInput;
use crate::predict::memory::AddrRange;
use crate::predict::model::{LoaderModel, PLAY_PAGE};
use crate::predict::plan::{baseline, max_ok_page_size_against, plan, plan_against, verdict_against, BASELINE_PAGE};
use crate::runtime::{RuntimePageSize, JEMALLOC_MESSAGE};

/// What to check.
#[derive(Clone, Debug)]
pub struct CheckOptions {
    /// Page sizes to give verdicts for.
    pub page_sizes: Vec<PageSize>,
    /// Loader models to use instead of each file's defaults.
    pub loaders: Option<Vec<LoaderModel>>,
    /// The largest page size `max_ok_page_size` tries.
    pub max_ok_limit: PageSize,
    /// Build each result's findings; without them a result holds just the
    /// outcome and message, which is all a one-line verdict shows.
    pub findings: bool,
    /// Count 32-bit Android libraries towards the exit status (Play requires
    /// 16 KB pages only for 64-bit ABIs, so by default they do not).
    pub all_abis: bool,
    /// Read each file's runtimes (jemalloc's compiled page size), which
    /// reads its read-only segments, not just its headers.
    pub runtime: bool,
}

impl Default for CheckOptions {
    fn default() -> CheckOptions {
        CheckOptions {
            page_sizes: vec![PageSize::K16, PageSize::K64],
            loaders: None,
            max_ok_limit: PageSize::M2,
            findings: true,
            all_abis: false,
            runtime: true,
        }
    }
}

/// The loaders that map this file on its platform: the kernel for
/// executables and interpreters, glibc (or musl) for shared objects, bionic on
/// Android, where Google Play's verdict on an upload (`play`) comes too.
pub fn default_loaders(file: &ElfFile) -> Vec<LoaderModel> {
    match (file.platform, file.role) {
        (_, Role::NotLoadable) => Vec::new(),
        (Platform::Android, _) => vec![LoaderModel::Bionic, LoaderModel::Play],
        (_, Role::Executable | Role::Interpreter) => vec![LoaderModel::Kernel],
        (Platform::Musl, Role::SharedObject) => vec![LoaderModel::Musl],
        (Platform::Glibc, Role::SharedObject) => vec![LoaderModel::Glibc],
    }
}

/// The verdict for one page size and loader.
#[derive(Clone, Debug, Serialize)]
pub struct CheckResult {
    /// Page size in bytes.
    pub page_size: PageSize,
    /// Loader model.
    pub loader: LoaderModel,
    /// ok, degraded, broken or rejected.
    pub outcome: Outcome,
    /// For `rejected`: the message the user would see.
    pub message: Option<String>,
    /// Why.
    pub findings: Vec<Finding>,
}

/// Everything `pagefit check` says about one file.
#[derive(Clone, Debug, Serialize)]
pub struct FileReport {
    /// The path as given (archive members as `outer!/inner`).
    pub path: String,
    /// `e_type`: exec, dyn, rel, core, other.
    pub kind: ElfKind,
    /// Executable, interpreter, shared object or not loadable.
    pub role: Role,
    /// `e_machine` name.
    pub machine: String,
    /// 32 or 64.
    pub bits: u8,
    /// glibc, musl or android.
    pub platform: Platform,
    /// Whether the result counts towards the exit status (32-bit Android ABIs do not).
    pub required: bool,
    /// One entry per (page size, loader).
    pub results: Vec<CheckResult>,
    /// Per loader, the largest page size (bytes, 4K to 2M) at which the file
    /// is `ok`; `null` when there is none.
    pub max_ok_page_size: BTreeMap<String, Option<PageSize>>,
    /// Runtimes linked in with a compiled page size (jemalloc), each with
    /// that page size (`null` when it could not be read).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub runtime: Vec<RuntimePageSize>,
    /// For a member of a wheel, the wheel's platform tag
    /// (`manylinux2014_aarch64`), as pip reads it from the wheel's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wheel_platform: Option<String>,
    /// With `check --owners`: the dependencies that ship this content (empty when none does).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owners: Option<Vec<Owner>>,
}

impl FileReport {
    /// The worst outcome over all results.
    pub fn worst(&self) -> Option<Outcome> {
        self.results.iter().map(|r| r.outcome).max()
    }

    /// Whether the file passes: every result ok (or degraded, when allowed).
    pub fn passes(&self, allow_degraded: bool) -> bool {
        let limit = if allow_degraded { Outcome::Degraded } else { Outcome::Ok };
        self.worst().is_none_or(|w| w <= limit)
    }
}

/// Checks one parsed file. `name` is what loaders print (the file name).
pub fn check_file(file: &ElfFile, path: &str, name: &str, options: &CheckOptions) -> FileReport {
    let loaders = options.loaders.clone().unwrap_or_else(|| default_loaders(file));
    let input = LoadInput::from_elf(file, name);
    let mut results = Vec::new();
    let baselines: Vec<_> = loaders.iter().map(|&loader| baseline(&input, BASELINE_PAGE, loader)).collect();
    for &page in &options.page_sizes {
        for (&loader, base) in loaders.iter().zip(&baselines) {
            // Below 4K the baseline is the load at that page size itself (see `plan`).
            let (outcome, message, findings) = if loader == LoaderModel::Play && !play_checks(file.bits) {
                (Outcome::Ok, None, Vec::new())
            } else if page < BASELINE_PAGE {
                let planned = plan(&input, page, loader);
                (planned.outcome, planned.message, planned.findings)
            } else if options.findings {
                let planned = plan_against(&input, page, loader, base);
                (planned.outcome, planned.message, planned.findings)
            } else {
                let (outcome, message) = verdict_against(&input, page, loader, base);
                (outcome, message, Vec::new())
            };
            results.push(CheckResult { page_size: page, loader, outcome, message, findings });
        }
    }
    // Play's verdict does not depend on the page size, so it has no largest one.
    let max_ok = loaders
        .iter()
        .zip(&baselines)
        .filter(|(&loader, _)| loader != LoaderModel::Play)
        .map(|(&l, base)| (l.name().to_string(), max_ok_page_size_against(&input, l, options.max_ok_limit, base)))
        .collect();
    let mut report = FileReport {
        path: path.to_string(),
        kind: file.kind,
        role: file.role,
        machine: file.machine_name(),
        bits: file.bits,
        platform: file.platform,
        required: options.all_abis || !(file.platform == Platform::Android && file.bits == 32),
        results,
        max_ok_page_size: max_ok,
        runtime: file.runtime.clone(),
        wheel_platform: wheel_platform(path),
        owners: None,
    };
    apply_runtime_page_size(&mut report, options.findings);
    report
}

/// Whether Play checks a file of this ELF class: only 64-bit ABIs (arm64-v8a,
/// x86_64) must support 16 KB pages, and both AOSP's `elfpolicy` and Android
/// Studio pass ELFCLASS32 files without looking, so `play` says ok to them.
pub fn play_checks(bits: u8) -> bool {
    bits == 64
}

/// The platform tag of the innermost wheel an archive member path
/// (`outer!/inner`) lies in: the last dash-separated field of
/// `NAME-VERSION[-BUILD]-PYTHON-ABI-PLATFORM.whl`.
pub fn wheel_platform(member_path: &str) -> Option<String> {
    let containers = member_path.rsplit_once("!/")?.0;
    let wheel = containers.split("!/").filter(|c| c.ends_with(".whl")).last()?;
    let stem = wheel.rsplit('/').next()?.strip_suffix(".whl")?;
    let fields: Vec<&str> = stem.split('-').collect();
    (fields.len() >= 5).then(|| fields[fields.len() - 1].to_string())
}

/// Applies what the runtimes linked in need: above a runtime's compiled page
/// size the file is `broken` under every loader (its allocations fail, with the
/// runtime's own message), and no loader is ok beyond that page size. A
/// runtime whose page size could not be read is named at every page size
/// above 4K and changes no outcome.
fn apply_runtime_page_size(report: &mut FileReport, findings: bool) {
    for result in report.results.iter_mut() {
        let findings = findings.then_some(&mut result.findings);
        apply_runtime_at(&report.runtime, result.page_size, &mut result.outcome, &mut result.message, findings);
    }
    for compiled in report.runtime.iter().filter_map(|r| r.page_size) {
        for size in report.max_ok_page_size.values_mut() {
            *size = size.map(|s| s.min(compiled));
        }
    }
}

/// One verdict at `page` (a check result, or an `explain` plan), with the
/// runtimes of the file applied; see [`check_file`].
pub fn apply_runtime_at(
    runtimes: &[RuntimePageSize],
    page: PageSize,
    outcome: &mut Outcome,
    message: &mut Option<String>,
    mut findings: Option<&mut Vec<Finding>>,
) {
    for runtime in runtimes {
        let aborts = runtime.aborts_at(page);
        if aborts == Some(true) {
            *outcome = (*outcome).max(Outcome::Broken);
            message.get_or_insert_with(|| JEMALLOC_MESSAGE.to_string());
        }
        let severity = match aborts {
            Some(true) => Severity::Broken,
            None if page > BASELINE_PAGE => Severity::Info,
            _ => continue,
        };
        if let Some(findings) = findings.as_deref_mut() {
            let at = runtime.guard_address.unwrap_or(0);
            findings.push(Finding {
                kind: FindingKind::RuntimePageSize,
                severity,
                segments: Vec::new(),
                range: AddrRange::new(at, at),
                sections: Vec::new(),
                symbols: Vec::new(),
                winner: None,
                bytes_intact: None,
                message: format!("{} ({})", runtime.consequence(page), runtime.location()),
                effects: Vec::new(),
            });
        }
    }
}

/// The largest power of two that divides `offset` (a zip entry's data
/// offset), capped at 2M: the largest page size it is aligned to.
fn offset_alignment(offset: u64) -> u64 {
    if offset == 0 {
        PageSize::M2.bytes()
    } else {
        (1u64 << offset.trailing_zeros()).min(PageSize::M2.bytes())
    }
}

/// Applies zipalign's rule to a library stored uncompressed in a zip (an APK)
/// at `data_offset`: bionic maps it straight from the package, so at every
/// page size the offset is not a multiple of, the library is rejected with
/// bionic's message, and the largest ok page size is capped. Play rejects a
/// 64-bit one not 16 KB aligned whatever the page size (`zipalign -P 16`;
/// Android Studio's `ZipEntryNotAligned`); compressed members, extracted at
/// install, have no data offset and are not judged.
pub fn apply_zip_alignment(report: &mut FileReport, name: &str, data_offset: u64, findings: bool) {
    let aligned_to = offset_alignment(data_offset);
    if play_checks(report.bits) && aligned_to < PLAY_PAGE.bytes() {
        let message = format!(
            "{} zip alignment, but 16 KB is required: the library's data starts at offset {data_offset:#010x} of the package; align it with `zipalign -P 16` (Android Gradle Plugin 8.5.1 and later do) or store it compressed",
            human_size(aligned_to)
        );
        for result in report.results.iter_mut().filter(|r| r.loader == LoaderModel::Play) {
            result.outcome = Outcome::Rejected;
            if findings {
                result.findings.push(zip_finding(data_offset, message.clone()));
            }
            result.message.get_or_insert_with(|| message.clone());
        }
    }
    for result in report.results.iter_mut().filter(|r| r.loader != LoaderModel::Play && r.page_size.bytes() > aligned_to) {
        result.outcome = Outcome::Rejected;
        result.message = Some(format!("dlopen failed: file offset for the library \"{name}\" is not page-aligned: {data_offset}"));
        if findings {
            let message = format!(
                "{} zip alignment, but {} is required: the library's data starts at offset {data_offset:#x} of the package",
                human_size(aligned_to),
                human_size(result.page_size.bytes())
            );
            result.findings.push(zip_finding(data_offset, message));
        }
    }
    let cap = PageSize::new(aligned_to).filter(|c| *c >= BASELINE_PAGE);
    for size in report.max_ok_page_size.values_mut() {
        *size = size.zip(cap).map(|(s, c)| s.min(c));
    }
}

fn zip_finding(data_offset: u64, message: String) -> Finding {
    Finding {
        kind: FindingKind::ZipAlignment,
        severity: Severity::Rejected,
        segments: Vec::new(),
        range: AddrRange::new(data_offset, data_offset),
        sections: Vec::new(),
        symbols: Vec::new(),
        winner: None,
        bytes_intact: None,
        message,
        effects: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::wheel_platform;

    #[test]
    fn a_wheel_member_is_named_with_its_wheels_platform_tag() {
        let member = "dl/numpy-1.19.0-cp38-cp38-manylinux2014_aarch64.whl!/numpy.libs/libz-558a5e64.so.1.2.7";
        assert_eq!(wheel_platform(member).as_deref(), Some("manylinux2014_aarch64"));
        // A build tag; a wheel inside a tarball; the innermost wheel wins.
        assert_eq!(wheel_platform("a/pkg-1.0-1-py3-none-linux_armv7l.whl!/x.so").as_deref(), Some("linux_armv7l"));
        assert_eq!(
            wheel_platform("dist.tar!/w/o-2-cp311-cp311-manylinux_2_17_ppc64le.manylinux2014_ppc64le.whl!/o.so").as_deref(),
            Some("manylinux_2_17_ppc64le.manylinux2014_ppc64le")
        );
        for not_a_wheel in ["lib/libz.so", "app.apk!/lib/arm64-v8a/libz.so", "bad.whl!/x.so", "w.whl"] {
            assert_eq!(wheel_platform(not_a_wheel), None, "{not_a_wheel}");
        }
    }
}
