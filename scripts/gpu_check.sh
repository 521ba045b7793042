#!/usr/bin/env bash
# GPU check, about 7 minutes on one H100 or H200 with no network and nothing to install but the carried wheels:
#
#   bash scripts/gpu_check.sh [PARAMS]        # default: presets/paper.yaml for the update checks
#
# 1. the packages there, and the pipeline's own needs from .whl/ (pydantic: `pip download` them here first);
# 2. pytest -m gpu (the vLLM test skips: vLLM cannot be brought to these machines);
# 3. the update of a randomly initialised Qwen3-4B-shaped model at PARAMS' settings (fp32 master weights, bf16
#    compute, gradient checkpointing, chunked log-probs), two optimizer steps each, peak memory per step and
#    tokens/s against the planner (pipeline/gpumem.py, `erl memory`):
#    a. ddp with torch's foreach AdamW, as measured once before (82.9 GiB on an H200: the optimizer step);
#    b. ddp, fused AdamW, moments offloaded between steps: must stay under 80 GB at the paper's micro-batch;
#    c. fsdp2 in one process on CUDA with CPU offload of the shards (presets/paper-1gpu.yaml);
# 4. the embedded default on CUDA: init and epochs 1-2 in one process (timed), epoch 3 step by step with its update
#    under `accelerate launch` (one process per GPU), then epoch 1's sample step again: identical rollouts?
# Writes under $GPU_CHECK_DIR (default: a temporary folder) and, with $OUT set, a copy of the results there.
set -uo pipefail
cd "$(dirname "$0")/.."
PARAMS=${1:-presets/paper.yaml}
PY=${PYTHON:-python3}
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
DIR=${GPU_CHECK_DIR:-$(mktemp -d)}
A=$DIR/artifacts
if ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$DIR/site" .whl/*.whl \
    && export PYTHONPATH="$DIR/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}"
NGPU=$($PY -c "import torch; print(max(torch.cuda.device_count(), 1))")
MULTI=$([ "$NGPU" -gt 1 ] && echo --multi_gpu || true)
t() { local s=$SECONDS label=$1; shift; "$@"; echo "== $label: $(( SECONDS - s )) s"; }

echo "== 1. machine"
$PY - <<'EOF'
import importlib.metadata as md, platform, torch
print("python", platform.python_version(), "| torch", torch.__version__, "| cuda", torch.version.cuda, "|",
      ", ".join(f"{p} {md.version(p)}" for p in ("transformers", "accelerate", "tokenizers", "pydantic")))
print("devices:", [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] or "none (CPU)")
EOF

echo "== 2. GPU tests"
t "gpu tests" $PY -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py 2>&1 | tail -n 5

echo "== 3. the update of a Qwen3-4B-shaped model at $PARAMS"
for v in "ddp none foreach" "ddp optimizer fused" "fsdp2 params fused"; do
  set -- $v
  t "4B update $1 offload=$2 adamw=$3" $PY scripts/gpu_update_check.py --params "$PARAMS" --samples 16 --tokens 2048 \
    --steps 2 --strategy "$1" --offload "$2" --adamw "$3" 2>&1 | grep -v "it/s" | tee "$DIR/update_4b_$1_$2_$3.txt" \
    | grep -E '"(strategy|peak_gib_per_step|estimate_peak_gib|estimate_phases_gib|tokens_per_s_all_passes|last_step_s)"|error' 
done

echo "== 4. the embedded default on CUDA ($NGPU GPU(s)); artifacts in $A"
P=params.yaml
t init $PY -m stages.init --params $P --artifacts "$A" 2>&1 | grep -v "it/s\]$" | tail -n 3
t "epochs 1-2" $PY -m stages.epochs --first 1 --last 2 --params $P --artifacts "$A" 2>&1 | grep -E "held-out|epochs" | tail -n 4
for s in sample feedback reflect retry consolidate; do
  t "$s e3" $PY -m stages.$s --epoch 3 --params $P --artifacts "$A" 2>&1 | tail -n 1
done
t "update e3 (accelerate launch)" $PY -m accelerate.commands.launch $MULTI --num_processes "$NGPU" --num_machines 1 \
  --mixed_precision no --dynamo_backend no -m stages.update --epoch 3 --params $P --artifacts "$A" 2>&1 | tail -n 2
t "evaluate e3" $PY -m stages.evaluate --epoch 3 --params $P --artifacts "$A" 2>&1 | tail -n 1
cp "$A/epoch_001/attempts.parquet" "$DIR/attempts_first.parquet"
$PY -m stages.sample --epoch 1 --params $P --artifacts "$A" >/dev/null 2>&1
$PY - "$DIR/attempts_first.parquet" "$A/epoch_001/attempts.parquet" <<'EOF'
import sys, pyarrow.parquet as pq
a, b = (pq.read_table(p) for p in sys.argv[1:3])
diff = sum(x != y for x, y in zip(a.column("responses").to_pylist(), b.column("responses").to_pylist()))
print(f"epoch 1 sampled again on the same checkpoint: identical rollouts {a.equals(b)} ({diff} of {a.num_rows} differ)")
EOF
if [ -n "${OUT:-}" ]; then cp "$DIR"/update_4b_*.txt "$OUT/" 2>/dev/null; fi
