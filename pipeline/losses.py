"""The one loss every sample kind is trained with (docs/method.md, section 2): per-token PPO clip with an
asymmetric range and dual clip, plus the low-variance k3 KL to the frozen epoch-0 policy and an optional entropy
bonus, summed over a sample's response tokens and averaged over the samples of a minibatch. The log-probs it reads
come from pipeline/logprobs.py; the loop that calls it is pipeline/trainer.py."""

from __future__ import annotations

import torch


def ppo_clip(logp, old_logp, adv, clip_low: float, clip_high: float, dual_clip: float):
    """Per-token policy loss and whether the token was clipped. ``adv`` broadcasts over tokens."""
    ratio = torch.exp(logp - old_logp)
    unclipped = -adv * ratio
    clipped = -adv * torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    loss = torch.maximum(unclipped, clipped)
    # Dual clip: for negative advantages the loss is bounded by -adv * c, so a token whose ratio exploded
    # cannot dominate the update.
    dual = torch.minimum(loss, -adv * dual_clip)
    loss = torch.where(adv < 0, dual, loss)
    return loss, (clipped > unclipped).float(), ratio


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Schulman's k3 estimator of KL(pi || ref): exp(ref - logp) - (ref - logp) - 1, always >= 0."""
    d = (ref_logp - logp).clamp(-20, 20)
    return torch.exp(d) - d - 1.0


def token_loss(lp, old_lp, ref_lp, adv, kl_w, mask, u):
    """The loss of a micro-batch of sequences ([B, L] log-probs; ``mask`` marks the response tokens): per token,
    the clipped policy term plus ``kl_w`` (the sample kind's KL coefficient, [B, 1]) times the k3 KL to the
    reference (``ref_lp`` None: no KL term) plus ``u.entropy_coef`` times the token's log-prob (minus an estimate
    of the entropy), summed over each sequence's response tokens. Returns (per-sequence loss [B], KL, clipped,
    ratio), the last three per token."""
    pg, clipped, ratio = ppo_clip(lp, old_lp, adv, u.clip_low, u.clip_high, u.dual_clip)
    kl = k3_kl(lp, ref_lp) if ref_lp is not None else torch.zeros_like(lp)
    tok = (pg + kl_w * kl) * mask
    if u.entropy_coef > 0:
        tok = tok + u.entropy_coef * lp * mask  # -H estimated by the sampled token's log-prob
    return tok.sum(-1), kl, clipped, ratio


def minibatch_loss(seq_loss: torch.Tensor, n_global: int, procs: int) -> torch.Tensor:
    """What one process backpropagates for its micro-batch: its sequences' losses summed, over the number of
    samples in the global minibatch divided by the processes. Gradient averaging over the processes (DDP, FSDP)
    then makes the step's gradient that of the mean loss over the global minibatch: sum over a sample's tokens,
    mean over samples."""
    return seq_loss.sum() / (n_global / procs)
