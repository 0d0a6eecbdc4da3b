#!/usr/bin/env bash
# Build the local control plane's binaries from the Go module proxy and cache them outside the repo.
#
#   kube-apiserver, kubectl   from k8s.io/kubernetes $K8S_VERSION (wrapper module pinning staging modules)
#   etcd                      from go.etcd.io/etcd/server/v3 $ETCD_VERSION
#
# usage: install-control-plane.sh [COMMAND...]
#   each COMMAND is one more k8s.io/kubernetes/cmd/* built the same way (scripts/install-node.sh
#   asks for kubelet, kube-controller-manager, kube-scheduler and kube-proxy).
#
# Idempotent: a binary whose stamp file matches its version is never rebuilt. Output goes to
#   ${CHATPROVIDER_CACHE:-~/.cache/chatprovider}/k8s/<k8s version>/bin
# Set KUBEBUILDER_ASSETS to a directory that already holds kube-apiserver, etcd (and kubectl) to skip
# the build entirely (the envtest convention).
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.35.4}
ETCD_VERSION=${ETCD_VERSION:-v3.6.6}
CACHE=${CHATPROVIDER_CACHE:-$HOME/.cache/chatprovider}
OUT=$CACHE/k8s/$K8S_VERSION/bin
WORK=$CACHE/k8s/$K8S_VERSION/build

log() { printf '[control-plane] %s\n' "$*" >&2; }
heartbeat() { # heartbeat WHAT: every 30 s, that WHAT is still going and for how long (until killed)
  local t0=$SECONDS
  while sleep 30 && kill -0 $$ 2>/dev/null; do log "  still $1 ($((SECONDS - t0)) s)"; done
}

if [ -n "${KUBEBUILDER_ASSETS:-}" ]; then
  for b in kube-apiserver etcd; do
    [ -x "$KUBEBUILDER_ASSETS/$b" ] || { log "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS has no executable $b"; exit 1; }
  done
  log "using prebuilt binaries from KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS"
  echo "$KUBEBUILDER_ASSETS"
  exit 0
fi

command -v go >/dev/null || { log "Go is required (https://go.dev); none found on PATH"; exit 1; }
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
mkdir -p "$OUT" "$WORK/k8s" "$WORK/etcd"

fresh() { # fresh NAME VERSION: the binary exists and was built at VERSION
  [ -x "$OUT/$1" ] && [ "$(cat "$OUT/.$1.version" 2>/dev/null)" = "$2" ]
}
stamp() { echo "$2" > "$OUT/.$1.version"; }

# ---- kube-apiserver, kubectl and any other command asked for --------------------------------
CMDS="kube-apiserver kubectl $*"
wanted=""
for cmd in $CMDS; do fresh "$cmd" "$K8S_VERSION" || wanted+=" $cmd"; done
if [ -z "$wanted" ]; then
  log "$(echo $CMDS | sed 's/ /, /g') $K8S_VERSION already built"
else
  STG=v0.${K8S_VERSION#v1.}
  MIN=$(echo "$K8S_VERSION" | cut -d. -f2)
  cd "$WORK/k8s"
  if ! grep -qs "k8s.io/kubernetes $K8S_VERSION" go.mod; then
    log "reading the go.mod of k8s.io/kubernetes@$K8S_VERSION from the module proxy"
    KKMOD=$( (cd /tmp && go mod download -json "k8s.io/kubernetes@$K8S_VERSION") |
             python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
    MODS=$( { sed -n 's#^[[:space:]]*\(k8s.io/[^[:space:]]*\) => \./staging/.*#\1#p' "$KKMOD"
              sed -n 's#^[[:space:]]*\(k8s.io/[^[:space:]]*\) v0\.0\.0\([[:space:]].*\)\{0,1\}$#\1#p' "$KKMOD"; } | sort -u)
    log "pinning $(echo "$MODS" | wc -w) staging modules at $STG"
    rm -f go.mod go.sum
    go mod init local/k8sbins >/dev/null 2>&1
    go mod edit -go="$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$KKMOD")"
    for m in $MODS; do go mod edit -replace="$m=$m@$STG"; done
    go mod edit -require="k8s.io/kubernetes@$K8S_VERSION"
  fi
  log "resolving dependencies of$wanted (the first run downloads ~0.5 GB of modules)"
  # shellcheck disable=SC2086  # one argument per command
  go get $(printf "k8s.io/kubernetes/cmd/%s@$K8S_VERSION " $wanted) 2>&1 | tail -n 3 >&2 || true
  BD=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  LDF="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    LDF+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$MIN"
    LDF+=" -X $p.gitTreeState=clean -X $p.gitCommit=0000000000000000000000000000000000000000 -X $p.buildDate=$BD"
  done
  for cmd in $wanted; do
    log "building $cmd $K8S_VERSION (cold: 10-25 minutes on 2 cores for the first; 2-3 for the others)"
    start=$(date +%s)
    heartbeat "building $cmd" & beat=$!
    go build -trimpath -ldflags "$LDF" -o "$OUT/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd" \
      || { kill "$beat"; exit 1; }
    kill "$beat" 2>/dev/null || true
    mv "$OUT/$cmd.tmp" "$OUT/$cmd"; stamp "$cmd" "$K8S_VERSION"
    log "built $cmd in $(( $(date +%s) - start )) s"
  done
fi

# ---- etcd -------------------------------------------------------------------------------------
if fresh etcd "$ETCD_VERSION"; then
  log "etcd $ETCD_VERSION already built"
else
  cd "$WORK/etcd"
  rm -f go.mod go.sum
  go mod init local/etcdbin >/dev/null 2>&1
  log "resolving go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" 2>&1 | tail -n 3 >&2 || true
  log "building etcd $ETCD_VERSION"
  start=$(date +%s)
  heartbeat "building etcd" & beat=$!
  go build -trimpath -ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$ETCD_VERSION" \
    -o "$OUT/etcd.tmp" go.etcd.io/etcd/server/v3 || { kill "$beat"; exit 1; }
  kill "$beat" 2>/dev/null || true
  mv "$OUT/etcd.tmp" "$OUT/etcd"; stamp etcd "$ETCD_VERSION"
  log "built etcd in $(( $(date +%s) - start )) s"
fi

echo "$OUT"
