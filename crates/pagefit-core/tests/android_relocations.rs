//! Rebase of libraries with Android's packed relocations, built by lld
//! (`--pack-dyn-relocs=android`, `android+relr`, `--use-android-relr-tags`)
//! for aarch64 (DT_ANDROID_RELA) and arm (DT_ANDROID_REL): each 4K library
//! is fixed by rebase at 16K and proven, and every packed relocation of the
//! output, decoded, is the input's moved by Δ (relative addends too). The
//! input's decoding is checked against llvm-readelf's. Needs clang and lld.

use std::path::{Path, PathBuf};
use std::process::Command;

use object::elf;
use object::{Object, ObjectSection};
use pagefit_core::elf::android_relocations::{decode, PackedRelocation};
use pagefit_core::elf::parse;
use pagefit_core::fix::plan::Strategy;
use pagefit_core::fix::steps::{fix_in_memory, parse_options, InMemoryFix};
use pagefit_core::page::PageSize;

/// Many relative relocations (pointer tables, strings) and some symbolic ones.
const SOURCE: &str = r#"
extern int ext_value;
extern void ext_fn(void);
static int table[64];
int *pointers[24] = { &table[0], &table[1], &table[2], &table[3], &table[5], &table[8], &table[9], &table[10],
  &table[11], &table[20], &table[21], &table[22], &table[23], &table[24], &table[25], &table[26], &table[27] };
void *symbolic[4] = { &ext_value, (void *)ext_fn, &ext_value, (char *)&ext_value + 16 };
const char *strings[] = { "a", "bb", "ccc", "dddd", "eeeee" };
int get(int i) { return *pointers[i] + table[i]; }
"#;

fn build(dir: &Path, target: &str, flags: &[&str], name: &str) -> PathBuf {
    let source = dir.join("packed.c");
    std::fs::write(&source, SOURCE).unwrap();
    let out = dir.join(name);
    let status = Command::new("clang")
        .args([&format!("--target={target}"), "-fuse-ld=lld", "-shared", "-nostdlib", "-fPIC", "-O1", "-Wl,-z,max-page-size=4096"])
        .args(flags)
        .arg("-o")
        .arg(&out)
        .arg(&source)
        .status()
        .expect("clang with lld builds the test libraries");
    assert!(status.success(), "clang {target} {flags:?}");
    out
}

/// The packed table of a file: its relocations and whether it is RELA.
fn packed_relocations(data: &[u8], wide: bool) -> Vec<PackedRelocation> {
    let file = object::File::parse(data).unwrap();
    // lld keeps the dynamic relocation sections' names when it packs them.
    let section = file.sections().find(|s| matches!(s.name(), Ok(".rela.dyn" | ".rel.dyn"))).expect("a packed relocation section");
    let rela = section.name() == Ok(".rela.dyn");
    decode(section.data().unwrap(), wide, rela, 1 << 20).unwrap().relocations().copied().collect()
}

/// The offset of every relocation llvm-readelf lists.
fn readelf_offsets(path: &Path) -> Vec<u64> {
    let out = Command::new("llvm-readelf").arg("-r").arg(path).output().expect("llvm-readelf");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let offset = u64::from_str_radix(fields.next()?, 16).ok()?;
            fields.nth(1)?.starts_with("R_").then_some(offset)
        })
        .collect()
}

fn relative_type(machine: u16) -> u32 {
    if machine == elf::EM_AARCH64.0 {
        elf::R_AARCH64_RELATIVE.0
    } else {
        elf::R_ARM_RELATIVE.0
    }
}

#[test]
fn packed_libraries_are_rebased_and_every_relocation_moves_by_delta() {
    let dir = std::env::temp_dir().join(format!("pagefit-packed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases: [(&str, &[&str]); 4] = [
        ("aarch64-linux-gnu", &["-Wl,--pack-dyn-relocs=android"]),
        ("aarch64-linux-gnu", &["-Wl,--pack-dyn-relocs=android+relr"]),
        ("aarch64-linux-gnu", &["-Wl,--pack-dyn-relocs=android+relr", "-Wl,--use-android-relr-tags"]),
        ("armv7a-linux-gnueabihf", &["-Wl,--pack-dyn-relocs=android"]),
    ];
    for (index, (target, flags)) in cases.into_iter().enumerate() {
        let path = build(&dir, target, flags, &format!("lib{index}.so"));
        let data = std::fs::read(&path).unwrap();
        let wide = data[4] == elf::ELFCLASS64.0;
        let machine = u16::from_le_bytes([data[18], data[19]]);
        let before = packed_relocations(&data, wide);
        // llvm-readelf lists the packed table first, then RELR's relocations.
        let listed: Vec<u64> = readelf_offsets(&path).into_iter().take(before.len()).collect();
        assert_eq!(before.iter().map(|r| r.offset).collect::<Vec<_>>(), listed, "{target} {flags:?}: decoded as llvm-readelf does");
        assert!(before.len() >= 5, "{target} {flags:?}: {} packed relocations", before.len());

        let file = parse(&data[..], parse_options()).unwrap();
        let output = match fix_in_memory(&data, &file, PageSize::K16, Strategy::Rebase, 64 << 20).unwrap() {
            InMemoryFix::Proven(output) => output,
            InMemoryFix::Done(report) => panic!("{target} {flags:?}: not rebased: {:?}", report.refused),
            InMemoryFix::Rejected(why) => panic!("{target} {flags:?}: the proof rejects the output: {why}"),
            InMemoryFix::TooLarge => panic!("{target} {flags:?}: too large"),
        };
        let after = packed_relocations(&output, wide);
        // Δ, read back from the output: the first relocation's move.
        let shift = after[0].offset - before[0].offset;
        assert!(shift > 0 && shift % 0x1000 == 0, "{target} {flags:?}: Δ {shift:#x}");
        assert_eq!(before.len(), after.len());
        let mask = if wide { u64::MAX } else { u64::from(u32::MAX) };
        let relative = relative_type(machine);
        for (old, new) in before.iter().zip(&after) {
            let r_type = if wide { old.info as u32 } else { (old.info & 0xff) as u32 };
            let addend = if r_type == relative && wide { old.addend.wrapping_add(shift) & mask } else { old.addend };
            assert_eq!(*new, PackedRelocation { offset: old.offset + shift, info: old.info, addend }, "{target} {flags:?}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
