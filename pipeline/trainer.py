"""The update loop of one epoch: minibatches of samples, micro-batches of tokens, one optimizer step per
minibatch, read top to bottom in :func:`train_epoch`. The loss is pipeline/losses.py's, the log-probs
pipeline/logprobs.py's. ``accelerator`` runs it: accelerate's Accelerator (one process on a CPU, DDP under
``accelerate launch``) or pipeline/sharding.FSDP2, which offers the same calls for a sharded model.

With several processes each one trains its own shard of the samples, in lockstep: every process takes the
same number of optimizer steps and, where a forward pass is a collective (fsdp2: each layer gathers its
weights), the same number of forward calls in each pass, padding with zero-loss calls on a padding token. Under
DDP gradients are synchronized once per step (the micro-batches before the last one run under ``no_sync``); a
process whose shard has run out takes part with a zero-loss backward. So shards of different sizes or token
counts cannot leave one process waiting on a collective forever. A step's loss is the mean over the samples of
the global minibatch (minibatch_size, split across processes)."""

from __future__ import annotations

import contextlib
import math
import random
import time
from dataclasses import dataclass, field

import torch

from pipeline.config import UpdateParams
from pipeline.logprobs import Segment, chunks, padding_segment, segment_batch_logprobs, segment_logprobs, segments_of
from pipeline.losses import minibatch_loss, token_loss
from pipeline.progress import Progress
from pipeline.sft import answer_loss
from pipeline.sharding import agree_max, all_sum


@dataclass
class Plan:
    """The epoch's minibatches, drawn up front so every process knows how many optimizer steps there are."""

    orders: list[list[int]]  # per PPO pass, this process's sample indices in their shuffled order
    per_step: int  # this process's samples per minibatch
    counts: list[int]  # samples per process (their sum is the global number of samples)
    n_minibatches: int  # per pass, the same on every process

    def minibatch(self, ppo_epoch: int, j: int) -> list[int]:
        return self.orders[ppo_epoch][j * self.per_step : (j + 1) * self.per_step]

    def global_size(self, j: int) -> int:
        """Samples in the j-th global minibatch of a pass, across processes: the step's loss is their mean."""
        return sum(max(0, min(self.per_step, c - j * self.per_step)) for c in self.counts)

    def trained_after_first_step(self) -> set[int]:
        return {
            i
            for k in range(len(self.orders))
            for j in range(self.n_minibatches)
            if k or j
            for i in self.minibatch(k, j)
        }


