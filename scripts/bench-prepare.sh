#!/usr/bin/env bash
# End-to-end preprocessing benchmark: `ncf-prepare` on an ML-20m-shaped ratings.csv (19.9M rows,
# 540 MB, made by ../shared/tools/make_ml20m_like.py), all files written. Prints wall time and peak
# RSS of each run and the medians.
#   scripts/bench-prepare.sh [RUNS=5] [RAW=/tmp/ncf-bench/ml20m-like.csv]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
runs="${1:-5}"
raw="${2:-/tmp/ncf-bench/ml20m-like.csv}"
work="$(dirname "$raw")"
mkdir -p "$work"
if [ ! -f "$raw" ]; then
  echo "bench-prepare: generating $raw (about 2 minutes)"
  "$here/.torch-venv/bin/python3" "$here/../shared/tools/make_ml20m_like.py" "$raw"
fi
# The same build as `make release`, so the artefacts are shared.
cargo build --quiet --release --workspace --bins --examples --manifest-path "$here/Cargo.toml"
bin="${CARGO_TARGET_DIR:-$here/target}/release/ncf-prepare"
cat "$raw" > /dev/null   # page cache, as for every later run
printf '%-5s %10s %14s\n' run "wall (s)" "peak RSS (MB)"
walls=(); rss=()
for i in $(seq 1 "$runs"); do
  out="$work/prepared"
  rm -rf "$out"
  /usr/bin/time -f '%e %M' -o "$work/time.txt" "$bin" --path "$raw" --output "$out" --format ml-20m > "$work/log.txt"
  read -r wall kb < "$work/time.txt"
  walls+=("$wall"); rss+=("$((kb / 1024))")
  printf '%-5s %10s %14s\n' "$i" "$wall" "$((kb / 1024))"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
printf '%-5s %10s %14s\n' median "$(median "${walls[@]}")" "$(median "${rss[@]}")"
head -n 2 "$work/log.txt"
