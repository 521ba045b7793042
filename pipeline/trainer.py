"""The policy update of one epoch with accelerate (one process on CPU; ``accelerate launch`` for DDP/FSDP on
GPUs). Samples are lists of (prompt, response) segments, one per turn; only response tokens are trained on,
never the environment's. When a turn's prompt is the previous turn's prompt and response followed by more (the
whole conversation in context, policy.history 0), the two turns are trained as one sequence: a turn's tokens see
exactly what they saw when sampled, and an episode of T turns costs its length instead of about T^2/2 turns.
Loss = sum over a sample's response tokens, mean over samples.

With several processes each one trains its own shard of the samples, in lockstep: every process takes the
same number of optimizer steps (a process whose shard has run out takes part with a zero-loss backward) and
synchronizes gradients exactly once per step (the micro-batches before the last one run under ``no_sync``),
so shards of different sizes or token counts cannot leave one process waiting on a collective forever. A
step's loss is the mean over the samples of the global minibatch (minibatch_size, split across processes)."""

from __future__ import annotations

import contextlib
import math
import random
from dataclasses import dataclass

import torch

from pipeline.config import UpdateParams
from pipeline.losses import answer_loss, k3_kl, pad_right, ppo_clip, response_logprobs, token_logprobs
from pipeline.progress import Progress


@dataclass
class Segment:
    sample: int  # index into the sample list
    ids: list[int]
    start: int  # index in ids of the first response token
    spans: list[tuple[int, int]] | None = None  # [lo, hi) of each response in ids; None: [(start, len(ids))]

    def __post_init__(self):
        if self.spans is None:
            self.spans = [(self.start, len(self.ids))]

    def positions(self) -> list[int]:
        """The positions whose next-token log-prob is a response token's (position t predicts token t+1)."""
        return [t - 1 for lo, hi in self.spans for t in range(lo, hi)]


def segments_of(samples: list[dict]) -> list[Segment]:
    out = []
    for i, s in enumerate(samples):
        last = None
        for prompt, resp in zip(s["prompt_ids"], s["response_ids"]):
            if not resp:
                continue
            ids = list(prompt) + list(resp)
            if last is not None and ids[: len(last.ids)] == last.ids:  # this turn continues the last sequence
                last.spans.append((len(prompt), len(ids)))
                last.ids = ids
            else:
                last = Segment(i, ids, len(prompt))
                out.append(last)
    return out


def _batch(segs: list[Segment], pad_id: int, device):
    """Right-padded ids and the response-token mask. No attention mask is needed: under causal attention the
    pads after a sequence cannot change the logits of its real tokens, and a mask-free batch takes the fast
    causal kernel (about 2x faster on CPU)."""
    return pad_right([s.ids for s in segs], pad_id).to(device), _response_mask(segs, device)


def _response_mask(segs: list[Segment], device) -> torch.Tensor:
    mask = torch.zeros((len(segs), max(len(s.ids) for s in segs) - 1))
    for r, s in enumerate(segs):
        for lo, hi in s.spans:
            mask[r, lo - 1 : hi - 1] = 1.0  # position t predicts token t+1
    return mask.to(device)


def _chunks(segs: list[Segment], max_tokens: int):
    chunk, width = [], 0
    for s in sorted(segs, key=lambda s: len(s.ids)):
        w = max(width, len(s.ids))
        if chunk and w * (len(chunk) + 1) > max_tokens:
            yield chunk
            chunk, w = [], len(s.ids)
        chunk.append(s)
        width = w
    if chunk:
        yield chunk


def _logprobs(model, segs, pad_id, device, chunk: int = 0):
    """Log-probs of the segments' tokens in _batch's layout ([B, L-1], position t predicting token t+1), set at the
    response positions (the only ones any loss reads), and the response mask."""
    at = [s.positions() for s in segs]
    parts = response_logprobs(
        model,
        [s.ids[: s.start] for s in segs],
        [s.ids[s.start :] for s in segs],
        pad_id,
        chunk,
        scored=[[t + 1 - s.start for t in ts] for s, ts in zip(segs, at)],
    )
    if parts is None:
        ids, mask = _batch(segs, pad_id, device)
        return token_logprobs(model, ids, chunk), mask
    mask = _response_mask(segs, device)
    rows = torch.cat([torch.full((len(p),), r, dtype=torch.long) for r, p in enumerate(parts)]).to(device)
    cols = torch.tensor([t for ts in at for t in ts], dtype=torch.long, device=device)
    return torch.zeros(mask.shape, device=device).index_put((rows, cols), torch.cat(parts)), mask


