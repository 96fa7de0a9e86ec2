#!/usr/bin/env bash
# ncf-serve under load (issue #28), against `ncf-infer recommend` (the same model's users/s with no
# server) and against the way a Python user would serve the checkpoint (scripts/serve_fastapi.py:
# FastAPI + uvicorn + PyTorch, every item scored per request), on an ML-20m-shaped dataset (138,493
# users, 26,744 items) with random MF and NeuMF checkpoints (the time does not depend on the
# weights). Single-user top-10 requests for random users (`GET /v1/users/{1..99999}/recommendations
# ?k=10`) from `oha` (cargo install oha).
#
#   scripts/bench-serve.sh [DATA]        # DURATION=15 seconds per load point, MODELS="mf neumf"
#                                        # FASTAPI=0 skips the FastAPI rows
#
# Per model it prints: ncf-infer's users/s and users per CPU-second; each server's throughput at
# saturation (32 connections without pause) and the server's own CPU-seconds per request there;
# p50/p99 latency with one connection (unloaded) and at 25/50/90% of ncf-serve's saturation (oha's
# rate limit, requests spread evenly, latency corrected for coordinated omission); failed requests;
# ncf-serve's resident memory (after start-up and its peak). The load generator shares the
# machine's cores with the server, as it would on a 2-core box: read the ratios, not the absolutes.
#
# PIN=1 instead gives each side its own core, as a load generator on another machine would: the
# model's side (ncf-infer, ncf-serve with --threads 1, FastAPI with one worker of one thread) runs
# on core 0 alone and oha on core 1, so "served users/s against ncf-infer's" compares one core's
# work with and without the serving around it.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${CARGO_TARGET_DIR:-$here/target}/release"
python="${NCF_PYTHON:-$here/.torch-venv/bin/python3}"
duration="${DURATION:-15}"
for b in ncf-serve ncf-infer ncf-prepare; do
  [ -x "$bin/$b" ] || { echo "bench-serve: $bin/$b not found; run 'make release'" >&2; exit 1; }
done
command -v oha >/dev/null || { echo "bench-serve: needs oha (cargo install oha)" >&2; exit 1; }
"$python" -c "import fastapi, uvicorn" 2>/dev/null || { echo "bench-serve: $python needs fastapi and uvicorn (pip install fastapi uvicorn)" >&2; exit 1; }
# shellcheck source=scripts/ml20m-shaped.sh
source "$here/scripts/ml20m-shaped.sh"
cpu="$(lscpu | sed -n 's/^Model name: *//p' | head -1)"
echo "bench-serve: $users users x $items items, top 10 per request, $(nproc) cores of $cpu, ${duration} s per load point"
# The model's side runs under $on_model_core; PIN=1 pins it to core 0 (one thread) and oha to core 1.
on_model_core=()
fastapi_shapes=("1 2" "2 1")
if [ "${PIN:-0}" = 1 ]; then
  on_model_core=(taskset -c 0 env OMP_NUM_THREADS=1 MKL_NUM_THREADS=1)
  export OHA_PREFIX="taskset -c 1"
  fastapi_shapes=("1 1")
  echo "PIN=1: ncf-infer, ncf-serve (--threads 1) and FastAPI (1 worker x 1 thread) on core 0 alone, oha on core 1"
fi

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap 'cleanup; [ -z "${BENCH_DIR:-}" ] && rm -rf "$work"' EXIT

wait_up() { # url
  for _ in $(seq 1 600); do curl -sf "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "bench-serve: $1 did not come up" >&2; return 1
}
# shellcheck source=scripts/oha-load.sh
source "$here/scripts/oha-load.sh"
# oha's figures: requests/s, p50 ms, p99 ms, failed (every answer but a 200, and errors).
load() { oha_load "$@" | awk '{print $1, $2, $3, $5 + $6}'; }
cpu_s() { awk '{print ($14 + $15) / 100}' "/proc/$1/stat"; }
rss_mb() { awk '/VmRSS/{print int($2/1024)}' "/proc/$1/status"; }

