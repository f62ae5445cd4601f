//! pagefit-archive's own tests: small archives of every kind, built here,
//! holding a hand-written 64-byte ELF header; what a scan finds in each
//! (paths, `android`, `zip_data_offset`, the bytes), and the errors of
//! broken input, with memory bounded whatever a header claims.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write;
use std::path::Path;

use object::ReadRef;
use pagefit_archive::image::{self, Container};
use pagefit_archive::{detect, scan, ArchiveError, ArchiveKind, Compression, Hashing, Member};

/// The largest allocation each thread made: a scan's memory must not
/// follow what a header claims.
struct Counting;

thread_local! {
    static LARGEST_ALLOCATION: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = LARGEST_ALLOCATION.try_with(|largest| largest.set(largest.get().max(size)));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;

/// A valid ELF64 little-endian header of a shared object (no program or
/// section headers), followed by `tag` so that members can be told apart.
fn elf(machine: u16, tag: &str) -> Vec<u8> {
    let mut bytes = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    bytes.extend_from_slice(&3u16.to_le_bytes()); // e_type: ET_DYN
    bytes.extend_from_slice(&machine.to_le_bytes());
    bytes.extend_from_slice(&1u32.to_le_bytes()); // e_version
    bytes.extend_from_slice(&0u64.to_le_bytes()); // e_entry
    bytes.extend_from_slice(&0u64.to_le_bytes()); // e_phoff
    bytes.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    bytes.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    for half in [64u16, 56, 0, 64, 0, 0] {
        // e_ehsize, e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx
        bytes.extend_from_slice(&half.to_le_bytes());
    }
    assert_eq!(bytes.len(), 64);
    bytes.extend_from_slice(tag.as_bytes());
    bytes
}

/// What a scan found, in the order found.
struct Found {
    path: String,
    bytes: Vec<u8>,
    android: bool,
    zip_data_offset: Option<u64>,
}

fn found(member: Member) -> Found {
    let data = &member.data;
    let len = data.len().unwrap();
    let bytes = data.read_bytes_at(0, len).expect("a small member is kept whole").to_vec();
    Found { path: member.path, bytes, android: member.android, zip_data_offset: member.zip_data_offset }
}

/// Scans `dir/name` as the kind its first bytes say; member paths are given relative to `dir`.
fn scan_file(dir: &Path, name: &str) -> Result<Vec<Found>, ArchiveError> {
    let path = dir.join(name);
    let prefix = std::fs::read(&path).unwrap();
    let kind = detect(&prefix[..prefix.len().min(512)]).unwrap_or_else(|| panic!("{name} is not recognised"));
    scan_as(dir, name, kind)
}

fn scan_as(dir: &Path, name: &str, kind: ArchiveKind) -> Result<Vec<Found>, ArchiveError> {
    let mut members = Vec::new();
    scan(&dir.join(name), kind, Hashing::Off, &mut |member| members.push(found(member)))?;
    Ok(relative(dir, members))
}

fn relative(dir: &Path, mut members: Vec<Found>) -> Vec<Found> {
    let prefix = format!("{}/", dir.display());
    for member in &mut members {
        member.path = member.path.strip_prefix(&prefix).expect("paths start with the archive's path").to_string();
    }
    members
}

fn paths(members: &[Found]) -> Vec<&str> {
    members.iter().map(|m| m.path.as_str()).collect()
}

fn zip_options(stored: bool) -> zip::write::SimpleFileOptions {
    let method = if stored { zip::CompressionMethod::Stored } else { zip::CompressionMethod::Deflated };
    zip::write::SimpleFileOptions::default().compression_method(method)
}

/// A zip of `(name, stored, bytes)` entries, in order.
fn zip_bytes(entries: &[(&str, bool, &[u8])]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, stored, bytes) in entries {
        zip.start_file(*name, zip_options(*stored)).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

/// Where the data of the entry whose local header is at `header` starts,
/// read from the header's own length fields (not through the zip crate).
fn local_data_offset(zip: &[u8], header: usize) -> u64 {
    assert_eq!(&zip[header..header + 4], b"PK\x03\x04");
    let u16_at = |at: usize| u64::from(u16::from_le_bytes([zip[at], zip[at + 1]]));
    header as u64 + 30 + u16_at(header + 26) + u16_at(header + 28)
}

/// A tar of `(name, bytes)` regular files, with a directory and a symlink to the first file.
fn tar_bytes(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_size(0);
    dir.set_mode(0o755);
    builder.append_data(&mut dir, "./usr/", std::io::empty()).unwrap();
    for (name, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o755);
        builder.append_data(&mut header, name, *bytes).unwrap();
    }
    let mut link = tar::Header::new_gnu();
    link.set_entry_type(tar::EntryType::Symlink);
    link.set_size(0);
    builder.append_link(&mut link, "./usr/lib/link.so", files[0].0).unwrap();
    builder.into_inner().unwrap()
}

fn compress(compression: Compression, bytes: &[u8]) -> Vec<u8> {
    match compression {
        Compression::None => bytes.to_vec(),
        Compression::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(bytes).unwrap();
            encoder.finish().unwrap()
        }
        Compression::Xz => {
            let mut encoder = liblzma::write::XzEncoder::new(Vec::new(), 6);
            encoder.write_all(bytes).unwrap();
            encoder.finish().unwrap()
        }
        Compression::Zstd => zstd::encode_all(bytes, 3).unwrap(),
        Compression::Bzip2 => {
            let mut encoder = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
            encoder.write_all(bytes).unwrap();
            encoder.finish().unwrap()
        }
    }
}

