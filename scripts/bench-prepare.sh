#!/usr/bin/env bash
# End-to-end preprocessing benchmark: `ncf-prepare` on an ML-20m-shaped ratings.csv (19.9M rows,
# 540 MB, made by ../shared/tools/make_ml20m_like.py), all files written. Prints wall time and peak
# RSS of each run and the medians.
#   scripts/bench-prepare.sh [RUNS=5] [RAW=/tmp/ncf-bench/ml20m-like.csv] [IDS=ml-20m|int-ids|text-ids]
# IDS: ml-20m reads RAW as it is; int-ids and text-ids re-key it once into a like-movielens file
# (user,item,timestamp) with the same ids (`31,1029,...`) or text ids (`u31,sku-1029,...`), to
# measure what text ids cost against the same file with integers.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
runs="${1:-5}"
raw="${2:-/tmp/ncf-bench/ml20m-like.csv}"
ids="${3:-ml-20m}"
work="$(dirname "$raw")"
mkdir -p "$work"
if [ ! -f "$raw" ]; then
  echo "bench-prepare: generating $raw (about 2 minutes)"
  "$here/.torch-venv/bin/python3" "$here/../shared/tools/make_ml20m_like.py" "$raw"
fi
format=ml-20m
if [ "$ids" != ml-20m ]; then
  keyed="${raw%.csv}-$ids.csv"
  if [ ! -f "$keyed" ]; then
    echo "bench-prepare: writing $keyed"
    case "$ids" in
      int-ids) awk -F, 'NR == 1 {print "user,item,timestamp"; next} {print $1 "," $2 "," $4}' "$raw" > "$keyed" ;;
      text-ids) awk -F, 'NR == 1 {print "user,item,timestamp"; next} {print "u" $1 ",sku-" $2 "," $4}' "$raw" > "$keyed" ;;
      *) echo "bench-prepare: IDS is ml-20m, int-ids or text-ids" >&2; exit 2 ;;
    esac
  fi
  raw="$keyed"; format=like-movielens
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
  /usr/bin/time -f '%e %M' -o "$work/time.txt" "$bin" --path "$raw" --output "$out" --format "$format" > "$work/log.txt"
  read -r wall kb < "$work/time.txt"
  walls+=("$wall"); rss+=("$((kb / 1024))")
  printf '%-5s %10s %14s\n' "$i" "$wall" "$((kb / 1024))"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
printf '%-5s %10s %14s\n' median "$(median "${walls[@]}")" "$(median "${rss[@]}")"
head -n 2 "$work/log.txt"
