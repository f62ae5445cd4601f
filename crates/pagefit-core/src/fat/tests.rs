use super::*;

const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;
const EM_PPC64: u16 = 21;

/// A minimal ELF file: an identification and `e_machine`, then `body_len` bytes.
fn elf(machine: u16, word_size: WordSize, byte_order: ByteOrder, osabi: u8, body_len: usize) -> Vec<u8> {
    let header_len = if word_size == WordSize::Bits64 { 64 } else { 52 };
    let mut bytes = vec![0u8; header_len + body_len];
    bytes[..4].copy_from_slice(b"\x7fELF");
    bytes[4] = word_size.code();
    bytes[5] = if byte_order == ByteOrder::Little { 1 } else { 2 };
    bytes[6] = 1;
    bytes[7] = osabi;
    let machine = if byte_order == ByteOrder::Little { machine.to_le_bytes() } else { machine.to_be_bytes() };
    bytes[18..20].copy_from_slice(&machine);
    for (i, byte) in bytes[header_len..].iter_mut().enumerate() {
        *byte = (i % 251) as u8;
    }
    bytes
}

fn glue(elves: &[Vec<u8>], align: u64, trailing: &[u8]) -> Vec<u8> {
    let targets: Vec<(Target, u64)> = elves.iter().map(|e| (Target::of_elf(e).unwrap(), e.len() as u64)).collect();
    let layout = FatLayout::plan(&targets, align, false).unwrap();
    let bodies: Vec<&[u8]> = elves.iter().map(Vec::as_slice).collect();
    let mut out = Vec::new();
    layout.write(&mut out, &bodies, trailing).unwrap();
    out
}

fn three() -> Vec<Vec<u8>> {
    vec![
        elf(EM_X86_64, WordSize::Bits64, ByteOrder::Little, 0, 5000),
        elf(EM_AARCH64, WordSize::Bits64, ByteOrder::Little, 3, 70000),
        elf(EM_PPC64, WordSize::Bits64, ByteOrder::Big, 0, 100),
    ]
}

#[test]
fn writes_and_reads_back_with_64k_alignment_and_trailing_bytes() {
    let elves = three();
    let bytes = glue(&elves, DEFAULT_ALIGN, b"appended junk");
    assert_eq!(&bytes[..8], &[0xfa, 0x70, 0x0e, 0x1f, 1, 0, 3, 0]);
    let fat = FatFile::parse(bytes.as_slice()).unwrap();
    assert_eq!(fat.version, 1);
    assert_eq!(fat.records.len(), 3);
    for (record, elf) in fat.records.iter().zip(&elves) {
        assert_eq!(record.offset % DEFAULT_ALIGN, 0, "{record:?}");
        assert_eq!(&bytes[record.offset as usize..record.range().end as usize], elf.as_slice());
    }
    assert_eq!(fat.records[2].target.byte_order, ByteOrder::Big);
    // Big-endian is stored as FatELF's 0, not EI_DATA's 2.
    assert_eq!(bytes[8 + 2 * 24 + 5], 0);
    let trailing = fat.trailing();
    assert_eq!(&bytes[trailing.start as usize..trailing.end as usize], b"appended junk");
}

#[test]
fn alignment_is_configurable() {
    let bytes = glue(&three(), 4096, b"");
    let fat = FatFile::parse(bytes.as_slice()).unwrap();
    assert_eq!(fat.records.iter().map(|r| r.offset).collect::<Vec<_>>(), [0x1000, 0x3000, 0x15000]);
    assert!(FatLayout::plan(&[(Target::of_elf(&three()[0]).unwrap(), 100)], 3000, false).is_err());
}

#[test]
fn target_names_print_and_parse_back() {
    let fat = FatFile::parse(glue(&three(), 4096, b"").as_slice()).unwrap();
    let names: Vec<String> = fat.records.iter().map(|r| r.target.to_string()).collect();
    assert_eq!(names, ["x86_64:64bit:le:sysv:osabiver0", "aarch64:64bit:le:linux:osabiver0", "ppc64:64bit:be:sysv:osabiver0"]);
    for record in &fat.records {
        let selector: TargetSelector = record.target.to_string().parse().unwrap();
        assert_eq!(fat.select(&selector).unwrap(), [record]);
    }
    let select = |text: &str| fat.select(&text.parse().unwrap()).unwrap().iter().map(|r| r.index).collect::<Vec<_>>();
    assert_eq!(select("record1"), [1]);
    assert_eq!(select("aarch64"), [1]);
    assert_eq!(select("64bits"), [0, 1, 2]);
    assert_eq!(select("le:64bit"), [0, 1]);
    assert_eq!(select("ppc64le"), Vec::<usize>::new());
    assert_eq!(select("ppc64:be"), [2]);
    assert_eq!(select("sysv"), [0, 2]);
    assert_eq!(select("gnu"), [1]);
    assert!(fat.select(&TargetSelector::Record(3)).unwrap_err().0.contains("record0 to record2"));
    for bad in ["", "x86_64::le", "32bit:64bit", "ppc64le:be", "vax12", "recordx", "osabiver300", "maxpage3k"] {
        assert!(bad.parse::<TargetSelector>().is_err(), "{bad:?}");
    }
}

