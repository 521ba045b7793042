"""The one loss every sample kind is trained with (docs/method.md, section 2): per-token PPO clip with an
asymmetric range and dual clip, plus the low-variance k3 KL to the frozen epoch-0 policy."""

from __future__ import annotations

import torch


def token_logprobs(model, ids: torch.Tensor, chunk: int = 0) -> torch.Tensor:
    """log p(ids[:, t+1] | ids[:, :t+1]) for every position: shape [B, L-1], float32. Right-padded batches need no
    attention mask (causal attention never looks ahead at the pads). ``chunk`` > 0: the output layer runs on that
    many token positions at a time, each chunk recomputed in the backward pass, so a micro-batch's fp32 logits over
    the whole vocabulary ([B, L, V]: 18.5 GiB for 16k tokens of a 152k-token vocabulary) never exist at once. The
    values are the same either way (a test checks them and their gradients)."""
    if chunk <= 0 or chunk >= ids.numel():
        logits = model(input_ids=ids, use_cache=False).logits[:, :-1, :].float()
        return torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    head = _output_layer(model)
    _chunked_head(head)
    head._erl_targets, head._erl_chunk = ids[:, 1:], chunk
    try:  # one ordinary call of the (possibly DDP-wrapped) model: the output layer returns log-probs
        return model(input_ids=ids, use_cache=False).logits
    finally:
        head._erl_targets = None


def _output_layer(model) -> torch.nn.Module:
    inner = model.module if hasattr(model, "module") and not hasattr(model, "get_output_embeddings") else model
    return inner.get_output_embeddings()


def _chunked_head(head: torch.nn.Module) -> None:
    """Let ``head`` (the output layer) return token log-probs, chunk by chunk, while targets are set on it; it
    returns plain logits otherwise, so generation is unaffected. The chunking happens inside the layer's own call
    rather than on hidden states after the forward, so wrappers that track the call (DDP, FSDP) see one forward."""
    if getattr(head, "_erl_chunked", False):
        return
    import types

    head.forward = types.MethodType(_head_forward, head)  # a bound method: a deep copy binds to the copy
    head._erl_targets, head._erl_chunk, head._erl_chunked = None, 0, True


def _head_forward(head: torch.nn.Module, h: torch.Tensor) -> torch.Tensor:
    from torch.utils.checkpoint import checkpoint

    plain = type(head).forward
    targets = head._erl_targets
    if targets is None:
        return plain(head, h)

    def logprobs(hc: torch.Tensor, tc: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(plain(head, hc).float(), dim=-1).gather(-1, tc[:, None]).squeeze(-1)

    b, n, width = h.shape
    flat_h, flat_t, c = h[:, :-1, :].reshape(-1, width), targets.reshape(-1), head._erl_chunk
    grad = torch.is_grad_enabled()
    parts = [
        checkpoint(logprobs, flat_h[i : i + c], flat_t[i : i + c], use_reentrant=False)
        if grad
        else logprobs(flat_h[i : i + c], flat_t[i : i + c])
        for i in range(0, flat_h.shape[0], c)
    ]
    return torch.cat(parts).view(b, n - 1)


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
