#!/usr/bin/env bash
# Benchmark: `pagefit fix --page-size 64k` on librustc_driver (about 150 MB,
# in the Rust toolchain's lib/) next to `cp` of the same file, and, when
# installed, `patchelf --set-rpath` and LIEF rewriting it. Wall time and peak
# RSS from /usr/bin/time -v, best of three runs each, warm page cache.
# Usage: bench/fix-big.sh [FILE]
set -euo pipefail
cd "$(dirname "$0")/.."
big="${1:-$(ls ~/.rustup/toolchains/*/lib/librustc_driver-*.so 2>/dev/null | head -1)}"
[ -f "$big" ] || { echo "no librustc_driver found; pass a file" >&2; exit 2; }
work=$(mktemp -d --tmpdir="${TMPDIR:-/tmp}")
trap 'rm -rf "$work"' EXIT

cargo build --release -q
pagefit=${CARGO_TARGET_DIR:-$PWD/target}/release/pagefit
echo "file: $big ($(stat -c %s "$big") bytes)"
cat "$big" >/dev/null

# measure NAME COMMAND...: best wall time of three runs and the peak RSS of that run.
measure() {
  local name="$1" best="" rss="" i wall kb
  shift
  for i in 1 2 3; do
    rm -f "$work/out"
    /usr/bin/time -v "$@" >/dev/null 2>"$work/time" || { echo "$name failed:"; tail -5 "$work/time"; return 0; }
    wall=$(awk -F': ' '/Elapsed/ {n = split($2, t, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + t[i]; print s}' "$work/time")
    kb=$(awk -F': ' '/Maximum resident/ {print $2}' "$work/time")
    if [ -z "$best" ] || [ "$(echo "$wall < $best" | bc -l)" = 1 ]; then best=$wall; rss=$kb; fi
  done
  printf '%-40s %8.2f s %10.1f MiB\n' "$name" "$best" "$(echo "$rss / 1024" | bc -l)"
}

printf '%-40s %10s %14s\n' "tool" "wall" "peak RSS"
measure "cp" cp "$big" "$work/out"
measure "pagefit fix --page-size 64k" "$pagefit" fix --page-size 64k "$big" -o "$work/out"
if command -v patchelf >/dev/null; then
  measure "patchelf --set-rpath (copy, then edit)" sh -c "cp '$big' '$work/out' && patchelf --set-rpath /opt/x '$work/out'"
else
  echo "(patchelf not installed; skipped)"
fi
if python3 -c 'import lief' 2>/dev/null; then
  measure "LIEF parse + write" python3 -c "import lief, sys; b = lief.parse(sys.argv[1]); b.write(sys.argv[2])" "$big" "$work/out"
else
  echo "(LIEF not installed; skipped)"
fi
"$pagefit" fix --page-size 64k "$big" -o "$work/out" | sed -n '1p;$p'

# The fixed library in use: a copy of the toolchain whose librustc_driver and
# libLLVM are fixed for 64K compiles and runs a program (on this machine's pages).
lib=$(dirname "$big")
if [ -x "$lib/../bin/rustc" ]; then
  mkdir -p "$work/toolchain/bin" "$work/toolchain/lib"
  cp "$lib/../bin/rustc" "$work/toolchain/bin/"
  ln -s "$lib/rustlib" "$work/toolchain/lib/rustlib"
  for so in "$lib"/librustc_driver-*.so "$lib"/libLLVM.so.*; do
    [ -f "$so" ] && "$pagefit" fix --page-size 64k "$so" -o "$work/toolchain/lib/$(basename "$so")" >/dev/null
  done
  printf 'fn main() { println!("hello from a rustc whose libraries were fixed for 64K"); }\n' >"$work/hello.rs"
  "$work/toolchain/bin/rustc" -O "$work/hello.rs" -o "$work/hello" && "$work/hello"
fi