#[test]
fn every_machine_and_osabi_name_parses_back() {
    for machine in 0..=u16::MAX {
        let name = machine_name(machine);
        assert_eq!(machine_from_name(&name), Some(machine), "{name}");
        assert!(osabi_from_name(&name).is_none(), "{name} is also an OS ABI name");
        let target =
            Target { machine, osabi: 0, osabi_version: 0, word_size: WordSize::Bits32, byte_order: ByteOrder::Little, max_page: None };
        let expected = TargetPattern {
            machine: Some(machine),
            word_size: Some(WordSize::Bits32),
            byte_order: Some(ByteOrder::Little),
            osabi: Some(0),
            osabi_version: Some(0),
            max_page: None,
        };
        assert_eq!(target.to_string().parse(), Ok(TargetSelector::Fields(expected)), "{target}");
    }
    for osabi in 0..=u8::MAX {
        assert_eq!(osabi_from_name(&osabi_name(osabi)), Some(osabi), "{}", osabi_name(osabi));
    }
    for (machine, name) in [(183, "aarch64"), (243, "riscv"), (258, "loongarch"), (21, "ppc64"), (22, "s390"), (105, "msp430")] {
        assert_eq!(machine_name(machine), name);
    }
}

#[test]
fn page_variants_share_a_target_and_save_padding() {
    let small = elf(EM_AARCH64, WordSize::Bits64, ByteOrder::Little, 0, 5000);
    let base = Target::of_elf(&small).unwrap();
    let k4 = Target { max_page: Some(PageSize::K4), ..base };
    let k64 = Target { max_page: Some(PageSize::K64), ..base };
    assert!(FatLayout::plan(&[(k4, 5064), (k64, 5064)], DEFAULT_ALIGN, false).unwrap_err().detail.contains("--page-variants"));
    let layout = FatLayout::plan(&[(k4, 5064), (k64, 5064)], DEFAULT_ALIGN, true).unwrap();
    assert_eq!(layout.version, 2);
    assert_eq!(layout.records.iter().map(|r| r.offset).collect::<Vec<_>>(), [0x1000, 0x10000]);
    let mut bytes = Vec::new();
    layout.write(&mut bytes, &[&small, &small], b"").unwrap();
    assert_eq!(bytes[8 + 6], 12);
    let fat = FatFile::parse(bytes.as_slice()).unwrap();
    assert_eq!(fat.records[1].target.to_string(), "aarch64:64bit:le:sysv:osabiver0:maxpage64k");
    let select = |text: &str| fat.select(&text.parse().unwrap()).unwrap().iter().map(|r| r.index).collect::<Vec<_>>();
    assert_eq!(select("aarch64:maxpage4k"), [0]);
    assert_eq!(select("aarch64"), [0, 1]);
    // A variant without a page size cannot be told from the others.
    let unmeasured = Target { max_page: None, ..base };
    assert_eq!(FatLayout::plan(&[(k4, 5064), (unmeasured, 5064)], DEFAULT_ALIGN, true).unwrap_err().kind, FatErrorKind::DuplicateTarget);
    let mut unmeasured_bytes = bytes.clone();
    unmeasured_bytes[8 + 6] = 0;
    assert_eq!(FatFile::parse(unmeasured_bytes.as_slice()).unwrap_err().kind, FatErrorKind::DuplicateTarget);
    // Version 1 readers see the reserved byte as reserved: a duplicate.
    let mut as_v1 = bytes.clone();
    as_v1[4] = 1;
    assert_eq!(FatFile::parse(as_v1.as_slice()).unwrap_err().kind, FatErrorKind::DuplicateTarget);
}

fn parse_error(bytes: &[u8]) -> FatError {
    FatFile::parse(bytes).unwrap_err()
}

