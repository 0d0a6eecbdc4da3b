#!/usr/bin/env bash
# Install the official OpenAI JavaScript SDK from the npm registry, so that the docs test
# (tests/integration/test_docs.py) runs the JavaScript example of docs/clients.md with Node.js.
# Idempotent: does nothing when the pinned version is already there.
#
#   $CHATPROVIDER_CACHE/node-clients/node_modules/openai   where it goes (default ~/.cache/chatprovider)
#   OPENAI_JS_VERSION                                       the version (default below)
set -euo pipefail
CACHE=${CHATPROVIDER_CACHE:-$HOME/.cache/chatprovider}
OPENAI_JS_VERSION=${OPENAI_JS_VERSION:-7.59.0}
OUT=$CACHE/node-clients
log() { printf '[install-node-clients] %s\n' "$*" >&2; }

installed=$(node -p "require('$OUT/node_modules/openai/package.json').version" 2>/dev/null || true)
if [ "$installed" = "$OPENAI_JS_VERSION" ]; then
  log "openai (JavaScript) $installed already installed in $OUT"
  exit 0
fi
# Where Node.js is missing, setup goes on: only the docs test needs it, and it fails (never
# skips) with the same advice.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  log "WARNING: Node.js and npm are needed for the JavaScript example's test (apt-get install nodejs npm)"
  exit 0
fi
mkdir -p "$OUT" "$CACHE/npm"
[ -f "$OUT/package.json" ] || printf '{"private": true, "type": "module"}\n' > "$OUT/package.json"
log "installing openai@$OPENAI_JS_VERSION from the npm registry into $OUT"
npm install --prefix "$OUT" --cache "$CACHE/npm" --no-audit --no-fund --loglevel=error \
  --save-exact "openai@$OPENAI_JS_VERSION" >&2
log "installed: openai $(node -p "require('$OUT/node_modules/openai/package.json').version")"
