"""One policy update of a Qwen3-4B-shaped model on a GPU at a preset's update settings: peak memory and tokens/s,
against the estimate `init` checks (pipeline/gpumem.py). No weights are needed: the model is built from the
Qwen3-4B config with random values (memory and speed do not depend on them).

  python scripts/gpu_update_check.py --params presets/paper.yaml --samples 16 --tokens 2048

The update is the project's own (pipeline/trainer.train_epoch through accelerate): fp32 master weights with
bf16 compute, gradient checkpointing and chunked log-probs as the preset sets them, a frozen bf16 reference
model for the KL, AdamW, one optimizer step over ``--samples`` samples of ``--tokens`` tokens each.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline import gpumem  # noqa: E402
from pipeline.config import load_or_exit  # noqa: E402

QWEN3_4B = {  # the size keys the planner knows, and what a Qwen3Config needs besides them
    **gpumem.KNOWN["Qwen/Qwen3-4B-Instruct-2507"],
    "max_position_embeddings": 262144,
    "rope_theta": 5000000.0,
    "rms_norm_eps": 1e-6,
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default=str(ROOT / "presets/paper.yaml"))
    ap.add_argument("--samples", type=int, default=16, help="samples in the optimizer step")
    ap.add_argument("--tokens", type=int, default=2048, help="tokens per sample (half prompt, half response)")
    ap.add_argument("--layers", type=int, default=None, help="fewer decoder layers (a quicker, smaller check)")
    ap.add_argument("--steps", type=int, default=2, help="optimizer steps, each measured (the first makes the moments)")
    ap.add_argument("--strategy", choices=["ddp", "fsdp2"], default=None, help="override update.strategy")
    ap.add_argument("--offload", choices=["none", "optimizer", "params"], default=None, help="override update.offload")
    ap.add_argument("--adamw", choices=["loop", "fused", "foreach"], default=None, help="override update.adamw")
    ap.add_argument(
        "--shrink",
        action="store_true",
        help="a tiny model of the same shape family, on the CPU if there is no GPU: checks the script itself",
    )
    args = ap.parse_args(argv)
    p = load_or_exit(args.params)
    import torch
    from accelerate import Accelerator
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from pipeline.trainer import train_epoch

    cuda = torch.cuda.is_available()
    if not cuda and not args.shrink:
        print("error: needs a CUDA GPU (or --shrink)", file=sys.stderr)
        return 2
    cfg_dict = dict(QWEN3_4B, num_hidden_layers=args.layers or QWEN3_4B["num_hidden_layers"])
    if args.shrink:
        cfg_dict.update(
            hidden_size=64,
            num_hidden_layers=2,
            intermediate_size=128,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            vocab_size=1000,
        )
    cfg = Qwen3Config(**cfg_dict)
    u = p.update.model_copy(update={"minibatch_size": args.samples, "ppo_epochs": 1})
    if args.strategy:
        u = u.model_copy(update={"strategy": args.strategy, "offload": args.offload or u.offload})
    if args.adamw:
        u = u.model_copy(update={"adamw": args.adamw})
    bf16 = cuda and p.policy.dtype == "bfloat16"
    dev = "cuda" if cuda else "cpu"
    torch.manual_seed(0)
    t0 = time.perf_counter()
    impl = {"loop": {"foreach": False}, "fused": {"fused": True}, "foreach": {"foreach": True}}[u.adamw]
    if u.strategy == "fsdp2":
        from pipeline.sharding import FSDP2

        acc = FSDP2(bf16, u.offload)
        model = Qwen3ForCausalLM(cfg)  # fp32 master weights, on the CPU until sharded
        ref = Qwen3ForCausalLM(cfg).to(getattr(torch, p.policy.dtype))
        if u.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        acc.shard(model)
        acc.shard(ref, trainable=False)
        opt = torch.optim.AdamW(model.parameters(), lr=u.lr, weight_decay=u.weight_decay, **impl)
    else:
        acc = Accelerator(cpu=not cuda, mixed_precision="bf16" if bf16 else "no")
        with torch.device(dev):
            model = Qwen3ForCausalLM(cfg)  # fp32: the master weights
            ref = Qwen3ForCausalLM(cfg).to(getattr(torch, p.policy.dtype))
        ref.eval().requires_grad_(False)
        if u.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        opt = torch.optim.AdamW(model.parameters(), lr=u.lr, weight_decay=u.weight_decay, **impl)
        model, opt = acc.prepare(model, opt)
    n_params = gpumem.Shape.from_config(cfg_dict).parameters()
    build = time.perf_counter() - t0
    g = torch.Generator().manual_seed(1)
    half = args.tokens // 2
    samples = [
        {
            "sample_id": f"s{i}",
            "kind": "first",
            "advantage": 1.0 if i % 2 else -1.0,
            "prompt_ids": [torch.randint(0, cfg.vocab_size, (half,), generator=g).tolist()],
            "response_ids": [torch.randint(0, cfg.vocab_size, (half,), generator=g).tolist()],
        }
        for i in range(args.samples)
    ]
    n_tokens = args.samples * args.tokens
    peaks = []
    for _ in range(args.steps):  # step 1 creates the AdamW moments; from step 2 they exist in forward/backward
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        _, steps = train_epoch(acc, model, ref, opt, samples, u, 0, 0)
        if cuda:
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        peaks.append(torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0)
    device = torch.cuda.get_device_properties(0).total_memory if cuda else 0
    setup = gpumem.Setup(
        1,
        u.strategy,
        u.offload,
        u.adamw,
        p.policy.dtype == "bfloat16",
        u.micro_batch_tokens,
        u.logprob_chunk,
        u.gradient_checkpointing,
        u.kl_coef > 0,
    )
    est = gpumem.estimate(gpumem.Shape.from_config(cfg_dict), setup)
    out = {
        "gpu": torch.cuda.get_device_name(0) if cuda else "none (CPU, --shrink)",
        "parameters": n_params,
        "strategy": u.strategy,
        "offload": u.offload,
        "adamw": u.adamw,
        "build_s": round(build, 1),
        "samples": args.samples,
        "tokens": n_tokens,
        "micro_batch_tokens": u.micro_batch_tokens,
        "logprob_chunk": u.logprob_chunk,
        "gradient_checkpointing": u.gradient_checkpointing,
        "last_step_s": round(dt, 1),
        "tokens_per_s_all_passes": round(n_tokens / dt),
        "peak_gib_per_step": [round(x, 1) for x in peaks],
        "estimate_peak_gib": round(est["peak"] / 2**30, 1),
        "estimate_phases_gib": {
            k: round(sum(est[k].values()) / 2**30, 1) for k in ("forward/backward", "optimizer step")
        },
        "device_gib": round(device / 2**30, 1),
        "loss": steps[0]["loss"],
        "grad_norm": steps[0]["grad_norm"],
    }
    print(json.dumps(out, indent=2))
    print(f"estimate (what init and `erl memory` check):\n{gpumem.describe(est, device or None)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
