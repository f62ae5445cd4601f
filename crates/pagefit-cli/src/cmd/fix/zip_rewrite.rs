//! Rewrites a zip record by record, as zipalign does: entry order, names,
//! times, flags, attributes and extra fields kept, every unchanged entry's
//! compressed bytes, CRC and data descriptor copied as they are. Replaced
//! entries get new data in their original compression method, and a stored
//! entry's data is aligned by padding its local header's extra field.
//!
//! The zip crate rebuilds each header it copies (attributes, "version made
//! by" and the extra field change), and pads with its own field id; an
//! Android package is read by tools that expect zipalign's, so the records
//! are written here. Anything between the entries and the central directory
//! (an APK Signing Block) is dropped: it signs bytes that change.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use flate2::write::DeflateEncoder;
use flate2::{Compression, Crc};
use zip::ZipArchive;

const LOCAL_HEADER_SIGNATURE: u32 = 0x0403_4b50;
const CENTRAL_HEADER_SIGNATURE: u32 = 0x0201_4b50;
const END_OF_CENTRAL_DIRECTORY_SIGNATURE: u32 = 0x0605_4b50;
const DATA_DESCRIPTOR_SIGNATURE: u32 = 0x0807_4b50;
const LOCAL_HEADER_LEN: usize = 30;
const CENTRAL_HEADER_LEN: usize = 46;
/// General purpose flag bit 3: sizes and CRC follow the data.
const FLAG_DATA_DESCRIPTOR: u16 = 0x0008;
const METHOD_STORED: u16 = 0;
const METHOD_DEFLATED: u16 = 8;

/// The extra field zipalign and apksigner pad with: header id 0xd935, then
/// the alignment as a u16, then zeros (apksigner's `ApkSigner.java` and
/// apkzlib's `ExtraField.java`, `ALIGNMENT_ZIP_EXTRA_DATA_FIELD_HEADER_ID`).
pub const ALIGNMENT_FIELD_ID: u16 = 0xd935;
/// Id, size and the alignment: the smallest such field.
const ALIGNMENT_FIELD_MIN_LEN: u64 = 6;

/// How many bytes of padding field put data that would start at `offset`
/// on a multiple of `alignment`: 0 when it already is, else at least the
/// field's own 6 bytes.
pub fn alignment_padding(offset: u64, alignment: u64) -> u64 {
    if alignment <= 1 || offset % alignment == 0 {
        return 0;
    }
    let mut padding = alignment - offset % alignment;
    while padding < ALIGNMENT_FIELD_MIN_LEN {
        padding += alignment;
    }
    padding
}

/// The padding field of `padding` bytes (at least 6) for `alignment`.
fn alignment_field(padding: u64, alignment: u64) -> anyhow::Result<Vec<u8>> {
    let body = u16::try_from(padding - 4).context("alignment padding over 64 KiB")?;
    let alignment = u16::try_from(alignment).unwrap_or(u16::MAX);
    let mut field = Vec::with_capacity(usize::from(body) + 4);
    field.extend_from_slice(&ALIGNMENT_FIELD_ID.to_le_bytes());
    field.extend_from_slice(&body.to_le_bytes());
    field.extend_from_slice(&alignment.to_le_bytes());
    field.resize(usize::from(body) + 4, 0);
    Ok(field)
}

/// `extra` without earlier alignment padding: 0xd935 fields, and the bare
/// zeros old zipalign appended (which read as empty fields of id 0).
pub fn without_alignment_padding(extra: &[u8]) -> Vec<u8> {
    let mut kept = Vec::with_capacity(extra.len());
    let mut rest = extra;
    while rest.len() >= 4 {
        let id = u16::from_le_bytes([rest[0], rest[1]]);
        let len = usize::from(u16::from_le_bytes([rest[2], rest[3]])) + 4;
        if len > rest.len() {
            break;
        }
        if id != ALIGNMENT_FIELD_ID && id != 0 {
            kept.extend_from_slice(&rest[..len]);
        }
        rest = &rest[len..];
    }
    if rest.iter().any(|&b| b != 0) {
        kept.extend_from_slice(rest);
    }
    kept
}

/// What to write for each entry.
pub struct RewriteRules<'a> {
    /// New contents by entry index: proven files, compressed here the way
    /// the entry was.
    pub replaced: &'a BTreeMap<usize, PathBuf>,
    /// The data alignment of a stored entry, by name (1 for none).
    pub stored_alignment: &'a dyn Fn(&str) -> u64,
}

/// One entry's place in the input.
struct EntrySpan {
    name: String,
    header_start: u64,
    central_header_start: u64,
}

