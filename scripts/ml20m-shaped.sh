#!/usr/bin/env bash
# Sourced by bench-recommend.sh and bench-full-eval.sh: an ML-20m-shaped dataset and random
# checkpoints of MF and NeuMF for it. Expects $bin (release binaries) and $python; sets $work,
# $data, $users, $items; writes $work/mf.pth and $work/neumf.pth.
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
