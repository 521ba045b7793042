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


def pad_right(rows: list[list[int]], pad_id: int) -> torch.Tensor:
    """Token rows as one [B, longest] long tensor, padded on the right."""
    out = torch.full((len(rows), max(len(r) for r in rows)), pad_id, dtype=torch.long)
    for b, r in enumerate(rows):
        out[b, : len(r)] = torch.tensor(r, dtype=torch.long)
    return out


# Architectures whose causal-LM logits are exactly output_layer(backbone hidden states): no soft-capping or scaling
# after the output layer, so response_logprobs may run the two parts itself.
PLAIN_HEAD_MODELS = {"llama", "mistral", "qwen2", "qwen3", "phi3", "olmo2", "smollm3"}


def response_logprobs(
    model,
    prompts: list[list[int]],
    responses: list[list[int]],
    pad_id: int,
    chunk: int = 0,
    scored: list[list[int]] | None = None,
):
    """log p(response token | prompt, earlier response tokens) for each (prompt, response) row: a list of float32
    tensors, one value per token of the response (or per index in ``scored[row]``: the tokens that are trained,
    when a response holds environment tokens between turns), the same values as token_logprobs gives at those
    positions, for less compute:

    - The output layer runs only where a response token is predicted. Prompts are most of the tokens (the board,
      the conversation so far) and the output layer is a large part of a small model's cost (a fifth of
      SmolLM2-135M's, with its 49k-token vocabulary).
    - Rows with identical prompts (the group of rollouts of one task, GRPO's G samples) run that prompt through
      the model once; its keys and values are shared by the rows' responses, and autograd adds up their gradients.
      Only without gradient checkpointing (which drops the key/value cache) and when some prompt repeats.

    Returns None when the model is not one it can split into backbone and output layer (wrapped for several
    processes, or an architecture outside PLAIN_HEAD_MODELS); the caller then uses token_logprobs."""
    from transformers import PreTrainedModel

    # A wrapper (DDP, FSDP) must run its own forward: it synchronizes or gathers the parameters there.
    if not isinstance(model, PreTrainedModel) or model.config.model_type not in PLAIN_HEAD_MODELS:
        return None
    backbone, head = model.get_decoder(), model.get_output_embeddings()
    dev = next(model.parameters()).device
    unique: dict[tuple[int, ...], int] = {}
    group = [unique.setdefault(tuple(p), len(unique)) for p in prompts]
    checkpointing = bool(getattr(backbone, "gradient_checkpointing", False)) and model.training
    rlen = torch.tensor([len(r) for r in responses], device=dev)
    resp = pad_right(responses, pad_id).to(dev)
    width_r = resp.shape[1]
    if len(unique) < len(prompts) and not checkpointing:
        plist = list(unique)
        plen = torch.tensor([len(p) for p in plist], device=dev)
        ids = pad_right(plist, pad_id).to(dev)
        width_p = ids.shape[1]
        out = backbone(input_ids=ids, use_cache=True)  # right padding: causal attention needs no mask
        idx = torch.tensor(group, device=dev)
        cache = out.past_key_values
        cache.batch_select_indices(idx)  # each row gets its prompt's keys and values (repeats share the graph)
        rows_plen = plen[idx]
        cols = torch.arange(width_p + width_r, device=dev)
        attn = ((cols[None, :] < rows_plen[:, None]) | (cols[None, :] >= width_p)).long()  # skip the prompt pads
        pos = rows_plen[:, None] + torch.arange(width_r, device=dev)[None, :]
        h_resp = backbone(
            input_ids=resp, attention_mask=attn, position_ids=pos, past_key_values=cache, use_cache=True
        ).last_hidden_state
        h_last = out.last_hidden_state[torch.arange(len(plist), device=dev), plen - 1][idx]
        h_pred = torch.cat([h_last[:, None], h_resp[:, :-1]], dim=1)  # h_pred[:, t] predicts resp[:, t]
    else:
        plen = torch.tensor([len(p) for p in prompts], device=dev)
        ids = pad_right([list(p) + list(r) for p, r in zip(prompts, responses)], pad_id).to(dev)
        width = ids.shape[1]
        hidden = backbone(input_ids=ids, use_cache=False).last_hidden_state
        at = (plen - 1)[:, None] + torch.arange(width_r, device=dev)[None, :]  # position t-1 predicts token t
        h_pred = hidden.gather(1, at.clamp(max=width - 1)[:, :, None].expand(-1, -1, hidden.shape[-1]))
    if scored is None:
        keep = torch.arange(width_r, device=dev)[None, :] < rlen[:, None]
        counts = rlen.tolist()
    else:
        keep = torch.zeros((len(responses), width_r), dtype=torch.bool)
        for b, js in enumerate(scored):
            keep[b, js] = True
        keep, counts = keep.to(dev), [len(js) for js in scored]
    lp = _head_logprobs(head, h_pred[keep], resp[keep], chunk)
    return list(lp.split(counts))


def _head_logprobs(head: torch.nn.Module, h: torch.Tensor, targets: torch.Tensor, chunk: int) -> torch.Tensor:
    """log_softmax(head(h))[target] for flat [N, width] hidden states; with ``chunk`` > 0 that many at a time,
    recomputed in the backward pass, so [N, vocab] logits never exist at once."""
    from torch.utils.checkpoint import checkpoint

    plain = type(head).forward

    def logprobs(hc: torch.Tensor, tc: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(plain(head, hc).float(), dim=-1).gather(-1, tc[:, None]).squeeze(-1)

    if chunk <= 0 or chunk >= h.shape[0]:
        return logprobs(h, targets)
    grad = torch.is_grad_enabled()
    return torch.cat(
        [
            checkpoint(logprobs, h[i : i + chunk], targets[i : i + chunk], use_reentrant=False)
            if grad
            else logprobs(h[i : i + chunk], targets[i : i + chunk])
            for i in range(0, h.shape[0], chunk)
        ]
    )


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
    targets = head._erl_targets
    if targets is None:
        return type(head).forward(head, h)
    b, n, width = h.shape
    flat_h, flat_t = h[:, :-1, :].reshape(-1, width), targets.reshape(-1)
    return _head_logprobs(head, flat_h, flat_t, head._erl_chunk).view(b, n - 1)


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
