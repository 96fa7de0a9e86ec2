#!/usr/bin/env bash
# Inference benchmark, side by side: NVIDIA's inference.py on the CPU (scripts/reference-cpu/, when
# NCF_REFERENCE_DIR is set), ncf-infer timing the plain forward pass (--no-tables), and ncf-infer as
# it runs by default (first MLP layer read from per-user and per-item tables made once per model).
# The ML-20m shape (138,493 users, 26,744 items), random weights, random ids, float32 on the CPU.
# Prints each run's mean samples/s per batch size, then the median of the runs and the ratios.
#   NCF_REFERENCE_DIR=/path/to/DeepLearningExamples/PyTorch/Recommendation/NCF \
#     scripts/bench-infer.sh [RUNS=3] [BATCH_SIZES=1024,16384,262144] [NUM_BATCHES=50]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
runs="${1:-3}"; sizes="${2:-1024,16384,262144}"; nb="${3:-50}"
bin="${NCF_INFER:-${CARGO_TARGET_DIR:-$here/target}/release/ncf-infer}"
[ -x "$bin" ] || { echo "bench-infer: $bin not found; run 'make release' (or set NCF_INFER)" >&2; exit 1; }
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
engines=("ncf-infer --no-tables" "ncf-infer")
[ -n "${NCF_REFERENCE_DIR:-}" ] && engines=("reference inference.py" "${engines[@]}")
echo "bench-infer: batch sizes $sizes, $nb timed batches each, $runs runs, $(nproc) cores of $(lscpu | sed -n 's/^Model name: *//p' | head -1)"
for run in $(seq 1 "$runs"); do
  for k in "${!engines[@]}"; do
    log="$work/$k-$run.json"
    case "${engines[$k]}" in
      reference*) NCF_REFERENCE_SCRIPT=inference.py "$here/scripts/reference-cpu/ncf-reference.sh" \
                    --batch_sizes "$sizes" --num_batches "$nb" --log_path "$log" > /dev/null ;;
      "ncf-infer --no-tables") "$bin" --device cpu --batch_sizes "$sizes" --num_batches "$nb" --no-tables --log_path "$log" > /dev/null 2>&1 ;;
      *) "$bin" --device cpu --batch_sizes "$sizes" --num_batches "$nb" --log_path "$log" > /dev/null 2>&1 ;;
    esac
  done
done
python3 - "$work" "$runs" "$sizes" "${engines[@]}" <<'PY'
import json, statistics, sys
work, runs, sizes, engines = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(","), sys.argv[4:]
def figures(k, run):
    lines = [json.loads(l[5:]) for l in open(f"{work}/{k}-{run}.json") if l.startswith("DLLL ")]
    data = [l for l in lines if l.get("type") == "LOG" and l.get("step") == []][-1]["data"]
    return [data[f"batch_{b}_mean_throughput"] for b in sizes]
med = {}
print(f"{'engine':<24}" + "".join(f"{'batch ' + b:>16}" for b in sizes))
for k, name in enumerate(engines):
    per_run = [figures(k, r) for r in range(1, runs + 1)]
    for r, f in enumerate(per_run, 1):
        print(f"{name + ' #' + str(r):<24}" + "".join(f"{x:>16,.0f}" for x in f))
    med[name] = [statistics.median(col) for col in zip(*per_run)]
print()
for name, m in med.items():
    print(f"{name + ' median':<24}" + "".join(f"{x:>16,.0f}" for x in m))
base = engines[0]
for name in engines[1:]:
    print(f"{name + ' / ' + base:<24}" + "".join(f"{a / b:>15.2f}x" for a, b in zip(med[name], med[base])))
PY
