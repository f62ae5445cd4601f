//! The real-world comparison, offline: pagefit's verdicts and fixes for every
//! ELF file of realworld/manifest.tsv (fetched into the cache and checked by
//! sha256), against the boots recorded in fixtures/observed/realworld by
//! `cargo xtask realworld --record fixtures/observed/realworld`, and the
//! whole-root proof's commands.

use xtask::realkernel::{build_pagefit, print_rows, read_recorded, target_dir, workspace};
use xtask::{realworld, rootproof, Arch};

#[test]
fn verdicts_agree_with_recorded_real_world_runs() {
    let pagefit = build_pagefit().expect("build pagefit");
    let observed = workspace().join("fixtures/observed/realworld");
    let mut rows = Vec::new();
    for arch in Arch::ALL {
        let out = target_dir().expect("cargo metadata").join("realworld-recorded").join(arch.name());
        let prepared = realworld::prepare(arch, &pagefit, &out).expect("fetch, unpack and fix the artifacts");
        let boots = read_recorded(&observed, arch).expect("the recorded boots");
        rows.extend(realworld::compare(arch, &prepared, &boots));
        if let Some(root) = rootproof::prepare(arch, &pagefit, &out).expect("unpack and fix the root") {
            rows.extend(rootproof::compare(arch, &root, &boots));
        }
    }
    let (agreed, total) = print_rows(&rows, "real-world");
    assert!(total >= 300, "expected every artifact's files, got {total} rows");
    assert_eq!(agreed, total, "some recorded runs disagree with pagefit (see the table above)");
}