#[test]
fn bad_files_get_errors_with_offsets() {
    let good = glue(&three(), 4096, b"");
    assert_eq!(parse_error(b"\x7fELF").kind, FatErrorKind::NotFat);
    assert_eq!(parse_error(&good[..6]).kind, FatErrorKind::Truncated);
    let truncated_table = parse_error(&good[..40]);
    assert_eq!((truncated_table.kind, truncated_table.offset), (FatErrorKind::Truncated, Some(8)));

    let mut version = good.clone();
    version[4] = 3;
    assert_eq!(parse_error(&version).offset, Some(4));

    let past_end = parse_error(&good[..good.len() - 1]);
    assert_eq!((past_end.kind, past_end.offset), (FatErrorKind::RecordPastEnd, Some(8 + 2 * 24 + 8)));
    assert!(past_end.to_string().contains("record2"), "{past_end}");

    let mut overlap = good.clone();
    overlap[8 + 24 + 8..8 + 24 + 16].copy_from_slice(&0x1100u64.to_le_bytes());
    let error = parse_error(&overlap);
    assert_eq!((error.kind, error.offset), (FatErrorKind::OverlappingRecords, Some(8 + 24 + 8)));
    assert!(error.to_string().contains("record1 (0x1100..") && error.to_string().contains("overlaps record0"), "{error}");

    let mut into_table = good.clone();
    into_table[16..24].copy_from_slice(&8u64.to_le_bytes());
    assert_eq!(parse_error(&into_table).kind, FatErrorKind::OverlappingRecords);

    let mut machine = good.clone();
    machine[8] = 3; // record0 now claims i386
    let error = parse_error(&machine);
    assert_eq!((error.kind, error.offset), (FatErrorKind::TargetMismatch, Some(0x1000 + 18)));
    assert_eq!(error.to_string(), "record and ELF header disagree at offset 0x1012: record0 says machine i386, its ELF header says x86_64");

    let mut order = good.clone();
    order[8 + 2 * 24 + 5] = 1; // record2 (big-endian ppc64) now claims little-endian
    assert_eq!(parse_error(&order).offset, Some(0x15000 + 5));

    let mut class = good.clone();
    class[0x1000 + 4] = 1;
    assert_eq!(parse_error(&class).kind, FatErrorKind::TargetMismatch);

    let mut not_elf = good.clone();
    not_elf[0x1000] = 0;
    assert_eq!(parse_error(&not_elf).offset, Some(0x1000));

    let mut duplicate = good.clone();
    duplicate[8 + 24..8 + 24 + 8].copy_from_slice(&good[8..16]);
    assert_eq!(parse_error(&duplicate).kind, FatErrorKind::DuplicateTarget);

    let mut empty = good[..8].to_vec();
    empty[6] = 0;
    assert_eq!(parse_error(&empty).kind, FatErrorKind::InvalidRecord);

    let mut huge = good;
    huge[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
    assert_eq!(parse_error(&huge).kind, FatErrorKind::RecordPastEnd);
}

/// No input panics the reader: every truncation and many byte flips of a
/// valid file, in the normal test run (the fuzz target in `fuzz/` goes further).
#[test]
fn mangled_files_never_panic() {
    let good = glue(&three(), 4096, b"tail");
    for cut in 0..0x1100.min(good.len()) {
        let _ = FatFile::parse(&good[..cut]);
    }
    // A small deterministic generator: reproducible without a dependency.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let interesting: Vec<usize> = (0..8 + 3 * 24).chain(0x1000..0x1000 + 64).collect();
    for _ in 0..20_000 {
        let mut bytes = good.clone();
        for _ in 0..1 + next() % 4 {
            let at = interesting[(next() % interesting.len() as u64) as usize];
            bytes[at] = next() as u8;
        }
        if let Ok(fat) = FatFile::parse(bytes.as_slice()) {
            for record in &fat.records {
                assert!(record.range().end <= fat.file_len);
                let _ = fat.select(&record.target.to_string().parse().unwrap());
            }
            let _ = fat.trailing();
        }
    }
}

#[test]
fn binfmt_registration_matches_the_magic_of_every_version() {
    assert_eq!(binfmt_registration("/usr/bin/pagefit").unwrap(), r":pagefit-fatelf:M::\xfa\x70\x0e\x1f::/usr/bin/pagefit:PF");
    for bad in ["pagefit", "./pagefit", "/opt/a:b/pagefit", "/tmp/x\ny"] {
        assert!(binfmt_registration(bad).is_err(), "{bad:?}");
    }
    assert!(binfmt_registration(&format!("/{}", "x".repeat(2000))).is_err());
}
