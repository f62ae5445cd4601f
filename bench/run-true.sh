#!/usr/bin/env bash
# Benchmark: `pagefit run /bin/true` against native `/bin/true` and against
# `ld.so /bin/true`, over repeated runs; the private (composed) pages the
# loader adds; and the number of VMAs next to the kernel's for the same
# program (`cat /proc/self/maps`, run both ways).
# Usage: bench/run-true.sh [RUNS] (default 500). Needs perf for the timings
# (falls back to a shell loop without it).
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-500}"
cargo build --release -q -p pagefit-cli
pagefit=target/release/pagefit
interp=$(readelf -lW /bin/true | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')

# Mean wall time in microseconds of one run of "$@".
mean_us() {
  if command -v perf >/dev/null; then
    perf stat -r "$runs" "$@" 2>&1 >/dev/null | awk '/seconds time elapsed/ { printf "%.0f", $1 * 1e6 }'
  else
    local start end
    start=$(date +%s%N)
    for _ in $(seq "$runs"); do "$@" >/dev/null; done
    end=$(date +%s%N)
    echo $(((end - start) / runs / 1000))
  fi
}

"$pagefit" run /bin/true # warm the page cache
native=$(mean_us /bin/true)
ldso=$(mean_us "$interp" /bin/true)
loaded=$(mean_us "$pagefit" run /bin/true)
startup=$(mean_us "$pagefit" --version)
ratio() { echo "scale=2; $1 / $native" | bc; }
echo "timing, mean of $runs runs:"
printf '  %-34s %6s us  %5sx\n' "/bin/true" "$native" "1.00"
printf '  %-34s %6s us  %5sx\n' "$interp /bin/true" "$ldso" "$(ratio "$ldso")"
printf '  %-34s %6s us  %5sx\n' "pagefit run /bin/true" "$loaded" "$(ratio "$loaded")"
printf '  %-34s %6s us  %5sx\n' "pagefit --version (its own startup)" "$startup" "$(ratio "$startup")"

echo "composed (private) pages added by the loader, program + interpreter:"
for page in host 16k 64k; do
  option=()
  [ "$page" = host ] || option=(--page-size "$page")
  # The report comes before the program runs; at 64K this host's 4K libc is
  # then refused or broken by ld.so itself, which does not matter here.
  report=$("$pagefit" run "${option[@]}" --report --format json /bin/true 2>&1 >/dev/null | head -1 || true)
  python3 -c 'import json, sys
d = json.loads(sys.argv[2])
pages = [len(o["plan"]["composed"]) for o in d["objects"]]
mappings = sum(len(o["plan"]["mappings"]) for o in d["objects"])
print(f"  {sys.argv[1]}: {sum(pages)} ({pages[0]} in /bin/true, {sum(pages[1:])} in ld.so), {mappings} mappings")' "$page" "$report"
done

echo "VMAs of cat /proc/self/maps (kernel-loaded vs pagefit-loaded):"
cat_path=$(command -v cat)
native_maps=$(cat /proc/self/maps)
loaded_maps=$("$pagefit" run "$cat_path" /proc/self/maps)
count() { grep -c "$2" <<<"$1" || true; }
printf '  %-40s %6s %8s\n' "" kernel pagefit
printf '  %-40s %6s %8s\n' "mappings of cat" "$(count "$native_maps" " $cat_path\$")" "$(count "$loaded_maps" " $cat_path\$")"
# pagefit is itself a dynamic program: its own ld.so stays mapped, at other addresses.
ldso="/$(basename "$interp")\$"
own_ldso=$(count "$native_maps" "$ldso")
printf '  %-40s %6s %8s\n' "mappings of the program's ld.so" "$own_ldso" "$(($(count "$loaded_maps" "$ldso") - own_ldso))"
printf '  %-40s %6s %8s\n' "mappings of pagefit itself" "$(count "$native_maps" "/pagefit\$")" "$(count "$loaded_maps" "/pagefit\$")"
printf '  %-40s %6s %8s\n' "all VMAs of the process" "$(wc -l <<<"$native_maps")" "$(wc -l <<<"$loaded_maps")"

# THP (seed 002): a text-heavy program whose text is congruent mod 2 MiB
# (gdb: 6 MB of text at vaddr == offset), with and without --thp.
if command -v gdb >/dev/null; then
  gdb_path=$(command -v gdb)
  huge_kb() { "$@" -batch -ex 'shell grep -hE "^(FilePmdMapped|AnonHugePages)" /proc/$PPID/smaps' 2>/dev/null | awk '{kb += $2} END {print kb + 0}'; }
  echo "THP with $gdb_path (huge pages in its process, kB; mean wall time of gdb -batch):"
  runs=20
  printf '  %-34s %6s kB %8s us\n' "native" "$(huge_kb "$gdb_path")" "$(mean_us "$gdb_path" -batch)"
  printf '  %-34s %6s kB %8s us\n' "pagefit run" "$(huge_kb "$pagefit" run "$gdb_path")" "$(mean_us "$pagefit" run "$gdb_path" -batch)"
  printf '  %-34s %6s kB %8s us\n' "pagefit run --thp" "$(huge_kb "$pagefit" run --thp "$gdb_path")" "$(mean_us "$pagefit" run --thp "$gdb_path" -batch)"
  "$pagefit" run --thp --report "$gdb_path" -batch 2>&1 >/dev/null | grep "huge pages" | sed 's/^/ /'
fi
