#!/usr/bin/env bash
# GPU check: the GPU tests, then a short run of the pipeline on CUDA through the stage CLIs.
#
#   bash scripts/gpu_check.sh [EPOCHS] [PARAMS]      # defaults: 3 epochs, params.yaml
#
# 1. pytest -m gpu (the vLLM test skips unless the vllm extra is installed);
# 2. init, then epochs 1..EPOCHS in one process (stages.epochs), timed;
# 3. epoch EPOCHS+1 one step at a time, its update under `accelerate launch` (one process per GPU);
# 4. epoch 1's sample step again on the same checkpoint: are the attempts identical on this GPU?
# Prints the device, the package versions, each step's time and held-out success per epoch. Writes under
# $GPU_CHECK_DIR (default: a temporary folder) and nowhere in the project.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-3}
PARAMS=${2:-params.yaml}
PY=${PYTHON:-python3}
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
DIR=${GPU_CHECK_DIR:-$(mktemp -d)}
A=$DIR/artifacts
NGPU=$($PY -c "import torch; print(max(torch.cuda.device_count(), 1))")
MULTI=$([ "$NGPU" -gt 1 ] && echo --multi_gpu || true)
$PY - <<'EOF'
import importlib.metadata as md, platform, torch
print("python", platform.python_version(), "| torch", torch.__version__, "| cuda", torch.version.cuda,
      "|", ", ".join(f"{p} {md.version(p)}" for p in ("transformers", "accelerate", "tokenizers")))
print("devices:", [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] or "none (CPU)")
EOF
t() { local s=$SECONDS label=$1; shift; "$@"; echo "== $label: $(( SECONDS - s )) s"; }

echo "== 1. GPU tests"
$PY -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py || echo "== GPU TESTS FAILED"

echo "== 2. init + epochs 1-$N ($PARAMS, artifacts in $A)"
t init $PY -m stages.init --params "$PARAMS" --artifacts "$A" 2>&1 | grep -v "it/s\]$" | tail -n 3
t "epochs 1-$N" $PY -m stages.epochs --first 1 --last "$N" --params "$PARAMS" --artifacts "$A" 2>&1 | grep -E "evaluate|epochs|==" | tail -n $((N + 3))

e=$((N + 1))
echo "== 3. epoch $e step by step, update under accelerate launch ($NGPU processes)"
for s in sample feedback reflect retry consolidate; do
  t $s $PY -m stages.$s --epoch $e --params "$PARAMS" --artifacts "$A" 2>&1 | tail -n 2
done
t "update (accelerate launch)" $PY -m accelerate.commands.launch $MULTI --num_processes "$NGPU" --num_machines 1 \
  --mixed_precision no --dynamo_backend no -m stages.update --epoch $e --params "$PARAMS" --artifacts "$A" 2>&1 | tail -n 3
t evaluate $PY -m stages.evaluate --epoch $e --params "$PARAMS" --artifacts "$A" 2>&1 | tail -n 2

echo "== 4. epoch 1's sample step again on the same checkpoint"
cp "$A/epoch_001/attempts.parquet" "$DIR/attempts_first.parquet"
$PY -m stages.sample --epoch 1 --params "$PARAMS" --artifacts "$A" >/dev/null 2>&1
$PY - "$DIR/attempts_first.parquet" "$A/epoch_001/attempts.parquet" <<'EOF'
import sys, pyarrow.parquet as pq
a, b = (pq.read_table(p).drop(["seed"]) for p in sys.argv[1:3])
diff = sum(x != y for x, y in zip(a.column("responses").to_pylist(), b.column("responses").to_pylist()))
print(f"identical attempts: {a.equals(b)} ({diff} of {a.num_rows} rollouts' responses differ)")
EOF

echo "== held-out success per epoch"
$PY - "$A" <<'EOF'
import json, sys
from pathlib import Path
for m in sorted(Path(sys.argv[1]).glob("epoch_*/metrics.json")):
    d = json.loads(m.read_text())
    print(f"epoch {d['epoch']:3d}  held-out {d['eval_success']:.3f}  train pre {d['train_pre_success']:.3f}  "
          f"post {d['train_post_success']:.3f}")
EOF