def plan(accelerator, order: list[int], u: UpdateParams, seed: int) -> Plan:
    procs = accelerator.num_processes
    m = u.minibatch_size if procs == 1 else max(1, u.minibatch_size // procs)  # this process's share
    counts = (
        [len(order)]
        if procs == 1
        else [int(c) for c in accelerator.gather(torch.tensor([len(order)], device=accelerator.device)).tolist()]
    )
    rng = random.Random(seed)
    orders = []
    for _ in range(u.ppo_epochs):
        rng.shuffle(order)
        orders.append(list(order))
    return Plan(orders, m, counts, math.ceil(max(counts) / m))


@dataclass
class StepStats:
    """Running sums of one optimizer step, per sample and over the step."""

    per_sample: dict[int, dict] = field(default_factory=dict)
    loss: float = 0.0
    kl: float = 0.0
    clip: float = 0.0
    tokens: int = 0

    def add(self, chunk: list[Segment], seg_loss, kl, clipped, ratio, mask) -> None:
        with torch.no_grad():
            for r, s in enumerate(chunk):
                st = self.per_sample[s.sample]
                m_r = mask[r].bool()
                st["loss"] += float(seg_loss[r])
                st["kl"] += float(kl[r][m_r].sum())
                st["ratio"] += float(ratio[r][m_r].sum())
                st["clip"] += float(clipped[r][m_r].sum())
                st["n"] += int(m_r.sum())
            self.loss += float(seg_loss.sum())
            self.kl += float((kl * mask).sum())
            self.clip += float((clipped * mask).sum())
            self.tokens += int(mask.sum())


def train_epoch(
    accelerator,
    model,
    ref_model,
    optimizer,
    samples: list[dict],
    u: UpdateParams,
    pad_id: int,
    seed: int,
    replay: list[tuple[list[int], list[int]]] | None = None,
    on_step=None,
):
    """One epoch of updates. Returns (per-sample rows, per-step rows) for this process's samples. ``replay``:
    (prompt ids, answer ids) of warm-start exercises; each optimizer step adds ``u.replay_coef`` times their
    teacher-forced loss on the next ``u.replay_batch`` of them (cycling). ``on_step(row, seconds)`` is called
    after each optimizer step with its row and how long it took (live metrics)."""
    device = accelerator.device
    segs = segments_of(samples)
    by_sample: dict[int, list[Segment]] = {}
    for s in segs:
        by_sample.setdefault(s.sample, []).append(s)
    pl = plan(accelerator, [i for i in range(len(samples)) if i in by_sample], u, seed)
    procs = accelerator.num_processes
    # Old log-probs: the policy before the first step, through the model as it is wrapped (DDP's forward without
    # gradients needs no collective: buffers are not broadcast). The first step's samples are trained on that very
    # policy, so their old log-probs are the trained ones, detached; only samples a later step trains need a pass.
    # The passes call the model's backbone and output layer themselves (logprobs.response_logprobs), past the
    # autocast that accelerate wraps around the model's forward: they run under the accelerator's autocast.
    trained_later = pl.trained_after_first_step()
    later = [x for x in segs if x.sample in trained_later]
    model.eval()
    kl_on = u.kl_coef > 0 or bool(u.kl_coef_reflection)

    def passes(s: list[Segment]) -> int:
        return agree_max(accelerator, len(list(chunks(s, u.micro_batch_tokens))))

    with accelerator.autocast():
        n_old = passes(later)
        old = segment_logprobs(model, later, pad_id, device, u.micro_batch_tokens, u.logprob_chunk, n_old)
        if kl_on:
            n_ref = passes(segs)
            ref = segment_logprobs(ref_model, segs, pad_id, device, u.micro_batch_tokens, u.logprob_chunk, n_ref)
        else:
            ref = None
    model.train()
    sample_rows, step_rows, step = [], [], 0
    bar = Progress(u.ppo_epochs * pl.n_minibatches, "update", enabled=accelerator.is_main_process)
    for ppo_epoch in range(u.ppo_epochs):
        for j in range(pl.n_minibatches):
            mb = pl.minibatch(ppo_epoch, j)
            n_global = pl.global_size(j)
            stats = StepStats({i: {"loss": 0.0, "kl": 0.0, "ratio": 0.0, "clip": 0.0, "n": 0} for i in mb})
            optimizer.zero_grad(set_to_none=True)
            t_step = time.perf_counter()
            replay_loss = None
            if replay and u.replay_coef > 0:
                batch = [replay[(step * u.replay_batch + k) % len(replay)] for k in range(u.replay_batch)]
                with accelerator.no_sync(model):  # the gradients are all-reduced with the last chunk's below
                    loss = answer_loss(model, batch, pad_id, device)
                    accelerator.backward(u.replay_coef * loss)
                replay_loss = float(loss.detach())
            micro = list(chunks([s for i in mb for s in by_sample[i]], u.micro_batch_tokens))
            # A shard that has run out (or needs fewer micro-batches than another) still takes part in every
            # collective: zero-loss calls on a padding token.
            calls = max(agree_max(accelerator, len(micro)), 1)
            for ci in range(calls):
                sync = contextlib.nullcontext() if ci == calls - 1 else accelerator.no_sync(model)
                if ci >= len(micro):
                    with sync, accelerator.autocast():
                        lp, _ = segment_batch_logprobs(
                            model, [padding_segment(pad_id)], pad_id, device, u.logprob_chunk
                        )
                        accelerator.backward(lp.sum() * 0.0)
                    continue
                chunk = micro[ci]
                with sync:
                    with accelerator.autocast():
                        lp, mask = segment_batch_logprobs(model, chunk, pad_id, device, u.logprob_chunk)
                    old_lp, ref_lp = torch.zeros_like(lp), torch.zeros_like(lp)
                    adv = torch.zeros(len(chunk), 1, device=device)
                    kl_w = torch.zeros(len(chunk), 1, device=device)
                    for r, s in enumerate(chunk):
                        at = s.positions()
                        old_lp[r, at] = old[id(s)] if id(s) in old else lp[r, at].detach()
                        if ref is not None:
                            ref_lp[r, at] = ref[id(s)]
                        adv[r, 0] = samples[s.sample]["advantage"]
                        kl_w[r, 0] = u.kl_of(samples[s.sample]["kind"])
                    seg_loss, kl, clipped, ratio = token_loss(
                        lp, old_lp, ref_lp if ref is not None else None, adv, kl_w, mask, u
                    )
                    accelerator.backward(minibatch_loss(seg_loss, n_global, procs))
                stats.add(chunk, seg_loss, kl, clipped, ratio, mask)
            grad_norm = accelerator.clip_grad_norm_(model.parameters(), u.grad_clip)
            optimizer.step()
            # the step's row speaks for the global minibatch: every process's sums added up
            loss_sum, kl_sum, clip_sum, tokens, n_mb = all_sum(
                accelerator, [stats.loss, stats.kl, stats.clip, stats.tokens, len(mb)]
            )
            tokens, n_mb = int(tokens), int(n_mb)
            for i in mb:
                st = stats.per_sample[i]
                sample_rows.append(
                    {
                        "sample_id": samples[i]["sample_id"],
                        "kind": samples[i]["kind"],
                        "ppo_epoch": ppo_epoch,
                        "step": step,
                        "advantage": float(samples[i]["advantage"]),
                        "n_tokens": st["n"],
                        "loss": st["loss"],
                        "kl": st["kl"],
                        "ratio_mean": st["ratio"] / max(1, st["n"]),
                        "clip_frac": st["clip"] / max(1, st["n"]),
                    }
                )
            step_rows.append(
                {
                    "step": step,
                    "ppo_epoch": ppo_epoch,
                    "n_samples": n_mb,
                    "n_tokens": tokens,
                    "loss": loss_sum / max(1, n_mb),
                    "kl": kl_sum / max(1, tokens),
                    "clip_frac": clip_sum / max(1, tokens),
                    "grad_norm": float(grad_norm),
                    "lr": optimizer.param_groups[0]["lr"],
                    "replay_loss": replay_loss,
                }
            )
            if on_step is not None:
                on_step(step_rows[-1], time.perf_counter() - t_step)
            step += 1
            bar.update(1, loss=f"{loss_sum / max(1, n_mb):.4f}", kl=f"{kl_sum / max(1, tokens):.2e}")
    bar.close()
    model.eval()
    return sample_rows, step_rows
