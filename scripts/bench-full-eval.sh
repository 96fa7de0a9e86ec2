#!/usr/bin/env bash
# What `ncf-train --eval full` costs on an ML-20m-shaped model, against the sampled evaluation and
# against the all-item scoring alone: `ncf-train --mode test` with random MF and NeuMF checkpoints
# (the time does not depend on the weights), sampled only, then `--eval full` on all users (MF) or
# `--eval-users N` (NeuMF; default 10000). Wall time of each whole command (loading included).
#
#   BENCH_DIR=runs scripts/bench-full-eval.sh [DATA]
#
# DATA and BENCH_DIR as for scripts/bench-recommend.sh (the dataset and checkpoints are shared).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${CARGO_TARGET_DIR:-$here/target}/release"
python="${NCF_PYTHON:-$here/.torch-venv/bin/python3}"
for b in ncf-train ncf-prepare; do
  [ -x "$bin/$b" ] || { echo "bench-full-eval: $bin/$b not found; run 'make release'" >&2; exit 1; }
done
# shellcheck source=scripts/ml20m-shaped.sh
source "$here/scripts/ml20m-shaped.sh"
neumf_users="${NEUMF_USERS:-10000}"
cpu="$(lscpu | sed -n 's/^Model name: *//p' | head -1)"
echo "bench-full-eval: $users users x $items items, $(nproc) cores of $cpu"
run() { # label, then ncf-train's arguments
  local label="$1"; shift
  local start end
  start=$(date +%s.%N)
  "$bin/ncf-train" --data "$data" --mode test --device cpu --log_path "$work/eval.json" "$@" > "$work/eval.out" 2>&1 \
    || { cat "$work/eval.out" >&2; exit 1; }
  end=$(date +%s.%N)
  printf '%-44s %10.1f s   %s\n' "$label" "$(echo "$end - $start" | bc)" "$(grep -m1 'full ranking' "$work/eval.out" | cut -c1-60)"
}
run "MF, sampled (100 negatives)" --load_checkpoint_path "$work/mf.pth"
run "MF, --eval full, all $users users" --load_checkpoint_path "$work/mf.pth" --eval full
run "NeuMF, sampled (100 negatives)" --load_checkpoint_path "$work/neumf.pth"
run "NeuMF, --eval full --eval-users $neumf_users" --load_checkpoint_path "$work/neumf.pth" --eval full --eval-users "$neumf_users"
