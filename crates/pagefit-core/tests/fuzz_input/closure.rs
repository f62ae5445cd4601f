//! The closure fuzz target's input, shared by the target (`fuzz/`) and the
//! regression test that replays its crashes: the program (arbitrary ELF
//! bytes), then /etc/ld.so.conf (arbitrary text, which every include also
//! reads) and LD_LIBRARY_PATH, split from the end at the last two 0xff bytes
//! (an ELF file holds 0xff bytes; the texts rarely).

use pagefit_core::closure::{resolve, Closure, Opened, SearchOptions, TargetFiles, TargetPath};
use pagefit_core::elf::{parse, ParseOptions};

/// One ELF file (the program, wherever it is looked for) and one text. The
/// file is 16 files to the resolver, told apart by path length: with a new
/// one at every path, the directories `$ORIGIN/lib` names never end
/// (`lib/lib/lib/…`), which no real filesystem does. Every directory lists
/// two `.conf` files.
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

/// Resolves the closure of the program in `data`, as the target does.
pub fn resolve_input(data: &[u8]) -> Result<Closure, String> {
    let mut parts = data.rsplitn(3, |&b| b == 0xff);
    let library_path = String::from_utf8_lossy(parts.next().unwrap_or_default()).split(':').map(str::to_string).collect();
    let conf = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let mut files = Files { program: parts.next().unwrap_or_default(), conf };
    let root = TargetPath { path: "/usr/bin/program".into(), in_sysroot: true };
    resolve(root, &mut files, &SearchOptions { library_path })
}
