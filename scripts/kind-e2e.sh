#!/usr/bin/env bash
# End to end on a real cluster: build the image, install the chart into a kind cluster, register
# an in-cluster devserver as a ChatProvider, and chat with it through the relay.
#
# Needs Docker, kind, kubectl and helm on PATH. NOT run by this repository's CI (which has no
# Docker); .github/workflows/kind-e2e.yaml runs it on GitHub-hosted runners.
#
#   scripts/kind-e2e.sh                      # relay embedded in the operator (chart default)
#   RELAY_MODE=separate scripts/kind-e2e.sh  # relay as its own Deployment (2 replicas)
#   KEEP_CLUSTER=1 scripts/kind-e2e.sh       # leave the cluster for poking around
#
# Environment: KIND_CLUSTER (chatprovider-e2e), IMAGE (chatprovider-operator:e2e), RELAY_MODE
# (embedded|separate), KEEP_CLUSTER (0), HELM (helm), KUBECTL (kubectl), LOCAL_PORT (18080).
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER=${KIND_CLUSTER:-chatprovider-e2e}
IMAGE=${IMAGE:-chatprovider-operator:e2e}
RELAY_MODE=${RELAY_MODE:-embedded}
KEEP=${KEEP_CLUSTER:-0}
HELM=${HELM:-helm}
KUBECTL=${KUBECTL:-kubectl}
LOCAL_PORT=${LOCAL_PORT:-18080}
RELEASE=chatprovider-operator
NS=chatprovider-system
APP_NS=chatprovider-e2e
CONTEXT=kind-$CLUSTER

log() { printf '\n[kind-e2e] %s\n' "$*" >&2; }
fail() { log "FAILED: $*"; dump; exit 1; }
k() { "$KUBECTL" --context "$CONTEXT" "$@"; }

for tool in docker kind "$KUBECTL" "$HELM" curl; do
  command -v "$tool" >/dev/null || { log "$tool is required on PATH"; exit 1; }
done
docker info >/dev/null 2>&1 || { log "the Docker daemon is not reachable"; exit 1; }

pf_pid=""
dump() {
  log "diagnostics"
  k get pods,deploy,svc -A -o wide || true
  k get chatproviders -A -o yaml || true
  k get events -A --sort-by=.lastTimestamp | tail -n 40 || true
  k logs -n "$NS" -l app.kubernetes.io/instance=$RELEASE --all-containers --tail=200 || true
}
cleanup() {
  [ -n "$pf_pid" ] && kill "$pf_pid" 2>/dev/null || true
  if [ "$KEEP" = 1 ]; then
    log "keeping cluster $CLUSTER (kind delete cluster --name $CLUSTER)"
  else
    kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

started=$(date +%s)
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  log "reusing kind cluster $CLUSTER"
else
  log "creating kind cluster $CLUSTER"
  kind create cluster --name "$CLUSTER" --wait 120s
fi

log "building $IMAGE"
TOOLS_IMAGE=${TOOLS_IMAGE:-chatprovider-tools:e2e}
docker build -t "$IMAGE" .
docker build --target tools -t "$TOOLS_IMAGE" .
kind load docker-image "$IMAGE" "$TOOLS_IMAGE" --name "$CLUSTER"

log "installing the chart (relay.mode=$RELAY_MODE) into $NS, which enforces the restricted PSS"
k create namespace "$NS" --dry-run=client -o yaml | k apply -f -
k label namespace "$NS" --overwrite pod-security.kubernetes.io/enforce=restricted \
  pod-security.kubernetes.io/enforce-version=latest
"$HELM" upgrade --install "$RELEASE" charts/chatprovider-operator --kube-context "$CONTEXT" \
  --namespace "$NS" --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" \
  --set image.pullPolicy=Never --set relay.mode="$RELAY_MODE" --wait --timeout 5m \
  || fail "helm install"
k rollout status -n "$NS" deployment/$RELEASE --timeout=3m || fail "the operator did not start"
if [ "$RELAY_MODE" = separate ]; then
  k rollout status -n "$NS" deployment/$RELEASE-relay --timeout=3m || fail "the relay did not start"
fi

log "an in-cluster upstream (examples/kind/devserver.yaml) registered as a ChatProvider"
k create namespace "$APP_NS" --dry-run=client -o yaml | k apply -f -
sed "s#image: ghcr.io/chatprovider/chatprovider-tools:.*#image: $TOOLS_IMAGE#" \
  examples/kind/devserver.yaml | k apply -n "$APP_NS" -f -
k rollout status -n "$APP_NS" deployment/devserver --timeout=3m || fail "devserver"
k wait -n "$APP_NS" chatprovider/devserver --for=condition=Ready --timeout=3m \
  || fail "the provider did not become Ready"
k get chatproviders -n "$APP_NS" -o wide

log "calling the relay as a ServiceAccount bound to chatprovider-user"
k create serviceaccount app -n "$APP_NS" --dry-run=client -o yaml | k apply -f -
k create serviceaccount stranger -n "$APP_NS" --dry-run=client -o yaml | k apply -f -
k create rolebinding app-uses-providers -n "$APP_NS" --clusterrole=chatprovider-user \
  --serviceaccount="$APP_NS:app" --dry-run=client -o yaml | k apply -f -
TOKEN=$(k create token app -n "$APP_NS")
STRANGER=$(k create token stranger -n "$APP_NS")
k port-forward -n "$NS" "svc/$RELEASE-relay" "$LOCAL_PORT:8080" >/dev/null 2>&1 &
pf_pid=$!
base=http://127.0.0.1:$LOCAL_PORT
for _ in $(seq 1 60); do
  curl -fsS "$base/readyz" >/dev/null 2>&1 && break
  sleep 1
done
curl -fsS "$base/readyz" >/dev/null || fail "the relay is not reachable through port-forward"

model=""
for _ in $(seq 1 30); do  # the relay learns of Ready providers through its own watch
  models=$(curl -fsS "$base/v1/models" -H "Authorization: Bearer $TOKEN" || true)
  model=$(printf '%s' "$models" | python3 -c \
    'import json,sys; d=json.load(sys.stdin)["data"]; print(d[0]["id"] if d else "")' 2>/dev/null || true)
  [ -n "$model" ] && break
  sleep 1
done
[ -n "$model" ] || fail "the relay lists no model for the app"
log "chatting with $model"
answer=$(curl -fsS "$base/v1/chat/completions" -H "Authorization: Bearer $TOKEN" \
  -H 'Content-Type: application/json' \
  -d "{\"model\": \"$model\", \"messages\": [{\"role\": \"user\", \"content\": \"Hello\"}]}") \
  || fail "chat completion"
printf '%s' "$answer" | python3 -c \
  'import json,sys; print("answer:", json.load(sys.stdin)["choices"][0]["message"]["content"])'
code=$(curl -s -o /dev/null -w '%{http_code}' "$base/v1/chat/completions" \
  -H "Authorization: Bearer $STRANGER" -H 'Content-Type: application/json' \
  -d "{\"model\": \"$model\", \"messages\": [{\"role\": \"user\", \"content\": \"Hello\"}]}")
[ "$code" = 403 ] || fail "a caller without 'use' got HTTP $code, expected 403"

log "PASSED in $(( $(date +%s) - started )) s (relay.mode=$RELAY_MODE)"