#[test]
fn zip_members_stored_and_deflated_with_the_data_offset_of_stored_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (stored, deflated) = (elf(EM_X86_64, "stored"), elf(EM_X86_64, "deflated"));
    let bytes = zip_bytes(&[
        ("lib/stored.so", true, &stored),
        ("README", false, b"not an ELF file"),
        ("lib/deflated.so", false, &deflated),
        ("lib/short.so", true, b"\x7fEL"),
    ]);
    std::fs::write(dir.path().join("app.zip"), &bytes).unwrap();
    let members = scan_file(dir.path(), "app.zip").unwrap();
    assert_eq!(paths(&members), ["app.zip!/lib/stored.so", "app.zip!/lib/deflated.so"]);
    assert_eq!((members[0].bytes.as_slice(), members[1].bytes.as_slice()), (stored.as_slice(), deflated.as_slice()));
    assert!(members.iter().all(|m| !m.android), "a .zip without AndroidManifest.xml is not an Android package");
    // The first entry's local header is at 0; its data is the ELF file, in place.
    let offset = local_data_offset(&bytes, 0);
    assert_eq!(members[0].zip_data_offset, Some(offset));
    assert_eq!(&bytes[offset as usize..offset as usize + stored.len()], stored.as_slice());
    assert_eq!(members[1].zip_data_offset, None, "a deflated entry has no data offset");
}

#[test]
fn android_packages_by_name_or_by_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let lib = elf(EM_AARCH64, "lib");
    std::fs::write(dir.path().join("app.apk"), zip_bytes(&[("lib/arm64-v8a/libx.so", false, &lib)])).unwrap();
    std::fs::write(
        dir.path().join("app-release.zip"),
        zip_bytes(&[("AndroidManifest.xml", false, b"<manifest/>"), ("lib/arm64-v8a/libx.so", true, &lib)]),
    )
    .unwrap();
    let by_name = scan_file(dir.path(), "app.apk").unwrap();
    assert_eq!(paths(&by_name), ["app.apk!/lib/arm64-v8a/libx.so"]);
    assert!(by_name[0].android);
    let by_manifest = scan_file(dir.path(), "app-release.zip").unwrap();
    assert_eq!(paths(&by_manifest), ["app-release.zip!/lib/arm64-v8a/libx.so"]);
    assert!(by_manifest[0].android);
    assert!(by_manifest[0].zip_data_offset.is_some());
}

