"""Log-probabilities of a policy's own tokens, the plumbing under the loss: samples split into token sequences
(one per turn, or one per episode when its turns continue each other), the sequences batched and padded, and the
log-prob of every response token computed with as little work as the model allows (only where a response token
is predicted, a prompt shared by a group of rollouts run once, the output layer in chunks). The loss itself is in
pipeline/losses.py."""

from __future__ import annotations

from dataclasses import dataclass

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
PLAIN_HEAD_MODELS = {"llama", "mistral", "qwen2", "qwen3", "phi3", "olmo2", "olmo3", "smollm3"}


def response_logprobs(
    model,
    prompts: list[list[int]],
    responses: list[list[int]],
    pad_id: int,
    chunk: int = 0,
    scored: list[list[int]] | None = None,
    sharded_call: bool = False,
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

    Returns None when the model is not one it can split into backbone and output layer (wrapped by DDP, or an
    architecture outside PLAIN_HEAD_MODELS); the caller then uses token_logprobs. A model sharded with
    fully_shard (pipeline/sharding.py) is called through the method it registered as a forward, so that its
    root's parameters are gathered (``sharded_call``); prompts are not shared there, each row runs whole."""
    from torch.distributed.fsdp import FSDPModule
    from transformers import PreTrainedModel

    # A DDP wrapper must run its own forward: it synchronizes there.
    if not isinstance(model, PreTrainedModel) or model.config.model_type not in PLAIN_HEAD_MODELS:
        return None
    if isinstance(model, FSDPModule) and not sharded_call:
        return model.erl_response_logprobs(prompts, responses, pad_id, chunk, scored)
    backbone, head = model.get_decoder(), model.get_output_embeddings()
    dev = next(model.parameters()).device
    unique: dict[tuple[int, ...], int] = {}
    group = [unique.setdefault(tuple(p), len(unique)) for p in prompts]
    checkpointing = bool(getattr(backbone, "gradient_checkpointing", False)) and model.training
    rlen = torch.tensor([len(r) for r in responses], device=dev)
    resp = pad_right(responses, pad_id).to(dev)
    width_r = resp.shape[1]
    if len(unique) < len(prompts) and not checkpointing and not sharded_call:
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


@dataclass
class Segment:
    """One token sequence to score: a turn's prompt and response, or several turns joined into one sequence."""

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
    """The sequences of samples whose prompt_ids/response_ids are lists of (prompt, response) segments, one per
    turn; only response tokens are scored, never the environment's. When a turn's prompt is the previous turn's
    prompt and response followed by more (the whole conversation in context, policy.history 0), the two turns
    become one sequence: a turn's tokens see exactly what they saw when sampled, and an episode of T turns costs
    its length instead of about T^2/2 turns."""
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


def batch_of(segs: list[Segment], pad_id: int, device):
    """Right-padded ids and the response-token mask. No attention mask: under causal attention the pads after a
    sequence cannot change the logits of its real tokens, and a mask-free batch takes the fast causal kernel."""
    return pad_right([s.ids for s in segs], pad_id).to(device), response_mask(segs, device)


def response_mask(segs: list[Segment], device) -> torch.Tensor:
    mask = torch.zeros((len(segs), max(len(s.ids) for s in segs) - 1))
    for r, s in enumerate(segs):
        for lo, hi in s.spans:
            mask[r, lo - 1 : hi - 1] = 1.0  # position t predicts token t+1
    return mask.to(device)


def chunks(segs: list[Segment], max_tokens: int):
    """The segments in micro-batches of at most ``max_tokens`` padded tokens, shortest first."""
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


def segment_batch_logprobs(model, segs, pad_id, device, chunk: int = 0):
    """Log-probs of the segments' tokens in batch_of's layout ([B, L-1], position t predicting token t+1), set at the
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
        ids, mask = batch_of(segs, pad_id, device)
        return token_logprobs(model, ids, chunk), mask
    mask = response_mask(segs, device)
    rows = torch.cat([torch.full((len(p),), r, dtype=torch.long) for r, p in enumerate(parts)]).to(device)
    cols = torch.tensor([t for ts in at for t in ts], dtype=torch.long, device=device)
    return torch.zeros(mask.shape, device=device).index_put((rows, cols), torch.cat(parts)), mask


@torch.no_grad()
def segment_logprobs(
    model, segs: list[Segment], pad_id: int, device, max_tokens: int, chunk: int = 0, calls: int | None = None
) -> dict[int, torch.Tensor]:
    """Response-token log-probs of every segment (keyed by id(segment)), computed without gradients, in
    micro-batches of ``max_tokens``; with ``calls``, that many forward calls whatever the segments need (a sharded
    model's processes must all make the same number: the extra ones score a padding token)."""
    out = {}
    batches = list(chunks(segs, max_tokens))
    for batch in batches:
        lp, mask = segment_batch_logprobs(model, batch, pad_id, device, chunk)
        for r, s in enumerate(batch):
            out[id(s)] = lp[r, s.positions()].detach()
    for _ in range(len(batches), calls or 0):
        segment_batch_logprobs(model, [padding_segment(pad_id)], pad_id, device, chunk)
    return out


def padding_segment(pad_id: int) -> Segment:
    """A two-token sequence of padding, scored only to take part in a collective forward pass."""
    return Segment(-1, [pad_id, pad_id], 1)


@torch.no_grad()
def mean_token_kl(model, ref_model, samples: list[dict], pad_id: int, device, max_tokens: int = 16384) -> float | None:
    """Exact KL(model || ref) per response token, sum_v p log(p / q), averaged over every response token of
    ``samples`` (dicts with prompt_ids/response_ids segments): how far a checkpoint has moved from epoch 0 on
    its own generations."""
    total, count = 0.0, 0
    for chunk in chunks(segments_of(samples), max_tokens):
        ids, mask = batch_of(chunk, pad_id, device)
        lp = torch.log_softmax(model(input_ids=ids).logits[:, :-1].float(), -1)
        lq = torch.log_softmax(ref_model(input_ids=ids).logits[:, :-1].float(), -1)
        kl = (lp.exp() * (lp - lq)).sum(-1)
        total += float((kl * mask).sum())
        count += int(mask.sum())
    return total / count if count else None
