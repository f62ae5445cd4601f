//! `pagefit binfmt`: registers pagefit with the kernel's binfmt_misc as the
//! interpreter of FatELF files, so that `./app.fat` is handed to pagefit.
//!
//! The registration line comes from `pagefit_core::fat::binfmt_registration`.
//! The kernel then runs `pagefit PATH ARGV0 ARGS...` (PATH as `execve` got it; flags
//! `PF`), which `main` recognises (`run::binfmt_invocation`) and runs as
//! `pagefit run PATH ARGS...` with the program's own argv[0].

use std::io::ErrorKind;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context};
use pagefit_core::fat::{binfmt_registration, BINFMT_NAME};

use crate::args::binfmt::{BinfmtArgs, BinfmtCommand};

/// Where binfmt_misc is mounted on every distribution.
const BINFMT_MISC: &str = "/proc/sys/fs/binfmt_misc";

pub fn run(args: &BinfmtArgs) -> anyhow::Result<ExitCode> {
    let root = Path::new(BINFMT_MISC);
    let register = root.join("register");
    let entry = root.join(BINFMT_NAME);
    if !register.exists() {
        bail!(
            "binfmt_misc is not mounted at {BINFMT_MISC}: mount it as root with \
             `mount -t binfmt_misc binfmt_misc {BINFMT_MISC}`"
        );
    }
    match &args.command {
        BinfmtCommand::Install { interpreter } => {
            let interpreter = match interpreter {
                Some(path) => path.canonicalize().with_context(|| format!("{}: cannot resolve", path.display()))?,
                None => std::env::current_exe().context("cannot find this pagefit binary")?,
            };
            let line = binfmt_registration(&interpreter.to_string_lossy())?;
            if entry.exists() {
                // Replace an older registration (another interpreter path, older flags).
                write_control(&entry, "-1")?;
            }
            write_control(&register, &line)?;
            println!("registered {BINFMT_NAME}: {line}");
            Ok(ExitCode::SUCCESS)
        }
        BinfmtCommand::Uninstall => {
            if !entry.exists() {
                println!("{BINFMT_NAME} is not registered");
                return Ok(ExitCode::SUCCESS);
            }
            write_control(&entry, "-1")?;
            println!("removed {BINFMT_NAME}");
            Ok(ExitCode::SUCCESS)
        }
        BinfmtCommand::Status => match std::fs::read_to_string(&entry) {
            Ok(status) => {
                println!("{BINFMT_NAME} is registered ({})", entry.display());
                for line in status.lines() {
                    println!("  {line}");
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                println!("{BINFMT_NAME} is not registered: `pagefit binfmt install` (as root) registers it");
                Ok(ExitCode::from(1))
            }
            Err(e) => Err(e).with_context(|| format!("{}: cannot read", entry.display())),
        },
    }
}

/// Writes a binfmt_misc control file, saying plainly when root is needed.
fn write_control(path: &Path, text: &str) -> anyhow::Result<()> {
    match std::fs::write(path, text) {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.kind(), ErrorKind::PermissionDenied) => {
            bail!("{}: permission denied: changing binfmt_misc registrations needs root", path.display())
        }
        Err(e) => Err(e).with_context(|| format!("{}: cannot write {text:?}", path.display())),
    }
}
