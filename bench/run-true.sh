#!/usr/bin/env bash
# Benchmark: `pagefit run /bin/true` against native `/bin/true` and against
# `ld.so /bin/true`, over repeated runs; the private (composed) pages the
# loader adds; and the number of VMAs next to the kernel's for the same
# program (`cat /proc/self/maps`, run both ways).
# Usage: bench/run-true.sh [RUNS] (default 500). Needs perf for the timings
# (falls back to a shell loop without it), strace, and a C compiler for the floor.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-500}"
# pagefit as it is meant to be installed (README, "Install"): on x86_64 the
# musl build of the dist profile, elsewhere a release build.
host=$(rustc -vV | sed -n 's/^host: //p')
if [ "$host" = x86_64-unknown-linux-gnu ]; then
  rustup target add x86_64-unknown-linux-musl >/dev/null 2>&1 || true
  cargo build --profile dist -q -p pagefit-cli --target x86_64-unknown-linux-musl
  pagefit=target/x86_64-unknown-linux-musl/dist/pagefit
else
  cargo build --release -q -p pagefit-cli
  pagefit=${CARGO_TARGET_DIR:-$PWD/target}/release/pagefit
fi
if [ "$host" = x86_64-unknown-linux-gnu ]; then
  order=crates/pagefit-cli/run-path.order
  found=$(nm --defined-only "$pagefit" | awk 'NR == FNR { listed[$1]; next } $3 in listed { print $3 }' "$order" - | sort -u | wc -l)
  echo "run path linked together: $found of the $(wc -l <"$order") functions in $order are in this build" \
    "(few: run bench/run-path-order.sh)"
fi
interp=$(readelf -lW /bin/true | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')

source bench/mean-us.sh

"$pagefit" run /bin/true # warm the page cache
# A shared machine's speed drifts from second to second, so the runs are
# split into rounds that alternate native and pagefit, and each round gives
# its own ratio: the median ratio, and the ratio of the best rounds.
rounds=9
round_runs=$(((runs + rounds - 1) / rounds))
native_all=() loaded_all=() ratios=()
for _ in $(seq "$rounds"); do
  native_us=$(runs=$round_runs mean_us /bin/true)
  loaded_us=$(runs=$round_runs mean_us "$pagefit" run /bin/true)
  native_all+=("$native_us") loaded_all+=("$loaded_us")
  ratios+=("$(echo "scale=3; $loaded_us / $native_us" | bc)")
done
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
least() { printf '%s\n' "$@" | sort -n | head -1; }
native=$(median "${native_all[@]}")
loaded=$(median "${loaded_all[@]}")
median_ratio=$(median "${ratios[@]}")
best_ratio=$(echo "scale=3; $(least "${loaded_all[@]}") / $(least "${native_all[@]}")" | bc)
ldso=$(mean_us "$interp" /bin/true)
startup=$(mean_us "$pagefit" --version)
ratio() { echo "scale=2; $1 / $native" | bc; }
echo "timing: $rounds rounds of $round_runs runs, native and pagefit alternating (median round):"
printf '  %-34s %6s us  %5sx\n' "/bin/true" "$native" "1.00"
printf '  %-34s %6s us  %5sx\n' "$interp /bin/true" "$ldso" "$(ratio "$ldso")"
printf '  %-34s %6s us  %5sx (median of the rounds\x27 ratios)\n' "pagefit run /bin/true" "$loaded" "$median_ratio"
printf '  %-34s %6s     %5sx (best round against best round)\n' "" "" "$best_ratio"
printf '  %-34s %6s us  %5sx\n' "pagefit --version (its own startup)" "$startup" "$(ratio "$startup")"
goal=$(echo "$median_ratio <= 1.3" | bc)
echo "  goal: pagefit run at most 1.30x native: $([ "$goal" = 1 ] && echo met || echo "not met")"
echo "  page faults, system calls: native $(perf stat -x, -e page-faults /bin/true 2>&1 | cut -d, -f1), $(strace -fc /bin/true 2>&1 | awk '/total/ {print $(NF-2)}');" \
  "pagefit run $(perf stat -x, -e page-faults "$pagefit" run /bin/true 2>&1 | cut -d, -f1), $(strace -fc "$pagefit" run /bin/true 2>&1 | awk '/total/ {print $(NF-2)}')"

# What pagefit adds to a program that does nothing: the bare
# fork+exec+exit of a program with no libc, loaded by the kernel and by
# pagefit.
if command -v cc >/dev/null; then
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
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
  if cc -O2 -static -nostdlib -o "$scratch/exit" "$scratch/exit.c" 2>/dev/null; then
    bare=$(mean_us "$scratch/exit")
    bare_loaded=$(mean_us "$pagefit" run "$scratch/exit")
    printf '  %-34s %6s us\n' "exit only, no libc (exec cost)" "$bare"
    printf '  %-34s %6s us  (+%s us: pagefit\x27s whole cost)\n' "pagefit run of that" "$bare_loaded" "$((bare_loaded - bare))"
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
# (gdb: 6 MB of text at vaddr == offset), without --thp, with it, and with
# --thp-copy (anonymous copies where file text cannot get huge pages).
if command -v gdb >/dev/null; then
  gdb_path=$(command -v gdb)
  huge_kb() { "$@" -batch -ex 'shell grep -hE "^(FilePmdMapped|AnonHugePages)" /proc/$PPID/smaps' 2>/dev/null | awk '{kb += $2} END {print kb + 0}'; }
  echo "THP with $gdb_path (huge pages in its process, kB; mean wall time of gdb -batch):"
  runs=20
  printf '  %-34s %6s kB %8s us\n' "native" "$(huge_kb "$gdb_path")" "$(mean_us "$gdb_path" -batch)"
  printf '  %-34s %6s kB %8s us\n' "pagefit run" "$(huge_kb "$pagefit" run "$gdb_path")" "$(mean_us "$pagefit" run "$gdb_path" -batch)"
  printf '  %-34s %6s kB %8s us\n' "pagefit run --thp" "$(huge_kb "$pagefit" run --thp "$gdb_path")" "$(mean_us "$pagefit" run --thp "$gdb_path" -batch)"
  printf '  %-34s %6s kB %8s us\n' "pagefit run --thp-copy" "$(huge_kb "$pagefit" run --thp-copy "$gdb_path")" "$(mean_us "$pagefit" run --thp-copy "$gdb_path" -batch)"
  for option in --thp --thp-copy; do
    echo "  $option:"
    "$pagefit" run "$option" --report "$gdb_path" -batch 2>&1 >/dev/null | grep "huge pages" | sed 's/^/ /'
  done
fi
