#!/usr/bin/env bash
# Install everything the project needs, idempotently, with caches outside the repo:
#   - a Python virtual environment with the package and its workshop package tools/ (both
#     editable) and the dev tools;
#   - kube-apiserver, etcd and kubectl built from the Go module proxy (scripts/install-control-plane.sh);
#   - the real third-party upstream servers used by tests (scripts/install-upstreams.sh, and
#     llama.cpp's own llama-server built from source by scripts/install-llama-server.sh), unless
#     SETUP_UPSTREAMS=0.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${CHATPROVIDER_CACHE:-$HOME/.cache/chatprovider}
VENV=${CHATPROVIDER_VENV:-$CACHE/venv}
log() { printf '[setup] %s\n' "$*" >&2; }
mkdir -p "$CACHE"

PY=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ]; then
  log "creating the virtual environment $VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
fi
stamp="$VENV/.chatprovider-deps"
want=$(cat pyproject.toml tools/pyproject.toml | sha256sum | cut -c1-16)-$(pwd | sha256sum | cut -c1-8)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "installing the package, its workshop (tools/) and their dev dependencies into $VENV"
  PIP_CACHE_DIR=$CACHE/pip "$VENV/bin/pip" install -q -e '.[dev,bench]' -e ./tools
  echo "$want" > "$stamp"
else
  log "Python dependencies up to date"
fi

bash scripts/install-control-plane.sh >/dev/null
bash scripts/install-helm.sh >/dev/null
if [ "${SETUP_UPSTREAMS:-1}" = 1 ] && [ -f scripts/install-upstreams.sh ]; then
  bash scripts/install-upstreams.sh
  bash scripts/install-llama-server.sh  # after it: shares its model; cmake, ~8 min once
fi
bash bench/install.sh  # nginx and wrk (Debian), LiteLLM: the benchmark smoke test needs them
bash scripts/install-browser.sh  # Chromium for the playground test (SETUP_BROWSER=0 skips)
bash scripts/install-node-clients.sh  # the OpenAI JavaScript SDK for the docs' JavaScript example
log "ready"