/// Writes `archive` (the zip in `input`, shown as `shown`) to `output` under `rules`.
pub fn rewrite_zip(
    input: &File,
    archive: &mut ZipArchive<File>,
    shown: &str,
    rules: &RewriteRules<'_>,
    output: &File,
) -> anyhow::Result<()> {
    if archive.offset() != 0 {
        bail!("{shown}: {} bytes precede the zip, which an Android package does not have", archive.offset());
    }
    let mut spans = Vec::with_capacity(archive.len());
    for index in 0..archive.len() {
        let entry = archive.by_index_raw(index).with_context(|| format!("{shown}: member {index}"))?;
        spans.push(EntrySpan {
            name: entry.name().to_string(),
            header_start: entry.header_start(),
            central_header_start: entry.central_header_start(),
        });
    }
    let entries = u16::try_from(spans.len()).with_context(|| format!("{shown}: over 65535 entries (zip64) is not supported"))?;
    let mut out = Counted { inner: BufWriter::new(output), written: 0 };
    let mut central = Vec::new();
    for (index, span) in spans.iter().enumerate() {
        let at = |what: &str| format!("{shown}!/{}: {what} at offset {:#x}", span.name, span.header_start);
        let mut record = read_record(input, span.central_header_start, CENTRAL_HEADER_LEN, CENTRAL_HEADER_SIGNATURE, [28, 30, 32])
            .with_context(|| at("its central directory record cannot be read"))?;
        if [20, 24, 42].iter().any(|&field| read_u32(&record, field) == u32::MAX) {
            bail!("{}", at("zip64 sizes or offsets, which are not supported"));
        }
        let local = read_record(input, span.header_start, LOCAL_HEADER_LEN, LOCAL_HEADER_SIGNATURE, [26, 28, 28])
            .with_context(|| at("its local header cannot be read"))?;
        let name_len = usize::from(read_u16(&local, 26));
        let (mut header, name, extra) =
            (local[..LOCAL_HEADER_LEN].to_vec(), &local[LOCAL_HEADER_LEN..][..name_len], &local[LOCAL_HEADER_LEN + name_len..]);
        let flags = read_u16(&header, 6);
        let method = read_u16(&header, 8);
        let data_start = span.header_start + local.len() as u64;
        let compressed_size = u64::from(read_u32(&record, 20));

        // The data: a proven replacement compressed here, or the input's bytes and descriptor.
        let replacement = match rules.replaced.get(&index) {
            Some(path) => Some(compress(path, method).with_context(|| at("cannot be compressed again"))?),
            None => None,
        };
        let data_len = match &replacement {
            Some(new) => {
                let cleared = flags & !FLAG_DATA_DESCRIPTOR;
                for (header_field, central_field, value) in [(14, 16, new.crc), (18, 20, new.compressed_size), (22, 24, new.size)] {
                    header[header_field..header_field + 4].copy_from_slice(&value.to_le_bytes());
                    record[central_field..central_field + 4].copy_from_slice(&value.to_le_bytes());
                }
                header[6..8].copy_from_slice(&cleared.to_le_bytes());
                record[8..10].copy_from_slice(&cleared.to_le_bytes());
                u64::from(new.compressed_size)
            }
            None => {
                compressed_size
                    + descriptor_len(input, flags, data_start + compressed_size)
                        .with_context(|| at("its data descriptor cannot be read"))?
            }
        };

        let mut extra = if method == METHOD_STORED { without_alignment_padding(extra) } else { extra.to_vec() };
        if method == METHOD_STORED {
            let alignment = (rules.stored_alignment)(&span.name);
            let unpadded = out.written + (LOCAL_HEADER_LEN + name.len() + extra.len()) as u64;
            let padding = alignment_padding(unpadded, alignment);
            if padding > 0 {
                extra.extend_from_slice(&alignment_field(padding, alignment)?);
            }
        }
        let extra_len = u16::try_from(extra.len()).map_err(|_| anyhow::anyhow!("{}", at("an extra field over 64 KiB once padded")))?;
        header[28..30].copy_from_slice(&extra_len.to_le_bytes());
        let offset = u32::try_from(out.written)
            .ok()
            .filter(|&o| o != u32::MAX)
            .context("the output passes 4 GiB (zip64), which is not supported")?;
        record[42..46].copy_from_slice(&offset.to_le_bytes());

        out.write_all(&header)?;
        out.write_all(name)?;
        out.write_all(&extra)?;
        match replacement {
            Some(mut new) => {
                new.data.seek(SeekFrom::Start(0))?;
                std::io::copy(&mut new.data, &mut out)?;
            }
            None => copy_range(input, data_start, data_len, &mut out).with_context(|| at("its data cannot be read"))?,
        }
        central.extend_from_slice(&record);
    }
    let central_start =
        u32::try_from(out.written).ok().filter(|&o| o != u32::MAX).context("the output passes 4 GiB (zip64), which is not supported")?;
    let central_len = u32::try_from(central.len()).context("a central directory over 4 GiB")?;
    out.write_all(&central)?;
    let comment = archive.comment();
    let comment_len = u16::try_from(comment.len()).unwrap_or(u16::MAX);
    let mut end = Vec::with_capacity(22 + comment.len());
    end.extend_from_slice(&END_OF_CENTRAL_DIRECTORY_SIGNATURE.to_le_bytes());
    end.extend_from_slice(&[0; 4]); // this disk, the central directory's disk
    end.extend_from_slice(&entries.to_le_bytes());
    end.extend_from_slice(&entries.to_le_bytes());
    end.extend_from_slice(&central_len.to_le_bytes());
    end.extend_from_slice(&central_start.to_le_bytes());
    end.extend_from_slice(&comment_len.to_le_bytes());
    end.extend_from_slice(&comment[..usize::from(comment_len)]);
    out.write_all(&end)?;
    out.inner.flush()?;
    Ok(())
}

