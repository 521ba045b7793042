"""update.strategy: fsdp2 on CPUs: 2 and 3 processes over gloo, each holding its shard of the model, against one
process on the same samples (the embedded Llama-style model and a small random Qwen3): the same loss, gradients
and parameters after the optimizer step; an epoch resumed from sharded train state, with another number of
processes, equal to an uninterrupted run; ranks with uneven shards finish; and a reduction that sums instead of
averaging fails the comparison. Tolerances: fp32 sums in another order, rtol 1e-4 (loss, gradients) and atol
5e-6 on parameters after AdamW steps at lr 1e-4."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

ROOT = Path(__file__).resolve().parent.parent
WORKER = ROOT / "tests" / "sharding_worker.py"
# no clipping here (grad_clip 1e6): a clipped gradient would hide a gradient of the wrong scale
UPDATE = {
    "lr": 1e-4,
    "minibatch_size": 12,
    "ppo_epochs": 1,
    "micro_batch_tokens": 64,
    "kl_coef": 0.02,
    "grad_clip": 1e6,
}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(spec: dict, tmp: Path, world: int | None, timeout: int = 240) -> None:
    """Run the worker as ``world`` processes (None: one process, no process group), as `accelerate launch` would."""
    path = tmp / f"spec-{os.urandom(4).hex()}.json"
    path.write_text(json.dumps(spec))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    procs = []
    if world is None:
        procs.append(subprocess.Popen([sys.executable, str(WORKER), str(path)], env=env, stderr=subprocess.PIPE))
    else:
        port = str(_port())
        for r in range(world):
            e = dict(env, RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1")
            e["MASTER_PORT"] = port
            procs.append(subprocess.Popen([sys.executable, str(WORKER), str(path)], env=e, stderr=subprocess.PIPE))
    errors = []
    try:
        for p in procs:
            _, err = p.communicate(timeout=timeout)
            if p.returncode:
                errors.append(err.decode(errors="replace")[-3000:])
    finally:
        for p in procs:
            p.kill()
    assert not errors, errors[0]


def _load(path: Path) -> tuple[dict, dict, list]:
    with safe_open(str(path), framework="pt") as f:
        t = {k: f.get_tensor(k) for k in f.keys()}
        steps = json.loads(f.metadata()["steps"])
    grads = {k[5:]: v for k, v in t.items() if k.startswith("grad.")}
    params = {k[6:]: v for k, v in t.items() if k.startswith("param.")}
    return grads, params, steps


def _step(tmp: Path, arch: str, strategy: str, world: int | None, **extra):
    out = tmp / f"{arch}-{strategy}-{world}-{len(extra)}.safetensors"
    spec = {"mode": "step", "arch": arch, "strategy": strategy, "samples": 7, "update": UPDATE, "out": str(out)}
    launch({**spec, **extra}, tmp, world)
    return _load(out)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["llama", "qwen3"])
def test_sharded_step_equals_one_process(tmp_path, arch):
    """7 samples of different lengths over 2 and 3 processes (4+3 and 3+2+2: uneven shards, different numbers of
    micro-batches per process) give the loss, gradients and updated parameters of one process."""
    grads, params, steps = _step(tmp_path, arch, "ddp", None)
    assert steps[0]["n_samples"] == 7
    for world in (2, 3):
        g, q, s = _step(tmp_path, arch, "fsdp2", world)
        assert s[0]["loss"] == pytest.approx(steps[0]["loss"], rel=1e-4)
        assert s[0]["grad_norm"] == pytest.approx(steps[0]["grad_norm"], rel=1e-4)
        for n in grads:
            assert torch.allclose(g[n], grads[n], rtol=1e-4, atol=1e-7), (world, n)
        for n in params:
            assert torch.allclose(q[n], params[n], rtol=0, atol=5e-6), (world, n)


@pytest.mark.slow
def test_a_summed_reduction_would_be_caught(tmp_path):
    """Gradients summed over the processes instead of averaged (what PyTorch issue 162338 reported of gloo) are
    twice the one-process gradients with two processes: the comparison above fails on them."""
    grads, _, steps = _step(tmp_path, "llama", "ddp", None)
    g, _, s = _step(tmp_path, "llama", "fsdp2", 2, sum=True)
    name = next(n for n in grads if grads[n].abs().sum() > 0)
    assert not torch.allclose(g[name], grads[name], rtol=1e-4, atol=1e-7)
    assert torch.allclose(g[name], 2 * grads[name], rtol=1e-4, atol=1e-7)
    assert s[0]["grad_norm"] == pytest.approx(2 * steps[0]["grad_norm"], rel=1e-4)


def _project(tmp: Path, strategy: str, epochs: int = 2) -> tuple[Path, Path]:
    """An artifact tree with the embedded model's initial policy and the samples of ``epochs`` epochs."""
    import yaml
    from sharding_worker import build, samples

    from pipeline import checkpoint, layout
    from pipeline.artifacts import write_table
    from pipeline.config import Params
    from pipeline.tiny.model import build_tokenizer

    tok = build_tokenizer(["a b c d e f g h i j k l m n o p q r s t u v w x y z ``` left down right up"])
    model = build("llama", tok, 0)
    raw = Params().model_dump(mode="json")
    raw["update"].update(
        strategy=strategy, replay_coef=0.0, lr_decay_epochs=0, **{k: v for k, v in UPDATE.items() if k != "ppo_epochs"}
    )
    raw["update"]["ppo_epochs"] = 2
    raw["policy"]["dtype"] = "bfloat16"  # the fp32 master travels in train_state/, sharded
    tmp.mkdir(parents=True, exist_ok=True)
    params = tmp / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    art = tmp / "artifacts"
    checkpoint.save_policy(model, tok, layout.policy_dir(0, art), "bfloat16")
    checkpoint.write_manifest(layout.epoch_dir(0, art))
    for e in range(1, epochs + 1):
        rows = [
            {**s, "sample_id": f"e{e}-{s['sample_id']}", "epoch": e, "task_id": "t", "rollout_id": "r"}
            | {"reflection_id": None, "retry_id": None, "reward": 0.0, "n_tokens": len(s["response_ids"][0])}
            for s in samples(7, len(tok), e)
        ]
        write_table("samples", rows, layout.epoch_dir(e, art) / "samples.parquet", {})
    return params, art


