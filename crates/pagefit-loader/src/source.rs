//! Reading ELF headers from files with as few syscalls as possible: one
//! `pread` of the first 4 KiB serves the ELF header, the program headers and
//! usually PT_INTERP. Anything else is read on demand, a window of a few
//! pages at a time: the section headers and `.shstrtab` (which usually sits
//! just before them) come in one read, and `object` reading each section name
//! separately costs no syscall.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use object::read::ReadCacheOps;

/// How much of the file the first read fetches.
const PREFIX_LEN: usize = 4096;

/// How much a read past the prefix fetches at least: from the 4 KiB page
/// before the one asked for, to two pages after it.
const WINDOW_LEN: u64 = 12 * 1024;
const WINDOW_LEAD: u64 = 4096;

/// A file read with `pread`, with its first 4 KiB kept in memory.
pub struct FileSource {
    file: File,
    len: u64,
    position: u64,
    prefix: Vec<u8>,
    window_start: u64,
    window: Vec<u8>,
}

impl FileSource {
    /// Opens `path` and reads its first 4 KiB. Also returns the file's
    /// metadata, from `fstat` on the open file. A directory is an
    /// `IsADirectory` error, whatever size the filesystem gives it.
    pub fn open(path: &Path) -> std::io::Result<(FileSource, std::fs::Metadata)> {
        let file = File::open(path)?;
        let metadata = file.metadata()?;
        if metadata.is_dir() {
            return Err(std::io::ErrorKind::IsADirectory.into());
        }
        Ok((FileSource::new(file, metadata.len())?, metadata))
    }

    /// Reads the first 4 KiB of `file`, which is `len` bytes long.
    pub fn new(file: File, len: u64) -> std::io::Result<FileSource> {
        let mut prefix = Vec::new();
        read_fully_at(&file, &mut prefix, 0, PREFIX_LEN.min(usize::try_from(len).unwrap_or(PREFIX_LEN)))?;
        let len = if prefix.len() < PREFIX_LEN { prefix.len() as u64 } else { len };
        Ok(FileSource { file, len, position: 0, prefix, window_start: 0, window: Vec::new() })
    }

    fn fill_window(&mut self, start: u64) -> std::io::Result<()> {
        let len = WINDOW_LEN.min(self.len.saturating_sub(start)) as usize;
        read_fully_at(&self.file, &mut self.window, start, len)?;
        self.window_start = start;
        Ok(())
    }

    /// The open file, for reading past the headers.
    pub fn into_file(self) -> File {
        self.file
    }

    /// The first bytes of the file (up to 4 KiB).
    pub fn prefix(&self) -> &[u8] {
        &self.prefix
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
        let n = if start < self.prefix.len() as u64 {
            copy_from(&self.prefix, 0, start, buf)
        } else if buf.len() as u64 > WINDOW_LEN - 2 * WINDOW_LEAD {
            self.file.read_at(buf, start).map_err(|_| ())?
        } else {
            if !(self.window_start <= start && start + buf.len() as u64 <= self.window_start + self.window.len() as u64) {
                self.fill_window((start - start % WINDOW_LEAD).saturating_sub(WINDOW_LEAD)).map_err(|_| ())?;
            }
            copy_from(&self.window, self.window_start, start, buf)
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

/// Replaces `buf`'s contents with up to `len` bytes of `file` from `offset`
/// (fewer at the end of the file).
fn read_fully_at(file: &File, buf: &mut Vec<u8>, offset: u64, len: usize) -> std::io::Result<()> {
    buf.resize(len, 0);
    let mut filled = 0;
    while filled < len {
        match file.read_at(&mut buf[filled..], offset + filled as u64)? {
            0 => break,
            n => filled += n,
        }
    }
    buf.truncate(filled);
    Ok(())
}

/// Copies into `buf` what `block` (which starts at file offset `block_start`)
/// holds from file offset `start` on; returns how many bytes were copied.
fn copy_from(block: &[u8], block_start: u64, start: u64, buf: &mut [u8]) -> usize {
    let from = usize::try_from(start - block_start).unwrap_or(usize::MAX).min(block.len());
    let n = buf.len().min(block.len() - from);
    buf[..n].copy_from_slice(&block[from..from + n]);
    n
}
