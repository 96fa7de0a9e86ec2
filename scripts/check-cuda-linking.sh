#!/usr/bin/env bash
# Proves the CUDA-linking fix on the built artefacts: every ELF executable under the target folder that
# needs libtorch_cpu.so must also need libtorch_cuda.so when the libtorch it was built against ships
# one. (With the linker's default --as-needed, libtorch_cuda.so is silently dropped and CUDA is never
# available, even on a GPU machine.) Usage: scripts/check-cuda-linking.sh [PROFILE_DIR...]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$here/target}"
dirs=("$@")
[ ${#dirs[@]} -gt 0 ] || dirs=("$target/debug")
libtorch="$(readlink -f "$here/.libtorch")"
if [ ! -f "$libtorch/lib/libtorch_cuda.so" ]; then
  echo "check-cuda-linking: $libtorch has no libtorch_cuda.so (CPU-only libtorch); nothing to check"
  exit 0
fi
checked=0; bad=0
while IFS= read -r -d '' f; do
  head -c 4 "$f" 2>/dev/null | grep -q $'\x7fELF' || continue
  needed="$(readelf -d "$f" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')"
  grep -qx 'libtorch_cpu.so' <<<"$needed" || continue
  checked=$((checked + 1))
  if ! grep -qx 'libtorch_cuda.so' <<<"$needed"; then
    echo "check-cuda-linking: FAIL $f needs libtorch_cpu.so but not libtorch_cuda.so"
    bad=$((bad + 1))
  fi
done < <(find "${dirs[@]}" -maxdepth 2 -type f -perm -u+x ! -name '*.so' ! -name '*.d' ! -path '*/build/*' -print0 2>/dev/null)
# The data tools are libtorch-free by design (their crates never depend on tch, whatever features a
# workspace build unifies): they must not need libtorch at all.
for tool in ncf-prepare ncf-transcode; do
  for d in "${dirs[@]}"; do
    f="$d/$tool"
    [ -f "$f" ] || continue
    if readelf -d "$f" | grep -q 'libtorch_cpu.so'; then
      echo "check-cuda-linking: FAIL $f links libtorch; the data tools must not"
      bad=$((bad + 1))
    fi
  done
done
if [ "$checked" -eq 0 ]; then
  echo "check-cuda-linking: FAIL no libtorch executable found under ${dirs[*]} (build first)"
  exit 1
fi
if [ "$bad" -gt 0 ]; then exit 1; fi
echo "check-cuda-linking: ok, $checked libtorch executables under ${dirs[*]} all need libtorch_cuda.so"
