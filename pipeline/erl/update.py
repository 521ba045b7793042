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
) -> Update:
    """One epoch of updates on the round's samples: per-token PPO clip (range [1 - clip_low, 1 + clip_high],
    dual clip c for negative advantages) plus a k3 KL penalty to the frozen initial policy, summed over a
    sample's own tokens and averaged over samples (pipeline/losses.py); old log-probs recomputed just before the
    update. Minibatches of ``update.minibatch_size`` samples, ``update.ppo_epochs`` passes (pipeline/trainer.py),
    AdamW on fp32 master weights whatever the storage dtype (with bf16 compute on a GPU), its moments and the
    master weights carried from epoch to epoch, lr on a cosine over the epochs. Through accelerate: one process
    on a CPU, DDP under ``accelerate launch``, each process training its own shard. With ``update.replay_coef``
    > 0 (the tiny model only) each optimizer step also replays warm-start exercises drawn on ``replay_tasks`` of
    ``env``."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, gather_object

    from pipeline import checkpoint, trainstate
    from pipeline.engine import load_causal_lm
    from pipeline.torchsetup import configure_torch
    from pipeline.trainer import train_epoch

    u = p.update
    configure_torch()
    cuda = torch.cuda.is_available()
    # Buffers (rotary frequencies) are the same everywhere: not broadcasting them keeps a forward pass free of
    # collectives, so processes whose shards need different numbers of micro-batches cannot deadlock.
    accelerator = Accelerator(
        cpu=not cuda,
        mixed_precision="bf16" if cuda and p.policy.dtype == "bfloat16" else "no",
        kwargs_handlers=[DistributedDataParallelKwargs(broadcast_buffers=False)],
    )
    torch.manual_seed(derive_seed(p.seed, epoch, "update") % 2**31)
    checkpoint.verify(parent.parent)
    model, tok = trainstate.load_for_training(parent, p.policy.dtype)
    if u.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    checkpoint.verify(initial.parent, (checkpoint.POLICY,))
    ref_model, _ = load_causal_lm(str(initial), p.policy.dtype, device=str(accelerator.device))
    for q in ref_model.parameters():
        q.requires_grad_(False)
    lr = u.lr_at(epoch)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=u.weight_decay)
    state = parent.parent / checkpoint.STATE / checkpoint.OPTIMIZER_FILE
    if u.carry_optimizer_state and state.is_file():  # every process loads the same moments
        trainstate.load_optimizer_state(optimizer, list(model.named_parameters()), state)
        for g in optimizer.param_groups:
            g["lr"], g["weight_decay"] = lr, u.weight_decay
    model, optimizer = accelerator.prepare(model, optimizer)
    mine = samples[accelerator.process_index :: accelerator.num_processes]
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    replayed = None
    if u.replay_coef > 0:  # every process its own share of one epoch's exercises
        from pipeline.tiny.warmstart import replay_encoded

        n_steps = u.ppo_epochs * math.ceil(len(samples) / u.minibatch_size)
        replayed = replay_encoded(p, epoch, env, replay_tasks, tok, n_steps * accelerator.num_processes)[
            accelerator.process_index :: accelerator.num_processes
        ]
    sample_rows, step_rows = train_epoch(
        accelerator, model, ref_model, optimizer, mine, u, pad, derive_seed(p.seed, epoch, "update-order"), replayed
    )
    sample_rows = gather_object(sample_rows)  # steps: the main process's view is recorded
    accelerator.wait_for_everyone()
    return Update(accelerator, model, optimizer, tok, sample_rows, step_rows, u.carry_optimizer_state)
