#!/usr/bin/env bash
# Install Debian's redis-server (the quota counter store's tests and benchmarks), idempotently.
#
# The tests start their own redis-server on a free loopback port, without persistence
# (tools/chatprovider_tools/redisserver.py); no system service is needed or used.
set -euo pipefail

log() { printf '[redis] %s\n' "$*" >&2; }

if command -v redis-server >/dev/null 2>&1; then
  log "$(redis-server --version | cut -d' ' -f1-3) already installed"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  log "redis-server is missing and installing it needs root: apt-get install redis-server"
  exit 1
fi
log "installing redis-server from Debian"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q --no-install-recommends redis-server >/dev/null 2>&1 \
  || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends redis-server >/dev/null; }
log "$(redis-server --version | cut -d' ' -f1-3) installed"
