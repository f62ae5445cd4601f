//! The dependency-closure resolver on hostile inputs: the program (arbitrary
//! ELF bytes: DT_NEEDED, DT_RPATH and DT_RUNPATH strings, PT_INTERP) and
//! /etc/ld.so.conf with its includes (arbitrary text, loops included) and
//! LD_LIBRARY_PATH, split from the end of the input at its last two 0xff
//! bytes (an ELF file holds 0xff bytes; the texts rarely). It must finish
//! with a closure or an error, never panic or loop.
//!
//! `cargo +nightly fuzz run closure` from the repository root.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pagefit_core::closure::{resolve, Opened, SearchOptions, TargetFiles, TargetPath};
use pagefit_core::elf::{parse, ParseOptions};

/// One ELF file (the program, wherever it is looked for) and one text, which
/// every ld.so.conf include also reads. The file is 16 files to the
/// resolver, told apart by path length: with a new one at every path, the
/// directories `$ORIGIN/lib` names never end (`lib/lib/lib/…`), which no
/// real filesystem does, and the closure grows until memory runs out.
struct Files<'a> {
    program: &'a [u8],
    conf: String,
}

impl TargetFiles for Files<'_> {
    fn open_elf(&mut self, path: &TargetPath) -> Opened {
        match parse(self.program, ParseOptions::everything()) {
            Ok(file) => Opened::Elf { file: Box::new(file), identity: (0, path.path.len() as u64 % 16), host_path: path.path.clone() },
            Err(_) => Opened::NotFound,
        }
    }
    fn read_text(&mut self, _path: &str) -> Option<String> {
        Some(self.conf.clone())
    }
    fn list_dir(&mut self, _dir: &str) -> Vec<String> {
        vec!["a.conf".into(), "b.conf".into()]
    }
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.rsplitn(3, |&b| b == 0xff);
    let library_path = String::from_utf8_lossy(parts.next().unwrap_or_default()).split(':').map(str::to_string).collect();
    let conf = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let program = parts.next().unwrap_or_default();
    let mut files = Files { program, conf };
    let root = TargetPath { path: "/usr/bin/program".into(), in_sysroot: true };
    let _ = resolve(root, &mut files, &SearchOptions { library_path });
});
