#!/usr/bin/env bash
# `ncf-infer recommend --all` for MF against NeuMF on an ML-20m-shaped dataset: the time to recommend
# 10 items to every user. Random weights (the time does not depend on them), saved as PyTorch state
# dicts by the test venv's python3 with each model's keys and shapes. NeuMF scores every item with an
# MLP per pair, MF with one matrix product per block of users, so NeuMF runs on the first
# NEUMF_USERS users only (default 5000) and its all-user time is extrapolated (users are
# independent; the per-user cost is flat after the first block).
#
#   scripts/bench-recommend.sh [DATA]
#
# DATA defaults to an ML-20m-shaped synthetic dataset made here with `ncf-prepare synthetic`
# (138,493 users, 26,744 items, 20,000,263 ratings) in $BENCH_DIR (default: a temporary folder).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${CARGO_TARGET_DIR:-$here/target}/release"
python="${NCF_PYTHON:-$here/.torch-venv/bin/python3}"
for b in ncf-infer ncf-prepare; do
  [ -x "$bin/$b" ] || { echo "bench-recommend: $bin/$b not found; run 'make release'" >&2; exit 1; }
done
# shellcheck source=scripts/ml20m-shaped.sh
source "$here/scripts/ml20m-shaped.sh"
neumf_users="${NEUMF_USERS:-5000}"
"$python" - "$data" "$work/first-users.txt" "$neumf_users" <<'PY'
import os, sys, torch
data, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
ids = None
for name in ("user_ids.pt", "user_ids.txt"):
    p = os.path.join(data, name)
    if os.path.exists(p):
        ids = torch.load(p).tolist() if name.endswith(".pt") else open(p).read().split("\n")
        break
ids = ids if ids is not None else list(range(n))
open(out, "w").write(",".join(str(x) for x in ids[:n]))
PY
cpu="$(lscpu | sed -n 's/^Model name: *//p' | head -1)"
echo "bench-recommend: $users users x $items items, top 10 each, $(nproc) cores of $cpu"
time_it() { # model, name of the run, then recommend's arguments
  local name="$1" run="$2"; shift 2
  local start end
  start=$(date +%s.%N)
  "$bin/ncf-infer" recommend --data "$data" --load_checkpoint_path "$work/$name.pth" --device cpu "$@" \
    --output "$work/$run-recs.csv" 2> "$work/$run.err" || { cat "$work/$run.err" >&2; exit 1; }
  end=$(date +%s.%N)
  echo "$end - $start" | bc
}
mf=$(time_it mf mf --all)
neumf=$(time_it neumf neumf --users "$(cat "$work/first-users.txt")")
# --bf16 (bfloat16 candidates, float32 ranking) where the CPU has bfloat16 instructions.
bf16=""
grep -qw avx512_bf16 /proc/cpuinfo && bf16=$(time_it neumf neumf-bf16 --users "$(cat "$work/first-users.txt")" --bf16)
printf '%-14s %10s %14s %18s\n' model users seconds "all users (s)"
printf '%-14s %10d %14.1f %18.1f\n' MF "$users" "$mf" "$mf"
row() { # label, seconds
  printf '%-14s %10d %14.1f %18.0f  (extrapolated: %.1f min)\n' "$1" "$neumf_users" "$2" \
    "$(echo "$2 * $users / $neumf_users" | bc -l)" "$(echo "$2 * $users / $neumf_users / 60" | bc -l)"
}
row NeuMF "$neumf"
if [ -n "$bf16" ]; then
  row "NeuMF --bf16" "$bf16"
  # The two runs' lists (float32 ranks bfloat16's candidates): users whose ten items are the same.
  "$python" - "$work/neumf-recs.csv" "$work/neumf-bf16-recs.csv" <<'PY'
import csv, sys
def lists(path):
    out = {}
    for row in csv.DictReader(open(path)):
        out.setdefault(row["user"], set()).add(row["item"])
    return out
a, b = lists(sys.argv[1]), lists(sys.argv[2])
same = sum(a[u] == b.get(u) for u in a)
print(f"--bf16 lists equal to float32's (as sets) for {same} of {len(a)} users")
PY
fi