#[test]
fn tars_plain_and_compressed_every_way() {
    let dir = tempfile::tempdir().unwrap();
    let (lib, tool) = (elf(EM_X86_64, "lib"), elf(EM_AARCH64, "tool"));
    let tar = tar_bytes(&[("./usr/lib/libx.so", &lib), ("usr/share/doc/README", b"text"), ("usr/bin/tool", &tool)]);
    for (name, compression) in [
        ("t.tar", Compression::None),
        ("t.tar.gz", Compression::Gzip),
        ("t.tar.xz", Compression::Xz),
        ("t.tar.zst", Compression::Zstd),
        ("t.tar.bz2", Compression::Bzip2),
    ] {
        std::fs::write(dir.path().join(name), compress(compression, &tar)).unwrap();
        let bytes = std::fs::read(dir.path().join(name)).unwrap();
        assert_eq!(detect(&bytes[..bytes.len().min(512)]), Some(ArchiveKind::Tar(compression)), "{name}");
        let members = scan_file(dir.path(), name).unwrap();
        // The symlink to the library and the text file are not members.
        assert_eq!(paths(&members), [format!("{name}!/usr/lib/libx.so"), format!("{name}!/usr/bin/tool")], "{name}");
        assert_eq!((&members[0].bytes, &members[1].bytes), (&lib, &tool), "{name}");
        assert!(members.iter().all(|m| !m.android && m.zip_data_offset.is_none()), "{name}");
    }
}

/// An ar archive (a .deb) of `(name, bytes)` members.
fn ar_bytes(members: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut builder = ar::Builder::new(Vec::new());
    for (name, bytes) in members {
        let header = ar::Header::new(name.as_bytes().to_vec(), bytes.len() as u64);
        builder.append(&header, bytes.as_slice()).unwrap();
    }
    builder.into_inner().unwrap()
}

#[test]
fn debian_packages_are_read_from_their_data_tar_only() {
    let dir = tempfile::tempdir().unwrap();
    let (tool, hook) = (elf(EM_X86_64, "tool"), elf(EM_X86_64, "maintainer script"));
    let control = compress(Compression::Gzip, &tar_bytes(&[("./postinst", &hook)]));
    let data = compress(Compression::Xz, &tar_bytes(&[("./usr/bin/tool", &tool)]));
    let deb = ar_bytes(&[("debian-binary", b"2.0\n".to_vec()), ("control.tar.gz", control.clone()), ("data.tar.xz", data)]);
    std::fs::write(dir.path().join("pkg.deb"), deb).unwrap();
    let members = scan_file(dir.path(), "pkg.deb").unwrap();
    assert_eq!(paths(&members), ["pkg.deb!/usr/bin/tool"]);
    assert_eq!(members[0].bytes, tool);
    assert!(!members[0].android && members[0].zip_data_offset.is_none());

    let no_data = ar_bytes(&[("debian-binary", b"2.0\n".to_vec()), ("control.tar.gz", control)]);
    std::fs::write(dir.path().join("empty.deb"), no_data).unwrap();
    let error = scan_file(dir.path(), "empty.deb").err().unwrap();
    assert!(matches!(error, ArchiveError::DebWithoutData), "{error:?}");
    assert_eq!(error.to_string(), "a .deb without data.tar");
}

/// The two layers of the test image: the upper one deletes `b.so`, replaces
/// `c.so` and makes `opt/d` opaque.
fn layers() -> (Vec<u8>, Vec<u8>) {
    let lower = tar_bytes(&[
        ("usr/lib/a.so", &elf(EM_X86_64, "a")),
        ("usr/lib/b.so", &elf(EM_X86_64, "b")),
        ("usr/lib/c.so", &elf(EM_X86_64, "c lower")),
        ("opt/d/e.so", &elf(EM_X86_64, "e")),
    ]);
    let upper = tar_bytes(&[("usr/lib/c.so", &elf(EM_X86_64, "c upper")), ("usr/lib/.wh.b.so", b""), ("opt/d/.wh..wh..opq", b"")]);
    (compress(Compression::Gzip, &lower), upper)
}

