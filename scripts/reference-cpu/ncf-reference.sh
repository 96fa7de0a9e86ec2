#!/usr/bin/env bash
# NVIDIA's reference ncf.py on the CPU, as a command that takes ncf.py's (and so ncf-train's) flags:
#   NCF_REFERENCE_DIR=/path/to/DeepLearningExamples/PyTorch/Recommendation/NCF \
#     scripts/reference-cpu/ncf-reference.sh --data DATA -b 16384 -e 20 --seed 1
# Side by side with ncf-train, through the same harness:
#   NCF_REFERENCE_DIR=... NCF_TRAIN=scripts/reference-cpu/ncf-reference.sh \
#     scripts/bench-train.sh ../shared/data/reference-prepared/ml-latest-small "1 2 3" -b 16384 -e 20
# The reference is not part of this repository: clone DeepLearningExamples yourself. Python: the
# oracle venv's (torch 2.11.0, numpy, pandas), or NCF_PYTHON. See run_cpu.py for what is redirected.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dir="${NCF_REFERENCE_DIR:?set NCF_REFERENCE_DIR to a checkout of DeepLearningExamples/PyTorch/Recommendation/NCF}"
[ -f "$dir/ncf.py" ] || { echo "ncf-reference: no ncf.py in $dir" >&2; exit 1; }
python="${NCF_PYTHON:-$here/../../.torch-venv/bin/python3}"
exec "$python" "$here/run_cpu.py" "$dir" "$@"
