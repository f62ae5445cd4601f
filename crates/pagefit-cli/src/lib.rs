//! pagefit's command line and the typed, in-process API it is built on.
//! `main.rs` only installs the allocator and calls [`run_cli`]; the Python
//! package (`crates/pagefit-py`) calls the same functions.

mod args;
mod closure;
mod cmd;
mod engine;
mod fix_deps;
mod inputs;
mod output;
mod owners;

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use args::{Cli, Command};

pub use args::shard::Shard;
pub use cmd::check::{check_bytes, check_input, check_paths, expand, FileId, Record};
pub use engine::{fix_file, FixRequest};
pub use inputs::Candidate;

/// Runs the command line `argv` (its first word is the program's name) and
/// returns the exit status: 0 no problem, 1 problems found, 2 error.
pub fn run_cli(argv: Vec<OsString>) -> u8 {
    let code = run_command(argv);
    // `ExitCode` hides its value; the commands return only these three.
    [0, 1, 2].into_iter().find(|&status| ExitCode::from(status) == code).unwrap_or(2)
}

fn run_command(argv: Vec<OsString>) -> ExitCode {
    // binfmt_misc runs `pagefit /path/app.fat ARGV0 ARGS...` for a FatELF file;
    // `pagefit run` skips building the other subcommands' parsers.
    let run_args = cmd::run::binfmt_invocation(&argv).or_else(|| cmd::run::run_invocation(&argv));
    let cli = match run_args {
        Some(args) => Cli { command: Command::Run(args) },
        None => match Cli::try_parse_from(&argv) {
            Ok(cli) => cli,
            // Help and version are "errors" that exit 0; usage errors exit 2.
            Err(error) => {
                let _ = error.print();
                return ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2));
            }
        },
    };
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
