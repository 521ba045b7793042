"""Step 6, the policy update: one epoch of the clipped policy loss on the round's samples."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import Params
from pipeline.envs import Env
from pipeline.seeding import derive_seed


@dataclass
class Update:
    """What one update leaves: the trained model (as accelerate holds it) and the audit rows."""

    accelerator: object
    model: object
    optimizer: object
    tokenizer: object
    sample_rows: list[dict]  # one per (sample, ppo epoch): advantage, tokens, loss, KL, optimizer step
    step_rows: list[dict]  # one per optimizer step: loss, KL, gradient norm, lr
    carry_optimizer: bool


def update(
    p: Params,
    epoch: int,
    samples: list[dict],
    parent: Path,
    initial: Path,
    replay_tasks: list[dict] | None = None,
    env: Env | None = None,
    live_start: int = 0,
) -> Update:
    """One epoch of updates on the round's samples: per-token PPO clip (range [1 - clip_low, 1 + clip_high],
    dual clip c for negative advantages) plus a k3 KL penalty to the frozen initial policy, summed over a
    sample's own tokens and averaged over samples (pipeline/losses.py); old log-probs recomputed just before the
    update. Minibatches of ``update.minibatch_size`` samples, ``update.ppo_epochs`` passes (pipeline/trainer.py),
    AdamW on fp32 master weights whatever the storage dtype (with bf16 compute on a GPU), its moments and the
    master weights carried from epoch to epoch, lr on a cosine over the epochs. Spread over processes as
    ``update.strategy`` says (pipeline/sharding.py), each process training its own shard of the samples. With
    ``update.replay_coef`` > 0 (the tiny model only) each optimizer step also replays warm-start exercises drawn on
    ``replay_tasks`` of ``env``."""
    import torch

    from pipeline import checkpoint, trainstate
    from pipeline.engine import load_causal_lm
    from pipeline.torchsetup import configure_torch
    from pipeline.trainer import train_epoch

    u = p.update
    configure_torch()
    cuda = torch.cuda.is_available()
    bf16 = cuda and p.policy.dtype == "bfloat16"
    checkpoint.verify(parent.parent)
    checkpoint.verify(initial.parent, (checkpoint.POLICY,))
    state = parent.parent / checkpoint.STATE
    carried = u.carry_optimizer_state and state.is_dir()
    if u.strategy == "fsdp2":
        from pipeline.sharding import FSDP2

        rt = FSDP2(bf16, u.offload)
        torch.manual_seed(derive_seed(p.seed, epoch, "update") % 2**31)
        model, tok = load_causal_lm(str(parent), "float32", device="cpu")
        if u.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        rt.shard(model)
        trainstate.load_master(list(model.named_parameters()), state)  # each process its own rows
        ref_model, _ = load_causal_lm(str(initial), p.policy.dtype, device="cpu")
        rt.shard(ref_model, trainable=False)
        optimizer = _adamw(model, u, epoch)
        if carried:
            _carry(optimizer, model, state, u, epoch)
        gather = rt.gather_object
    else:
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs, gather_object

        # Buffers (rotary frequencies) are the same everywhere: not broadcasting them keeps a forward pass free of
        # collectives, so processes whose shards need different numbers of micro-batches cannot deadlock.
        rt = Accelerator(
            cpu=not cuda,
            mixed_precision="bf16" if bf16 else "no",
            kwargs_handlers=[DistributedDataParallelKwargs(broadcast_buffers=False)],
        )
        torch.manual_seed(derive_seed(p.seed, epoch, "update") % 2**31)
        model, tok = trainstate.load_for_training(parent, p.policy.dtype)
        if u.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        ref_model, _ = load_causal_lm(str(initial), p.policy.dtype, device=str(rt.device))
        for q in ref_model.parameters():
            q.requires_grad_(False)
        optimizer = _adamw(model, u, epoch)
        if carried:  # every process loads the same moments
            _carry(optimizer, model, state, u, epoch)
        model, optimizer = rt.prepare(model, optimizer)
        gather = gather_object
    if u.offload == "optimizer":
        _offload_moments(optimizer)
    mine = samples[rt.process_index :: rt.num_processes]
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    replayed = None
    if u.replay_coef > 0:  # every process its own share of one epoch's exercises
        from pipeline.tiny.warmstart import replay_encoded

        n_steps = u.ppo_epochs * math.ceil(len(samples) / u.minibatch_size)
        replayed = replay_encoded(p, epoch, env, replay_tasks, tok, n_steps * rt.num_processes)[
            rt.process_index :: rt.num_processes
        ]
    live = None
    if rt.is_main_process and p.train.trackers:  # live metrics: one row per optimizer step (pipeline/live.py)
        from pipeline.live import Live, memory_gib

        live = Live(p.train.trackers, "steps", live_start)

        def on_step(row: dict, seconds: float) -> None:
            live.log(
                {
                    "epoch": epoch,
                    "loss": row["loss"],
                    "kl": row["kl"],
                    "clip_frac": row["clip_frac"],
                    "grad_norm": row["grad_norm"],
                    "lr": row["lr"],
                    "replay_loss": row["replay_loss"],
                    "tokens_per_s": row["n_tokens"] / max(seconds, 1e-9),  # n_tokens: every process's
                    "memory_gib": memory_gib(),
                }
            )

    try:
        sample_rows, step_rows = train_epoch(
            rt,
            model,
            ref_model,
            optimizer,
            mine,
            u,
            pad,
            derive_seed(p.seed, epoch, "update-order"),
            replayed,
            on_step=on_step if live is not None else None,
        )
    finally:
        if live is not None:
            live.close()
    sample_rows = gather(sample_rows)  # each process trained its own samples; the step rows are global already
    if u.strategy == "fsdp2":
        sample_rows = [r for part in sample_rows for r in part]
    rt.wait_for_everyone()
    return Update(rt, model, optimizer, tok, sample_rows, step_rows, u.carry_optimizer_state)


def _adamw(model, u, epoch: int):
    import torch

    impl = {"loop": {"foreach": False}, "fused": {"fused": True}, "foreach": {"foreach": True}}[u.adamw]
    return torch.optim.AdamW(model.parameters(), lr=u.lr_at(epoch), weight_decay=u.weight_decay, **impl)


def _carry(optimizer, model, state: Path, u, epoch: int) -> None:
    """The previous epoch's AdamW moments, with this epoch's learning rate and weight decay."""
    from pipeline import trainstate

    trainstate.load_optimizer_state(optimizer, list(model.named_parameters()), state)
    for g in optimizer.param_groups:
        g["lr"], g["weight_decay"] = u.lr_at(epoch), u.weight_decay


def _offload_moments(optimizer) -> None:
    """update.offload: optimizer: the AdamW moments wait in CPU memory while the forward and backward passes
    run, and come to the parameters' device for the step (a hook around optimizer.step)."""
    import torch

    inner = getattr(optimizer, "optimizer", optimizer)  # accelerate wraps the optimizer

    def move(device_of) -> None:
        for q, st in inner.state.items():
            for k, v in st.items():
                if torch.is_tensor(v) and v.dim():
                    st[k] = v.to(device_of(q), non_blocking=True)

    move(lambda q: "cpu")
    inner.register_step_pre_hook(lambda opt, args, kwargs: move(lambda q: q.device))
    inner.register_step_post_hook(lambda opt, args, kwargs: move(lambda q: "cpu"))
