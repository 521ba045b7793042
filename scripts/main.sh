#!/usr/bin/env bash
# The main job on the embedded default: install, then `dvc repro` (init, every epoch, report).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1 DVC_NO_ANALYTICS=1
# DVC needs a Git repository; a downloaded archive gets one on the spot.
[ -d .git ] || { git init -q && git add -A && git -c user.name=erl -c user.email=erl@localhost commit -qm "initial"; }
erl dvc-yaml --check
dvc repro "$@"
dvc metrics show
