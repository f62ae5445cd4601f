# Sourced by the benchmarks: mean_us COMMAND... prints the mean wall time in
# microseconds of one run of COMMAND over $runs runs (perf stat -r, or a
# shell loop where perf is missing).
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
