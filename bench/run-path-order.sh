#!/usr/bin/env bash
# Regenerates crates/pagefit-cli/run-path.order: the functions `pagefit run
# /bin/true` executes before it hands over, in address order, which the
# x86_64 musl build links first and together (.cargo/config.toml). Every
# 64 KiB of pagefit's code that `run` touches is one more page fault, with
# 16 page table entries to fill and later tear down; scattered over 23 such
# windows, they cost `run` a tenth of a native start. Run it again when
# the bench reports that few of the listed functions are left (a new
# toolchain renames them all); a stale list costs speed, never correctness.
# Needs valgrind.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --profile dist -q -p pagefit-cli --target x86_64-unknown-linux-musl
pagefit=target/x86_64-unknown-linux-musl/dist/pagefit
trace=$(mktemp)
trap 'rm -f "$trace"' EXIT
# Valgrind loses track at the jump into the program, after pagefit's part.
(valgrind --tool=callgrind --dump-instr=yes --callgrind-out-file="$trace" "$pagefit" run /bin/true) >/dev/null 2>&1 || true
python3 - "$pagefit" "$trace" >crates/pagefit-cli/run-path.order <<'PY'
import bisect, re, subprocess, sys

binary, trace = sys.argv[1], sys.argv[2]
functions = sorted(
    (int(address, 16), name)
    for address, kind, name in (line.split() for line in subprocess.run(
        ["nm", "--defined-only", binary], capture_output=True, text=True, check=True).stdout.splitlines() if len(line.split()) == 3)
    if kind in "tTwW")
starts = [address for address, _ in functions]
text_start, text_end = functions[0][0], functions[-1][0] + (1 << 20)
executed = {}
address = None
# Callgrind's compressed positions: an absolute address, or +N / -N from the last one.
for line in open(trace):
    match = re.match(r"^(0x[0-9a-f]+|[+-]\d+)\s", line)
    if not match:
        continue
    token = match.group(1)
    address = int(token, 16) if token.startswith("0x") else (address or 0) + int(token)
    if text_start <= address < text_end:
        index = bisect.bisect_right(starts, address) - 1
        executed[functions[index][1]] = functions[index][0]
for name in sorted(executed, key=executed.get):
    print(name)
PY
echo "$(wc -l <crates/pagefit-cli/run-path.order) functions in crates/pagefit-cli/run-path.order"
