# Sourced by bench-serve.sh and soak-serve.sh: `oha_load OHA-ARGS...` runs oha and prints
# "requests/s p50_ms p99_ms answered_200 answered_503 failed_otherwise" (failed otherwise: any
# other status, and errors but the requests oha itself cancels when -z ends, "aborted due to
# deadline"). Needs $python. $OHA_PREFIX, when set, is a command oha runs under (`taskset -c 1`).
oha_load() {
  # shellcheck disable=SC2086 # the prefix is words: a command and its arguments
  ${OHA_PREFIX:-} oha --no-tui --output-format json "$@" | "$python" -c '
import json, sys
d = json.load(sys.stdin)
p = d["latencyPercentiles"]; codes = d["statusCodeDistribution"]
errors = sum(v for k, v in d["errorDistribution"].items() if "deadline" not in k)
other = sum(v for k, v in codes.items() if k not in ("200", "503")) + errors
fmt = lambda x: "nan" if x is None else "%.1f" % (x * 1000)
print("%.1f %s %s %d %d %d" % (d["summary"]["requestsPerSec"], fmt(p.get("p50")), fmt(p.get("p99")), codes.get("200", 0), codes.get("503", 0), other))'
}
