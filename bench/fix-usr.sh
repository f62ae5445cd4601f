#!/usr/bin/env bash
# Bulk proof of `pagefit fix`: fix every ELF file under /usr/bin and
# /usr/lib/x86_64-linux-gnu (or the directories given) for 16K and for 64K
# into a temporary directory. Prints the strategy counts per page size and
# every refusal with its reason; exits 1 on any verification failure or error.
# Usage: bench/fix-usr.sh [DIR...]
set -euo pipefail
cd "$(dirname "$0")/.."
dirs=("$@")
[ ${#dirs[@]} -gt 0 ] || dirs=(/usr/bin /usr/lib/x86_64-linux-gnu)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cargo build --release -q
pagefit=${CARGO_TARGET_DIR:-$PWD/target}/release/pagefit

# Every regular ELF file, found once.
bash bench/elf-files.sh "${dirs[@]}" >"$work/list"
echo "files: $(wc -l <"$work/list") ELF files under ${dirs[*]}"

start=$(date +%s.%N)
for page in 16k 64k; do
  n=0
  while IFS= read -r f; do
    n=$((n + 1))
    "$pagefit" fix --page-size "$page" "$f" -o "$work/out" --format json >"$work/$page.$n.json" 2>"$work/$page.$n.err" || true
    rm -f "$work/out"
  done <"$work/list"
done
end=$(date +%s.%N)

python3 - "$work" "$work/list" <<'EOF'
import collections, json, os, sys
work, listing = sys.argv[1], sys.argv[2]
paths = open(listing, "rb").read().decode(errors="replace").splitlines()
bad = 0
for page in ("16k", "64k"):
    counts = collections.Counter()
    refusals = collections.Counter()
    for n, path in enumerate(paths, 1):
        out = open(f"{work}/{page}.{n}.json").read()
        err = open(f"{work}/{page}.{n}.err").read().strip()
        if not out:
            # Not loadable (relocatable objects, core files) or unreadable: pagefit's own error.
            kind = "not-loadable" if "not loaded by any loader" in err else "error"
            counts[kind] += 1
            if kind == "error":
                bad += 1
                print(f"  ERROR {page} {path}: {err}")
            continue
        report = json.loads(out)
        status = report["status"]
        label = report["strategy"] if status == "fixed" else status
        if status == "fixed" and report["writable_executable"]:
            label += " (W+X)"
        counts[label] += 1
        if status == "verification-failed":
            bad += 1
            print(f"  VERIFICATION FAILED {page} {path}: {report['reason']}")
        elif status == "refused":
            reasons = "; ".join(f"{r['strategy']}: {r['reason']}" for r in report["refused"]) or report["reason"]
            refusals[reasons] += 1
            print(f"  refused {page} {path}: {reasons}")
    print(f"{page}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    for reason, count in refusals.most_common():
        print(f"  {count} refused: {reason[:300]}")
print(f"verification failures and errors: {bad}")
sys.exit(1 if bad else 0)
EOF
status=$?
echo "wall: $(echo "$end - $start" | bc -l | cut -c1-6) s for both page sizes"
exit $status
