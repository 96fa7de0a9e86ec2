#!/usr/bin/env bash
# Installs the gloo headers (Debian's libgloo-dev), idempotently.
#
# Why: torch-ops binds libtorch's own gloo process group (c10d::ProcessGroupGloo, inside
# libtorch_cpu), and its header includes gloo's, which the PyPI wheel does not ship. Only their
# declarations are used (no libgloo is linked), so Debian's package serves. Without them ncf-rs
# still builds, with a gloo backend that says what to install, and the gloo tests fail.
set -euo pipefail
header=/usr/include/gloo/rendezvous/store.h
if [ -f "$header" ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup-gloo-headers: no $header and no apt-get; install gloo's headers (Debian/Ubuntu: libgloo-dev)" >&2
  exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo=sudo; else
    echo "setup-gloo-headers: no $header; run as root: apt-get install libgloo-dev" >&2
    exit 0
  fi
fi
echo "setup-gloo-headers: installing libgloo-dev (gloo's headers, for the gloo backend)"
$sudo apt-get install -y -qq libgloo-dev >/dev/null 2>&1 || {
  $sudo apt-get update -qq >/dev/null 2>&1 || true
  $sudo apt-get install -y -qq libgloo-dev >/dev/null
}
[ -f "$header" ] && echo "setup-gloo-headers: $header installed"
