#!/usr/bin/env bash
# Install the official OpenAI JavaScript SDK and Anthropic's Claude Code from the npm registry,
# so that the docs test (tests/integration/test_docs.py) runs the JavaScript and Claude Code
# examples of docs/clients.md with Node.js. Idempotent: does nothing when the pinned versions
# are already there.
#
#   $CHATPROVIDER_CACHE/node-clients/node_modules/        where they go (default ~/.cache/chatprovider)
#   OPENAI_JS_VERSION, CLAUDE_CODE_VERSION                 the versions (defaults below)
set -euo pipefail
CACHE=${CHATPROVIDER_CACHE:-$HOME/.cache/chatprovider}
OPENAI_JS_VERSION=${OPENAI_JS_VERSION:-7.59.0}
CLAUDE_CODE_VERSION=${CLAUDE_CODE_VERSION:-2.1.332}
OUT=$CACHE/node-clients
log() { printf '[install-node-clients] %s\n' "$*" >&2; }

version_of() { node -p "require('$OUT/node_modules/$1/package.json').version" 2>/dev/null || true; }
if [ "$(version_of openai)" = "$OPENAI_JS_VERSION" ] && \
   [ "$(version_of @anthropic-ai/claude-code)" = "$CLAUDE_CODE_VERSION" ]; then
  log "openai (JavaScript) $OPENAI_JS_VERSION and Claude Code $CLAUDE_CODE_VERSION already installed in $OUT"
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
log "installing openai@$OPENAI_JS_VERSION and @anthropic-ai/claude-code@$CLAUDE_CODE_VERSION from the npm registry into $OUT"
npm install --prefix "$OUT" --cache "$CACHE/npm" --no-audit --no-fund --loglevel=error \
  --save-exact "openai@$OPENAI_JS_VERSION" "@anthropic-ai/claude-code@$CLAUDE_CODE_VERSION" >&2
log "installed: openai $(version_of openai), Claude Code $(version_of @anthropic-ai/claude-code)"
