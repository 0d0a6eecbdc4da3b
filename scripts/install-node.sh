#!/usr/bin/env bash
# Install what a real single node needs (the e2e tests' harness, chatprovider_tools.node),
# from package registries alone, idempotently, cached outside the repo:
#
#   1. Debian's containerd, runc, containernetworking-plugins (bridge, host-local, portmap,
#      loopback) and iptables (apt-get, once; needs root);
#   2. kubelet, kube-controller-manager, kube-scheduler and kube-proxy, built from the same
#      k8s.io/kubernetes wrapper module as kube-apiserver (scripts/install-control-plane.sh);
#   3. CoreDNS, built from its Go module (github.com/coredns/coredns $COREDNS_VERSION), so that
#      Services resolve by name;
#   4. the pause image (scripts/node/pause.go, static, `docker import`ed as
#      registry.k8s.io/pause:3.10), beside the project's image and its debootstrap base
#      (scripts/build-image.sh, which also installs Debian's docker.io);
#   5. the e2e tests' workloads image chatprovider-e2e:dev (scripts/node/e2e.Dockerfile):
#      llama-server with Gemma 3 270M (scripts/install-llama-server.sh) as an upstream pod, and
#      curl and the openai SDK (the version the tests use) for app pods.
#
# Binaries go to ${CHATPROVIDER_CACHE:-~/.cache/chatprovider}/k8s/<k8s version>/bin; a piece whose
# stamp matches its version is never rebuilt. Prints that directory.
set -euo pipefail
cd "$(dirname "$0")/.."

K8S_VERSION=${K8S_VERSION:-v1.35.4}
COREDNS_VERSION=${COREDNS_VERSION:-v1.15.0}
PAUSE_IMAGE=registry.k8s.io/pause:3.10
E2E_IMAGE=${E2E_IMAGE:-chatprovider-e2e:dev}
CACHE=${CHATPROVIDER_CACHE:-$HOME/.cache/chatprovider}
OUT=$CACHE/k8s/$K8S_VERSION/bin
WORK=$CACHE/node/build
DOCKER=/usr/bin/docker  # Debian's client (scripts/build-image.sh installs it and starts dockerd)
export PATH=$PATH:/usr/sbin:/sbin GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0

log() { printf '[node %s] %s\n' "$(date +%T)" "$*" >&2; }
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
mkdir -p "$OUT" "$WORK"

# ---- 1. Debian packages -------------------------------------------------------------------
if ! command -v containerd >/dev/null || ! command -v runc >/dev/null \
   || [ ! -x /usr/lib/cni/bridge ] || ! command -v iptables >/dev/null; then
  log "installing Debian's containerd, runc, containernetworking-plugins and iptables"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
    containerd runc containernetworking-plugins iptables >/dev/null
fi
for p in bridge host-local portmap loopback; do
  [ -x "/usr/lib/cni/$p" ] || { log "the CNI plugin /usr/lib/cni/$p is missing"; exit 1; }
done

# ---- 2. the node's Kubernetes binaries ------------------------------------------------------
bash scripts/install-control-plane.sh kubelet kube-controller-manager kube-scheduler kube-proxy \
  >/dev/null

# ---- 3. CoreDNS -----------------------------------------------------------------------------
if [ -x "$OUT/coredns" ] && [ "$(cat "$OUT/.coredns.version" 2>/dev/null)" = "$COREDNS_VERSION" ]; then
  log "coredns $COREDNS_VERSION already built"
else
  mkdir -p "$WORK/coredns" && cd "$WORK/coredns"
  rm -f go.mod go.sum
  go mod init local/corednsbin >/dev/null 2>&1
  log "resolving github.com/coredns/coredns@$COREDNS_VERSION"
  go get "github.com/coredns/coredns@$COREDNS_VERSION" 2>&1 | tail -n 3 >&2 || true
  log "building coredns $COREDNS_VERSION (cold: about 3 minutes on 2 cores)"
  start=$(date +%s)
  go build -trimpath -ldflags "-s -w" -o "$OUT/coredns.tmp" github.com/coredns/coredns
  mv "$OUT/coredns.tmp" "$OUT/coredns"; echo "$COREDNS_VERSION" > "$OUT/.coredns.version"
  log "built coredns in $(( $(date +%s) - start )) s"
  cd - >/dev/null
