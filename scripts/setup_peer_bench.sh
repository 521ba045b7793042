#!/usr/bin/env bash
# The peer benchmark's own venv (.venv-peer): TRL is a benchmark dependency only and never enters .venv. The
# project is put on its path with a .pth file.
#   bash scripts/setup_peer_bench.sh && .venv-peer/bin/python scripts/peer_bench.py --help
set -euo pipefail
cd "$(dirname "$0")/.."
D=.venv-peer
[ -x "$D/bin/python" ] || python3 -m venv "$D"
"$D/bin/pip" install -q torch==2.13.0            # the CPU wheel (an unpinned torch pulls CUDA wheels)
"$D/bin/pip" install -q trl==1.16.0 transformers==5.20.2 accelerate==1.15.0 datasets \
    pydantic pyyaml pyarrow tqdm tokenizers safetensors
echo "$PWD" > "$("$D/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/erl_source.pth"
"$D/bin/python" -c "import torch, transformers, trl; print('torch', torch.__version__, 'transformers', transformers.__version__, 'trl', trl.__version__)"
