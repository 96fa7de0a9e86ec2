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
if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup-chromium: no chromium and no apt-get; install Chromium (or set NCF_CHROMIUM to a Chrome binary) for the page test" >&2
  exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo=sudo; else
    echo "setup-chromium: no chromium; run as root: apt-get install chromium" >&2
    exit 0
  fi
fi
echo "setup-chromium: installing chromium (headless, for the ncf-serve page test; ~120 MB, once)"
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 || {
  $sudo apt-get update -qq >/dev/null 2>&1 || true
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
}
command -v chromium >/dev/null && echo "setup-chromium: $(chromium --version 2>/dev/null || echo chromium) installed"
