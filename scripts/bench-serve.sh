#!/usr/bin/env bash
# ncf-serve under load (issue #28), against `ncf-infer recommend` (the same model's users/s with no
# server) and against the way a Python user would serve the checkpoint (scripts/serve_fastapi.py:
# FastAPI + uvicorn + PyTorch, every item scored per request), on an ML-20m-shaped dataset (138,493
# users, 26,744 items) with random MF and NeuMF checkpoints (the time does not depend on the
# weights). Single-user top-10 requests (`GET /v1/users/1/recommendations?k=10`) from `hey`.
#
#   scripts/bench-serve.sh [DATA]        # DURATION=15 seconds per load point, MODELS="mf neumf"
#
# Per model it prints: ncf-infer's users/s; each server's throughput at saturation (32 clients
# without pause); p50/p99 latency with one client (unloaded) and at 25/50/90% of ncf-serve's
# saturation (hey's rate limit: 8 clients, each at a fixed rate), failed requests, and
# ncf-serve's resident memory (after start-up and its peak). The load generator shares the
# machine's cores with the server, as it would on a 2-core box: read the ratios, not the absolutes.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${CARGO_TARGET_DIR:-$here/target}/release"
python="${NCF_PYTHON:-$here/.torch-venv/bin/python3}"
duration="${DURATION:-15}"
for b in ncf-serve ncf-infer ncf-prepare; do
  [ -x "$bin/$b" ] || { echo "bench-serve: $bin/$b not found; run 'make release'" >&2; exit 1; }
done
command -v hey >/dev/null || { echo "bench-serve: needs hey (Debian: apt-get install hey)" >&2; exit 1; }
"$python" -c "import fastapi, uvicorn" 2>/dev/null || { echo "bench-serve: $python needs fastapi and uvicorn (pip install fastapi uvicorn)" >&2; exit 1; }
# shellcheck source=scripts/ml20m-shaped.sh
source "$here/scripts/ml20m-shaped.sh"
cpu="$(lscpu | sed -n 's/^Model name: *//p' | head -1)"
echo "bench-serve: $users users x $items items, top 10 per request, $(nproc) cores of $cpu, ${duration} s per load point"

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap 'cleanup; [ -z "${BENCH_DIR:-}" ] && rm -rf "$work"' EXIT

