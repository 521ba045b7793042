"""The one loss every sample kind is trained with (docs/method.md, section 2): per-token PPO clip with an
asymmetric range and dual clip, plus the low-variance k3 KL to the frozen epoch-0 policy."""

from __future__ import annotations

import torch


def token_logprobs(model, ids: torch.Tensor, attn: torch.Tensor | None = None) -> torch.Tensor:
    """log p(ids[:, t+1] | ids[:, :t+1]) for every position: shape [B, L-1]. Right-padded batches need no
    ``attn`` (causal attention never looks ahead at the pads)."""
    logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1, :].float()
    return torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)


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


def answer_loss(model, batch: list[tuple[list[int], list[int]]], pad_id: int, device="cpu") -> torch.Tensor:
    """Mean cross-entropy on the answer tokens of (prompt ids, answer ids) pairs, right-padded: the warm start's
    loss, and the replay's during RL updates."""
    width = max(len(a) + len(b) for a, b in batch)
    ids = torch.full((len(batch), width), pad_id, device=device)
    labels = torch.full((len(batch), width), -100, device=device)
    for r, (a, b) in enumerate(batch):
        ids[r, : len(a) + len(b)] = torch.tensor(a + b, device=device)
        labels[r, len(a) : len(a) + len(b)] = torch.tensor(b, device=device)
    return model(input_ids=ids, labels=labels).loss  # right padding: causal attention never sees the pads
