#!/usr/bin/env bash
# The benchmark suite in one command: installs what is missing, then runs `python -m bench`.
#   bench/run.sh            full run (~30 min), writes BENCHMARKS.md and docs/bench/*.png
#   bench/run.sh --smoke    every case at tiny sizes (< 3 min)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${CHATPROVIDER_CACHE:-$HOME/.cache/chatprovider}
bash "$ROOT/bench/install.sh"
cd "$ROOT"
exec "${VENV:-$CACHE/venv}/bin/python" -m bench "$@"