/// A header of `fixed` bytes starting with `signature` at `offset`, with
/// the variable parts whose lengths are the u16 fields at `length_fields`
/// (a field listed twice counts once).
fn read_record(input: &File, offset: u64, fixed: usize, signature: u32, length_fields: [usize; 3]) -> anyhow::Result<Vec<u8>> {
    let mut record = vec![0; fixed];
    input.read_exact_at(&mut record, offset)?;
    if read_u32(&record, 0) != signature {
        bail!("no signature {signature:#010x}");
    }
    let mut fields = length_fields.to_vec();
    fields.dedup();
    let variable: usize = fields.iter().map(|&field| usize::from(read_u16(&record, field))).sum();
    record.resize(fixed + variable, 0);
    input.read_exact_at(&mut record[fixed..], offset + fixed as u64)?;
    Ok(record)
}

/// The length of the data descriptor after an entry's data, if its flags
/// say there is one: CRC and two sizes, with or without a signature.
fn descriptor_len(input: &File, flags: u16, at: u64) -> anyhow::Result<u64> {
    if flags & FLAG_DATA_DESCRIPTOR == 0 {
        return Ok(0);
    }
    let mut first = [0; 4];
    input.read_exact_at(&mut first, at)?;
    Ok(if u32::from_le_bytes(first) == DATA_DESCRIPTOR_SIGNATURE { 16 } else { 12 })
}

/// A replacement's data as it goes in the zip, with its CRC and sizes.
struct Compressed {
    data: File,
    crc: u32,
    size: u32,
    compressed_size: u32,
}

/// `path` stored or deflated (the methods Android packages use), in a temporary file.
fn compress(path: &Path, method: u16) -> anyhow::Result<Compressed> {
    let mut source = File::open(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let mut data = tempfile::tempfile().context("cannot create a temporary file")?;
    let mut crc = Crc::new();
    let mut buffer = vec![0; 1 << 16];
    // Counted here: the CRC's own count wraps at 4 GiB.
    let mut size: u64 = 0;
    let mut sink: Box<dyn Write + '_> = match method {
        METHOD_STORED => Box::new(BufWriter::new(&mut data)),
        METHOD_DEFLATED => Box::new(DeflateEncoder::new(BufWriter::new(&mut data), Compression::default())),
        other => bail!("compression method {other}, where Android packages use stored (0) or deflated (8)"),
    };
    loop {
        let got = source.read(&mut buffer)?;
        if got == 0 {
            break;
        }
        crc.update(&buffer[..got]);
        size += got as u64;
        sink.write_all(&buffer[..got])?;
    }
    sink.flush()?;
    drop(sink);
    let too_large = || anyhow::anyhow!("over 4 GiB (zip64), which is not supported");
    let size = u32::try_from(size).map_err(|_| too_large())?;
    let compressed_size = u32::try_from(data.stream_position()?).map_err(|_| too_large())?;
    Ok(Compressed { data, crc: crc.sum(), size, compressed_size })
}

/// Copies `len` bytes of `input` from `start` to `out`.
fn copy_range(input: &File, start: u64, len: u64, out: &mut impl Write) -> std::io::Result<()> {
    let mut buffer = vec![0; 1 << 16];
    let mut done = 0;
    while done < len {
        let chunk = usize::try_from((len - done).min(buffer.len() as u64)).unwrap_or(buffer.len());
        input.read_exact_at(&mut buffer[..chunk], start + done)?;
        out.write_all(&buffer[..chunk])?;
        done += chunk as u64;
    }
    Ok(())
}

fn read_u16(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// A writer that knows its offset.
struct Counted<W> {
    inner: W,
    written: u64,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let wrote = self.inner.write(buf)?;
        self.written += wrote as u64;
        Ok(wrote)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_reaches_the_next_multiple_and_is_never_shorter_than_the_field() {
        assert_eq!(alignment_padding(16384, 16384), 0);
        assert_eq!(alignment_padding(100, 16384), 16284);
        assert_eq!(alignment_padding(16380, 16384), 4 + 16384);
        assert_eq!(alignment_padding(2, 4), 6);
        assert_eq!(alignment_padding(3, 4), 9);
        assert_eq!(alignment_padding(7, 1), 0);
    }

    #[test]
    fn the_padding_field_is_zipaligns() {
        assert_eq!(alignment_field(8, 16384).unwrap(), [0x35, 0xd9, 4, 0, 0x00, 0x40, 0, 0]);
    }

    #[test]
    fn earlier_padding_is_dropped_and_other_fields_kept() {
        let other = [0x55, 0x54, 1, 0, 7];
        let mut extra = other.to_vec();
        extra.extend_from_slice(&alignment_field(10, 4).unwrap());
        extra.extend_from_slice(&[0, 0, 0]);
        assert_eq!(without_alignment_padding(&extra), other);
        assert_eq!(without_alignment_padding(&[1, 2, 9]), [1, 2, 9]);
    }
}