/// An OCI layout's files, relative to its root. The digests only name the
/// blobs (their hashes are not checked when reading).
fn oci_layout_files() -> Vec<(String, Vec<u8>)> {
    let (lower, upper) = layers();
    let (lower_digest, upper_digest, manifest_digest) = ("sha256:1111", "sha256:2222", "sha256:3333");
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "layers": [
            { "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": lower_digest, "size": lower.len() },
            { "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": upper_digest, "size": upper.len() },
        ],
    });
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{ "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest }],
    });
    vec![
        ("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
        ("index.json".into(), index.to_string().into_bytes()),
        ("blobs/sha256/3333".into(), manifest.to_string().into_bytes()),
        ("blobs/sha256/1111".into(), lower),
        ("blobs/sha256/2222".into(), upper),
    ]
}

fn write_tree(root: &Path, files: &[(String, Vec<u8>)]) {
    for (name, bytes) in files {
        let path = root.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

/// What the image's final filesystem holds: the upper layer's files first.
fn assert_final_filesystem(members: &[Found], prefix: &str) {
    let expected: Vec<String> = ["usr/lib/c.so", "usr/lib/a.so"].iter().map(|p| format!("{prefix}!/{p}")).collect();
    assert_eq!(paths(members), expected);
    assert!(members[0].bytes.ends_with(b"c upper"));
    assert!(members.iter().all(|m| !m.android && m.zip_data_offset.is_none()));
}

#[test]
fn an_oci_layout_directory_is_its_final_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    write_tree(&layout, &oci_layout_files());
    assert!(image::is_oci_layout(&layout) && !image::is_oci_layout(dir.path()));
    let mut members = Vec::new();
    image::scan(&Container::Directory(layout.clone()), &layout.display().to_string(), Hashing::Off, &mut |m| members.push(found(m)))
        .unwrap();
    assert_final_filesystem(&relative(dir.path(), members), "layout");
}

/// A tar of an image's files (a `docker save` output, or an OCI layout).
fn image_tar(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        builder.append_data(&mut header, name, bytes.as_slice()).unwrap();
    }
    builder.into_inner().unwrap()
}

#[test]
fn images_in_tars_plain_or_compressed_oci_or_docker_save() {
    let dir = tempfile::tempdir().unwrap();
    let oci = image_tar(&oci_layout_files());
    std::fs::write(dir.path().join("oci.tar"), &oci).unwrap();
    assert_final_filesystem(&scan_file(dir.path(), "oci.tar").unwrap(), "oci.tar");
    std::fs::write(dir.path().join("oci.tar.zst"), compress(Compression::Zstd, &oci)).unwrap();
    assert_final_filesystem(&scan_file(dir.path(), "oci.tar.zst").unwrap(), "oci.tar.zst");

    let (lower, upper) = layers();
    let manifest = r#"[{"Config":"config.json","RepoTags":["pagefit/test:1"],"Layers":["aaa/layer.tar","bbb/layer.tar"]}]"#;
    let saved = image_tar(&[
        ("manifest.json".into(), manifest.as_bytes().to_vec()),
        ("config.json".into(), b"{}".to_vec()),
        ("aaa/layer.tar".into(), lower),
        ("bbb/layer.tar".into(), upper),
    ]);
    std::fs::write(dir.path().join("saved.tar.gz"), compress(Compression::Gzip, &saved)).unwrap();
    assert_final_filesystem(&scan_file(dir.path(), "saved.tar.gz").unwrap(), "saved.tar.gz");
}

#[test]
fn image_metadata_errors_name_the_file_and_digests_cannot_leave_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = oci_layout_files();
    files[1].1 = br#"{"manifests":[{"digest":"sha256:../../../etc/passwd"}]}"#.to_vec();
    write_tree(&dir.path().join("bad"), &files);
    let scan_layout =
        |name: &str| image::scan(&Container::Directory(dir.path().join(name)), name, Hashing::Off, &mut |_| {}).err().unwrap();
    let error = scan_layout("bad");
    assert!(matches!(error, ArchiveError::Metadata { .. }), "{error:?}");
    assert_eq!(error.to_string(), r#"index.json: bad digest "sha256:../../../etc/passwd""#);

    files[1].1 = br#"{"manifests":[{"digest":"sha256:4444"}]}"#.to_vec();
    write_tree(&dir.path().join("missing"), &files);
    let error = scan_layout("missing");
    assert!(matches!(&error, ArchiveError::Member { path, .. } if path == "blobs/sha256/4444"), "{error:?}");

    files[1].1 = b"{ not json".to_vec();
    write_tree(&dir.path().join("garbled"), &files);
    assert!(scan_layout("garbled").to_string().starts_with("index.json: not valid JSON: "));
}