wait_up() { # url
  for _ in $(seq 1 600); do curl -sf "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "bench-serve: $1 did not come up" >&2; return 1
}
# hey's figures: requests/s, p50 ms, p99 ms, non-200 answers and errors.
hey_run() { # hey arguments...
  local out; out="$(hey "$@" 2>&1)"
  local rps p50 p99 ok total errors
  rps=$(awk '/Requests\/sec:/{print $2}' <<<"$out")
  p50=$(awk '$1 == "50%" && $2 == "in" {print $3 * 1000}' <<<"$out")
  p99=$(awk '$1 == "99%" && $2 == "in" {print $3 * 1000}' <<<"$out")
  # "Status code distribution:" lines are "[200]<tab>N responses"; "Error distribution:" lines "[N]<tab>why".
  ok=$(awk '$1 == "[200]" && $3 == "responses" {print $2}' <<<"$out"); ok=${ok:-0}
  total=$(awk '$1 ~ /^\[[0-9]+\]$/ && $3 == "responses" {s += $2} END {print s + 0}' <<<"$out")
  errors=$(sed -n '/Error distribution/,$p' <<<"$out" | awk '$1 ~ /^\[[0-9]+\]$/ {s += substr($1, 2, length($1) - 2)} END {print s + 0}')
  echo "${rps:-0} ${p50:-nan} ${p99:-nan} $((total - ok + errors))"
}
rss_mb() { awk '/VmRSS/{print int($2/1024)}' "/proc/$1/status"; }
hwm_mb() { awk '/VmHWM/{print int($2/1024)}' "/proc/$1/status"; }

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
  infer=$("$bin/ncf-infer" recommend --data "$data" --load_checkpoint_path "$ckpt" "${which[@]}" -k 10 \
    --device cpu --output "$work/recs.csv" 2>&1 | sed -n 's/.*users in .* s (\([0-9]*\) users\/s).*/\1/p')
  echo
  echo "== $model: ncf-infer recommend: $infer users/s ($n users)"

  port=18090
  "$bin/ncf-serve" --data "$data" --load_checkpoint_path "$ckpt" --listen "127.0.0.1:$port" --device cpu \
    --max-queue 4096 --request-timeout-ms 30000 2>"$work/serve.log" &
  spid=$!; pids+=("$spid")
  url="http://127.0.0.1:$port/v1/users/1/recommendations?k=10"
  wait_up "http://127.0.0.1:$port/readyz"
  rss_start=$(rss_mb "$spid")
  read -r _ idle50 idle99 _ < <(hey_run -n 200 -c 1 "$url")
  read -r sat _ satp99 satfail < <(hey_run -z "${duration}s" -c 32 "$url")
  echo "| server | load | requests/s | p50 ms | p99 ms | failed |"
  echo "|---|---|---|---|---|---|"
  echo "| ncf-serve | 1 client, no pause | | $idle50 | $idle99 | |"
  echo "| ncf-serve | saturation (32 clients) | $sat | | $satp99 | $satfail |"
  rates=()
  for frac in 25 50 90; do
    rate=$(awk -v s="$sat" -v f="$frac" 'BEGIN {r = s * f / 100; print (r < 0.8 ? 0.8 : r)}')
    rates+=("$frac:$rate")
    read -r rps p50 p99 fail < <(hey_run -z "${duration}s" -c 8 -q "$(awk -v r="$rate" 'BEGIN {print r / 8}')" "$url")
    echo "| ncf-serve | $frac% ($rate/s offered) | $rps | $p50 | $p99 | $fail |"
  done
  peak=$(hwm_mb "$spid")
  kill -TERM "$spid"; wait "$spid" 2>/dev/null || true

  for shape in "1 2" "2 1"; do
    read -r workers threads <<<"$shape"
    fport=18091
    "$python" "$here/scripts/serve_fastapi.py" --data "$data" --load_checkpoint_path "$ckpt" --port "$fport" \
      --workers "$workers" --threads "$threads" 2>"$work/fastapi.log" &
    fpid=$!; pids+=("$fpid")
    furl="http://127.0.0.1:$fport/v1/users/1/recommendations?k=10"
    wait_up "$furl"
    name="FastAPI ${workers}w x ${threads}t"
    read -r _ fidle50 fidle99 _ < <(hey_run -n 100 -c 1 "$furl")
    read -r fsat _ fsatp99 ffail < <(hey_run -z "${duration}s" -c 32 "$furl")
    echo "| $name | 1 client, no pause | | $fidle50 | $fidle99 | |"
    echo "| $name | saturation (32 clients) | $fsat | | $fsatp99 | $ffail |"
    for fr in "${rates[@]}"; do
      frac=${fr%%:*}; rate=${fr#*:}
      read -r rps p50 p99 fail < <(hey_run -z "${duration}s" -c 8 -q "$(awk -v r="$rate" 'BEGIN {print r / 8}')" "$furl")
      echo "| $name | ncf-serve's $frac% ($rate/s offered) | $rps | $p50 | $p99 | $fail |"
    done
    kill "$fpid" 2>/dev/null || true; pkill -f "serve_fastapi.py.*--port $fport" 2>/dev/null || true
    wait "$fpid" 2>/dev/null || true
  done
  size=$(du -m "$ckpt" | cut -f1)
  echo
  echo "ncf-serve resident memory ($model): ${rss_start} MB after start-up (checkpoint file ${size} MB), peak ${peak} MB; the load added $((peak - rss_start)) MB"
  echo "saturation: ncf-serve $sat requests/s = $(awk -v a="$sat" -v b="$infer" 'BEGIN {printf "%.2f", a / b}')x ncf-infer's users/s"
done
