#!/usr/bin/env bash
# A survey, as a real use of `python -m pagefit.dask`: every package of one
# Debian section, for arm64 and armhf, checked at 16K and 64K on a Dask
# LocalCluster; prints the readiness table of docs/survey.md.
# Usage: bench/survey-debian.sh [SECTION [SUITE]] (default: database trixie).
# Needs `pip install pagefit[dask]` in the active Python (crates/pagefit-py).
# apt runs with its own lists and sources under the cache, so the machine's
# apt configuration is untouched; the mirror is the one the machine uses.
# Packages are fetched once into ~/.cache/pagefit-survey (never committed).
set -euo pipefail
cd "$(dirname "$0")/.."
section="${1:-database}"
suite="${2:-trixie}"
architectures=(arm64 armhf)
cache="${PAGEFIT_SURVEY_CACHE:-$HOME/.cache/pagefit-survey}"
apt="$cache/apt"
debs="$cache/$suite-$section"
mkdir -p "$apt/lists/partial" "$apt/parts" "$debs"

# (One of the two places may not exist.)
mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null |
  awk '/^(URIs:|deb )/ { for (i = 2; i <= NF; i++) if ($i ~ /:\/\/.*\/debian$/ && $i !~ /security/) { print $i; exit } }' || true)
[ -n "$mirror" ] || { echo "survey: no Debian mirror in the machine's apt sources" >&2; exit 2; }
echo "deb [arch=$(IFS=,; echo "${architectures[*]}") signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $suite main" >"$apt/sources.list"
apt_options=(-q -o "Dir::Etc::SourceList=$apt/sources.list" -o "Dir::Etc::SourceParts=$apt/parts"
  -o "Dir::State::Lists=$apt/lists" -o "APT::Architecture=${architectures[0]}")
for arch in "${architectures[@]}"; do apt_options+=(-o "APT::Architectures::=$arch"); done
apt-get "${apt_options[@]}" update >/dev/null

# Every package of the section built for each architecture, at the suite's version.
for arch in "${architectures[@]}"; do
  apt-get "${apt_options[@]}" indextargets --format '$(FILENAME)' "Identifier: Packages" "Architecture: $arch" |
    xargs /usr/lib/apt/apt-helper cat-file |
    awk -v section="$section" -v arch="$arch" '
      /^Package: / { name = $2 } /^Version: / { version = $2 } /^Section: / { sect = $2 } /^Architecture: / { a = $2 }
      /^$/ { if (sect == section && a == arch) print name ":" arch "=" version; name = version = sect = a = "" }'
done >"$debs/wanted"
echo "survey: $(wc -l <"$debs/wanted") $suite/$section packages for ${architectures[*]}" >&2
# apt-get download stops at the first failure: fetch in batches, keep going.
# Four at a time: one apt-get waits on the mirror for each file in turn.
(cd "$debs" && xargs -P 4 -n 20 apt-get "${apt_options[@]}" download <wanted >/dev/null 2>"$debs/download-errors" || true)
echo "survey: $(ls "$debs"/*.deb | wc -l) fetched, $(du -sh "$debs" | cut -f1)" >&2

start=$(date +%s.%N)
python3 -m pagefit.dask "$debs" --workers "$(nproc)" --output "$cache/$suite-$section.jsonl"
end=$(date +%s.%N)
echo "survey: checked in $(echo "$end - $start" | bc -l | cut -c1-6) s" >&2
python3 bench/survey-table.py "$cache/$suite-$section.jsonl" "$debs"/*.deb
