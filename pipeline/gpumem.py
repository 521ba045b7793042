"""Memory of one policy update on a GPU, estimated from the model's config and the update params: what `init`
checks before a run that cannot fit starts. Counts per device (DDP: every
process holds a full replica), for training in fp32 master weights with bf16 compute, AdamW moments in fp32,
gradient checkpointing per decoder layer and token log-probs computed in chunks. Add 10-20% for the allocator's
fragmentation: the margin is ``HEADROOM``. No torch here."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.errors import InputError

GiB = 2**30
HEADROOM = 1.15  # the CUDA caching allocator's fragmentation, on top of the tensors counted


@dataclass(frozen=True)
class Shape:
    """The dimensions of a Llama/Qwen-style decoder that set its memory."""

    hidden: int
    layers: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool

    @classmethod
    def from_config(cls, cfg: dict) -> Shape:
        heads = cfg["num_attention_heads"]
        return cls(
            cfg["hidden_size"],
            cfg["num_hidden_layers"],
            cfg["intermediate_size"],
            heads,
            cfg.get("num_key_value_heads") or heads,
            cfg.get("head_dim") or cfg["hidden_size"] // heads,
            cfg["vocab_size"],
            bool(cfg.get("tie_word_embeddings", False)),
        )

    def parameters(self) -> int:
        h, q, kv = self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim
        layer = h * q + 2 * h * kv + q * h + 3 * h * self.intermediate + 2 * h + 2 * self.head_dim
        return self.layers * layer + self.vocab * h * (1 if self.tied else 2) + h

    def layer_saved_per_token(self) -> int:
        """Bytes autograd saves inside one decoder layer per token in bf16 (norms, attention, MLP), which live
        while that layer is recomputed for its backward (on a Qwen3-4B layer this gives 170,792, the sum of the tensors autograd saved there)."""
        h, i, q, kv = self.hidden, self.intermediate, self.heads * self.head_dim, self.kv_heads * self.head_dim
        return 16 * h + 8 + 10 * q + 10 * kv + 8 * self.heads + 4 * self.kv_heads + 4 * self.head_dim + 8 * i


def estimate(
    shape: Shape,
    micro_batch_tokens: int,
    logprob_chunk: int,
    *,
    storage_dtype: str = "bfloat16",
    gradient_checkpointing: bool = True,
    kl: bool = True,
) -> dict[str, float]:
    """Bytes per device for one update micro-batch of ``micro_batch_tokens`` (padded) tokens."""
    p, h, t = shape.parameters(), shape.hidden, micro_batch_tokens
    half = storage_dtype != "float32"
    out = {
        "master weights (fp32)": 4 * p,
        "gradients (fp32)": 4 * p,
        "AdamW moments (fp32)": 8 * p,
        "bf16 compute copy": 2 * p if half else 0,
        "reference model": (2 if half else 4) * p if kl else 0,
    }
    act = 2 if half else 4
    per_layer = shape.layer_saved_per_token() * act // 2
    if gradient_checkpointing:
        out["layer inputs kept for recompute"] = t * shape.layers * h * act
        out["one layer's recompute and backward"] = t * (per_layer + act * (3 * shape.intermediate + 4 * h))
    else:
        out["activations of every layer"] = t * shape.layers * per_layer
    chunk = min(logprob_chunk, t) if logprob_chunk > 0 else t
    out["log-prob chunk (logits and their gradient)"] = chunk * shape.vocab * (act + 4 + 4 + 4 + act)
    out["total"] = sum(out.values()) * HEADROOM
    return out


class DoesNotFit(InputError):
    """An update that cannot fit the GPU it would run on; the message has the numbers and settings that fit."""


def for_params(p, config: dict) -> dict[str, float]:
    """The estimate for params ``p`` (update.*, policy.dtype) and a model config (config.json's keys)."""
    u = p.update
    return estimate(
        Shape.from_config(config),
        u.micro_batch_tokens,
        u.logprob_chunk,
        storage_dtype=p.policy.dtype,
        gradient_checkpointing=u.gradient_checkpointing,
        kl=u.kl_coef > 0,
    )


def fits(estimate_bytes: dict, device_bytes: float) -> bool:
    return estimate_bytes["total"] <= device_bytes


def describe(est: dict, device_bytes: float | None = None) -> str:
    lines = [f"  {k:<44}{v / GiB:8.1f} GiB" for k, v in est.items() if k != "total" and v]
    lines.append(f"  {'total (x' + str(HEADROOM) + ' for fragmentation)':<44}{est['total'] / GiB:8.1f} GiB")
    if device_bytes is not None:
        lines.append(f"  {'device memory':<44}{device_bytes / GiB:8.1f} GiB")
    return "\n".join(lines)
