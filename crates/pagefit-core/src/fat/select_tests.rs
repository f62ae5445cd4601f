use std::cell::RefCell;

use super::*;
use crate::error::ParseErrorKind;
use crate::fat::WordSize;

const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;

fn target(machine: u16, max_page: Option<PageSize>) -> Target {
    Target { machine, osabi: 0, osabi_version: 0, word_size: WordSize::Bits64, byte_order: ByteOrder::Little, max_page }
}

/// A record table; offsets and sizes follow from the sizes given.
fn fat(version: u16, records: &[(Target, u64)]) -> FatFile {
    let mut offset = 0x10000;
    let records = records
        .iter()
        .enumerate()
        .map(|(index, &(target, size))| {
            let record = FatRecord { index, target, offset, size };
            offset += size.next_multiple_of(0x10000);
            record
        })
        .collect();
    FatFile { version, records, file_len: offset }
}

fn host(page: PageSize) -> HostTarget {
    HostTarget { machine: EM_X86_64, bits: 64, page_size: page }
}

fn never_measured(record: &FatRecord) -> Result<Option<PageSize>, ParseError> {
    panic!("record{} records its page size and must not be measured", record.index)
}

fn variants() -> FatFile {
    fat(
        2,
        &[
            (target(EM_AARCH64, Some(PageSize::K64)), 70000),
            (target(EM_X86_64, Some(PageSize::K4)), 25000),
            (target(EM_X86_64, Some(PageSize::K64)), 205000),
        ],
    )
}

#[test]
fn a_4k_host_takes_the_4k_variant_and_a_16k_host_the_64k_one() {
    let at_4k = select_record(&variants(), host(PageSize::K4), never_measured);
    assert_eq!((at_4k.chosen, at_4k.decided_by), (Some(1), Some(Decider::CloserFit)));
    assert!(at_4k.chosen_is_ok_at_page());
    let at_16k = select_record(&variants(), host(PageSize::K16), never_measured);
    assert_eq!((at_16k.chosen, at_16k.decided_by), (Some(2), Some(Decider::OkAtPage)));
    let fits: Vec<&RecordFit> = at_16k.records.iter().map(|r| &r.fit).collect();
    assert_eq!(fits[0], &RecordFit::Foreign { mismatches: vec![Mismatch::Machine { record: EM_AARCH64 }] });
    assert_eq!(
        fits[1],
        &RecordFit::Candidate { largest_ok_page: Some(PageSize::K4), source: PageSource::Recorded, ok_at_page: false, unmeasured: None }
    );
    assert_eq!(
        fits[2],
        &RecordFit::Candidate { largest_ok_page: Some(PageSize::K64), source: PageSource::Recorded, ok_at_page: true, unmeasured: None }
    );
}

#[test]
fn when_nothing_is_ok_at_p_the_record_ok_at_the_largest_page_is_still_chosen() {
    let file = fat(2, &[(target(EM_X86_64, Some(PageSize::K4)), 100), (target(EM_X86_64, Some(PageSize::K16)), 200)]);
    let selection = select_record(&file, host(PageSize::K64), never_measured);
    assert_eq!((selection.chosen, selection.decided_by), (Some(1), Some(Decider::LargerOkPage)));
    assert!(!selection.chosen_is_ok_at_page());
}

#[test]
fn version_1_candidates_are_measured_and_foreign_records_are_not() {
    let file = fat(1, &[(target(EM_AARCH64, None), 100), (target(EM_X86_64, None), 100)]);
    let measured = RefCell::new(Vec::new());
    let selection = select_record(&file, host(PageSize::K16), |record| {
        measured.borrow_mut().push(record.index);
        Ok(Some(PageSize::K4))
    });
    assert_eq!(measured.into_inner(), [1]);
    assert_eq!((selection.chosen, selection.decided_by), (Some(1), Some(Decider::OnlyCandidate)));
    assert!(matches!(selection.records[1].fit, RecordFit::Candidate { source: PageSource::Measured, ok_at_page: false, .. }));
}

