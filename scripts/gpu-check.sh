#!/usr/bin/env bash
# The prepared GPU check (issues: training speed, inference). Runs ON the lent GPU machine, in the
# repository root, with the release binaries and a helper file carried in gpu-bin/ (made here by
# `scripts/gpu-check.sh --pack`, which builds nothing there). In one run of at most ~8 minutes it:
#   1. shows the card and proves CUDA is used (ncf-train --runtime-info, libtorch_cuda mapped);
#   2. makes an ML-20m-shaped dataset with `ncf-prepare synthetic` (138,493 users, 26,744 items, about
#      20M ratings; every core, seconds rather than the minutes make_ml20m_like.py took) and prepares it;
#   3. trains 3 epochs FP32/TF32 and 3 epochs AMP at batch 1,048,576, printing samples/s and HR@10
#      per epoch, and the same with a plain PyTorch NeuMF loop on the machine's own torch (baseline);
#   4. times inference at batch 1,024 ... 1,048,576 in float32 (TF32) and float16;
#   5. runs one epoch through the NCCL path with one rank (--nproc-per-node 1), and 6. the same
#      under torchrun (python -m torch.distributed.run --no-python); both bounded (--dist-timeout 60);
#   7. trains 2 CPU ranks over gloo on a small synthetic dataset, checking the replicas every step.
# Every figure also lands in $OUT (logs, tables).
#   here:  scripts/gpu-check.sh --pack                  (release build + gpu-bin/)
#          scripts/gpu-check.sh --local                 (the same steps on this CPU, tiny sizes)
#   there: bash scripts/gpu-check.sh                    (run tool, carry gpu-bin)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
pack="$here/gpu-bin"

if [ "${1:-}" = "--pack" ]; then
  cargo build --release --workspace --bins --examples   # as `make release`: one feature set, shared artefacts
  rm -rf "$pack" && mkdir -p "$pack"
  # Stripped: the device tool carries at most 64 MiB (about 32 MiB stripped, 430 MB with line tables).
  for b in ncf-prepare ncf-train ncf-infer; do strip -o "$pack/$b" "${CARGO_TARGET_DIR:-$here/target}/release/$b"; done
  cp "$here/scripts/pytorch_ncf_baseline.py" "$pack/"
  du -sh "$pack"
  exit 0
fi

local_run=0
[ "${1:-}" = "--local" ] && local_run=1
out="${OUT:-$(mktemp -d)}"
mkdir -p "$out"
work="$(mktemp -d)"
py="${NCF_GPU_PYTHON:-python3}"
if [ "$local_run" = 1 ]; then
  py="$here/.torch-venv/bin/python3"; device=cpu; batch=16384; epochs=1; sizes=1024,16384; nb=20
else
  device=cuda; batch=1048576; epochs=3; sizes=1024,16384,262144,1048576; nb=100
  # The binaries were linked here with an rpath to this machine's libtorch; there, use the
  # machine's own PyTorch 2.11.0 (the same version).
  torch_lib="$("$py" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
  export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
bin="$pack"
chmod +x "$bin"/ncf-* 2> /dev/null || true   # in case the carried copy lost its mode bits
[ -x "$bin/ncf-train" ] || { echo "gpu-check: $bin/ncf-train missing; run scripts/gpu-check.sh --pack first" >&2; exit 1; }
step() { echo; echo "== $* ($(date +%T))"; }

step "1. card and runtime"
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$bin/ncf-train" --runtime-info | tee "$out/runtime.txt"
if [ "$local_run" = 0 ]; then grep -q "CUDA available: yes" "$out/runtime.txt" || echo "gpu-check: WARNING: CUDA not reported available"; fi

step "2. dataset"
if [ "$local_run" = 1 ]; then
  "$bin/ncf-prepare" synthetic --output "$work/data" > /dev/null
else
  ml20m=(synthetic --users 138493 --items 26744 --interactions 20000263 --output "$work/data")
  if [ -x /usr/bin/time ]; then
    /usr/bin/time -f "ncf-prepare synthetic (write + prepare): %e s, %M KB" "$bin/ncf-prepare" "${ml20m[@]}"
  else
    TIMEFORMAT="ncf-prepare synthetic (write + prepare): %R s"; time "$bin/ncf-prepare" "${ml20m[@]}"
  fi
fi

