#!/usr/bin/env bash
# Create .venv (if missing) and install the project. `bash scripts/setup.sh test` adds the test extra.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# The CPU build of torch: an unpinned torch pulls several GB of CUDA wheels.
python -c "import torch" 2>/dev/null || python -m pip install -q "torch==2.13.0"
extra=${1:-}
python -m pip install -q -e ".${extra:+[$extra]}"
