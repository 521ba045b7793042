#!/usr/bin/env bash
# Install with the test extra, check formatting and lint (ruff), and run the whole suite (CPU only; GPU and vLLM
# tests skip themselves).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
. .venv/bin/activate
export HF_HUB_OFFLINE=1 DVC_NO_ANALYTICS=1
ruff format --check .
ruff check .
python -m pytest "$@"
