#!/usr/bin/env bash
# The Python package as users get it: build the abi3 wheel with maturin,
# install it with the pinned dependencies into a fresh venv, run the tests
# there. Needs the fixture corpus (built here if missing) and the downloads
# of `cargo xtask realworld`, which the test command runs first.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
crate="$root/crates/pagefit-py"
target="${CARGO_TARGET_DIR:-$root/target}"
export PAGEFIT_FIXTURES="${PAGEFIT_FIXTURES:-$target/fixtures}"
export PAGEFIT_REALWORLD="${PAGEFIT_REALWORLD:-$HOME/.cache/pagefit-realworld/downloads}"

[ -f "$PAGEFIT_FIXTURES/aarch64/MANIFEST" ] || bash "$root/fixtures/build.sh" "$PAGEFIT_FIXTURES"
if ! compgen -G "$PAGEFIT_REALWORLD/*.whl" >/dev/null; then
  echo "pagefit-py: no real-world downloads in $PAGEFIT_REALWORLD; run \`cargo xtask realworld\` first" >&2
  exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/build"
"$work/build/bin/pip" install -q -c "$crate/constraints.txt" maturin
"$work/build/bin/maturin" build --release --manifest-path "$crate/Cargo.toml" --out "$work/wheels"

python3 -m venv "$work/venv"
wheel=("$work"/wheels/pagefit-*-abi3-*.whl)
"$work/venv/bin/pip" install -q -c "$crate/constraints.txt" "${wheel[0]}[dask,parquet]"
# From outside the source tree, so that only the installed package is imported.
cd "$work" && PATH="$work/venv/bin:$PATH" "$work/venv/bin/python" "$crate/tests/test_pagefit.py" -v