@torch.no_grad()
def segment_logprobs(
    model, segs: list[Segment], pad_id: int, device, max_tokens: int, chunk: int = 0
) -> dict[int, torch.Tensor]:
    """Response-token log-probs of every segment (keyed by id(segment)), computed without gradients."""
    out = {}
    for batch in _chunks(segs, max_tokens):
        lp, mask = _logprobs(model, batch, pad_id, device, chunk)
        for r, s in enumerate(batch):
            out[id(s)] = lp[r, s.positions()].detach()
    return out


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
):
    """One epoch of updates. Returns (per-sample rows, per-step rows) for this process's samples. ``replay``:
    (prompt ids, answer ids) of warm-start exercises; each optimizer step adds ``u.replay_coef`` times their
    teacher-forced loss on the next ``u.replay_batch`` of them (cycling)."""
    device = accelerator.device
    segs = segments_of(samples)
    by_sample: dict[int, list[Segment]] = {}
    for s in segs:
        by_sample.setdefault(s.sample, []).append(s)
    rng = random.Random(seed)
    sample_rows, step_rows, step = [], [], 0
    order = [i for i in range(len(samples)) if i in by_sample]
    procs = accelerator.num_processes
    m = u.minibatch_size if procs == 1 else max(1, u.minibatch_size // procs)  # this process's share
    counts = (
        [len(order)]
        if procs == 1
        else [int(c) for c in accelerator.gather(torch.tensor([len(order)], device=device)).tolist()]
    )
    n_mb = math.ceil(max(counts) / m)
    n_steps = u.ppo_epochs * n_mb
    orders = []  # every pass's shuffled order, drawn up front
    for _ in range(u.ppo_epochs):
        rng.shuffle(order)
        orders.append(list(order))
    # Old log-probs: the policy as it is before the first step, through the model as it is wrapped (DDP's forward
    # without gradients needs no collective: buffers are not broadcast). The first step's samples are trained on
    # that very policy, so their old log-probs are the trained ones, detached; a pass is needed only for samples
    # a later step trains (none in an on-policy single step).
    later = {i for k, o in enumerate(orders) for j in range(n_mb) for i in o[j * m : (j + 1) * m] if k or j}
    # The log-prob passes call the model's backbone and output layer themselves (losses.response_logprobs), past
    # the autocast that accelerate wraps around the model's forward: each runs under the accelerator's autocast.
    model.eval()
    kl_on = u.kl_coef > 0 or bool(u.kl_coef_reflection)
    with accelerator.autocast():
        old = segment_logprobs(
            model, [x for x in segs if x.sample in later], pad_id, device, u.micro_batch_tokens, u.logprob_chunk
        )
        ref = (
            segment_logprobs(ref_model, segs, pad_id, device, u.micro_batch_tokens, u.logprob_chunk) if kl_on else None
        )
    model.train()
    bar = Progress(n_steps, "update", enabled=accelerator.is_main_process)
    for ppo_epoch in range(u.ppo_epochs):
        order = orders[ppo_epoch]
        for j in range(n_mb):
            mb = order[j * m : (j + 1) * m]
            # samples in this step's global minibatch: the loss is their mean (DDP averages over processes)
            n_global = sum(max(0, min(m, c - j * m)) for c in counts)
            mb_segs = [s for i in mb for s in by_sample[i]]
            stats = {i: {"loss": 0.0, "kl": 0.0, "ratio": 0.0, "clip": 0.0, "n": 0} for i in mb}
            optimizer.zero_grad(set_to_none=True)
            tot_loss = tot_kl = tot_clip = 0.0
            n_tok = 0
            replay_loss = None
            if replay and u.replay_coef > 0:
                batch = [replay[(step * u.replay_batch + k) % len(replay)] for k in range(u.replay_batch)]
                with accelerator.no_sync(model):  # the gradients are all-reduced with the last chunk's below
                    loss = answer_loss(model, batch, pad_id, device)
                    accelerator.backward(u.replay_coef * loss)
                replay_loss = float(loss.detach())
            chunks = list(_chunks(mb_segs, u.micro_batch_tokens))
            if not chunks:  # this shard has run out: take part in the gradient all-reduce with zero loss
                out = model(input_ids=torch.tensor([[pad_id]], device=device)).logits
                accelerator.backward(out.sum() * 0.0)
            for ci, chunk in enumerate(chunks):
                sync = contextlib.nullcontext() if ci == len(chunks) - 1 else accelerator.no_sync(model)
                with sync:
                    with accelerator.autocast():
                        lp, mask = _logprobs(model, chunk, pad_id, device, u.logprob_chunk)
                    old_lp = torch.zeros_like(lp)
                    ref_lp = torch.zeros_like(lp)
                    adv = torch.zeros(len(chunk), 1, device=device)
                    kl_w = torch.zeros(len(chunk), 1, device=device)
                    for r, s in enumerate(chunk):
                        at = s.positions()
                        old_lp[r, at] = old[id(s)] if id(s) in old else lp[r, at].detach()
                        if ref is not None:
                            ref_lp[r, at] = ref[id(s)]
                        adv[r, 0] = samples[s.sample]["advantage"]
                        kl_w[r, 0] = u.kl_of(samples[s.sample]["kind"])
                    pg, clipped, ratio = ppo_clip(lp, old_lp, adv, u.clip_low, u.clip_high, u.dual_clip)
                    kl = k3_kl(lp, ref_lp) if ref is not None else torch.zeros_like(lp)
                    tok_loss = (pg + kl_w * kl) * mask
                    if u.entropy_coef > 0:
                        tok_loss = tok_loss + u.entropy_coef * lp * mask  # -H estimated by the sampled token's log-prob
                    seg_loss = tok_loss.sum(-1)
                    accelerator.backward(seg_loss.sum() / (n_global / procs))
                with torch.no_grad():
                    for r, s in enumerate(chunk):
                        st = stats[s.sample]
                        m_r = mask[r].bool()
                        st["loss"] += float(seg_loss[r])
                        st["kl"] += float(kl[r][m_r].sum())
                        st["ratio"] += float(ratio[r][m_r].sum())
                        st["clip"] += float(clipped[r][m_r].sum())
                        st["n"] += int(m_r.sum())
                    tot_loss += float(seg_loss.sum())
                    tot_kl += float((kl * mask).sum())
                    tot_clip += float((clipped * mask).sum())
                    n_tok += int(mask.sum())
            grad_norm = accelerator.clip_grad_norm_(model.parameters(), u.grad_clip)
            optimizer.step()
            for i in mb:
                st = stats[i]
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
                    "n_samples": len(mb),
                    "n_tokens": n_tok,
                    "loss": tot_loss / max(1, len(mb)),
                    "kl": tot_kl / max(1, n_tok),
                    "clip_frac": tot_clip / max(1, n_tok),
                    "grad_norm": float(grad_norm),
                    "lr": optimizer.param_groups[0]["lr"],
                    "replay_loss": replay_loss,
                }
            )
            step += 1
            bar.update(1, loss=f"{tot_loss / max(1, len(mb)):.4f}", kl=f"{tot_kl / max(1, n_tok):.2e}")
    bar.close()
    model.eval()
    return sample_rows, step_rows


@torch.no_grad()
def mean_token_kl(model, ref_model, samples: list[dict], pad_id: int, device, max_tokens: int = 16384) -> float | None:
    """Exact KL(model || ref) per response token, sum_v p log(p / q), averaged over every response token of
    ``samples`` (dicts with prompt_ids/response_ids segments): how far a checkpoint has moved from epoch 0 on
    its own generations."""
    total, count = 0.0, 0
    for chunk in _chunks(segments_of(samples), max_tokens):
        ids, mask = _batch(chunk, pad_id, device)
        lp = torch.log_softmax(model(input_ids=ids).logits[:, :-1].float(), -1)
        lq = torch.log_softmax(ref_model(input_ids=ids).logits[:, :-1].float(), -1)
        kl = (lp.exp() * (lp - lq)).sum(-1)
        total += float((kl * mask).sum())
        count += int(mask.sum())
    return total / count if count else None
