"""One process of an update on CPU for tests/test_sharding.py, started once per rank with RANK, WORLD_SIZE,
MASTER_ADDR and MASTER_PORT set as `accelerate launch` sets them (gloo), or alone for the single-process
reference. It runs the project's own code: pipeline/erl/update.py and pipeline/trainstate.py (``epoch``), or
pipeline/trainer.train_epoch on a sharded model (``step``), and the main process writes what the test compares.

  python tests/sharding_worker.py SPEC.json
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
torch.set_num_threads(1)  # several ranks share 2 cores


def build(arch: str, tok, seed: int, size: str = "small"):
    from pipeline.config import TinyParams
    from pipeline.tiny.model import build_model

    if arch == "llama":
        return build_model(tok, TinyParams(hidden_size=32, layers=3, heads=4, intermediate_size=64), seed=seed)
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    dims = {  # "bench": about 3 M parameters, for scripts/bench_sharding.py
        "small": dict(hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4, head_dim=8),
        "bench": dict(hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=8, head_dim=32),
    }[size]
    cfg = Qwen3Config(
        vocab_size=len(tok),
        num_key_value_heads=2,
        **dims,
        tie_word_embeddings=True,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )
    return Qwen3ForCausalLM(cfg)


def samples(n: int, vocab: int, seed: int) -> list[dict]:
    """Samples of different lengths (so shards need different numbers of micro-batches) and kinds."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        lp, lr = 3 + (i * 5) % 11, 2 + (i * 3) % 7
        out.append(
            {
                "sample_id": f"s{i}/first",
                "kind": "reflection" if i % 3 == 0 else "first",
                "advantage": [1.0, -0.5, 0.25, -1.5][i % 4],
                "prompt_ids": [torch.randint(6, vocab, (lp,), generator=g).tolist()],
                "response_ids": [torch.randint(6, vocab, (lr,), generator=g).tolist()],
            }
        )
    return out


def step(spec: dict) -> None:
    """One call of train_epoch on a fresh model; the main process saves loss, gradients and parameters."""
    from safetensors.torch import save_file

    from pipeline.config import UpdateParams
    from pipeline.sharding import FSDP2
    from pipeline.tiny.model import build_tokenizer
    from pipeline.trainer import train_epoch

    tok = build_tokenizer(["a b c d e f g h i j k l m n o p q r s t u v w x y z ``` left down right up"])
    size = spec.get("size", "small")
    model, ref = build(spec["arch"], tok, 0, size), build(spec["arch"], tok, 0, size)
    u = UpdateParams(**spec["update"])
    data = samples(spec["samples"], len(tok), 1)
    if spec["strategy"] == "fsdp2":
        rt = FSDP2(bf16=False)
        rt.shard(model)
        rt.shard(ref, trainable=False)
        if spec.get("sum"):  # a reduction that sums instead of averaging: what the test must catch
            from torch.distributed.fsdp import FSDPModule

            for m in model.modules():
                if isinstance(m, FSDPModule):
                    m.set_gradient_divide_factor(1.0)
        opt = torch.optim.AdamW(model.parameters(), lr=u.lr, weight_decay=u.weight_decay, foreach=False)
    else:
        from accelerate import Accelerator

        rt = Accelerator(cpu=not torch.cuda.is_available())
        ref.to(rt.device)
        opt = torch.optim.AdamW(model.parameters(), lr=u.lr, weight_decay=u.weight_decay, foreach=False)
        model, opt = rt.prepare(model, opt)
    mine = data[rt.process_index :: rt.num_processes]
    t0 = time.perf_counter()
    _, steps = train_epoch(rt, model, ref, opt, mine, u, tok.pad_token_id, 7)
    if spec.get("timing"):  # scripts/bench_sharding.py: seconds and peak resident memory of each process
        rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        Path(f"{spec['timing']}.rank{rt.process_index}.json").write_text(
            json.dumps({"seconds": time.perf_counter() - t0, "steps": len(steps), "peak_rss_mib": rss_mib})
        )
    grads = {
        n: (q.grad.full_tensor() if hasattr(q.grad, "full_tensor") else q.grad) for n, q in model.named_parameters()
    }
    params = rt.full_state_dict(model) if spec["strategy"] == "fsdp2" else model.state_dict()
    if rt.is_main_process:
        out = {f"grad.{n}": g.detach().cpu().contiguous() for n, g in grads.items()}
        out |= {f"param.{n}": q.detach().cpu().contiguous() for n, q in params.items() if not n.startswith("lm_head")}
        save_file(out, spec["out"], metadata={"steps": json.dumps(steps)})


def epoch(spec: dict) -> None:
    """The update stage's work for one epoch (update() and save_update()) on an artifact tree."""
    from pipeline import trainstate
    from pipeline.config import load_params
    from pipeline.erl.update import update

    p = load_params(spec["params"])
    art, e = Path(spec["artifacts"]), spec["epoch"]
    from pipeline import layout
    from pipeline.artifacts import read_rows

    rows = read_rows("samples", layout.epoch_dir(e, art) / "samples.parquet")
    up = update(p, e, rows, layout.policy_dir(e - 1, art), layout.policy_dir(0, art))
    trainstate.save_update(up, layout.epoch_dir(e, art), p.policy.dtype, p.policy.max_shard_size, True)
    if up.accelerator.is_main_process:
        Path(spec["out"]).write_text(json.dumps({"steps": up.step_rows, "samples": len(up.sample_rows)}))


if __name__ == "__main__":
    spec = json.loads(Path(sys.argv[1]).read_text())
    {"step": step, "epoch": epoch}[spec["mode"]](spec)
