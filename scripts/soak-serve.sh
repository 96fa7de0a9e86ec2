#!/usr/bin/env bash
# ncf-serve's reliability under load (issue #28), on the ML-20m-shaped dataset of bench-serve.sh:
#   1. a soak: MINUTES (default 5) at 50% of saturation with a reload every 30 s (alternating two
#      checkpoints, so each reload swaps the model); failed requests, and resident memory sampled
#      every 10 s;
#   2. 2x overload for 20 s from 512 clients: 503s with Retry-After, no crash; then the unloaded
#      p50 again (back to normal);
#   3. 5,000 malformed requests (random bytes, truncated JSON, wrong types): every answer 4xx, and
#      the server still answers /healthz and a recommendation.
#
#   scripts/soak-serve.sh [MINUTES]       # MODEL=neumf (or mf); DATA=dir, or BENCH_DIR keeps the one made
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${CARGO_TARGET_DIR:-$here/target}/release"
python="${NCF_PYTHON:-$here/.torch-venv/bin/python3}"
minutes="${1:-5}"
model="${MODEL:-neumf}"
for b in ncf-serve ncf-prepare; do
  [ -x "$bin/$b" ] || { echo "soak-serve: $bin/$b not found; run 'make release'" >&2; exit 1; }
done
command -v oha >/dev/null || { echo "soak-serve: needs oha (cargo install oha)" >&2; exit 1; }
# ml20m-shaped.sh reads a dataset folder from $1: DATA, or none (it makes one).
set -- "${DATA:-}"
# shellcheck source=scripts/ml20m-shaped.sh
source "$here/scripts/ml20m-shaped.sh"
cpu="$(lscpu | sed -n 's/^Model name: *//p' | head -1)"
ckpt="$work/$model.pth"
"$python" - "$ckpt" "$work/$model-b.pth" <<'PY'
import sys, torch
sd = torch.load(sys.argv[1])
torch.save({k: v * 1.01 for k, v in sd.items()}, sys.argv[2])
PY
echo "soak-secret" > "$work/token"
port=18095
base="http://127.0.0.1:$port"
url="$base/v1/users/1/recommendations?k=10"
"$bin/ncf-serve" --data "$data" --load_checkpoint_path "$ckpt" --listen "127.0.0.1:$port" --device cpu \
  --admin-token-file "$work/token" 2>"$work/serve.log" &
spid=$!
trap 'kill $spid 2>/dev/null || true; [ -z "${BENCH_DIR:-}" ] && rm -rf "$work"' EXIT
for _ in $(seq 1 600); do curl -sf "$base/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
rss() { awk '/VmRSS/{print int($2/1024)}' "/proc/$spid/status"; }
pattern="$base/v1/users/[1-9][0-9]{0,4}/recommendations\?k=10"
# shellcheck source=scripts/oha-load.sh
source "$here/scripts/oha-load.sh"
echo "soak-serve: $model on $users users x $items items, $(nproc) cores of $cpu"
read -r _ idle _ _ _ _ < <(oha_load -n 200 -c 1 --rand-regex-url "$pattern")
read -r sat _ _ _ _ _ < <(oha_load -z 10s -c 32 --rand-regex-url "$pattern")
half=$(awk -v s="$sat" 'BEGIN {printf "%.1f", s / 2}')
echo "unloaded p50 ${idle} ms; saturation ${sat} requests/s; soak at ${half}/s for ${minutes} min"

# 1. The soak.
oha_load -z "${minutes}m" -c 32 -q "$half" --latency-correction --rand-regex-url "$pattern" >"$work/soak.txt" &
lpid=$!
samples=()
reloads_ok=0; reloads=0; t=0
while kill -0 "$lpid" 2>/dev/null; do
  sleep 10; t=$((t + 10))
  kill -0 "$lpid" 2>/dev/null || break
  samples+=("$(rss)")
  if [ $((t % 30)) -eq 0 ]; then
    next="$ckpt"; [ $(((t / 30) % 2)) -eq 1 ] && next="$work/$model-b.pth"
    code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer soak-secret" \
      -d "{\"checkpoint\": \"$next\"}" "$base/v1/admin/reload")
    reloads=$((reloads + 1)); [ "$code" = 200 ] && reloads_ok=$((reloads_ok + 1))
  fi
