//! `pagefit explain`: one file, the predicted maps side by side and every finding in words.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use object::read::ReadCache;
use pagefit_core::elf::{parse, ElfFile, ParseOptions};
use pagefit_core::predict::check::{apply_runtime_at, default_loaders, play_checks};
use pagefit_core::predict::effect::Outcome;
use pagefit_core::predict::input::LoadInput;
use pagefit_core::predict::model::LoaderModel;
use pagefit_core::predict::plan::{plan, LoadPlan, BASELINE_PAGE};
use pagefit_core::render::report::write_explain_text;
use serde::Serialize;

use crate::args::format::Format;
use crate::args::ExplainArgs;
use crate::inputs::file_name;
use pagefit_loader::source::FileSource;

/// `pagefit explain --format json`.
#[derive(Serialize)]
struct ExplainDocument<'a> {
    path: &'a str,
    file: &'a ElfFile,
    /// The plan at 4K first (the baseline), then one per requested page size and loader.
    plans: Vec<LoadPlan>,
}

pub fn run(args: &ExplainArgs) -> anyhow::Result<ExitCode> {
    let path = Path::new(&args.file);
    let file = match crate::cmd::fat::record_named_by(&args.file)? {
        Some(record) => parse(record.as_slice(), ParseOptions::everything()),
        None => {
            let (source, _) = FileSource::open(path).with_context(|| format!("{}: cannot read", args.file))?;
            parse(&ReadCache::new(source), ParseOptions::everything())
        }
    }
    .with_context(|| args.file.clone())?;
    let loaders = args.loader.as_ref().map(|l| l.0.clone()).unwrap_or_else(|| default_loaders(&file));
    anyhow::ensure!(!loaders.is_empty(), "{}: a {:?} file is not loaded by any loader", args.file, file.kind);
    let name = file_name(path);
    let input = LoadInput::from_elf(&file, &name);
    let baseline = plan(&input, BASELINE_PAGE, loaders[0]);
    let mut plans = Vec::new();
    for &page in &args.page_size.0 {
        for &loader in &loaders {
            let mut planned = plan(&input, page, loader);
            if loader == LoaderModel::Play && !play_checks(file.bits) {
                // Play does not check 32-bit ABIs.
                planned.outcome = Outcome::Ok;
                planned.message = None;
                planned.findings.clear();
            }
            apply_runtime_at(&file.runtime, page, &mut planned.outcome, &mut planned.message, Some(&mut planned.findings));
            plans.push(planned);
        }
    }
    let ok = plans.iter().all(|p| p.outcome == Outcome::Ok);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match args.format {
        Format::Text => write_explain_text(&mut out, &args.file, &file, &baseline, &plans)?,
        Format::Json => {
            let mut all = vec![baseline];
            all.extend(plans);
            serde_json::to_writer_pretty(&mut out, &ExplainDocument { path: &args.file, file: &file, plans: all })?;
            writeln!(out)?;
        }
    }
    out.flush()?;
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