for model in ${MODELS:-mf neumf}; do
  ckpt="$work/$model.pth"
  # ncf-infer's users/s: every user for MF; NeuMF scores an MLP per pair (minutes per 10k users
  # here), so its first NEUMF_USERS users (users are independent; the rate is flat).
  if [ "$model" = mf ]; then
    n=$users; which=(--all)
  else
    n=${NEUMF_USERS:-600}
    which=(--users "$("$python" -c "import torch,sys; print(','.join(str(x) for x in torch.load(sys.argv[1]).tolist()[:int(sys.argv[2])]))" "$data/user_ids.pt" "$n")")
  fi
  # INFER_ARGS_MF / INFER_ARGS_NEUMF: extra ncf-infer flags per model (e.g. --bf16, beside
  # SERVE_ARGS_NEUMF=--bf16, so both sides rank the same way).
  infer_var="INFER_ARGS_$(tr '[:lower:]' '[:upper:]' <<<"$model")"
  read -r -a infer_extra <<<"${!infer_var:-}"
  "${on_model_core[@]}" "$bin/ncf-infer" recommend --data "$data" --load_checkpoint_path "$ckpt" "${which[@]}" -k 10 \
    --device cpu --output "$work/recs.csv" "${infer_extra[@]}" 2>"$work/infer.log" &
  ipid=$!
  # Its CPU-seconds over the recommending alone (sampled when it prints its rate, before writing).
  infer_cpu0=""
  while kill -0 "$ipid" 2>/dev/null; do
    if [ -z "$infer_cpu0" ] && grep -q "ncf-infer: .* from " "$work/infer.log" 2>/dev/null; then infer_cpu0=$(cpu_s "$ipid"); fi
    if grep -q "users in" "$work/infer.log" 2>/dev/null; then infer_cpu1=$(cpu_s "$ipid" 2>/dev/null || echo 0); break; fi
    sleep 0.05
  done
  wait "$ipid"
  infer=$(sed -n 's/.*users in .* s (\([0-9]*\) users\/s).*/\1/p' "$work/infer.log")
  infer_s=$(sed -n 's/.* users in \([0-9.]*\) s (.*/\1/p' "$work/infer.log")
  per_cpu=$(awk -v n="$n" -v a="${infer_cpu0:-0}" -v b="${infer_cpu1:-0}" 'BEGIN {printf "%.0f", (b > a ? n / (b - a) : 0)}')
  echo
  echo "== $model: ncf-infer recommend: $infer users/s ($n users in $infer_s s; $per_cpu users per CPU-second)"

  port=18090
  # SERVE_ARGS_MF / SERVE_ARGS_NEUMF: extra ncf-serve flags per model (e.g. --threads 1).
  extra_var="SERVE_ARGS_$(tr '[:lower:]' '[:upper:]' <<<"$model")"
  read -r -a extra <<<"${!extra_var:-}"
  [ "${PIN:-0}" = 1 ] && extra+=(--threads 1)
  "${on_model_core[@]}" "$bin/ncf-serve" --data "$data" --load_checkpoint_path "$ckpt" --listen "127.0.0.1:$port" --device cpu \
    --max-queue 4096 --request-timeout-ms 30000 "${extra[@]}" 2>"$work/serve.log" &
  spid=$!; pids+=("$spid")
  echo "ncf-serve flags: --max-queue 4096 --request-timeout-ms 30000 ${extra[*]}"
  pattern="http://127.0.0.1:$port/v1/users/[1-9][0-9]{0,4}/recommendations\?k=10"
  wait_up "http://127.0.0.1:$port/readyz"
  rss_start=$(rss_mb "$spid")
  # Resident memory under load: sampled every 0.2 s while the load runs (VmHWM would also count
  # start-up's transient peak, reading the train mapping).
  (while kill -0 "$spid" 2>/dev/null; do rss_mb "$spid" 2>/dev/null; sleep 0.2; done) >"$work/rss.txt" &
  rpid=$!
  # Unloaded: one connection for the load points' duration, after 300 requests that warm the
  # server up (first-touch page faults, libtorch's first calls) and are not counted: 300 requests
  # alone made the p99 their 3rd worst, and that of a cold server.
  load -n 300 -c 1 --rand-regex-url "$pattern" >/dev/null
  read -r _ idle50 idle99 _ < <(load -z "${duration}s" -c 1 --rand-regex-url "$pattern")
  c0=$(cpu_s "$spid")
  read -r sat _ satp99 satfail < <(load -z "${duration}s" -c 32 --rand-regex-url "$pattern")
  c1=$(cpu_s "$spid")
  served_per_cpu=$(awk -v r="$sat" -v d="$duration" -v a="$c0" -v b="$c1" 'BEGIN {printf "%.0f", r * d / (b - a)}')
  echo "| server | load | requests/s | p50 ms | p99 ms | failed |"
  echo "|---|---|---|---|---|---|"
  echo "| ncf-serve | 1 connection, no pause | | $idle50 | $idle99 | |"
  echo "| ncf-serve | saturation (32 connections) | $sat | | $satp99 | $satfail |"
  rates=()
  for frac in 25 50 90; do
    rate=$(awk -v s="$sat" -v f="$frac" 'BEGIN {printf "%.1f", s * f / 100}')
    rates+=("$frac:$rate")
    # The previous load point's last requests drain first (up to 32 in flight), so they do not
    # count as this point's queueing.
    sleep 3
    read -r rps p50 p99 fail < <(load -z "${duration}s" -c 32 -q "$rate" --latency-correction --rand-regex-url "$pattern")
    echo "| ncf-serve | $frac% ($rate/s offered) | $rps | $p50 | $p99 | $fail |"
  done
  kill "$rpid" 2>/dev/null || true
  peak=$(sort -n "$work/rss.txt" | tail -1)
  kill -TERM "$spid"; wait "$spid" 2>/dev/null || true

  [ "${FASTAPI:-1}" = 0 ] && fastapi_shapes=()
  for shape in "${fastapi_shapes[@]}"; do
    read -r workers threads <<<"$shape"
    fport=18091
    "${on_model_core[@]}" "$python" "$here/scripts/serve_fastapi.py" --data "$data" --load_checkpoint_path "$ckpt" --port "$fport" \
      --workers "$workers" --threads "$threads" 2>"$work/fastapi.log" &
    fpid=$!; pids+=("$fpid")
    fpattern="http://127.0.0.1:$fport/v1/users/[1-9][0-9]{0,4}/recommendations\?k=10"
    wait_up "http://127.0.0.1:$fport/v1/users/1/recommendations?k=10"
    name="FastAPI ${workers}w x ${threads}t"
    load -n 100 -c 1 --rand-regex-url "$fpattern" >/dev/null
    read -r _ fidle50 fidle99 _ < <(load -z "${duration}s" -c 1 --rand-regex-url "$fpattern")
    read -r fsat _ fsatp99 ffail < <(load -z "${duration}s" -c 32 --rand-regex-url "$fpattern")
    echo "| $name | 1 connection, no pause | | $fidle50 | $fidle99 | |"
    echo "| $name | saturation (32 connections) | $fsat | | $fsatp99 | $ffail |"
    for fr in "${rates[@]}"; do
      frac=${fr%%:*}; rate=${fr#*:}
      sleep 3
      read -r rps p50 p99 fail < <(load -z "${duration}s" -c 32 -q "$rate" --latency-correction --rand-regex-url "$fpattern")
      echo "| $name | ncf-serve's $frac% ($rate/s offered) | $rps | $p50 | $p99 | $fail |"
    done
    kill "$fpid" 2>/dev/null || true; pkill -f "serve_fastapi.py.*--port $fport" 2>/dev/null || true
    wait "$fpid" 2>/dev/null || true
  done
  size=$(du -m "$ckpt" | cut -f1)
  echo
  echo "ncf-serve resident memory ($model): ${rss_start} MB after start-up (checkpoint file ${size} MB), at most ${peak} MB under load: the load added $((peak - rss_start)) MB"
  echo "saturation: ncf-serve $sat requests/s = $(awk -v a="$sat" -v b="$infer" 'BEGIN {printf "%.2f", a / b}')x ncf-infer's users/s; per CPU-second of the server itself: $served_per_cpu requests = $(awk -v a="$served_per_cpu" -v b="$per_cpu" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}')x ncf-infer's"
done
