#!/usr/bin/env bash
# Install what the benchmarks need (idempotent; caches under ${CHATPROVIDER_CACHE:-~/.cache/chatprovider}):
#   nginx (Debian nginx-light, else nginx) and wrk      apt-get
#   matplotlib, py-spy, pyinstrument                    the project venv's "bench" extra
#   LiteLLM's proxy in its own venv                     scripts/install-upstreams.sh litellm
#   Portkey's open-source gateway (node)                 npm, into $CACHE/portkey
#   oha, a compiled open-loop load generator (Rust)      crates.io (cargo), into $CACHE/cargo/bin
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${CHATPROVIDER_CACHE:-$HOME/.cache/chatprovider}
VENV=${VENV:-$CACHE/venv}
export PIP_CACHE_DIR=${PIP_CACHE_DIR:-$CACHE/pip} PIP_DISABLE_PIP_VERSION_CHECK=1
log() { printf '[bench-install %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ] || ! command -v wrk >/dev/null 2>&1; then
  log "installing nginx and wrk from Debian"
  $SUDO apt-get update -qq
  if ! DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nginx-light wrk; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nginx wrk
  fi
  # The package may start a system nginx on port 80; the bench runs its own on loopback.
  $SUDO service nginx stop >/dev/null 2>&1 || true
else
  log "nginx and wrk already installed"
fi

[ -x "$VENV/bin/python" ] || { log "no venv at $VENV: run 'make setup' first"; exit 1; }
if "$VENV/bin/python" -c 'import matplotlib, granian, httptools' 2>/dev/null \
   && [ -x "$VENV/bin/py-spy" ]; then
  log "bench Python extras already installed"
else
  log "installing the bench extra into $VENV"
  "$VENV/bin/pip" install --quiet -e "$ROOT[dev,bench]"
  # Same pins as pyproject's bench extra, for a checkout whose pyproject predates it.
  "$VENV/bin/python" -c 'import matplotlib' 2>/dev/null \
    || "$VENV/bin/pip" install --quiet "matplotlib>=3.8" "py-spy>=0.3" "pyinstrument>=4.6"
fi

bash "$ROOT/scripts/install-upstreams.sh" litellm

PORTKEY_VERSION=1.15.2
PORTKEY=$CACHE/portkey
if grep -qs "\"version\": \"$PORTKEY_VERSION\"" "$PORTKEY/node_modules/@portkey-ai/gateway/package.json"; then
  log "Portkey's gateway $PORTKEY_VERSION already installed"
else
  command -v npm >/dev/null 2>&1 || { log "npm is required for Portkey's gateway (apt-get install nodejs npm)"; exit 1; }
  log "installing @portkey-ai/gateway@$PORTKEY_VERSION from the npm registry into $PORTKEY"
  mkdir -p "$PORTKEY" "$CACHE/npm"
  npm install --prefix "$PORTKEY" --cache "$CACHE/npm" --no-audit --no-fund --loglevel=error \
    "@portkey-ai/gateway@$PORTKEY_VERSION" >/dev/null
fi

OHA_VERSION=1.16.0
if "$CACHE/cargo/bin/oha" --version 2>/dev/null | grep -qx "oha $OHA_VERSION"; then
  log "oha $OHA_VERSION already installed"
else
  command -v cargo >/dev/null 2>&1 || { log "cargo is required to build oha (rustup, or Debian's cargo)"; exit 1; }
  log "building oha $OHA_VERSION from crates.io into $CACHE/cargo/bin (about 4 minutes on 2 cores)"
  CARGO_HOME=$CACHE/cargo-home CARGO_TARGET_DIR=$CACHE/cargo-target \
    cargo install oha --version "$OHA_VERSION" --locked --root "$CACHE/cargo" --quiet
fi
log "done"
