#!/usr/bin/env bash
# Install what the project needs, idempotently, with caches outside the repo
# (${CHATPROVIDER_CACHE:-~/.cache/chatprovider}).
#
# Usage: bash scripts/setup.sh           everything `make test` needs
#        bash scripts/setup.sh --demo    only what `chatprovider up` (`make up`) needs
#
# Both install:
#   - a Python virtual environment with the package and its workshop package tools/ (both
#     editable); the full setup adds the dev and bench extras (pytest, mypy, ruff, the SDKs...);
#   - kube-apiserver, etcd and kubectl built from the Go module proxy (scripts/install-control-plane.sh);
#   - llama.cpp's llama-server, built from the llama.cpp source that the llama-cpp-python sdist
#     vendors, and the Gemma 3 270M model (scripts/install-llama-server.sh): the demo's upstream.
# The full setup also installs helm, Debian's redis-server and tinyproxy (scripts/install-servers.sh), the other
# real upstreams of the tests (llama-cpp-python's server, LiteLLM; SETUP_UPSTREAMS=0 skips
# them), nginx, wrk and LiteLLM for the benchmarks, Chromium for the playground test
# (SETUP_BROWSER=0 skips it), the OpenAI JavaScript SDK, and the image (Debian's docker.io and a
# debootstrap base, scripts/build-image.sh) for its tests, and a real node for the e2e tests
# (Debian's containerd, runc and CNI plugins; kubelet, kube-controller-manager, kube-scheduler,
# kube-proxy and CoreDNS built from the Go module proxy; scripts/install-node.sh).
# A step already done is skipped in a second or so; each step prints what it does.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${CHATPROVIDER_CACHE:-$HOME/.cache/chatprovider}
VENV=${CHATPROVIDER_VENV:-$CACHE/venv}
MODE=full
case "${1:-}" in
  --demo) MODE=demo ;;
  "") ;;
  -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) printf '[setup] unknown argument %s (expected --demo, or nothing)\n' "$1" >&2; exit 2 ;;
esac
STEPS=$([ "$MODE" = demo ] && echo 3 || echo 11)
STEP=0
started=$SECONDS
log() { printf '[setup] %s\n' "$*" >&2; }
step() { STEP=$((STEP + 1)); printf '[setup %d/%d] %s\n' "$STEP" "$STEPS" "$*" >&2; }
mkdir -p "$CACHE"

step "Python environment in $VENV"
PY=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ]; then
  log "creating the virtual environment $VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
fi
stamp="$VENV/.chatprovider-deps"
want=$(cat pyproject.toml tools/pyproject.toml | sha256sum | cut -c1-16)-$(pwd | sha256sum | cut -c1-8)
have=$(cat "$stamp" 2>/dev/null || true)
# The full install contains the demo's: a full stamp satisfies --demo, not the reverse.
if [ "$have" = "$want full" ] || { [ "$MODE" = demo ] && [ "$have" = "$want demo" ]; }; then
  log "Python dependencies up to date"
elif [ "$MODE" = demo ]; then
  log "installing the package and its workshop (tools/) into $VENV"
  PIP_CACHE_DIR=$CACHE/pip "$VENV/bin/pip" install -q -e . -e ./tools
  echo "$want demo" > "$stamp"
else
  log "installing the package, its workshop (tools/) and their dev dependencies into $VENV"
  PIP_CACHE_DIR=$CACHE/pip "$VENV/bin/pip" install -q -e '.[dev,bench]' -e ./tools
  echo "$want full" > "$stamp"
fi

step "control plane: kube-apiserver, etcd and kubectl (cold: about 6 minutes on 2 cores)"
bash scripts/install-control-plane.sh >/dev/null
if [ "$MODE" = full ]; then
  step "helm (the chart's tests)"
  bash scripts/install-helm.sh >/dev/null
  step "redis-server and tinyproxy (the quota counter store's and the proxy's tests)"
  bash scripts/install-servers.sh
  step "llama-cpp-python's server and LiteLLM (the tests' other real upstreams)"
  if [ "${SETUP_UPSTREAMS:-1}" = 1 ]; then
    bash scripts/install-upstreams.sh  # before llama-server, which then shares its model
  else
    log "skipped (SETUP_UPSTREAMS=0)"
  fi
fi
step "llama.cpp's llama-server and Gemma 3 270M (cold: about 8 minutes on 2 cores)"
bash scripts/install-llama-server.sh

if [ "$MODE" = full ]; then
  step "nginx, wrk and LiteLLM (the benchmarks and their smoke test)"
  bash bench/install.sh
  step "Chromium (the playground's test; SETUP_BROWSER=0 skips it)"
  bash scripts/install-browser.sh
  step "the OpenAI JavaScript SDK and Claude Code (the docs' JavaScript and Claude Code examples)"
  bash scripts/install-node-clients.sh
  step "the image: Debian's docker.io, a debootstrap base, the Dockerfile (cold: about 2 minutes)"
  bash scripts/build-image.sh >/dev/null
  step "the real node of the e2e tests: containerd, runc, CNI, kubelet, kube-proxy, CoreDNS, pause"
  bash scripts/install-node.sh >/dev/null
fi
log "ready ($MODE) in $((SECONDS - started)) s"
