#!/usr/bin/env bash
# Installs libtorch for ncf-rs, idempotently.
#
# libtorch comes from PyPI's torch==2.11.0 wheel (tch 0.24.0 binds exactly this version, and the lent
# GPU machines ship 2.11.0+cu130). The wheel goes into a venv in a machine-wide cache OUTSIDE the
# checkout, so every clone on this machine (CI clones included) shares one copy:
#
#   ${NCF_TORCH_CACHE:-$HOME/.cache/ncf-rs/torch-2.11.0}/venv
#
# The checkout then gets a symlink `.libtorch` -> <venv>/.../site-packages/torch, which
# `.cargo/config.toml` exports as LIBTORCH, so plain `cargo build/test/run` need no env var, and the
# `torch-link` build helper bakes `<LIBTORCH>/lib` into every binary's rpath.
# The same venv's python3 (torch, numpy, pyyaml, pandas) is the PyTorch oracle used by the tests:
# `.torch-venv` in the checkout points at the venv.
set -euo pipefail

TORCH_VERSION=2.11.0
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${NCF_TORCH_CACHE:-${HOME:-/root}/.cache/ncf-rs/torch-${TORCH_VERSION}}"
venv="$cache/venv"
py="$venv/bin/python3"
oracle_pkgs=(numpy pyyaml pandas)

have_torch() {
  [ -x "$py" ] && "$py" - "$TORCH_VERSION" <<'PY' >/dev/null 2>&1
import sys, torch, numpy, yaml, pandas
assert torch.__version__.split("+")[0] == sys.argv[1], torch.__version__
PY
}

if have_torch; then
  echo "setup-libtorch: reusing torch ${TORCH_VERSION} in $venv"
else
  echo "setup-libtorch: installing torch==${TORCH_VERSION} (+ ${oracle_pkgs[*]}) into $venv"
  echo "setup-libtorch: this downloads about 3 GB from PyPI once per machine"
  mkdir -p "$cache"
  # Build in a temp folder and rename, so an interrupted install is never taken as finished.
  tmp="$(mktemp -d "$cache/venv.tmp.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  python3 -m venv "$tmp"
  "$tmp/bin/python3" -m pip install --quiet --disable-pip-version-check "torch==${TORCH_VERSION}" "${oracle_pkgs[@]}"
  rm -rf "$venv"
  # A venv hard-codes its own path in scripts; re-create the launcher links at the final path.
  mv "$tmp" "$venv"
  trap - EXIT
  python3 -m venv --upgrade "$venv" >/dev/null
  # `--upgrade` leaves pip's own scripts (bin/pip, bin/torchrun, ...) starting with the temp
  # folder's python3, which no longer exists: point them at the venv's.
  grep -lZ "^#!$tmp/bin/python" "$venv"/bin/* 2>/dev/null | xargs -0r sed -i "1s|^#!$tmp/bin/python|#!$venv/bin/python|"
  have_torch || { echo "setup-libtorch: torch ${TORCH_VERSION} did not import from $venv" >&2; exit 1; }
  echo "setup-libtorch: installed"
fi

torch_dir="$("$py" -c 'import os, torch; print(os.path.dirname(torch.__file__))')"
[ -f "$torch_dir/lib/libtorch_cpu.so" ] || { echo "setup-libtorch: no libtorch_cpu.so under $torch_dir/lib" >&2; exit 1; }
ln -sfn "$torch_dir" "$here/.libtorch"
# A link to the venv folder (not to its python3): python finds its venv from the path it was started by.
ln -sfn "$venv" "$here/.torch-venv"
echo "setup-libtorch: $here/.libtorch -> $torch_dir"
echo "setup-libtorch: $here/.torch-venv -> $venv"
if [ -f "$torch_dir/lib/libtorch_cuda.so" ]; then
  echo "setup-libtorch: this libtorch has CUDA (libtorch_cuda.so); binaries link it explicitly"
else
  echo "setup-libtorch: CPU-only libtorch"
fi
