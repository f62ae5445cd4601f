//! The real-kernel comparison, offline: pagefit's predictions for every
//! fixture, for the fixed copies `pagefit fix` makes of them and for the
//! fixtures started by `pagefit run` (cross-built), against the
//! boots recorded in fixtures/observed/ by
//! `cargo xtask realkernel --record fixtures/observed`. The live suite
//! (`cargo xtask realkernel`, run by .ci/run) also covers the runs under
//! Debian 11's glibc 2.31, whose programs need that glibc to build.

use xtask::realkernel::{build_fixtures, build_pagefit, compare, print_rows, read_recorded, target_dir, workspace};
use xtask::{fixproof, runproof, runtimeproof, setup, Arch};

#[test]
fn predictions_agree_with_recorded_real_kernel_runs() {
    let out = target_dir().expect("cargo metadata").join("realkernel");
    let fixtures = out.join("recorded-fixtures");
    build_fixtures(&fixtures).expect("build the fixtures");
    let pagefit = build_pagefit().expect("build pagefit");
    let observed = workspace().join("fixtures/observed");
    let mut rows = Vec::new();
    for arch in Arch::ALL {
        let boots = read_recorded(&observed, arch).expect("the recorded boots");
        let dir = fixtures.join(arch.name());
        setup::prepare_vm_sysroot(arch, &pagefit).expect("the glibc the VM ran armhf programs with");
        rows.extend(compare(arch, &dir, &pagefit, &boots, false).expect("compare"));
        // The fixed copies, fixed again here by the pagefit under test.
        let fixed =
            fixproof::prepare(arch, &dir, &pagefit, &out.join(format!("recorded-fixed/{}", arch.name()))).expect("fix the fixtures");
        rows.extend(fixproof::compare(arch, &fixed, &boots).expect("compare the fixed runs"));
        let (run_rows, _) = runproof::compare(arch, &dir, &pagefit, &boots).expect("compare the runs under pagefit run");
        rows.extend(run_rows);
        rows.extend(runproof::compare_fix_deps(arch, &boots));
        rows.extend(runproof::compare_fat(arch, &boots));
        if arch.has_jemalloc_fixtures() {
            rows.extend(runtimeproof::compare(arch, &dir, &boots).expect("compare the jemalloc runs"));
        }
    }
    let (agreed, total) = print_rows(&rows, "real-kernel");
    assert!(total >= 540, "expected the whole recorded corpus, got {total} runs");
    assert_eq!(agreed, total, "some recorded runs disagree with the predictions (see the table above)");
}