#[test]
fn a_truncated_zip_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = zip_bytes(&[("lib/a.so", true, &elf(EM_X86_64, "a")), ("lib/b.so", false, &elf(EM_X86_64, "b"))]);
    std::fs::write(dir.path().join("cut.apk"), &bytes[..bytes.len() / 2]).unwrap();
    let error = scan_file(dir.path(), "cut.apk").err().unwrap();
    assert!(matches!(error, ArchiveError::NotZip(_)), "{error:?}");
    assert!(error.to_string().starts_with("not a readable zip: "), "{error}");
}

#[test]
fn a_file_that_is_no_archive_is_recognised_as_none_and_an_error_when_read_as_one() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "just some text, long enough to be read as a header\n".repeat(20)).unwrap();
    assert_eq!(detect(&std::fs::read(dir.path().join("notes.txt")).unwrap()), None);
    let message = |kind| scan_as(dir.path(), "notes.txt", kind).err().unwrap().to_string();
    assert!(message(ArchiveKind::Zip).starts_with("not a readable zip: "));
    assert!(message(ArchiveKind::Deb).starts_with("not a readable .deb (ar archive): "));
    assert!(message(ArchiveKind::Tar(Compression::None)).starts_with("tar: "), "{}", message(ArchiveKind::Tar(Compression::None)));
    assert!(message(ArchiveKind::Tar(Compression::Xz)).starts_with("tar: "), "{}", message(ArchiveKind::Tar(Compression::Xz)));
    let missing = scan_as(dir.path(), "missing.zip", ArchiveKind::Zip).err().unwrap();
    assert!(matches!(&missing, ArchiveError::Open(e) if e.kind() == std::io::ErrorKind::NotFound), "{missing:?}");
    assert!(missing.to_string().starts_with("cannot read: "));
}

#[test]
fn a_tar_member_claiming_a_terabyte_costs_no_more_memory_than_the_caps() {
    let dir = tempfile::tempdir().unwrap();
    // A GNU header whose size field (base-256) claims 1 TiB, then a 64-byte ELF file and the end.
    let lib = elf(EM_X86_64, "");
    let mut header = tar::Header::new_gnu();
    header.set_path("usr/lib/huge.so").unwrap();
    header.set_size(1 << 40);
    header.set_mode(0o755);
    header.set_cksum();
    let mut bytes = header.as_bytes().to_vec();
    bytes.extend_from_slice(&lib);
    bytes.resize(bytes.len() + 512 - lib.len() + 1024, 0);
    std::fs::write(dir.path().join("huge.tar"), &bytes).unwrap();
    std::fs::write(dir.path().join("huge.tar.gz"), compress(Compression::Gzip, &bytes)).unwrap();
    for name in ["huge.tar", "huge.tar.gz"] {
        LARGEST_ALLOCATION.with(|largest| largest.set(0));
        let result = scan_file(dir.path(), name);
        let largest = LARGEST_ALLOCATION.with(Cell::get);
        assert!(largest < 17 << 20, "{name}: an allocation of {largest} bytes");
        // What follows the header: the file's 512-byte block and the two ending blocks.
        let error = result.err().unwrap();
        assert!(matches!(&error, ArchiveError::Member { error, .. } if error.kind() == std::io::ErrorKind::UnexpectedEof), "{error:?}");
        assert_eq!(
            error.to_string(),
            format!("{}!/usr/lib/huge.so: truncated: the data ends after 1536 of its 1099511627776 bytes", dir.path().join(name).display())
        );
    }
}

