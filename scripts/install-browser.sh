#!/usr/bin/env bash
# Install a headless-capable Chromium for the playground's browser test (tests/integration/
# test_playground.py drives it with the Python `playwright` package, which is pointed at
# /usr/bin/chromium: `playwright install` is never run). Idempotent: does nothing when a
# Chromium is already there.
#
#   CHATPROVIDER_BROWSER=/path/to/chromium   use this binary instead (nothing is installed)
#   SETUP_BROWSER=0                          skip (the browser test then fails under CI=true)
set -euo pipefail
log() { printf '[install-browser] %s\n' "$*" >&2; }

if [ "${SETUP_BROWSER:-1}" = 0 ]; then
  log "SETUP_BROWSER=0: skipped"
  exit 0
fi
browser=${CHATPROVIDER_BROWSER:-/usr/bin/chromium}
if [ -x "$browser" ]; then
  log "Chromium present: $("$browser" --version 2>/dev/null || echo "$browser")"
  exit 0
fi
# Where this script cannot install, it says so and lets setup go on: only the playground's
# browser test needs Chromium, and that test fails (never skips) with the same advice.
if ! command -v apt-get >/dev/null 2>&1; then
  log "WARNING: no apt-get: install Chromium with your package manager and set CHATPROVIDER_BROWSER"
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo"; else
    log "WARNING: not root and no password-less sudo: install the 'chromium' package yourself"
    log "         (sudo apt-get install chromium), or set CHATPROVIDER_BROWSER"
    exit 0
  fi
fi
log "installing the Debian package chromium (a few minutes on a cold cache)"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
log "installed: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
