#!/usr/bin/env bash
# fuzz/run.sh [RUNS] [TARGET...]: run each cargo-fuzz target for RUNS
# executions (default 1000000), seeded with the fixture corpus, the jemalloc
# programs and small real-world artifacts, and print executions, time and
# crashes per target. Needs the nightly toolchain and cargo-fuzz
# (`rustup toolchain install nightly`, `cargo install cargo-fuzz`), and the
# fixtures (`bash fixtures/build.sh target/fixtures`, which `cargo test`
# does). A crash leaves its input in fuzz/artifacts/TARGET/ and fails the run;
# with FUZZ_KEEP_GOING=1 the run goes on past crashes (libFuzzer's fork mode)
# and counts them. Run it under `nice -n 19` on a shared machine.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-1000000}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(elf fix archive closure fat_reader aps2)
seeds=target/fuzz-seeds
fixtures="${PAGEFIT_FIXTURES:-target/fixtures}"
[ -f "$fixtures/aarch64/MANIFEST" ] || bash fixtures/build.sh "$fixtures" >/dev/null

# Seeds: every fixture ELF file (small ones whole), for elf, fix and closure;
# small archives of every kind made from them, and real-world artifacts under
# 256 KB, for archive.
rm -rf "$seeds" && mkdir -p "$seeds"/{elf,fix,archive,closure,fat_reader,aps2}
# aps2: lld's packed tables, a selector byte (class, addends) before each.
cp fuzz/seeds/aps2/* "$seeds/aps2/"
find "$fixtures" target/jemalloc-fixtures -type f -size -1200k 2>/dev/null | while read -r f; do
  if [ "$(head -c 4 "$f" | od -An -c | tr -d ' ')" = '177ELF' ]; then
    cp "$f" "$seeds/elf/$(echo "$f" | tr / _)"
    cp "$f" "$seeds/fix/$(echo "$f" | tr / _)"
    { cat "$f"; printf '\377include /etc/ld.so.conf.d/*.conf\n/usr/lib\n\377/opt/lib:$ORIGIN/../lib'; } >"$seeds/closure/$(echo "$f" | tr / _)"
  fi
done
python3 - "$fixtures" "$seeds/archive" <<'PY'
import hashlib, io, json, os, sys, tarfile, zipfile
fixtures, out = sys.argv[1], sys.argv[2]
files = [os.path.join(fixtures, "aarch64", n) for n in ("liblib-4k.so", "c-pie-bfd-4k")]
def tar_bytes(entries, mode="w"):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as t:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
def zip_bytes(entries, method=zipfile.ZIP_DEFLATED):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as z:
        for name, data in entries: z.writestr(name, data)
    return buffer.getvalue()
def write(name, data):
    open(os.path.join(out, name), "wb").write(data)
libs = [("usr/lib/" + os.path.basename(f), open(f, "rb").read()) for f in files]
lib = libs[0][1]
write("seed.zip", zip_bytes([("lib/arm64-v8a/" + os.path.basename(n), d) for n, d in libs]))
for mode, ext in (("w", "tar"), ("w:gz", "tar.gz"), ("w:xz", "tar.xz"), ("w:bz2", "tar.bz2")):
    write("seed." + ext, tar_bytes(libs, mode))
# Small seeds for every other reader: nested zips, .deb, docker save, OCI layout.
apk = zip_bytes([("AndroidManifest.xml", b"<manifest/>"), ("lib/arm64-v8a/liblib.so", lib)], zipfile.ZIP_STORED)
write("seed.apks", zip_bytes([("splits/base.apk", apk), ("nested/level1.zip", zip_bytes([("level2.jar", apk)]))], zipfile.ZIP_STORED))
def ar(members):
    body = b"!<arch>\n"
    for name, data in members:
        body += b"%-16s%-12s%-6s%-6s%-8s%-10d`\n" % (name.encode(), b"0", b"0", b"0", b"100644", len(data)) + data + b"\n" * (len(data) % 2)
    return body
write("seed.deb", ar([("debian-binary", b"2.0\n"), ("control.tar.gz", tar_bytes([("control", b"Package: x\n")], "w:gz")), ("data.tar.xz", tar_bytes(libs, "w:xz"))]))
# Archives inside archives every way: an AAR, an .apks and a .deb in an npm-like tarball; a tarball and a .deb in a zip.
deb = ar([("debian-binary", b"2.0\n"), ("data.tar.gz", tar_bytes(libs, "w:gz"))])
write("seed-npm.tgz", tar_bytes([("package/android/x.aar", apk), ("package/x.apks", zip_bytes([("splits/base.apk", apk)], zipfile.ZIP_STORED)), ("package/pool/x.deb", deb)], "w:gz"))
write("seed-nested.zip", zip_bytes([("rootfs.tar.xz", tar_bytes(libs, "w:xz")), ("pool/x.deb", deb)], zipfile.ZIP_STORED))
lower, upper = tar_bytes(libs), tar_bytes([("usr/lib/.wh.liblib-4k.so", b""), ("usr/bin/app", lib)], "w:gz")
manifest = [{"Config": "config.json", "RepoTags": ["seed:1"], "Layers": ["lower/layer.tar", "upper/layer.tar"]}]
write("seed-docker.tar", tar_bytes([("manifest.json", json.dumps(manifest).encode()), ("config.json", b"{}"), ("lower/layer.tar", lower), ("upper/layer.tar", upper)]))
blob = lambda data: ("blobs/sha256/" + hashlib.sha256(data).hexdigest(), "sha256:" + hashlib.sha256(data).hexdigest())
(lower_path, lower_digest), (upper_path, upper_digest) = blob(lower), blob(upper)
image = json.dumps({"layers": [{"digest": lower_digest}, {"digest": upper_digest}]}).encode()
image_path, image_digest = blob(image)
index = {"manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": image_digest, "platform": {"os": "linux", "architecture": "arm64"}}]}
write("seed-oci.tar", tar_bytes([("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), ("index.json", json.dumps(index).encode()), (image_path, image), (lower_path, lower), (upper_path, upper)]))
PY
find ~/.cache/pagefit-realworld/downloads -type f -size -256k 2>/dev/null | head -20 | xargs -r -I{} cp {} "$seeds/archive/"
# FatELF files glued from fixtures: version 1 (three CPUs) and version 2 (page variants).
cargo build --release -q -p pagefit-cli
pagefit=${CARGO_TARGET_DIR:-target}/release/pagefit
"$pagefit" fat glue --align 1k -o "$seeds/fat_reader/v1.fat" "$fixtures"/{x86_64,aarch64,ppc64le}/c-pie-bfd-4k >/dev/null
"$pagefit" fat glue --align 1k --page-variants -o "$seeds/fat_reader/v2.fat" "$fixtures"/aarch64/c-pie-bfd-{4k,64k} >/dev/null

printf '%-12s %12s %10s %8s\n' target executions seconds crashes
failed=0
for target in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$target"
  log="target/fuzz-$target.log"
  start=$(date +%s)
  status=0
  # Inputs are kept to 256 KiB, which every fixture but the static jemalloc
  # programs fits; archives to 128 KiB, which every reader's small seed fits
  # (an archive's ELF members are the elf target's): decompressing mutated
  # streams is most of archive's time, and at 2 MB it ran at 220/s. FatELF
  # files hold whole programs.
  case "$target" in fat_reader) max_len=2100000 ;; aps2) max_len=4096 ;; archive) max_len=131072 ;; *) max_len=262144 ;; esac
  keep_going=()
  [ "${FUZZ_KEEP_GOING:-0}" = 1 ] && keep_going=(-fork=1 -ignore_crashes=1)
  # Without AddressSanitizer: pagefit's crates are safe Rust (the core is
  # `forbid(unsafe_code)`), and it made elf and fix three times slower,
  # archive 1.4 times.
  (cd fuzz && cargo +nightly fuzz run --release --sanitizer none --target-dir ../target/fuzz-nosan \
    "$target" "corpus/$target" "../$seeds/$target" -- \
    -runs="$runs" -rss_limit_mb=2048 -max_len="$max_len" -print_final_stats=1 "${keep_going[@]}") >"$log" 2>&1 || status=$?
  seconds=$(($(date +%s) - start))
  # Fork mode prints no final statistics, only `#N: cov: …` lines.
  executions=$(grep -o -e 'stat::number_of_executed_units: *[0-9]*' -e '^#[0-9]*:' "$log" | grep -o '[0-9][0-9]*' | tail -1)
  crashes=$(find "fuzz/artifacts/$target" -type f 2>/dev/null | wc -l)
  printf '%-12s %12s %10s %8s\n' "$target" "${executions:-?}" "$seconds" "$crashes"
  if [ "$status" -ne 0 ] || [ "$crashes" -ne 0 ]; then failed=1; tail -20 "$log"; fi
done
exit "$failed"
