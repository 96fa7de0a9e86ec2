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
work="${BENCH_DIR:-}"
if [ -z "$work" ]; then work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT; fi
mkdir -p "$work"
data="${1:-}"
if [ -z "$data" ]; then
  data="$work/ml20m-shaped"
  if [ ! -f "$data/feature_spec.yaml" ]; then
    "$bin/ncf-prepare" synthetic --users 138493 --items 26744 --interactions 20000263 --output "$data" >/dev/null
  fi
fi
read -r users items < <("$python" - "$data/feature_spec.yaml" <<'PY'
import sys, yaml
spec = yaml.safe_load(open(sys.argv[1]))
fs = spec["feature_spec"]
user = spec["channel_spec"]["user_ch"][0]
item = spec["channel_spec"]["item_ch"][0]
print(fs[user]["cardinality"], fs[item]["cardinality"])
PY
)
"$python" - "$work" "$users" "$items" <<'PY'
import sys, torch
out, u, i = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.manual_seed(0)
r = lambda *s: torch.randn(*s) * 0.1
torch.save({"user_embed.weight": r(u, 64), "item_embed.weight": r(i, 64), "user_bias.weight": r(u, 1),
            "item_bias.weight": r(i, 1), "global_bias": r(1)}, f"{out}/mf.pth")
layers = [256, 256, 128, 64]
sd = {"mf_user_embed.weight": r(u, 64), "mf_item_embed.weight": r(i, 64),
      "mlp_user_embed.weight": r(u, 128), "mlp_item_embed.weight": r(i, 128)}
for k, (a, b) in enumerate(zip(layers[:-1], layers[1:])):
    sd[f"mlp.{k}.weight"], sd[f"mlp.{k}.bias"] = r(b, a), r(b)
sd["final.weight"], sd["final.bias"] = r(1, 128), r(1)
torch.save(sd, f"{out}/neumf.pth")
PY
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
time_it() { # model, then recommend's arguments
  local name="$1"; shift
  local start end
  start=$(date +%s.%N)
  "$bin/ncf-infer" recommend --data "$data" --load_checkpoint_path "$work/$name.pth" --device cpu "$@" \
    --output "$work/$name-recs.csv" 2> "$work/$name.err" || { cat "$work/$name.err" >&2; exit 1; }
  end=$(date +%s.%N)
  echo "$end - $start" | bc
}
mf=$(time_it mf --all)
neumf=$(time_it neumf --users "$(cat "$work/first-users.txt")")
printf '%-8s %10s %14s %18s\n' model users seconds "all users (s)"
printf '%-8s %10d %14.1f %18.1f\n' MF "$users" "$mf" "$mf"
printf '%-8s %10d %14.1f %18.0f  (extrapolated: %.1f min)\n' NeuMF "$neumf_users" "$neumf" \
  "$(echo "$neumf * $users / $neumf_users" | bc -l)" "$(echo "$neumf * $users / $neumf_users / 60" | bc -l)"
