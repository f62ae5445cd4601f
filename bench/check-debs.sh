#!/usr/bin/env bash
# Benchmark: `pagefit check` over real Debian arm64 packages, read in place
# (ar, then data.tar.xz/zst, streamed; nothing extracted), side by side in one
# run with what a user of Android's check_elf_alignment.sh has to do: extract
# every package (dpkg-deb -x) and run its objdump method on each ELF file.
# Usage: bench/check-debs.sh [PACKAGE...]. The packages are fetched once with
# `apt-get download` into ~/.cache/pagefit-bench/debs (never committed); the
# arm64 architecture must be known to apt (`dpkg --add-architecture arm64`
# and `apt-get update`, which `cargo xtask realkernel` does).
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${PAGEFIT_BENCH_CACHE:-$HOME/.cache/pagefit-bench}/debs"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$cache"

packages=("$@")
if [ ${#packages[@]} -eq 0 ]; then
  # Libraries and programs of every size, from libc to LLVM and Mesa.
  packages=(libc6 libstdc++6 libssl3t64 libglib2.0-0t64 libgtk-3-0t64 libx11-6 zlib1g libcurl4t64
    libsqlite3-0 libxml2 libpython3.13-minimal python3.13-minimal coreutils busybox openssl git
    libllvm19 libgl1-mesa-dri libavcodec61 libqt5core5t64 libicu76 libperl5.40 systemd libsystemd0)
fi
for package in "${packages[@]}"; do
  if ! ls "$cache/${package}_"*_arm64.deb >/dev/null 2>&1; then
    (cd "$cache" && apt-get download -q "$package:arm64" >/dev/null 2>&1) || echo "(could not download $package:arm64; skipped)"
  fi
done
debs=()
for package in "${packages[@]}"; do
  for deb in "$cache/${package}_"*_arm64.deb; do [ -f "$deb" ] && debs+=("$deb"); done
done
[ ${#debs[@]} -gt 0 ] || { echo "no packages: is arm64 known to apt?" >&2; exit 2; }
bytes=$(cat "${debs[@]}" | wc -c)
echo "packages: ${#debs[@]} arm64 .deb files, $((bytes / 1048576)) MiB"

cargo build --release -q
pagefit=${CARGO_TARGET_DIR:-$PWD/target}/release/pagefit
cat "${debs[@]}" >/dev/null # warm the page cache

seconds() { local start end; start=$(date +%s.%N); "$@" >/dev/null 2>&1 || true; end=$(date +%s.%N); echo "$end - $start" | bc -l; }

/usr/bin/time -f '%M' -o "$work/rss" "$pagefit" check --page-size 16k,64k --format jsonl "${debs[@]}" >"$work/pagefit.jsonl" 2>/dev/null || true
elf_count=$(grep -c '"path"' "$work/pagefit.jsonl" || true)
rss_kib=$(cat "$work/rss")
t_pagefit=$(seconds "$pagefit" check --page-size 16k,64k "${debs[@]}")

# The floor of any streaming reader: decompressing every data.tar.
t_floor=$(seconds sh -c 'for deb; do dpkg-deb --fsys-tarfile "$deb"; done' sh "${debs[@]}")

# The peer: extract, find the ELF files, objdump each (check_elf_alignment.sh's method).
peer() {
  local dir="$work/extract"
  rm -rf "$dir"
  mkdir -p "$dir"
  for deb in "${debs[@]}"; do dpkg-deb -x "$deb" "$dir/$(basename "$deb")"; done
  find "$dir" -type f -size +52c -exec sh -c 'for f; do [ "$(head -c 4 "$f" | od -An -c | tr -d " ")" = 177ELF ] && echo "$f"; done' sh {} + >"$work/elfs"
  while read -r f; do objdump -p "$f" 2>/dev/null | grep LOAD | awk '{print $NF}' | head -1; done <"$work/elfs"
}
t_peer=$(seconds peer)
peer_count=$(wc -l <"$work/elfs")
rm -rf "$work/extract"

echo "ELF files: pagefit $elf_count (read in place), extract+objdump $peer_count"
printf '%-40s %9s   %s\n' "tool" "wall" "ratio"
printf '%-40s %8.2f s\n' "floor: dpkg-deb --fsys-tarfile, 1 core" "$t_floor"
printf '%-40s %8.2f s   %s\n' "pagefit check (streamed, all cores)" "$t_pagefit" "1.0x"
printf '%-40s %8.2f s   %.1fx slower\n' "dpkg-deb -x + objdump loop" "$t_peer" "$(echo "$t_peer / $t_pagefit" | bc -l)"
echo "pagefit peak RSS: $((rss_kib / 1024)) MiB for $((bytes / 1048576)) MiB of packages"
