#!/usr/bin/env bash
# Accuracy parity with NVIDIA's reference: trains ncf-train and the reference's ncf.py (on the CPU,
# through scripts/reference-cpu/) once per seed on the same prepared dataset with the same flags, then
# prints each seed's best HR@k, both means and standard deviations, the gap (ours - reference) and its
# standard error (unpaired: the two programs draw different random numbers from the same seed, so
# seed k of one has nothing to do with seed k of the other), and whether the gap is within
# max(0.003, one standard error).
#
#   NCF_REFERENCE_DIR=/path/to/DeepLearningExamples/PyTorch/Recommendation/NCF \
#     scripts/accuracy-parity.sh ../shared/data/reference-prepared/ml-latest-small "$(seq -s ' ' 1 10)" \
#       -b 16384 --valid_batch_size 65536 -e 20
#
# Environment:
#   NCF_REFERENCE_DIR  a checkout of DeepLearningExamples' PyTorch/Recommendation/NCF (never committed)
#   PARITY_OUT         folder for the per-run logs (default: a temporary one). A run whose log already
#                      holds its end line is not run again, so an interrupted sitting can be resumed
#                      and a finished one summarised again.
#   PARITY_SIDES       "ours reference" (default), or one of them
#   NCF_TRAIN          our binary (default: this checkout's release build)
# Extra ncf-train environment (e.g. NCF_REPRODUCIBLE=1) reaches our runs as it is.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[ $# -ge 2 ] || { sed -n '2,20p' "$0" >&2; exit 2; }
data="$1"; seeds="$2"; shift 2
sides="${PARITY_SIDES:-ours reference}"
ours="${NCF_TRAIN:-${CARGO_TARGET_DIR:-$here/target}/release/ncf-train}"
reference="$here/scripts/reference-cpu/ncf-reference.sh"
python="${NCF_PYTHON:-$here/.torch-venv/bin/python3}"
case " $sides " in *" ours "*) [ -x "$ours" ] || { echo "accuracy-parity: $ours not found; run 'make release' (or set NCF_TRAIN)" >&2; exit 1; } ;; esac
case " $sides " in *" reference "*) [ -f "${NCF_REFERENCE_DIR:-/nonexistent}/ncf.py" ] || { echo "accuracy-parity: set NCF_REFERENCE_DIR to a checkout of DeepLearningExamples/PyTorch/Recommendation/NCF" >&2; exit 1; } ;; esac
if [ -n "${PARITY_OUT:-}" ]; then out="$PARITY_OUT"; mkdir -p "$out"; else out="$(mktemp -d)"; trap 'rm -rf "$out"' EXIT; fi

finished() { [ -f "$1" ] && grep -q '"step": \[\]' "$1"; }
cpu="$(lscpu | sed -n 's/^Model name: *//p' | head -1)"
echo "accuracy-parity: data $data, flags: $*, seeds: $seeds, $(nproc) cores of $cpu, logs in $out"
for seed in $seeds; do
  for side in $sides; do
    log="$out/$side-$seed.json"
    finished "$log" && continue
    rm -f "$log"
    cmd="$ours"; [ "$side" = reference ] && cmd="$reference"
    start=$(date +%s)
    "$cmd" --data "$data" --seed "$seed" --checkpoint_dir "" --log_path "$log.tmp" "$@" > "$out/$side-$seed.out" 2>&1 \
      || { echo "accuracy-parity: $side seed $seed failed:" >&2; tail -20 "$out/$side-$seed.out" >&2; exit 1; }
    mv "$log.tmp" "$log"
    echo "accuracy-parity: $side seed $seed done in $(( $(date +%s) - start )) s"
  done
done

"$python" - "$out" "$sides" $seeds <<'PY'
import json, math, sys
out, sides, seeds = sys.argv[1], sys.argv[2].split(), sys.argv[3:]

def best(side, seed):
    lines = [json.loads(l[5:]) for l in open(f"{out}/{side}-{seed}.json") if l.startswith("DLLL ")]
    end = [l for l in lines if l.get("type") == "LOG" and l.get("step") == []][-1]["data"]
    return end["best_accuracy"]

def stats(xs):
    n = len(xs)
    mean = sum(xs) / n
    var = sum((x - mean) ** 2 for x in xs) / (n - 1) if n > 1 else float("nan")
    return mean, var, n

hr = {side: [best(side, s) for s in seeds] for side in sides}
print("seed  " + "  ".join(f"{side:>9}" for side in sides))
for i, s in enumerate(seeds):
    print(f"{s:>4}  " + "  ".join(f"{hr[side][i]:9.4f}" for side in sides))
summary = {side: stats(hr[side]) for side in sides}
for side, (mean, var, n) in summary.items():
    print(f"{side:>9}: mean best HR {mean:.4f}, sd {math.sqrt(var):.4f}, n {n}")
if len(sides) == 2:
    (m1, v1, n1), (m2, v2, n2) = summary["ours"], summary["reference"]
    gap, se = m1 - m2, math.sqrt(v1 / n1 + v2 / n2)
    bound = max(0.003, se)
    verdict = "within" if abs(gap) <= bound else "OUTSIDE"
    print(f"gap (ours - reference) {gap:+.4f}, standard error {se:.4f}: {verdict} max(0.003, SE) = {bound:.4f}")
PY