#[cfg(feature = "fat")]
#[test]
fn fatelf_records_are_members_named_by_record_and_machine() {
    use pagefit_core::fat::{FatLayout, Target};

    let dir = tempfile::tempdir().unwrap();
    let (x86, arm) = (elf(EM_X86_64, "x86"), elf(EM_AARCH64, "arm"));
    let targets = [(Target::of_elf(&x86).unwrap(), x86.len() as u64), (Target::of_elf(&arm).unwrap(), arm.len() as u64)];
    let layout = FatLayout::plan(&targets, 4096, false).unwrap();
    let mut bytes = Vec::new();
    layout.write(&mut bytes, &[&x86, &arm], b"").unwrap();
    std::fs::write(dir.path().join("app.fat"), &bytes).unwrap();
    assert_eq!(detect(&bytes), Some(ArchiveKind::Fat));
    let members = scan_file(dir.path(), "app.fat").unwrap();
    assert_eq!(paths(&members), ["app.fat!record0 (x86_64)", "app.fat!record1 (aarch64)"]);
    assert_eq!((&members[0].bytes, &members[1].bytes), (&x86, &arm));

    // A record whose ELF header disagrees with it: the error gives the offset.
    let record1 = layout.records[1].offset as usize;
    bytes[record1 + 18] = EM_X86_64 as u8;
    std::fs::write(dir.path().join("bad.fat"), &bytes).unwrap();
    let error = scan_file(dir.path(), "bad.fat").err().unwrap();
    assert!(matches!(error, ArchiveError::Fat(_)), "{error:?}");
    assert!(error.to_string().contains("offset"), "{error}");
}

#[cfg(not(feature = "fat"))]
#[test]
fn without_the_fat_feature_a_fatelf_file_is_recognised_and_an_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.fat"), [0xfa, 0x70, 0x0e, 0x1f, 1, 0, 1, 0]).unwrap();
    let error = scan_file(dir.path(), "app.fat").err().unwrap();
    assert!(matches!(error, ArchiveError::FatUnsupported), "{error:?}");
}

/// A tar of `(name, bytes)` regular files only, so that header offsets are
/// easy to tell: 512 bytes of header, then the data in 512-byte blocks.
fn plain_tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let files: Vec<(String, Vec<u8>)> = files.iter().map(|(name, bytes)| (name.to_string(), bytes.to_vec())).collect();
    image_tar(&files)
}

/// Where the local header of the zip entry `name` starts, as the zip crate reads it.
fn zip_header_offset(zip: &[u8], name: &str) -> u64 {
    zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap().by_name(name).unwrap().header_start()
}

#[test]
fn an_npm_tarball_holding_android_packages_gives_their_members_as_androids() {
    let dir = tempfile::tempdir().unwrap();
    let (aar_lib, split_lib, tool, host, linux) =
        (elf(EM_AARCH64, "aar"), elf(EM_AARCH64, "split"), elf(EM_AARCH64, "tool"), elf(EM_X86_64, "host"), elf(EM_X86_64, "linux"));
    let aar =
        zip_bytes(&[("classes.jar", false, &zip_bytes(&[("a.class", false, b"\xca\xfe")])), ("jni/arm64-v8a/libx.so", true, &aar_lib)]);
    let split = zip_bytes(&[("lib/arm64-v8a/liby.so", true, &split_lib)]);
    let apks = zip_bytes(&[("toc.pb", false, b"toc"), ("splits/base-arm64_v8a.apk", false, &split)]);
    // Android's by its manifest: so is the tar inside it.
    let tools = compress(Compression::Xz, &plain_tar(&[("bin/tool", &tool)]));
    let manifested = zip_bytes(&[("AndroidManifest.xml", false, b"<manifest/>"), ("assets/tools.tar.xz", true, &tools)]);
    let plain = zip_bytes(&[("bin/host", true, &host)]);
    let package = plain_tar(&[
        ("package/android/x.aar", &aar),
        ("package/bundle.apks", &apks),
        ("package/app.zip", &manifested),
        ("package/host.zip", &plain),
        ("package/linux/tool", &linux),
    ]);
    std::fs::write(dir.path().join("pkg.tgz"), compress(Compression::Gzip, &package)).unwrap();
    let members = scan_file(dir.path(), "pkg.tgz").unwrap();
    assert_eq!(
        paths(&members),
        [
            "pkg.tgz!/package/android/x.aar!/jni/arm64-v8a/libx.so",
            "pkg.tgz!/package/bundle.apks!/splits/base-arm64_v8a.apk!/lib/arm64-v8a/liby.so",
            "pkg.tgz!/package/app.zip!/assets/tools.tar.xz!/bin/tool",
            "pkg.tgz!/package/host.zip!/bin/host",
            "pkg.tgz!/package/linux/tool",
        ]
    );
    let bytes: Vec<&[u8]> = members.iter().map(|m| m.bytes.as_slice()).collect();
    assert_eq!(bytes, [&aar_lib[..], &split_lib, &tool, &host, &linux]);
    let android: Vec<bool> = members.iter().map(|m| m.android).collect();
    assert_eq!(android, [true, true, true, false, false]);
    // The data offset is within the zip that directly holds the member; a tar's member has none.
    let offsets: Vec<Option<u64>> = members.iter().map(|m| m.zip_data_offset).collect();
    let in_aar = local_data_offset(&aar, zip_header_offset(&aar, "jni/arm64-v8a/libx.so") as usize);
    assert_eq!(offsets, [Some(in_aar), Some(local_data_offset(&split, 0)), None, Some(local_data_offset(&plain, 0)), None]);
}