def _epoch(tmp: Path, params: Path, art: Path, e: int, world: int | None) -> dict:
    out = tmp / f"epoch{e}-{world}.json"
    launch({"mode": "epoch", "params": str(params), "artifacts": str(art), "epoch": e, "out": str(out)}, tmp, world)
    return json.loads(out.read_text())


def _master(art: Path, e: int) -> dict:
    from pipeline import layout, trainstate
    from pipeline.engine import load_causal_lm

    model, _ = load_causal_lm(str(layout.policy_dir(e, art)), "float32", device="cpu")
    trainstate.load_master(list(model.named_parameters()), layout.state_dir(e, art))
    return {n: q.detach() for n, q in model.named_parameters()}


@pytest.mark.slow
def test_sharded_epochs_resume_with_another_number_of_processes(tmp_path):
    """The update stage's work (pipeline/erl/update.py, trainstate.save_update) over two epochs: one process
    (ddp) for both; 2 processes then 3 (fsdp2), the second epoch resuming from the first one's train state,
    saved in 2 shards and read by 3. policy/ is a plain model directory; the fp32 master weights and the AdamW
    moments carried between epochs agree with the one-process run."""
    from pipeline import layout

    ref_params, ref_art = _project(tmp_path / "one", "ddp")
    for e in (1, 2):
        _epoch(tmp_path, ref_params, ref_art, e, None)
    params, art = _project(tmp_path / "sharded", "fsdp2")
    _epoch(tmp_path, params, art, 1, 2)
    state = sorted(p.name for p in layout.state_dir(1, art).iterdir())
    assert state == [
        "master-00000-of-00002.safetensors",
        "master-00001-of-00002.safetensors",
        "optimizer-00000-of-00002.safetensors",
        "optimizer-00001-of-00002.safetensors",
    ]
    assert json.loads((layout.policy_dir(1, art) / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    two = _epoch(tmp_path, params, art, 2, 3)
    one = json.loads((tmp_path / "epoch2-None.json").read_text())
    assert [s["loss"] for s in two["steps"]] == pytest.approx([s["loss"] for s in one["steps"]], rel=1e-4)
    a, b = _master(ref_art, 2), _master(art, 2)
    for n in a:
        assert torch.allclose(a[n], b[n], rtol=0, atol=5e-6), n


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fsdp2_in_one_process_on_cuda_equals_ddp(tmp_path):
    """FSDP2 at world size 1 on CUDA (NCCL, the CUDA mesh): the same step as one unsharded process there."""
    grads, params, steps = _step(tmp_path, "qwen3", "ddp", None)
    g, q, s = _step(tmp_path, "qwen3", "fsdp2", 1)
    assert s[0]["loss"] == pytest.approx(steps[0]["loss"], rel=1e-4)
    for n in grads:
        assert torch.allclose(g[n], grads[n], rtol=1e-3, atol=1e-6), n
