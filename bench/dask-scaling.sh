#!/usr/bin/env bash
# Benchmark: `python -m pagefit.dask` with 1 and 2 LocalCluster workers,
# side by side in one run with one `pagefit check` (all cores, and one
# thread), in packages per second; then the two floors that say where the
# limit is: decompressing every package on one core, and reading its bytes
# from the disk (O_DIRECT, past the page cache).
# Usage: bench/dask-scaling.sh [DIR] (default: the packages of
# bench/survey-debian.sh's database section). Needs `pip install
# pagefit[dask]` in the active Python (crates/pagefit-py).
set -euo pipefail
cd "$(dirname "$0")/.."
inputs="${1:-$HOME/.cache/pagefit-survey/trixie-database}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mapfile -t packages < <(find "$inputs" -type f \( -name '*.deb' -o -name '*.whl' -o -name '*.tgz' \) | sort)
[ ${#packages[@]} -gt 0 ] || { echo "no packages under $inputs" >&2; exit 2; }
mib=$(($(cat "${packages[@]}" | wc -c) / 1048576))
echo "inputs: ${#packages[@]} packages, $mib MiB, $(nproc) cores"

cargo build --release -q -p pagefit-cli
pagefit=${CARGO_TARGET_DIR:-$PWD/target}/release/pagefit
cat "${packages[@]}" >/dev/null # warm the page cache

seconds() { local start end; start=$(date +%s.%N); "$@" >/dev/null 2>&1 || true; end=$(date +%s.%N); echo "$end - $start" | bc -l; }
decompress() {
  for package; do
    case "$package" in
      *.deb) dpkg-deb --fsys-tarfile "$package" ;;
      *.whl) unzip -p "$package" ;;
      *.tgz) gzip -dc "$package" ;;
    esac
  done | wc -c
}
read_direct() { for package; do dd if="$package" of=/dev/null bs=1M iflag=direct status=none; done; }
cluster_start() { python3 -c 'from dask.distributed import LocalCluster, Client; Client(LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None)).close()'; }

t_cli=$(seconds "$pagefit" check --format jsonl "${packages[@]}")
t_cli1=$(seconds "$pagefit" check --jobs 1 --format jsonl "${packages[@]}")
t_dask1=$(seconds python3 -m pagefit.dask "$inputs" --workers 1 --output "$work/1.jsonl")
t_dask2=$(seconds python3 -m pagefit.dask "$inputs" --workers 2 --output "$work/2.jsonl")
t_start=$(seconds cluster_start)
t_decompress=$(seconds decompress "${packages[@]}")
t_read=$(seconds read_direct "${packages[@]}")

row() { printf '%-44s %8.2f s %8.1f packages/s %7.1f MiB/s\n' "$1" "$2" "$(echo "${#packages[@]} / $2" | bc -l)" "$(echo "$mib / $2" | bc -l)"; }
row "pagefit check, all cores" "$t_cli"
row "pagefit check --jobs 1" "$t_cli1"
row "python -m pagefit.dask --workers 1" "$t_dask1"
row "python -m pagefit.dask --workers 2" "$t_dask2"
row "floor: decompress every package, 1 core" "$t_decompress"
row "floor: read from disk (O_DIRECT)" "$t_read"
printf '%-44s %8.2f s\n' "of which: starting and stopping 2 workers" "$t_start"
printf 'dask 2 workers / 1 worker: %.2fx; pagefit check / dask 2 workers: %.2fx\n' \
  "$(echo "$t_dask1 / $t_dask2" | bc -l)" "$(echo "$t_dask2 / $t_cli" | bc -l)"
