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
# shellcheck source=scripts/apt-install.sh
source "$(dirname "${BASH_SOURCE[0]}")/apt-install.sh"
apt_install setup-gloo-headers libgloo-dev "gloo's headers, for the gloo backend"
[ -f "$header" ] && echo "setup-gloo-headers: $header installed"
