//! The ELF reader and everything that reads its result, on arbitrary bytes:
//! parsing (program headers, dynamic section, section headers, symbols,
//! jemalloc's guard), every loader model's verdict at every page size, the
//! fix planner and rebase's relocation walkers. Each must return an error or
//! a result, never panic.
//!
//! `cargo +nightly fuzz run elf` from the repository root.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pagefit_core::elf::{parse, ParseOptions};
use pagefit_core::fix::plan::Strategy;
use pagefit_core::fix::proof::rebase_expectations;
use pagefit_core::fix::strategies::plan_rewrite;
use pagefit_core::page::PageSize;
use pagefit_core::predict::check::{check_file, CheckOptions};
use pagefit_core::predict::input::LoadInput;
use pagefit_core::predict::model::LoaderModel;
use pagefit_core::predict::plan::plan;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = parse(data, ParseOptions::everything()) else { return };
    let pages = [PageSize::K4, PageSize::K16, PageSize::K64];
    let options = CheckOptions { page_sizes: pages.to_vec(), loaders: Some(LoaderModel::ALL.to_vec()), ..CheckOptions::default() };
    let report = check_file(&file, "fuzz", "fuzz", &options);
    assert_eq!(report.results.len(), pages.len() * LoaderModel::ALL.len());
    let input = LoadInput::from_elf(&file, "fuzz");
    for loader in LoaderModel::ALL {
        let _ = plan(&input, PageSize::K16, loader);
    }
    for strategy in [Strategy::Auto, Strategy::Relayout, Strategy::Merge, Strategy::Rebase] {
        let _ = plan_rewrite(data, &file, PageSize::K16, strategy);
    }
    // rebase's relocation walkers (RELA, REL, RELR) on whatever tables the input has.
    let _ = rebase_expectations(data, 0x4000);
});
