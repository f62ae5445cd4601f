#!/usr/bin/env bash
# Benchmark: what choosing a record costs `pagefit run` (seed 004's complaint
# about FatELF). Side by side, for the same x86_64 program (c-pie-bfd-4k):
# the ELF run natively and with `pagefit run`, and the same ELF as record0 of
# a version-1 FatELF file (x86_64 + aarch64 + ppc64le, the x86_64 record
# measured by the checker) and of a version-2 file (4K and 64K variants, page
# sizes recorded): mean wall time, system calls, and bytes read (read and
# pread64 return values, the program's own reads included).
# Usage: bench/run-fat.sh [RUNS] (default 500). Needs the fixtures
# (target/fixtures, from fixtures/build.sh), strace, and perf for the
# timings (falls back to a shell loop without it).
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-500}"
cargo build --release -q -p pagefit-cli
pagefit=${CARGO_TARGET_DIR:-$PWD/target}/release/pagefit
fixtures=${PAGEFIT_FIXTURES:-$PWD/target/fixtures}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$pagefit" fat glue -o "$work/v1.fat" "$fixtures"/{x86_64,aarch64,ppc64le}/c-pie-bfd-4k >/dev/null
"$pagefit" fat glue --page-variants -o "$work/v2.fat" "$fixtures"/x86_64/c-pie-bfd-{4k,64k} >/dev/null
"$pagefit" fat extract -o "$work/extracted.elf" "$work/v1.fat" x86_64 >/dev/null
chmod +x "$work/extracted.elf"
cmp -s "$work/extracted.elf" "$fixtures/x86_64/c-pie-bfd-4k"

source bench/mean-us.sh

# System calls, and bytes returned by read/pread64, of one run of "$@".
syscalls_and_bytes() {
  strace -f -qq -o "$work/trace" "$@" >/dev/null
  awk '
    { calls++ }
    /^[0-9]+ +(read|pread64)\(/ { n = $NF; if (n ~ /^[0-9]+$/) bytes += n }
    END { printf "%d %d\n", calls, bytes }' "$work/trace"
}

rows=(
  "native ELF|$work/extracted.elf"
  "pagefit run ELF|$pagefit run $work/extracted.elf"
  "pagefit run v1.fat (3 CPUs)|$pagefit run $work/v1.fat"
  "pagefit run v2.fat (4K+64K)|$pagefit run $work/v2.fat"
)
"$pagefit" run "$work/v1.fat" >/dev/null # warm the page cache
echo "mean of $runs runs; system calls and bytes read from one strace -f run"
printf '  %-30s %9s %9s %11s\n' "" "wall us" "syscalls" "bytes read"
for row in "${rows[@]}"; do
  label=${row%%|*}
  read -ra command <<<"${row#*|}"
  read -r calls bytes < <(syscalls_and_bytes "${command[@]}")
  printf '  %-30s %9s %9s %11s\n' "$label" "$(mean_us "${command[@]}")" "$calls" "$bytes"
done

echo "pagefit's own reads of the program file (read, pread64, lseek on its descriptor until it is closed before the jump):"
for file in extracted.elf v1.fat v2.fat; do
  strace -qq -e trace=openat,read,pread64,lseek,close -o "$work/trace" "$pagefit" run "$work/$file" >/dev/null
  # Until the loader closes it (FD_CLOEXEC) before the jump, or ld.so reuses its number.
  awk -v name="$file" '
    $0 ~ "openat\\(.*" name "\"" { fd = $NF }
    fd != "" && ($0 ~ "^close\\(" fd "\\)" || ($0 ~ /^openat\(/ && $NF == fd && $0 !~ name)) { fd = "" }
    fd != "" && $0 ~ "^(read|pread64|lseek)\\(" fd "," { calls++; if ($1 !~ /^lseek/ && $NF ~ /^[0-9]+$/) bytes += $NF }
    END { printf "  %-14s %3d calls, %6d bytes\n", name, calls, bytes }' "$work/trace"
done
