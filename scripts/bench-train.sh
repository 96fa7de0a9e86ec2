#!/usr/bin/env bash
# Training benchmark and accuracy harness: runs ncf-train once per seed on a dataset and prints, per
# seed, every epoch's train samples/s, eval samples/s and HR@k, then the mean per-epoch train
# throughput and best HR@k of each seed and their averages. Works on CPU and GPU (pass --device).
#   scripts/bench-train.sh DATA "SEEDS" [ncf-train flags...]
#   scripts/bench-train.sh ../shared/data/reference-prepared/ml-latest-small "1 2 3" -b 16384 --valid_batch_size 65536 -e 20
# NCF_TRAIN (default: the release build of this checkout) picks the binary.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
data="$1"; seeds="$2"; shift 2
bin="${NCF_TRAIN:-${CARGO_TARGET_DIR:-$here/target}/release/ncf-train}"
[ -x "$bin" ] || { echo "bench-train: $bin not found; run 'make release' (or set NCF_TRAIN)" >&2; exit 1; }
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
echo "bench-train: $bin --data $data $* (seeds: $seeds) on $(nproc) CPU cores$(command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | sed 's/^/, GPU: /')"
for seed in $seeds; do
  "$bin" --data "$data" --seed "$seed" --checkpoint_dir "" --log_path "$work/log-$seed.json" "$@" 2> "$work/err-$seed.txt" > /dev/null \
    || { cat "$work/err-$seed.txt" >&2; exit 1; }
done
python3 - "$work" $seeds <<'PY'
import json, sys
work, seeds = sys.argv[1], sys.argv[2:]
best_hrs, means = [], []
for seed in seeds:
    lines = [json.loads(l[5:]) for l in open(f"{work}/log-{seed}.json") if l.startswith("DLLL ")]
    epochs = [l for l in lines if l["type"] == "LOG" and isinstance(l["step"], list) and len(l["step"]) == 1]
    hr_key = next(k for k in epochs[0]["data"] if k.startswith("hr@"))
    print(f"seed {seed}:  epoch  train samples/s  eval samples/s  {hr_key}")
    for e in epochs:
        d = e["data"]
        print(f"          {e['step'][0]:5d}  {d['train_throughput']:15.0f}  {d['eval_throughput']:14.0f}  {d[hr_key]:.4f}")
    end = [l for l in lines if l["type"] == "LOG" and l["step"] == []][-1]["data"]
    means.append(end["mean_train_throughput"]); best_hrs.append(end["best_accuracy"])
    print(f"          mean train {end['mean_train_throughput']:.0f} samples/s, best {hr_key} {end['best_accuracy']:.4f} at epoch {end['best_epoch']}")
print(f"seeds {' '.join(seeds)}: mean train throughput {sum(means)/len(means):.0f} samples/s, "
      f"best HR per seed {' '.join(f'{h:.4f}' for h in best_hrs)}, average {sum(best_hrs)/len(best_hrs):.4f}")
PY
