#!/usr/bin/env bash
# Install Debian's redis-server (the quota counter store's tests and benchmarks) and tinyproxy
# (the relay's forward-proxy tests: spec.proxy), idempotently.
#
# The tests start their own redis-server and tinyproxy on free loopback ports, in their own
# directories (tools/chatprovider_tools/redisserver.py, tinyproxy.py); no system service is
# needed or used.
set -euo pipefail

log() { printf '[servers] %s\n' "$*" >&2; }

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v tinyproxy >/dev/null 2>&1 || [ -x /usr/bin/tinyproxy ] || missing+=(tinyproxy)
if [ "${#missing[@]}" = 0 ]; then
  log "$(redis-server --version | cut -d' ' -f1-3) and $(tinyproxy -v 2>&1 | head -1) already installed"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  log "${missing[*]} missing and installing needs root: apt-get install ${missing[*]}"
  exit 1
fi
log "installing ${missing[*]} from Debian"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
  || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; }
# Debian starts the package's system service; the tests never use it
if command -v systemctl >/dev/null 2>&1; then systemctl disable --now tinyproxy >/dev/null 2>&1 || true; fi
pkill -x tinyproxy 2>/dev/null || true
log "$(redis-server --version | cut -d' ' -f1-3) and $(tinyproxy -v 2>&1 | head -1) installed"
