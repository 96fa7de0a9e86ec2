#!/usr/bin/env bash
# Installs headless Chromium (Debian's `chromium`), idempotently, for the test that loads
# ncf-serve's page in a real browser (bins/ncf-serve/tests/page.rs). `.ci/run` and `make test`
# call it; it does nothing when a Chromium is already on PATH (or NCF_CHROMIUM names one).
set -euo pipefail
for name in "${NCF_CHROMIUM:-}" chromium chromium-browser google-chrome; do
  if [ -n "$name" ] && command -v "$name" >/dev/null 2>&1; then
    exit 0
  fi
done
# shellcheck source=scripts/apt-install.sh
source "$(dirname "${BASH_SOURCE[0]}")/apt-install.sh"
apt_install setup-chromium chromium "headless, for the ncf-serve page test; ~120 MB, once"
command -v chromium >/dev/null && echo "setup-chromium: $(chromium --version 2>/dev/null || echo chromium) installed"
