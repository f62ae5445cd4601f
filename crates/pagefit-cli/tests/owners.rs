//! `pagefit check --owners DIR...`: the dependency that ships each library,
//! found by content in a Gradle cache, a Maven repository, node_modules and
//! a pub cache laid out here as their tools lay them out.

mod common;

use std::io::Write;
use std::path::Path;

use common::{fixtures, pagefit};
use serde_json::Value;

/// A 4K library (rejected at 16K), another and a third, all distinct, and a 16K one.
struct Libraries {
    core: Vec<u8>,
    sqlite: Vec<u8>,
    mystery: Vec<u8>,
    widget: Vec<u8>,
}

fn libraries() -> Libraries {
    let read = |path: &str| std::fs::read(fixtures().join(path)).unwrap();
    Libraries {
        core: read("aarch64/liblib-4k.so"),
        sqlite: read("android/libjni-arm64-v8a-4k.so"),
        mystery: read("aarch64/liblib-seed000.so"),
        widget: read("android/libjni-arm64-v8a-16k.so"),
    }
}

fn write_zip(path: &Path, members: &[(&str, &[u8])]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    for (name, bytes) in members {
        zip.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
}

fn write_file(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// A home directory with every owner layout, and `app.apk` built from their libraries.
fn home(dir: &Path, libs: &Libraries) {
    let gradle = dir.join(".gradle/caches");
    write_zip(
        &gradle.join("modules-2/files-2.1/com.example/native-core/1.2.0/0a1b2c/native-core-1.2.0.aar"),
        &[("jni/arm64-v8a/libcore.so", &libs.core)],
    );
    // Gradle's extraction of that AAR (named by the module cache instead) and of one found nowhere else.
    write_file(&gradle.join("transforms-3/ab12/transformed/jetified-native-core-1.2.0/jni/arm64-v8a/libcore.so"), &libs.core);
    write_file(&gradle.join("transforms-3/cd34/transformed/widget-2.0.0/jni/arm64-v8a/libwidget.so"), &libs.widget);
    // An npm package shipping the same AAR, and a loose library.
    let package = dir.join("node_modules/react-native-core");
    write_file(&package.join("package.json"), br#"{"name": "react-native-core", "version": "0.9.1"}"#);
    write_zip(&package.join("android/core-release.aar"), &[("jni/arm64-v8a/libcore.so", &libs.core)]);
    write_file(&package.join("android/jniLibs/arm64-v8a/libcore.so"), &libs.core);
    // A Maven repository inside it, as jsc-android ships one; its group from the metadata.
    let maven = package.join("dist/org/example/core-engine");
    write_file(&maven.join("maven-metadata.xml"), b"<metadata><groupId>org.example</groupId></metadata>");
    write_zip(&maven.join("r9/core-engine-r9.aar"), &[("jni/arm64-v8a/libcore.so", &libs.core)]);
    write_file(&dir.join(".pub-cache/hosted/pub.dev/sqlite_libs-0.5.0/android/arm64-v8a/libsqlite.so"), &libs.sqlite);

    write_zip(
        &dir.join("app.apk"),
        &[
            ("AndroidManifest.xml", b"<manifest/>"),
            ("lib/arm64-v8a/libcore.so", &libs.core),
            ("lib/arm64-v8a/libmystery.so", &libs.mystery),
            ("lib/arm64-v8a/libsqlite.so", &libs.sqlite),
            ("lib/arm64-v8a/libwidget.so", &libs.widget),
        ],
    );
}

const OWNER_DIRS: [&str; 3] = [".gradle", "node_modules", ".pub-cache"];

fn check(dir: &Path, options: &[&str]) -> std::process::Output {
    let mut args = vec!["check", "--page-size", "16k", "app.apk"];
    args.extend_from_slice(options);
    args.push("--owners");
    args.extend(OWNER_DIRS);
    pagefit(&args, dir)
}

#[test]
fn text_names_every_owner_of_the_same_content_after_the_path() {
    let dir = tempfile::tempdir().unwrap();
    home(dir.path(), &libraries());
    let output = check(dir.path(), &[]);
    assert_eq!(output.status.code(), Some(1), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let line = |member: &str| {
        let prefix = format!("app.apk!/lib/arm64-v8a/{member} (");
        stdout.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("{member}: {stdout}")).to_string()
    };
    assert!(
        line("libcore.so").starts_with(
            "app.apk!/lib/arm64-v8a/libcore.so (com.example:native-core 1.2.0; org.example:core-engine r9; npm react-native-core@0.9.1): dyn aarch64 bionic+play: 16K bionic rejected, 16K play rejected"
        ),
        "{stdout}"
    );
    assert!(
        line("libwidget.so").contains("(widget 2.0.0 (gradle transform)): dyn aarch64 bionic+play: 16K bionic ok, 16K play ok"),
        "{stdout}"
    );
    assert!(line("libsqlite.so").contains("(pub sqlite_libs 0.5.0): "), "{stdout}");
    assert!(line("libmystery.so").contains("(no owner found): "), "{stdout}");
}

#[test]
fn json_and_sarif_carry_the_owners_and_the_summary_ranks_the_failing_ones() {
    let dir = tempfile::tempdir().unwrap();
    home(dir.path(), &libraries());
    let output = check(dir.path(), &["--format", "json", "--summary"]);
    assert_eq!(output.status.code(), Some(1), "{}", String::from_utf8_lossy(&output.stderr));
    let document: Value = serde_json::from_slice(&output.stdout).unwrap();
    let owners = |member: &str| {
        let path = format!("app.apk!/lib/arm64-v8a/{member}");
        document["files"].as_array().unwrap().iter().find(|f| f["path"] == path).unwrap()["owners"].clone()
    };
    let core = owners("libcore.so");
    let described: Vec<(&str, &str, &str)> = core
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["kind"].as_str().unwrap(), o["name"].as_str().unwrap(), o["version"].as_str().unwrap()))
        .collect();
    assert_eq!(
        described,
        [("gradle", "com.example:native-core", "1.2.0"), ("maven", "org.example:core-engine", "r9"), ("npm", "react-native-core", "0.9.1")]
    );
    assert_eq!(
        core[0]["source"],
        ".gradle/caches/modules-2/files-2.1/com.example/native-core/1.2.0/0a1b2c/native-core-1.2.0.aar!/jni/arm64-v8a/libcore.so"
    );
    // The first of the package's two copies, in path order: the AAR.
    assert_eq!(core[2]["source"], "node_modules/react-native-core/android/core-release.aar!/jni/arm64-v8a/libcore.so");
    assert_eq!(owners("libwidget.so")[0]["kind"], "gradle-transform");
    assert_eq!(owners("libsqlite.so")[0]["kind"], "pub");
    assert_eq!(owners("libmystery.so"), serde_json::json!([]));

    // Failing libraries per owner, most first, then those nobody ships (on stderr beside JSON).
    let summary = String::from_utf8(output.stderr).unwrap();
    let ranked = summary.split_once("failing owners:\n").unwrap_or_else(|| panic!("{summary}")).1;
    assert_eq!(
        ranked,
        "  com.example:native-core 1.2.0: 1 failing library\n  npm react-native-core@0.9.1: 1 failing library\n  \
         org.example:core-engine r9: 1 failing library\n  pub sqlite_libs 0.5.0: 1 failing library\n  no owner found: 1 failing library\n"
    );

    let sarif = check(dir.path(), &["--format", "sarif"]);
    let log: Value = serde_json::from_slice(&sarif.stdout).unwrap();
    let results = log["runs"][0]["results"].as_array().unwrap();
    let sqlite = results.iter().find(|r| r["message"]["text"].as_str().unwrap().contains("libsqlite.so")).unwrap();
    assert_eq!(sqlite["properties"]["owners"][0]["name"], "sqlite_libs");
}

#[test]
fn files_on_disk_are_matched_by_content_whatever_their_name() {
    let dir = tempfile::tempdir().unwrap();
    let libs = libraries();
    home(dir.path(), &libs);
    write_file(&dir.path().join("build/librenamed.so"), &libs.sqlite);
    let output = pagefit(&["check", "--page-size", "16k", "build", "--owners", ".pub-cache"], dir.path());
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.starts_with("build/librenamed.so (pub sqlite_libs 0.5.0): "), "{stdout}");
}

#[test]
fn owners_appear_only_when_asked_and_a_missing_owner_directory_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    home(dir.path(), &libraries());
    let plain = pagefit(&["check", "--page-size", "16k", "--format", "json", "app.apk"], dir.path());
    let document: Value = serde_json::from_slice(&plain.stdout).unwrap();
    assert!(document["files"].as_array().unwrap().iter().all(|f| f.get("owners").is_none()));

    let missing = pagefit(&["check", "app.apk", "--owners", "no-such-dir"], dir.path());
    assert_eq!(missing.status.code(), Some(2));
    let stderr = String::from_utf8(missing.stderr).unwrap();
    assert!(stderr.contains("--owners no-such-dir: cannot read"), "{stderr}");
}

#[test]
fn an_unreadable_archive_in_an_owner_directory_is_named_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    home(dir.path(), &libraries());
    write_file(&dir.path().join("node_modules/react-native-core/android/broken.aar"), b"PK\x03\x04 truncated");
    let output = check(dir.path(), &[]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("warning: --owners: node_modules/react-native-core/android/broken.aar: "), "{stderr}");
    assert!(String::from_utf8(output.stdout).unwrap().contains("(com.example:native-core 1.2.0;"));
}