#[test]
fn a_record_that_cannot_be_measured_ranks_last_and_says_why() {
    let gnu = Target { osabi: 3, ..target(EM_X86_64, None) };
    let file = fat(1, &[(target(EM_X86_64, None), 100), (gnu, 200)]);
    let selection = select_record(&file, host(PageSize::K16), |record| match record.index {
        0 => Err(ParseError::new(ParseErrorKind::Truncated, Some(0x40), "program headers past the end")),
        _ => Ok(Some(PageSize::K4)),
    });
    // Neither is ok at 16K; the one ok at 4K beats the one whose page size is unknown, though larger.
    assert_eq!(selection.chosen, Some(1));
    assert_eq!(selection.decided_by, Some(Decider::LargerOkPage));
    let RecordFit::Candidate { unmeasured: Some(why), .. } = &selection.records[0].fit else { panic!("{:?}", selection.records[0]) };
    assert!(why.contains("program headers past the end"), "{why}");
}

#[test]
fn equal_candidates_are_told_apart_by_size_then_table_order() {
    let gnu = Target { osabi: 3, ..target(EM_X86_64, Some(PageSize::K4)) };
    let file = fat(2, &[(target(EM_X86_64, Some(PageSize::K4)), 300), (gnu, 200)]);
    let selection = select_record(&file, host(PageSize::K4), never_measured);
    assert_eq!((selection.chosen, selection.decided_by), (Some(1), Some(Decider::SmallerRecord)));
    let file = fat(2, &[(target(EM_X86_64, Some(PageSize::K4)), 200), (gnu, 200)]);
    let selection = select_record(&file, host(PageSize::K4), never_measured);
    assert_eq!((selection.chosen, selection.decided_by), (Some(0), Some(Decider::TableOrder)));
}

#[test]
fn no_record_for_the_host_lists_every_mismatch() {
    let foreign = [
        target(EM_AARCH64, None),
        Target { word_size: WordSize::Bits32, ..target(EM_X86_64, None) },
        Target { byte_order: ByteOrder::Big, osabi: 9, ..target(EM_X86_64, None) },
    ];
    let file = fat(1, &foreign.map(|t| (t, 100)));
    let selection = select_record(&file, host(PageSize::K4), never_measured);
    assert_eq!((selection.chosen, selection.decided_by), (None, None));
    let mismatches: Vec<String> = selection
        .records
        .iter()
        .map(|r| match &r.fit {
            RecordFit::Foreign { mismatches } => mismatches.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(mismatches, ["machine aarch64", "32-bit", "big-endian, OS ABI freebsd"]);
}

#[test]
fn a_32_bit_host_takes_the_32_bit_record_of_its_machine() {
    const EM_ARM: u16 = 40;
    let file = fat(
        2,
        &[(target(EM_ARM, Some(PageSize::K64)), 100), (Target { word_size: WordSize::Bits32, ..target(EM_ARM, Some(PageSize::K64)) }, 100)],
    );
    let arm = HostTarget { machine: EM_ARM, bits: 32, page_size: PageSize::K16 };
    let selection = select_record(&file, arm, never_measured);
    assert_eq!(selection.chosen, Some(1));
    assert_eq!(selection.records[0].fit, RecordFit::Foreign { mismatches: vec![Mismatch::WordSize { bits: 64 }] });
    assert_eq!(arm.to_string(), "arm:32bit:le:sysv|linux with 16K pages");
}

#[test]
fn the_selection_serializes_as_data() {
    let selection = select_record(&variants(), host(PageSize::K16), never_measured);
    let json = serde_json::to_value(&selection).unwrap();
    assert_eq!(json["host"], serde_json::json!({"machine": "x86_64", "bits": 64, "page_size": 16384}));
    assert_eq!((json["chosen"].as_u64(), json["decided_by"].as_str()), (Some(2), Some("ok_at_page")));
    assert_eq!(json["records"][0]["fit"], "foreign");
    assert_eq!(json["records"][0]["mismatches"], serde_json::json!([{"field": "machine", "record": "aarch64"}]));
    assert_eq!(json["records"][2]["target"], "x86_64:64bit:le:sysv:osabiver0:maxpage64k");
    assert_eq!(json["records"][2]["largest_ok_page"], 65536);
    assert_eq!(json["records"][2]["source"], "recorded");
}
