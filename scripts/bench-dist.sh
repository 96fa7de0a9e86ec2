#!/usr/bin/env bash
# Data-parallel training on CPUs (gloo) against one process, on this machine, plus a model on paper
# of N machines. Prints a table of training samples/s (median over epochs) of
#   1 process x T threads   against   T processes x 1 thread (ncf-train --nproc-per-node T --device cpu)
# on two datasets: ml-latest-small (the reference's prepared files) and a synthetic dataset with
# ML-20m's 138,493 users and 26,744 items (so each step all-reduces ML-20m's dense gradient:
# NeuMF's embeddings get dense gradients, as in the reference), then the bytes each step
# all-reduces and the step time of N machines at 10 and 100 Gb/s, from the measured one-machine
# speed and a ring all-reduce's traffic (2 (N-1)/N x bytes per rank, 50 us per message).
#   scripts/bench-dist.sh [EPOCHS]        (default 4; needs `make release`)
# NCF_TRAIN / NCF_PREPARE pick the binaries; NCF_SHARED_DIR the shared data (default ../shared).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
epochs="${1:-4}"
target="${CARGO_TARGET_DIR:-$here/target}/release"
train="${NCF_TRAIN:-$target/ncf-train}"
prepare="${NCF_PREPARE:-$target/ncf-prepare}"
shared="${NCF_SHARED_DIR:-$here/../shared}"
python="$here/.torch-venv/bin/python3"
for b in "$train" "$prepare"; do [ -x "$b" ] || { echo "bench-dist: $b not found; run 'make release'" >&2; exit 1; }; done
threads="$(nproc)"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
cpu="$(lscpu | sed -n 's/^Model name: *//p' | head -1) (family $(lscpu | sed -n 's/^CPU family: *//p' | head -1), model $(lscpu | sed -n 's/^Model: *//p' | head -1))"
echo "bench-dist: $threads cores, $cpu; $epochs epochs per run"

small="$shared/data/reference-prepared/ml-latest-small"
echo "bench-dist: preparing a synthetic dataset of ML-20m's users and items (2M ratings)" >&2
"$prepare" synthetic --users 138493 --items 26744 --interactions 2000000 --output "$work/ml20m-widths" > /dev/null 2> "$work/err" \
  || { cat "$work/err" >&2; exit 1; }

port=29611
run() { # name data batch procs
  local name="$1" data="$2" batch="$3" procs="$4"
  local log="$work/$name-$procs.json" ckpt="$work/ckpt-$name-$procs"
  if [ "$procs" = 1 ]; then
    OMP_NUM_THREADS="$threads" "$train" --device cpu --data "$data" -b "$batch" -e "$epochs" --seed 1 \
      --checkpoint_dir "$ckpt" --log_path "$log" > /dev/null 2> "$work/err" || { cat "$work/err" >&2; exit 1; }
  else
    port=$((port + 1))
    "$train" --nproc-per-node "$procs" --master-port "$port" --device cpu --data "$data" -b "$batch" -e "$epochs" \
      --seed 1 --checkpoint_dir "$ckpt" --log_path "$log" > /dev/null 2> "$work/err" || { cat "$work/err" >&2; exit 1; }
  fi
}
run small "$small" 16384 1
run small "$small" 16384 "$threads"
run ml20m "$work/ml20m-widths" 1048576 1
run ml20m "$work/ml20m-widths" 1048576 "$threads"

"$python" - "$work" "$threads" <<'PY'
import json, statistics, sys, torch
work, threads = sys.argv[1], int(sys.argv[2])
def epochs(path):
    lines = [json.loads(l[5:]) for l in open(path) if l.startswith("DLLL ")]
    return [l["data"] for l in lines if l["type"] == "LOG" and isinstance(l["step"], list) and len(l["step"]) == 1]
print(f"\n| dataset (batch) | 1 process x {threads} threads | {threads} processes x 1 thread (gloo) | ratio | best HR@10 (1 / {threads}) |")
print("|---|---|---|---|---|")
rates = {}
for name, label in [("small", "ml-latest-small (16384)"), ("ml20m", "ML-20m widths, 2M ratings (2^20)")]:
    one, many = epochs(f"{work}/{name}-1.json"), epochs(f"{work}/{name}-{threads}.json")
    # The first epoch warms allocators and caches: the median of the others.
    r1 = statistics.median(e["train_throughput"] for e in one[1:] or one)
    rn = statistics.median(e["train_throughput"] for e in many[1:] or many)
    rates[name] = r1
    hr = lambda es: max(e["hr@10"] for e in es)
    print(f"| {label} | {r1:,.0f} samples/s | {rn:,.0f} samples/s | {rn / r1:.2f} | {hr(one):.4f} / {hr(many):.4f} |")
state = torch.load(f"{work}/ckpt-ml20m-1/model.pth", weights_only=True)
params = sum(t.numel() for t in state.values())
D = params * 4
print(f"\nNeuMF at ML-20m's widths: {params:,} parameters, {D:,} bytes ({D / 1e6:.1f} MB) all-reduced per step "
      f"(embeddings {sum(t.numel() for k, t in state.items() if 'embed' in k) * 4 / 1e6:.1f} MB, dense as in the reference)")
r = rates["ml20m"]
B, steps = 2 ** 20, 94   # ML-20m: 19.79M train positives x 5 = 98.96M samples, 94 full batches of 2^20
print(f"\nModel on paper: N machines like this one ({r:,.0f} samples/s each, measured above), ML-20m, batch 2^20,")
print("step = 2^20/(N x rate) + ring all-reduce (2 (N-1)/N x bytes / bandwidth + 2 (N-1) x 50 us):\n")
print("| N | compute ms/step | 10 Gb/s: comm ms | step ms | epoch s | speed-up | 100 Gb/s: comm ms | step ms | epoch s | speed-up |")
print("|---|---|---|---|---|---|---|---|---|---|")
base = B / r
for n in [1, 2, 4, 8, 16, 64]:
    compute = B / (n * r)
    row = [f"{n}", f"{compute * 1e3:,.0f}"]
    for gbps in [10, 100]:
        comm = 0.0 if n == 1 else 2 * (n - 1) / n * D / (gbps * 1e9 / 8) + 2 * (n - 1) * 50e-6
        step = compute + comm
        row += [f"{comm * 1e3:,.0f}", f"{step * 1e3:,.0f}", f"{step * steps:,.1f}", f"{base / step:.1f}x"]
    print("| " + " | ".join(row) + " |")
PY