fi

# ---- 4. images ------------------------------------------------------------------------------
bash scripts/build-image.sh >/dev/null   # docker.io, the debootstrap base, chatprovider-operator:dev
if "$DOCKER" image inspect "$PAUSE_IMAGE" >/dev/null 2>&1; then
  log "$PAUSE_IMAGE already built"
else
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  go build -trimpath -ldflags "-s -w" -o "$root/pause" scripts/node/pause.go
  tar -C "$root" -cf "$root/pause.tar" pause
  "$DOCKER" import --change 'ENTRYPOINT ["/pause"]' "$root/pause.tar" "$PAUSE_IMAGE" >/dev/null
  log "built $PAUSE_IMAGE ($(stat -c %s "$root/pause") bytes)"
  rm -rf "$root"; trap - EXIT
fi

# ---- 5. the e2e tests' workloads: llama-server with Gemma as a pod; curl and the openai SDK ---
LLAMA=$CACHE/llama-server/$(sed -n 's/^LLAMA_CPP_VERSION=${LLAMA_CPP_VERSION:-\(.*\)}$/\1/p' \
  scripts/install-upstreams.sh)
[ -x "$LLAMA/bin/llama-server" ] && [ -s "$LLAMA/gemma-3-270m.gguf" ] \
  || { log "llama-server is not installed in $LLAMA (scripts/install-llama-server.sh)"; exit 1; }
VENV=${CHATPROVIDER_VENV:-$CACHE/venv}
OPENAI_VERSION=$("$VENV/bin/python" -c 'import openai; print(openai.__version__)') \
  || { log "the openai SDK is not installed in $VENV (scripts/setup.sh)"; exit 1; }
# what the image is made of; an image labelled with the same inputs is not rebuilt
inputs=$( { cat scripts/node/e2e.Dockerfile tools/chatprovider_tools/templates/gemma.jinja
            echo "$OPENAI_VERSION ${BASE_IMAGE:-chatprovider-base:bookworm}"
            stat -c '%s %Y' "$LLAMA/bin/llama-server" "$LLAMA/gemma-3-270m.gguf"; } \
          | sha256sum | cut -c1-16)
if [ "$("$DOCKER" image inspect -f '{{index .Config.Labels "dev.chatprovider.inputs"}}' \
        "$E2E_IMAGE" 2>/dev/null)" = "$inputs" ]; then
  log "$E2E_IMAGE already built"
  echo "$OUT"
  exit 0
fi
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
ln "$LLAMA/bin/llama-server" "$LLAMA/gemma-3-270m.gguf" "$context/" 2>/dev/null \
  || cp "$LLAMA/bin/llama-server" "$LLAMA/gemma-3-270m.gguf" "$context/"
cp tools/chatprovider_tools/templates/gemma.jinja "$context/"
cp scripts/node/e2e.Dockerfile "$context/Dockerfile"
log "building $E2E_IMAGE (llama-server, Gemma 3 270M, curl, openai $OPENAI_VERSION)"
DOCKER_BUILDKIT=0 "$DOCKER" build -q \
  --build-arg BASE="${BASE_IMAGE:-chatprovider-base:bookworm}" \
  --build-arg OPENAI_VERSION="$OPENAI_VERSION" --label dev.chatprovider.inputs="$inputs" \
  -t "$E2E_IMAGE" "$context" >/dev/null
rm -rf "$context"; trap - EXIT
log "built $E2E_IMAGE: $(( $("$DOCKER" image inspect -f '{{.Size}}' "$E2E_IMAGE") / 1048576 )) MiB"
echo "$OUT"
