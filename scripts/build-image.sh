#!/usr/bin/env bash
# Build the project's image from package registries alone, idempotently:
#
#   1. Debian's docker.io and debootstrap (apt-get, once; needs root);
#   2. a Docker daemon (started here when none answers; its log in the cache);
#   3. a Debian bookworm base image with Python 3.11 made by debootstrap from Debian's mirror
#      (trusting the CAs this machine added to its own store),
#      imported as chatprovider-base:bookworm (the tarball is kept in
#      ${CHATPROVIDER_CACHE:-~/.cache/chatprovider}/images, so it is made once per machine);
#   4. the Dockerfile built on that base (--build-arg PYTHON_IMAGE=...), tagged
#      chatprovider-operator:dev (IMAGE overrides), and its size printed.
#
# Docker Hub is not reachable here, which is why the base is made rather than pulled; with Docker
# Hub, plain `docker build .` on python:3.11-slim-bookworm does the same.
#
# Needs root, or sudo (apt-get, dockerd, debootstrap), and a Docker client the user may run.
# usage: scripts/build-image.sh [extra docker build arguments...]
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=${CHATPROVIDER_CACHE:-$HOME/.cache/chatprovider}
IMAGES=$CACHE/images
BASE=${BASE_IMAGE:-chatprovider-base:bookworm}
IMAGE=${IMAGE:-chatprovider-operator:dev}
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# The Python runtime the Dockerfile expects of its base: python (3.11), pip, venv.
BASE_PACKAGES=python3,python3-pip,python3-venv,ca-certificates
mkdir -p "$IMAGES"

log() { printf '[image %s] %s\n' "$(date +%T)" "$*" >&2; }
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export PATH=$PATH:/usr/sbin:/sbin

if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
  log "installing Debian's docker.io and debootstrap"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq docker.io debootstrap >/dev/null
fi
# Debian's client, whatever else is on PATH (it matches the daemon's API version).
DOCKER=/usr/bin/docker

if ! "$DOCKER" info >/dev/null 2>&1; then
  log "starting dockerd (log: $IMAGES/dockerd.log)"
  $SUDO nohup dockerd >"$IMAGES/dockerd.log" 2>&1 &
  for _ in $(seq 1 60); do
    "$DOCKER" info >/dev/null 2>&1 && break
    sleep 0.5
  done
  "$DOCKER" info >/dev/null 2>&1 || { log "dockerd did not answer; see $IMAGES/dockerd.log"; exit 1; }
fi

tarball=$IMAGES/base-$SUITE.tar
if [ ! -s "$tarball" ]; then
  log "making the $SUITE base image with debootstrap (once; a few minutes)"
  root=$(mktemp -d)
  trap '$SUDO rm -rf "$root"' EXIT
  $SUDO debootstrap --variant=minbase --include="$BASE_PACKAGES" "$SUITE" "$root" "$MIRROR" \
    >"$IMAGES/debootstrap.log" 2>&1 || { log "debootstrap failed; see $IMAGES/debootstrap.log"; exit 1; }
  $SUDO ln -sf python3 "$root/usr/bin/python"
  # The CAs this machine adds to Debian's (here: the egress proxy's), so that pip in the build
  # reaches PyPI as it does on the host. They go into the local base only, never into a pushed
  # image's Dockerfile.
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    $SUDO cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
    $SUDO chroot "$root" update-ca-certificates >/dev/null 2>&1
  fi
  # What python:*-slim images leave out, and an image has no use for.
  $SUDO rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
         "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/*
  $SUDO tar -C "$root" -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
  $SUDO rm -rf "$root"
  trap - EXIT
fi
if ! "$DOCKER" image inspect "$BASE" >/dev/null 2>&1; then
  log "importing $tarball as $BASE"
  "$DOCKER" import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    "$tarball" "$BASE" >/dev/null
fi

log "building $IMAGE on $BASE"
DOCKER_BUILDKIT=0 "$DOCKER" build -q --build-arg PYTHON_IMAGE="$BASE" -t "$IMAGE" "$@" . >/dev/null
size=$("$DOCKER" image inspect -f '{{.Size}}' "$IMAGE")
base_size=$("$DOCKER" image inspect -f '{{.Size}}' "$BASE")
log "built $IMAGE: $((size / 1048576)) MiB ($(( (size - base_size) / 1048576 )) MiB above the base)"
echo "$IMAGE"
