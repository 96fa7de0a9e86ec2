#!/usr/bin/env bash
# Transcoding benchmark: a CSV dataset of ML-20m shape (train 19,861,770 rows, test 138,493 x 101
# rows; user,item,label columns) made from an ML-20m-like prepared dataset, transcoded by
# `ncf-transcode` and by scripts/transcode_pandas.py (pandas, the reference's computation). Prints
# wall time and peak RSS of each, medians over RUNS.
#   scripts/bench-transcode.sh [RUNS=3] [WORK=/tmp/ncf-bench]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
runs="${1:-3}"
work="${2:-/tmp/ncf-bench}"
py="$here/.torch-venv/bin/python3"
# The same build as `make release`, so the artefacts are shared.
cargo build --quiet --release --workspace --bins --examples --manifest-path "$here/Cargo.toml"
bin="${CARGO_TARGET_DIR:-$here/target}/release"
csv="$work/csv-dataset"
if [ ! -f "$csv/feature_spec.yaml" ]; then
  [ -f "$work/ml20m-like.csv" ] || "$py" "$here/../shared/tools/make_ml20m_like.py" "$work/ml20m-like.csv"
  [ -f "$work/prepared/feature_spec.yaml" ] || "$bin/ncf-prepare" --path "$work/ml20m-like.csv" --output "$work/prepared" --force > /dev/null
  echo "bench-transcode: writing the CSV dataset (once)"
  mkdir -p "$csv.tmp"
  "$py" - "$work/prepared" "$csv.tmp" <<'PY'
import sys, numpy as np, torch
src, dst = sys.argv[1:3]
for m in ("train", "test"):
    ids = torch.load(f"{src}/{m}_data_0.pt", weights_only=True).numpy()
    lab = torch.load(f"{src}/{m}_data_1.pt", weights_only=True).numpy().astype(np.int64)
    np.savetxt(f"{dst}/{m}.csv", np.hstack([ids, lab]), fmt="%d", delimiter=",")
open(f"{dst}/feature_spec.yaml", "w").write("""feature_spec:
  user: {cardinality: auto}
  item: {cardinality: auto}
  label:
metadata: {test_samples_per_series: 101}
source_spec:
  train:
    - {type: csv, features: [user, item, label], files: [train.csv]}
  test:
    - {type: csv, features: [user, item, label], files: [test.csv]}
channel_spec: {user_ch: [user], item_ch: [item], label_ch: [label]}
""")
PY
  mv "$csv.tmp" "$csv"
fi
cat "$csv"/*.csv > /dev/null
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
printf '%-16s %-4s %10s %14s\n' tool run "wall (s)" "peak RSS (MB)"
for tool in ncf-transcode pandas; do
  walls=(); rss=()
  for i in $(seq 1 "$runs"); do
    rm -rf "$work/transcoded"
    if [ "$tool" = ncf-transcode ]; then
      /usr/bin/time -f '%e %M' -o "$work/time.txt" "$bin/ncf-transcode" --path "$csv" --output "$work/transcoded" > /dev/null
    else
      /usr/bin/time -f '%e %M' -o "$work/time.txt" "$py" "$here/scripts/transcode_pandas.py" "$csv" "$work/transcoded"
    fi
    read -r wall kb < "$work/time.txt"
    walls+=("$wall"); rss+=("$((kb / 1024))")
    printf '%-16s %-4s %10s %14s\n' "$tool" "$i" "$wall" "$((kb / 1024))"
  done
  printf '%-16s %-4s %10s %14s\n' "$tool" median "$(median "${walls[@]}")" "$(median "${rss[@]}")"
done