done
wait "$lpid" || true
read -r srps s50 s99 s200 s503 sfail <"$work/soak.txt"
version=$(curl -s "$base/v1/model" | "$python" -c "import json,sys; print(json.load(sys.stdin)['version'])")
echo "soak: ${srps} requests/s answered, ${s200} answered 200, ${s503} answered 503, ${sfail} failed otherwise; p50 ${s50} ms, p99 ${s99} ms; reloads $reloads_ok of $reloads succeeded (model version now $version)"
echo "soak: resident MB every 10 s: ${samples[*]}"
printf '%s\n' "${samples[@]}" | awk 'NR > 6 {if (min == "" || $1 < min) min = $1; if ($1 > max) max = $1} END {print "soak: after the first minute resident memory stayed within " min "-" max " MB"}'

# 2. 2x overload, then back to normal.
read -r _ _ o99 o200 o503 ofail < <(oha_load -z 20s -c 512 -q "$(awk -v s="$sat" 'BEGIN {print 2 * s}')" --rand-regex-url "$pattern")
kill -0 "$spid" && alive=yes || alive=no
read -r _ after _ a200 a503 afail < <(oha_load -n 200 -c 1 --rand-regex-url "$pattern")
# oha reports a p50 of the failures too: say when there were no answers to measure.
if [ "$a200" -gt 0 ]; then after="$after ms"; else after="none (of 200 requests: ${a503} answered 503, ${afail} failed otherwise)"; fi
echo "overload 2x for 20 s (512 connections): ${o200} answered 200, ${o503} answered 503, ${ofail} failed otherwise; server alive: $alive; unloaded p50 after: ${after} (before: ${idle} ms)"

# 3. Malformed requests.
"$python" - "$base" <<'PY'
import http.client, json, random, sys, urllib.parse
host = urllib.parse.urlparse(sys.argv[1]).netloc
random.seed(7)
shapes = [b'{"users": [', b'{"users": [1, "x"', b'{"pairs": [{"user": [], "item": {}}]}', b'{"k": -1, "users": [1]}',
          b'\x00\x01', b'{"users": [1e400]}', b'{"users": "1"}', b'[]', b'null', b'{"pairs": [[1, 2]]}']
statuses = {}
conn = http.client.HTTPConnection(host, timeout=30)
for n in range(5000):
    kind = n % 4
    if kind == 0:
        body = bytes(random.getrandbits(8) for _ in range(random.randrange(200)))
    elif kind == 1:
        body = random.choice(shapes)
    elif kind == 2:
        s = random.choice(shapes); body = s[:random.randrange(len(s) + 1)]
    else:
        body = None
    if body is None:
        path = random.choice(["/v1/users/%s/recommendations?k=%s" % (random.choice(["x", "-1", "99999999", "%FF"]), random.choice(["0", "a", "-3", "1e9"])),
                              "/v1/users/1/recommendations?exclude_seen=perhaps", "/v1/nothing", "/v1/users/1/recommendations?z=1"])
        conn.request("GET", path)
    else:
        conn.request("POST", random.choice(["/v1/recommendations", "/v1/scores"]), body=body, headers={"content-type": "application/json"})
    r = conn.getresponse(); r.read()
    statuses[r.status] = statuses.get(r.status, 0) + 1
conn.request("GET", "/healthz"); h = conn.getresponse(); h.read()
conn.request("GET", "/v1/users/1/recommendations?k=10"); rec = conn.getresponse(); rec.read()
bad = sum(v for k, v in statuses.items() if not 400 <= k < 500)
print(f"malformed: 5000 requests, statuses {dict(sorted(statuses.items()))}, {bad} outside 4xx; /healthz {h.status}, a recommendation {rec.status}")
PY
