#!/usr/bin/env bash
# The reference's own dataset check (full_test_suite.md), run on a dataset folder on the CPU:
#   NCF_REFERENCE_DIR=/path/to/DeepLearningExamples/PyTorch/Recommendation/NCF \
#     scripts/reference-cpu/featurespec-correctness.sh DATASET_DIR TEMPLATE.yaml
# e.g. a dataset written by `ncf-prepare` from ml-latest-small against the spec the reference wrote
# for it: ../shared/data/reference-prepared/ml-latest-small/feature_spec.yaml. `ncf-prepare verify
# DATASET_DIR --template TEMPLATE.yaml` applies the same rules without Python.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
[ $# -eq 2 ] || { sed -n '2,7p' "$0" >&2; exit 2; }
dir="${NCF_REFERENCE_DIR:?set NCF_REFERENCE_DIR to a checkout of DeepLearningExamples/PyTorch/Recommendation/NCF}"
[ -f "$dir/test_featurespec_correctness.py" ] || { echo "featurespec-correctness: no test_featurespec_correctness.py in $dir" >&2; exit 1; }
python="${NCF_PYTHON:-$here/../../.torch-venv/bin/python3}"
exec "$python" "$here/featurespec_correctness.py" "$dir" "$1/feature_spec.yaml" "$2"
