//! The `pagefit` command: a thin layer over `pagefit-core`.

mod args;
mod closure;
mod cmd;
mod engine;
mod fix_deps;
mod inputs;
mod output;

use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use args::{Cli, Command};

/// `run`'s start-up allocations come from the arena; what follows, from
/// glibc's malloc, or under musl from mimalloc: musl's malloc serialises
/// threads on one lock and returns memory with `munmap` (TLB shootdowns),
/// which made `check` of a tree six times slower.
#[cfg(not(target_env = "musl"))]
type Fallback = std::alloc::System;
#[cfg(target_env = "musl")]
type Fallback = mimalloc::MiMalloc;

#[global_allocator]
static ALLOCATOR: pagefit_loader::startup_arena::StartupArena<Fallback> = pagefit_loader::startup_arena::StartupArena::new(Fallback {});

fn main() -> ExitCode {
    // binfmt_misc runs `pagefit /path/app.fat ARGV0 ARGS...` for a FatELF file;
    // `pagefit run` skips building the other subcommands' parsers.
    let run_args = cmd::run::binfmt_invocation().or_else(cmd::run::run_invocation);
    let cli = run_args.map_or_else(Cli::parse, |args| Cli { command: Command::Run(args) });
    let result = match cli.command {
        Command::Check(args) => cmd::check::run(&args),
        Command::Explain(args) => cmd::explain::run(&args),
        Command::Fat(args) => cmd::fat::run(&args),
        Command::Binfmt(args) => cmd::binfmt::run(&args),
        Command::Fix(args) => cmd::fix::run(&args),
        Command::Run(args) => cmd::run::run(args),
        Command::FixDep(args) => cmd::fix_dep::run(&args),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "pagefit", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()).map(|()| ExitCode::SUCCESS).map_err(Into::into)
        }
    };
    match result {
        Ok(code) => code,
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            let _ = writeln!(std::io::stderr(), "pagefit: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// A closed stdout (`pagefit check | head`) is not an error.
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| cause.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe))
}