#[test]
fn tars_and_debian_packages_inside_zips_and_tars() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (elf(EM_X86_64, "a"), elf(EM_X86_64, "b"), elf(EM_X86_64, "c"));
    let rootfs = compress(Compression::Zstd, &tar_bytes(&[("./usr/bin/a", &a)]));
    let data = compress(Compression::Gzip, &tar_bytes(&[("./usr/bin/b", &b)]));
    let deb = ar_bytes(&[("debian-binary", b"2.0\n".to_vec()), ("data.tar.gz", data)]);
    let inner = compress(Compression::Bzip2, &plain_tar(&[("opt/c", &c)]));
    let release = zip_bytes(&[("rootfs.tar.zst", false, &rootfs), ("pool/p.deb", true, &deb)]);
    let outer = plain_tar(&[("release.zip", &release), ("inner.tbz2", &inner)]);
    std::fs::write(dir.path().join("outer.tar"), outer).unwrap();
    let members = scan_file(dir.path(), "outer.tar").unwrap();
    assert_eq!(
        paths(&members),
        [
            "outer.tar!/release.zip!/rootfs.tar.zst!/usr/bin/a",
            "outer.tar!/release.zip!/pool/p.deb!/usr/bin/b",
            "outer.tar!/inner.tbz2!/opt/c"
        ]
    );
    assert_eq!((&members[0].bytes, &members[1].bytes, &members[2].bytes), (&a, &b, &c));
    assert!(members.iter().all(|m| !m.android && m.zip_data_offset.is_none()));
}

