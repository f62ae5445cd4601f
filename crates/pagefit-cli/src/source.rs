//! Reading ELF headers from files with as few syscalls as possible: one
//! `pread` of the first 4 KiB serves the ELF header, the program headers and
//! usually PT_INTERP; anything else is read on demand with `pread`.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use object::read::ReadCacheOps;

/// How much of the file the first read fetches.
const PREFIX_LEN: usize = 4096;

/// A file read with `pread`, with its first 4 KiB kept in memory.
pub struct FileSource {
    file: File,
    len: u64,
    position: u64,
    prefix: Vec<u8>,
}

impl FileSource {
    /// Opens `path` (whose length a `stat` already gave) and reads its first 4 KiB.
    pub fn open(path: &Path, len: u64) -> std::io::Result<FileSource> {
        let file = File::open(path)?;
        let mut prefix = vec![0u8; PREFIX_LEN.min(usize::try_from(len).unwrap_or(PREFIX_LEN).max(64))];
        let mut filled = 0;
        while filled < prefix.len() {
            match file.read_at(&mut prefix[filled..], filled as u64)? {
                0 => break,
                n => filled += n,
            }
        }
        prefix.truncate(filled);
        let len = if filled < PREFIX_LEN { filled as u64 } else { len };
        Ok(FileSource { file, len, position: 0, prefix })
    }

    /// Whether the file starts with the ELF magic.
    pub fn is_elf(&self) -> bool {
        self.prefix.starts_with(b"\x7fELF")
    }
}

impl ReadCacheOps for FileSource {
    fn len(&mut self) -> Result<u64, ()> {
        Ok(self.len)
    }

    fn seek(&mut self, pos: u64) -> Result<u64, ()> {
        self.position = pos;
        Ok(pos)
    }

    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ()> {
        let start = self.position;
        let n = match usize::try_from(start).ok().filter(|&s| s < self.prefix.len()) {
            Some(s) => {
                let n = buf.len().min(self.prefix.len() - s);
                buf[..n].copy_from_slice(&self.prefix[s..s + n]);
                n
            }
            None => self.file.read_at(buf, start).map_err(|_| ())?,
        };
        self.position += n as u64;
        Ok(n)
    }

    fn read_exact(&mut self, mut buf: &mut [u8]) -> Result<(), ()> {
        while !buf.is_empty() {
            match self.read(buf)? {
                0 => return Err(()),
                n => buf = &mut buf[n..],
            }
        }
        Ok(())
    }
}