summary() { # log file, label
  [ -s "$1" ] || { echo "$2: no log (the run failed)" | tee -a "$out/table.txt"; return 0; }
  "$py" - "$1" "$2" <<'PY' || true
import json, sys
lines = [json.loads(l[5:]) for l in open(sys.argv[1]) if l.startswith("DLLL ")]
for l in lines:
    if l["type"] == "LOG" and isinstance(l["step"], list) and len(l["step"]) == 1:
        d = l["data"]
        print(f"{sys.argv[2]} epoch {l['step'][0]}: {d['train_throughput']:.0f} samples/s, HR@10 {d['hr@10']:.4f}, eval {d['eval_throughput']:.0f} rows/s")
PY
}
# A failing run is reported (its stderr's tail) and the check goes on to the next step. The command
# is ncf-train itself or a launcher of it; ${limit:-240} s bound it.
train() { # label, command (ncf-train or a launcher of it) and its args...
  local label="$1"; shift
  if timeout "${limit:-240}" "$@" --checkpoint_dir "" --log_path "$out/train-$label.json" 2> "$out/train-$label.err" > /dev/null; then
    grep -h "ncf-train: rank\|ncf-train: all\|NCCL" "$out/train-$label.err" | head -5 || true
  else
    echo "gpu-check: ncf-train $label FAILED:"; tail -8 "$out/train-$label.err"
  fi
  summary "$out/train-$label.json" "ncf-train $label" | tee -a "$out/table.txt"
}

step "3. training, batch $batch, $epochs epochs"
for mode in tf32 amp; do
  flags=""
  [ "$mode" = amp ] && flags="--amp"
  [ "$local_run" = 1 ] && [ "$mode" = amp ] && continue   # --amp is CUDA-only
  train "$mode" "$bin/ncf-train" --data "$work/data" -e "$epochs" -b "$batch" --seed 1 --device "$device" $flags
  timeout 240 "$py" "$bin/pytorch_ncf_baseline.py" "$work/data" --epochs "$epochs" --batch_size "$batch" --device "$device" $flags \
    | tee -a "$out/table.txt" || echo "gpu-check: the PyTorch baseline ($mode) FAILED"
done

step "4. inference"
"$bin/ncf-infer" --device "$device" --batch_sizes "$sizes" --num_batches "$nb" --log_path "$out/infer-fp32.json" | tee -a "$out/table.txt" \
  || echo "gpu-check: fp32 inference FAILED"
if [ "$local_run" = 0 ]; then
  "$bin/ncf-infer" --device "$device" --fp16 --batch_sizes "$sizes" --num_batches "$nb" --log_path "$out/infer-fp16.json" | tee -a "$out/table.txt" \
    || echo "gpu-check: fp16 inference FAILED"
fi

if [ "$local_run" = 0 ]; then
  # Last, and bounded: NCCL has never run on these machines (gVisor on some); a hang must not
  # cost the figures above. NCCL_DEBUG=WARN makes a failure explain itself.
  export NCCL_DEBUG="${NCCL_DEBUG:-WARN}"
  step "5. the NCCL path with one rank (init, broadcast, all-reduce every step, summed eval)"
  train nccl1 "$bin/ncf-train" --nproc-per-node 1 --dist-timeout 60 --data "$work/data" -e 1 -b "$batch" --seed 1
  step "6. the same under torchrun (ranks meet through its agent's TCPStore)"
  limit=150 train torchrun1 "$py" -m torch.distributed.run --no-python --nproc-per-node 1 --master-port 29533 \
    "$bin/ncf-train" --dist-timeout 60 --data "$work/data" -e 1 -b "$batch" --seed 1
fi

# Both modes: the gloo path, 2 CPU processes on a small synthetic dataset (seconds), parameters
# compared across the ranks after every step. (Gloo on CUDA tensors is not built: --dist-backend
# gloo asks for --device cpu.)
step "7. gloo: 2 CPU ranks (--nproc-per-node 2 --device cpu --check-replicas step)"
"$bin/ncf-prepare" synthetic --output "$work/small" > /dev/null 2>&1 || echo "gpu-check: the small dataset FAILED"
limit=150 train gloo2 "$bin/ncf-train" --nproc-per-node 2 --master-port 29535 --device cpu --check-replicas step \
  --dist-timeout 60 --data "$work/small" -e 2 -b 16384 --seed 1

step "table"
cat "$out/table.txt"
rm -rf "$work"
