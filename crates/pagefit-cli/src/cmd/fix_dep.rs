//! `pagefit fix-dep`, which `run --fix-deps`'s audit module runs for every
//! library ld.so is about to open.

use anyhow::Context;
use pagefit_core::elf::ParseOptions;
use pagefit_core::predict::check::{check_file, CheckOptions};

use crate::args::fix_dep::FixDepArgs;
use crate::fix_deps::cached_copy;
use crate::inputs::file_name;

/// Prints the path ld.so should open instead of LIBRARY (LIBRARY itself when it will do).
pub fn run(args: &FixDepArgs) -> anyhow::Result<std::process::ExitCode> {
    let shown = args.library.display();
    let file = std::fs::File::open(&args.library).with_context(|| format!("{shown}: cannot open"))?;
    let elf = pagefit_core::elf::parse(&object::read::ReadCache::new(&file), ParseOptions { runtime: true, ..ParseOptions::default() })
        .with_context(|| format!("{shown}"))?;
    let name = file_name(&args.library);
    let options = CheckOptions { page_sizes: vec![args.page_size], findings: false, ..CheckOptions::default() };
    let ok = check_file(&elf, &shown.to_string(), &name, &options).passes(false);
    let copy = cached_copy(&args.library, &name, &elf, ok, args.page_size)?;
    println!("{}", copy.as_deref().unwrap_or(&args.library).display());
    Ok(std::process::ExitCode::SUCCESS)
}
