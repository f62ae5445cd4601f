//! The kernel download survives a mirror whose index lists a version it does
//! not serve: a fake `apt-get`, first in PATH, fails the newest one's download.
//! One test in this binary, because it changes the process's PATH.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use xtask::setup::fetch_first;

/// Answers `apt-get download NAME:ARCH` with a small .deb holding
/// boot/vmlinuz-NAME, except for the names listed in `$FAKE_APT_404`, which
/// fail the way the mirror did.
const FAKE_APT_GET: &str = r#"#!/bin/sh
[ "$1" = download ] || exit 99
name=${2%%:*}
for missing in $FAKE_APT_404; do
  if [ "$name" = "$missing" ]; then
    echo "Err:1 http://mirror.invalid/debian trixie/main ppc64el $name ppc64el 1" >&2
    echo "E: Failed to fetch http://mirror.invalid/debian/pool/main/l/$name.deb  404  Not Found [IP: 192.0.2.1 80]" >&2
    exit 100
  fi
done
root=$(mktemp -d)
mkdir -p "$root/DEBIAN" "$root/boot"
printf 'Package: %s\nVersion: 1\nArchitecture: all\nMaintainer: test <t@t>\nDescription: test\n' "$name" > "$root/DEBIAN/control"
echo "$name" > "$root/boot/vmlinuz-$name"
dpkg-deb --build "$root" "./${name}_1_all.deb" >/dev/null
rm -rf "$root"
"#;

const NEWEST: &str = "linux-image-6.12.117+deb13-powerpc64le";
const NEXT: &str = "linux-image-6.12.107+deb13-powerpc64le";

fn install_fake_apt_get(bin: &Path) {
    fs_err::create_dir_all(bin).unwrap();
    let script = bin.join("apt-get");
    fs_err::write(&script, FAKE_APT_GET).unwrap();
    fs_err::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = std::env::var("PATH").unwrap_or_default();
    std::env::set_var("PATH", format!("{}:{path}", bin.display()));
}

#[test]
fn the_newest_kernel_that_downloads_is_taken_and_failures_are_named() {
    let scratch = tempfile::tempdir().unwrap();
    install_fake_apt_get(&scratch.path().join("bin"));
    let candidates = [NEWEST.to_string(), NEXT.to_string()];

    std::env::set_var("FAKE_APT_404", NEWEST);
    let dir = scratch.path().join("kernel-64k");
    let taken = fetch_first(&candidates, "ppc64el", &dir).expect("the second candidate downloads");
    assert_eq!(taken, NEXT);
    assert!(dir.join(format!("boot/vmlinuz-{NEXT}")).is_file(), "the fallback's kernel is unpacked");

    std::env::set_var("FAKE_APT_404", format!("{NEWEST} {NEXT}"));
    let dir = scratch.path().join("kernel-none");
    let error = format!("{:#}", fetch_first(&candidates, "ppc64el", &dir).unwrap_err());
    assert_eq!(error.lines().count(), 1, "one line: {error}");
    assert!(error.contains(NEWEST) && error.contains(NEXT), "names both packages: {error}");
    assert!(error.contains("404  Not Found"), "says why: {error}");
    assert!(!dir.exists(), "nothing is left as if it had downloaded");
}
