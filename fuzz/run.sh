#!/usr/bin/env bash
# fuzz/run.sh [RUNS] [TARGET...]: run each cargo-fuzz target for RUNS
# executions (default 1000000), seeded with the fixture corpus, the jemalloc
# programs and small real-world artifacts, and print executions, time and
# crashes per target. Needs the nightly toolchain and cargo-fuzz
# (`rustup toolchain install nightly`, `cargo install cargo-fuzz`), and the
# fixtures (`bash fixtures/build.sh target/fixtures`, which `cargo test`
# does). A crash leaves its input in fuzz/artifacts/TARGET/ and fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-1000000}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(elf archive closure fat_reader)
seeds=target/fuzz-seeds
fixtures="${PAGEFIT_FIXTURES:-target/fixtures}"
[ -f "$fixtures/aarch64/MANIFEST" ] || bash fixtures/build.sh "$fixtures" >/dev/null

# Seeds: every fixture ELF file (small ones whole), for elf and closure;
# archives made from them, and real-world artifacts under 2 MB, for archive.
rm -rf "$seeds" && mkdir -p "$seeds"/{elf,archive,closure,fat_reader}
find "$fixtures" target/jemalloc-fixtures -type f -size -1200k 2>/dev/null | while read -r f; do
  if [ "$(head -c 4 "$f" | od -An -c | tr -d ' ')" = '177ELF' ]; then
    cp "$f" "$seeds/elf/$(echo "$f" | tr / _)"
    { cat "$f"; printf '\377include /etc/ld.so.conf.d/*.conf\n/usr/lib\n\377/opt/lib:$ORIGIN/../lib'; } >"$seeds/closure/$(echo "$f" | tr / _)"
  fi
done
python3 - "$fixtures" "$seeds/archive" <<'PY'
import io, os, sys, tarfile, zipfile
fixtures, out = sys.argv[1], sys.argv[2]
files = [os.path.join(fixtures, "aarch64", n) for n in ("liblib-4k.so", "c-pie-bfd-4k")]
with zipfile.ZipFile(os.path.join(out, "seed.zip"), "w", zipfile.ZIP_DEFLATED) as z:
    for f in files: z.write(f, "lib/arm64-v8a/" + os.path.basename(f))
for mode, ext in (("w", "tar"), ("w:gz", "tar.gz"), ("w:xz", "tar.xz")):
    with tarfile.open(os.path.join(out, "seed." + ext), mode) as t:
        for f in files: t.add(f, "usr/lib/" + os.path.basename(f))
PY
find ~/.cache/pagefit-realworld/downloads -type f -size -2000k 2>/dev/null | head -20 | xargs -r -I{} cp {} "$seeds/archive/"
find "$fixtures" -name '*.fat' -size -1200k -exec cp {} "$seeds/fat_reader/" \; 2>/dev/null || true

printf '%-12s %12s %10s %8s\n' target executions seconds crashes
failed=0
for target in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$target"
  log="target/fuzz-$target.log"
  start=$(date +%s)
  status=0
  # ELF inputs are kept to 256 KiB, which every fixture but the static
  # jemalloc programs fits; archives may be larger.
  case "$target" in elf | closure) max_len=262144 ;; *) max_len=2100000 ;; esac
  (cd fuzz && cargo +nightly fuzz run --release "$target" "corpus/$target" "../$seeds/$target" -- \
    -runs="$runs" -rss_limit_mb=2048 -max_len="$max_len" -print_final_stats=1) >"$log" 2>&1 || status=$?
  seconds=$(($(date +%s) - start))
  executions=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  crashes=$(find "fuzz/artifacts/$target" -type f 2>/dev/null | wc -l)
  printf '%-12s %12s %10s %8s\n' "$target" "${executions:-?}" "$seconds" "$crashes"
  if [ "$status" -ne 0 ] || [ "$crashes" -ne 0 ]; then failed=1; tail -20 "$log"; fi
done
exit "$failed"
