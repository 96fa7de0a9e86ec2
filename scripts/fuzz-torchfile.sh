#!/usr/bin/env bash
# Fuzzes the .pt reader: `scripts/fuzz-torchfile.sh [SECONDS_PER_TARGET]` (default 120).
# Seeds the corpus with real torch.save files written by the PyTorch oracle, then runs each target.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
secs="${1:-120}"
cd "$here/fuzz"
command -v cargo-fuzz >/dev/null || { echo "fuzz: run 'cargo install cargo-fuzz' first" >&2; exit 1; }
export RUSTC_BOOTSTRAP=1   # cargo fuzz needs nightly flags; the stable compiler accepts them with this
seeds="$(mktemp -d)"
trap 'rm -rf "$seeds"' EXIT
"$here/.torch-venv/bin/python3" "$here/crates/torchfile/tests/py/write_cases.py" "$seeds" >/dev/null
mkdir -p corpus/read_file corpus/unpickle
cp "$seeds"/*.pt "$seeds"/*.pth corpus/read_file/
"$here/.torch-venv/bin/python3" - "$seeds" corpus/unpickle <<'PY'
import sys, zipfile, glob, os
for i, f in enumerate(sorted(glob.glob(sys.argv[1] + "/*.pt") + glob.glob(sys.argv[1] + "/*.pth"))):
    z = zipfile.ZipFile(f)
    name = [n for n in z.namelist() if n.endswith("data.pkl")][0]
    open(os.path.join(sys.argv[2], f"seed{i}.pkl"), "wb").write(z.read(name))
PY
for target in read_file unpickle; do
  echo "== fuzz $target for ${secs}s"
  cargo fuzz run "$target" "corpus/$target" -- -max_total_time="$secs" -rss_limit_mb=2048 -max_len=65536 2>&1 | tail -n 4
done