#[test]
fn an_archive_nested_past_the_limit_is_an_error_naming_it_after_the_rest_is_visited() {
    let dir = tempfile::tempdir().unwrap();
    let (top, deepest, level3, after) = (elf(EM_X86_64, "top"), elf(EM_X86_64, "deepest"), elf(EM_X86_64, "l3"), elf(EM_X86_64, "after"));
    let level5 = zip_bytes(&[("lib/never.so", true, &elf(EM_X86_64, "never"))]);
    // Level 4 holds level 5 as a tar (a tar header's offset) or as a zip (a local header's).
    let as_tar = plain_tar(&[("usr/lib/deepest.so", &deepest), ("l5.zip", &level5)]);
    let as_zip = zip_bytes(&[("usr/lib/deepest.so", false, &deepest), ("l5.zip", true, &level5)]);
    for (level4_name, level4, header) in [
        ("l4.tar", &as_tar, "tar header at offset 0x400"),
        ("l4.zip", &as_zip, &*format!("zip local header at offset {:#x}", zip_header_offset(&as_zip, "l5.zip"))),
    ] {
        let level3_zip = zip_bytes(&[(level4_name, false, level4), ("lib/l3.so", false, &level3)]);
        let level2 = compress(Compression::Gzip, &plain_tar(&[("l3.zip", &level3_zip)]));
        let level1 = zip_bytes(&[("l2.tar.gz", true, &level2)]);
        let outer = zip_bytes(&[("lib/top.so", true, &top), ("l1.jar", false, &level1), ("after.so", false, &after)]);
        std::fs::write(dir.path().join("outer.zip"), outer).unwrap();
        let mut visited = Vec::new();
        let error =
            scan(&dir.path().join("outer.zip"), ArchiveKind::Zip, Hashing::Off, &mut |member| visited.push(found(member))).unwrap_err();
        let chain = format!("outer.zip!/l1.jar!/l2.tar.gz!/l3.zip!/{level4_name}");
        assert_eq!(
            paths(&relative(dir.path(), visited)),
            [
                "outer.zip!/lib/top.so".to_string(),
                format!("{chain}!/usr/lib/deepest.so"),
                "outer.zip!/l1.jar!/l2.tar.gz!/l3.zip!/lib/l3.so".to_string(),
                "outer.zip!/after.so".to_string()
            ]
        );
        assert!(matches!(error, ArchiveError::TooDeep { limit: 4, .. }), "{error:?}");
        let message = error.to_string().replace(&format!("{}/", dir.path().display()), "");
        assert_eq!(message, format!("{chain}!/l5.zip: an archive nested deeper than 4 levels ({header}); not opened"));
    }
}

#[test]
fn a_nested_archive_that_cannot_be_read_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut broken = b"PK\x03\x04".to_vec();
    broken.resize(300, 0);
    let package = plain_tar(&[("package/bin/tool", &elf(EM_X86_64, "tool")), ("package/android/x.aar", &broken)]);
    std::fs::write(dir.path().join("pkg.tgz"), compress(Compression::Gzip, &package)).unwrap();
    let error = scan_file(dir.path(), "pkg.tgz").err().unwrap();
    assert!(matches!(&error, ArchiveError::Nested { error, .. } if matches!(**error, ArchiveError::NotZip(_))), "{error:?}");
    let message = error.to_string().replace(&format!("{}/", dir.path().display()), "");
    assert!(message.starts_with("pkg.tgz!/package/android/x.aar: not a readable zip: "), "{message}");
}

#[test]
fn a_nested_zip_claiming_more_than_memory_allows_costs_no_more_than_the_caps() {
    let dir = tempfile::tempdir().unwrap();
    // Tar headers that claim a nested zip of 100 MiB (over what is read into
    // memory: copied into a temporary file, as far as the data goes) and of
    // 1 TiB (over every budget: refused unread).
    for (claim, name) in [(100u64 << 20, "mid.tar"), (1 << 40, "huge.tar")] {
        let mut header = tar::Header::new_gnu();
        header.set_path("assets/big.zip").unwrap();
        header.set_size(claim);
        header.set_mode(0o644);
        header.set_cksum();
        let mut bytes = header.as_bytes().to_vec();
        bytes.extend_from_slice(b"PK\x03\x04");
        bytes.resize(bytes.len() + 512 - 4 + 1024, 0);
        std::fs::write(dir.path().join(name), &bytes).unwrap();
        LARGEST_ALLOCATION.with(|largest| largest.set(0));
        let error = scan_file(dir.path(), name).err().unwrap();
        let largest = LARGEST_ALLOCATION.with(Cell::get);
        assert!(largest < 1 << 20, "{name}: an allocation of {largest} bytes");
        let message = error.to_string().replace(&format!("{}/", dir.path().display()), "");
        assert!(message.starts_with(&format!("{name}!/assets/big.zip: ")), "{message}");
        let why = if claim == 1 << 40 {
            "a nested zip of 1099511627776 bytes, over the 2048 MiB left of the 2048 MiB a chain of nested zips may take"
        } else {
            "truncated: the data ends after 1536 of its 104857600 bytes"
        };
        assert_eq!(message, format!("{name}!/assets/big.zip: {why}"));
    }
}
