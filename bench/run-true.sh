#!/usr/bin/env bash
# Benchmark: `pagefit run /bin/true` against native `/bin/true` and against
# `ld.so /bin/true`, over repeated runs; the private (composed) pages the
# loader adds; and the number of VMAs next to the kernel's for the same
# program (`cat /proc/self/maps`, run both ways).
# Usage: bench/run-true.sh [RUNS] (default 500). Needs perf for the timings
# (falls back to a shell loop without it), and a C compiler for the floor.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-500}"
# pagefit as it is meant to be installed: static-pie where .cargo/static-pie.toml says how.
host=$(rustc -vV | sed -n 's/^host: //p')
cargo build --release -q -p pagefit-cli --config .cargo/static-pie.toml --target "$host"
pagefit="target/$host/release/pagefit"
interp=$(readelf -lW /bin/true | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')

source bench/mean-us.sh

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
goal=$(echo "$loaded <= 1.3 * $native" | bc)
echo "  goal: pagefit run at most 1.30x native: $([ "$goal" = 1 ] && echo met || echo "not met")"

# The floor of any loader that is itself a glibc program: its own libc
# startup (CPU feature probing, TLS, IRELATIVE relocations), measured as a
# static C program returning from main, less the bare fork+exec+exit of a
# program with no libc at all, on top of the native run.
if command -v cc >/dev/null; then
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
  echo 'int main(void) { return 0; }' >"$scratch/nop.c"
  cat >"$scratch/exit.c" <<'C'
void _start(void) {
#if defined(__x86_64__)
  __asm__ volatile("mov $231, %eax; xor %edi, %edi; syscall");
#elif defined(__aarch64__)
  __asm__ volatile("mov x8, #94; mov x0, #0; svc #0");
#elif defined(__powerpc64__)
  __asm__ volatile("li 0, 234; li 3, 0; sc");
#endif
}
C
  if cc -O2 -static -o "$scratch/nop" "$scratch/nop.c" 2>/dev/null && cc -O2 -static -nostdlib -o "$scratch/exit" "$scratch/exit.c" 2>/dev/null; then
    nop=$(mean_us "$scratch/nop")
    bare=$(mean_us "$scratch/exit")
    floor=$((native + nop - bare))
    printf '  %-34s %6s us\n' "exit only, no libc (exec cost)" "$bare"
    printf '  %-34s %6s us  (+%s us of glibc startup)\n' "static C program, empty main" "$nop" "$((nop - bare))"
    printf '  %-34s %6s us  %5sx\n' "floor: native + that startup" "$floor" "$(ratio "$floor")"
  fi
fi

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
# A dynamically linked pagefit keeps its own ld.so mapped, at other addresses.
ldso="/$(basename "$interp")\$"
native_ldso=$(count "$native_maps" "$ldso")
own_ldso=0
if readelf -lW "$pagefit" | grep -q 'program interpreter'; then own_ldso=$native_ldso; fi
printf '  %-40s %6s %8s\n' "mappings of the program's ld.so" "$native_ldso" "$(($(count "$loaded_maps" "$ldso") - own_ldso))"
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
