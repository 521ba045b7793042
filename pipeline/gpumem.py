"""How much GPU memory one policy update needs per GPU, term by term, for a model's shape and the update params
on N GPUs: what `erl memory` prints before GPUs are rented and what `init` checks before a run that cannot fit
starts. No torch here.

The update trains fp32 master weights (bf16 compute on a GPU when policy.dtype is bfloat16) with AdamW, a frozen
reference model for the KL, gradient checkpointing per decoder layer and log-probs computed in chunks. Its peak is
the larger of two phases:

  forward/backward  weights, gradients, the AdamW moments (unless offloaded), the reference model, the weights in
                    compute precision (autocast's copies under ddp; the gathered layers under fsdp2), activations
                    and one chunk of logits
  optimizer step    weights, gradients, moments, the reference model and the optimizer's temporaries (foreach:
                    about one more fp32 copy of the parameters; fused: none to speak of; loop: the largest tensor)

Calibration: the one measurement (a Qwen3-4B-shaped update at the paper preset's settings, one H200, ddp, torch's
default foreach AdamW, the first optimizer step, so no moments yet during forward/backward) peaked at 82.9 GiB
allocated; :func:`calibration` recomputes that case (82.5 GiB, its optimizer step). HEADROOM covers the caching
allocator's fragmentation on top of the tensors counted."""

from __future__ import annotations

from dataclasses import dataclass, replace

from pipeline.errors import InputError

GiB = 2**30
HEADROOM = 1.10  # fragmentation of the CUDA caching allocator, on top of the tensors counted
MEASURED_H200_GIB = 82.9  # scripts/gpu_update_check.py on one H200, 2026-11-30 (reports/gpu/)


@dataclass(frozen=True)
class Shape:
    """The dimensions of a Llama/Qwen/Olmo-style decoder that set its memory."""

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

    def layer_parameters(self) -> int:
        h, q, kv = self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim
        return h * q + 2 * h * kv + q * h + 3 * h * self.intermediate + 2 * h + 2 * self.head_dim

    def root_parameters(self) -> int:
        """Embeddings, output layer (once when tied) and final norm: what FSDP keeps in the root's group."""
        return self.vocab * self.hidden * (1 if self.tied else 2) + self.hidden

    def parameters(self) -> int:
        return self.layers * self.layer_parameters() + self.root_parameters()

    def layer_saved_per_token(self) -> int:
        """Bytes autograd saves inside one decoder layer per token in bf16 (norms, attention, MLP), which live
        while that layer is recomputed for its backward (on a Qwen3-4B layer this gives 170,792, the sum of the
        tensors autograd saved there)."""
        h, i, q, kv = self.hidden, self.intermediate, self.heads * self.head_dim, self.kv_heads * self.head_dim
        return 16 * h + 8 + 10 * q + 10 * kv + 8 * self.heads + 4 * self.kv_heads + 4 * self.head_dim + 8 * i


@dataclass(frozen=True)
class Setup:
    """The settings that decide the update's memory (update.* and policy.dtype) and the GPUs it runs on."""

    gpus: int = 1
    strategy: str = "ddp"  # ddp | fsdp2
    offload: str = "none"  # none | optimizer | params
    adamw: str = "loop"  # loop | fused | foreach
    bf16: bool = True  # bf16 compute (policy.dtype bfloat16 on a GPU)
    micro_batch_tokens: int = 16384
    logprob_chunk: int = 0
    gradient_checkpointing: bool = True
    kl: bool = True
    moments_in_fwd_bwd: bool = True  # False: the first step (AdamW creates its moments in the step)

    @classmethod
    def of(cls, p, gpus: int) -> Setup:
        u = p.update
        return cls(
            gpus=gpus,
            strategy=u.strategy,
            offload=u.offload,
            adamw=u.adamw,
            bf16=p.policy.dtype == "bfloat16",
            micro_batch_tokens=u.micro_batch_tokens,
            logprob_chunk=u.logprob_chunk,
            gradient_checkpointing=u.gradient_checkpointing,
            kl=u.kl_coef > 0 or bool(u.kl_coef_reflection),
        )


def estimate(shape: Shape, s: Setup) -> dict:
    """Bytes per GPU, term by term and per phase: {"forward/backward": {term: bytes}, "optimizer step": {...},
    "peak": bytes (the larger phase, times HEADROOM), "host": bytes of CPU memory per process for what is
    offloaded}."""
    P, n = shape.parameters(), max(1, s.gpus)
    sharded = s.strategy == "fsdp2"
    part = n if sharded else 1
    on_cpu = s.offload == "params"
    a = 2 if s.bf16 else 4  # bytes of an activation and of a weight in compute precision
    master = 0 if on_cpu else 4 * P / part
    grads = 0 if on_cpu else 4 * P / part
    moments = 0 if on_cpu else 8 * P / part
    ref = ((2 if s.bf16 else 4) * P / part if not on_cpu else 0) if s.kl else 0
    common = {"master weights (fp32)": master, "gradients (fp32)": grads}
    if not sharded and n > 1:
        common["DDP gradient buckets (fp32)"] = 4 * P
    common["reference model"] = ref
    fwd = dict(common)
    fwd["AdamW moments (fp32)"] = moments if s.moments_in_fwd_bwd and s.offload == "none" else 0
    if sharded:
        in_flight = shape.root_parameters() + 2 * shape.layer_parameters()  # the root and two layers gathered
        fwd["gathered weights (policy + reference)"] = a * in_flight * (2 if s.kl else 1)
        fwd["gathered gradients before reduce-scatter"] = (a + 4) * in_flight
    else:
        fwd["compute-precision weight copies"] = 2 * P if s.bf16 else 0
    t, h = s.micro_batch_tokens, shape.hidden
    per_layer = shape.layer_saved_per_token() * a // 2
    if s.gradient_checkpointing:
        fwd["layer inputs kept for recompute"] = t * shape.layers * h * a
        fwd["one layer's recompute and backward"] = t * (per_layer + a * (3 * shape.intermediate + 4 * h))
    else:
        fwd["activations of every layer"] = t * shape.layers * per_layer
    chunk = min(s.logprob_chunk, t) if s.logprob_chunk > 0 else t
    fwd["log-prob chunk (logits and their gradient)"] = chunk * shape.vocab * (a + 4 + 4 + 4 + a)
    step = dict(common)
    step["AdamW moments (fp32)"] = moments
    largest = max(shape.vocab * h, h * shape.intermediate) / part
    temps = {"foreach": 4 * P / part, "fused": 0, "loop": 4 * largest}[s.adamw]
    step[f"AdamW temporaries ({s.adamw})"] = 0 if on_cpu else temps
    if on_cpu:  # the step runs on the CPU; the GPU holds what is gathered for compute
        step["gathered weights (policy + reference)"] = fwd["gathered weights (policy + reference)"]
    peak = max(sum(fwd.values()), sum(step.values())) * HEADROOM
    host = 0.0
    if on_cpu:
        host = (16 * P + ((2 if s.bf16 else 4) * P if s.kl else 0)) / part
    elif s.offload == "optimizer":
        host = 8 * P / part
    return {"forward/backward": fwd, "optimizer step": step, "peak": peak, "host": host}


def calibration(shape: Shape, micro_batch_tokens: int = 32768, logprob_chunk: int = 2048) -> tuple[float, float]:
    """(estimated GiB, measured GiB) of the one measured case: the first step of a Qwen3-4B-shaped update on one
    H200, ddp, foreach AdamW (torch's default then), without HEADROOM (the measurement is of allocated bytes)."""
    s = Setup(1, "ddp", "none", "foreach", True, micro_batch_tokens, logprob_chunk, True, True, False)
    est = estimate(shape, s)
    return max(sum(est["forward/backward"].values()), sum(est["optimizer step"].values())) / GiB, MEASURED_H200_GIB


class DoesNotFit(InputError):
    """An update that cannot fit the GPUs it would run on; the message has the numbers and settings that fit."""


def usable(gpu_bytes: float) -> float:
    """What a GPU of ``gpu_bytes`` leaves to tensors: less about 1.5 GiB for the CUDA context and kernels."""
    return gpu_bytes - 1.5 * GiB


def fits(est: dict, gpu_bytes: float) -> bool:
    return est["peak"] <= usable(gpu_bytes)


ALTERNATIVES: list[tuple[str, dict]] = [
    ("update.adamw: fused", {"adamw": "fused"}),
    ("update.strategy: fsdp2 (over the GPUs)", {"strategy": "fsdp2"}),
    ("update.strategy: fsdp2, update.adamw: fused", {"strategy": "fsdp2", "adamw": "fused"}),
    ("update.offload: optimizer, update.adamw: fused", {"offload": "optimizer", "adamw": "fused"}),
    ("update.strategy: fsdp2, update.offload: params", {"strategy": "fsdp2", "offload": "params"}),
    ("update.gradient_checkpointing: true", {"gradient_checkpointing": True}),
    ("update.logprob_chunk: 2048", {"logprob_chunk": 2048}),
]


def suggestions(shape: Shape, s: Setup, gpu_bytes: float, limit: int = 4) -> list[str]:
    """Settings that would fit, each with its peak: single changes first, then halving micro_batch_tokens."""
    out = []
    for label, change in ALTERNATIVES:
        alt = replace(s, **change)
        if alt != s and fits(est := estimate(shape, alt), gpu_bytes):
            out.append(f"{label}: {est['peak'] / GiB:.1f} GiB per GPU")
    t = s.micro_batch_tokens // 2
    while t >= 1024 and len(out) < limit:
        alt = replace(s, micro_batch_tokens=t)
        if fits(est := estimate(shape, alt), gpu_bytes):
            out.append(f"update.micro_batch_tokens: {t}: {est['peak'] / GiB:.1f} GiB per GPU")
            break
        t //= 2
    return out[:limit]


def describe(est: dict, gpu_bytes: float | None = None) -> str:
    lines = []
    for phase in ("forward/backward", "optimizer step"):
        terms = est[phase]
        lines.append(f"  {phase}: {sum(terms.values()) / GiB:.1f} GiB")
        lines += [f"    {k:<46}{v / GiB:8.1f} GiB" for k, v in terms.items() if v]
    lines.append(
        f"  {'peak (the larger phase x' + str(HEADROOM) + ' for fragmentation)':<48}{est['peak'] / GiB:8.1f} GiB"
    )
    if est["host"]:
        lines.append(f"  {'CPU memory per process (offloaded)':<48}{est['host'] / GiB:8.1f} GiB")
    if gpu_bytes is not None:
        lines.append(f"  {'usable GPU memory':<48}{usable(gpu_bytes) / GiB:8.1f} GiB")
    return "\n".join(lines)


# Model shapes known without a download (config.json's keys), for `erl memory` on a hub id.
KNOWN: dict[str, dict] = {
    "Qwen/Qwen3-4B-Instruct-2507": {
        "hidden_size": 2560,
        "num_hidden_layers": 36,
        "intermediate_size": 9728,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "vocab_size": 151936,
        "tie_word_embeddings": True,
    },
    "allenai/Olmo-3-7B-Instruct": {
        "hidden_size": 4096,
        "num_hidden_layers": 32,
        "intermediate_size": 11008,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "head_dim": 128,
        "vocab_size": 100278,
        "tie_word_embeddings": False,
    },
    "smollm2": {
        "hidden_size": 576,
        "num_hidden_layers": 30,
        "intermediate_size": 1536,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "head_dim": 64,
        "vocab_size": 49152,
        "tie_word_embeddings": True,
    },
}


def model_config(p, config_path=None) -> dict:
    """The shape of policy.model: ``config_path`` (a config.json), the model directory's config.json, a known hub
    id, or the embedded default's params. InputError naming the model otherwise."""
    import json
    from pathlib import Path

    spec = p.policy.model
    path = Path(config_path) if config_path else Path(spec) / "config.json"
    if path.is_file():
        cfg = json.loads(path.read_text())
        return cfg.get("text_config", cfg)
    if spec in KNOWN:
        return KNOWN[spec]
    if spec == "tiny":
        t = p.policy.tiny
        return {
            "hidden_size": t.hidden_size,
            "num_hidden_layers": t.layers,
            "intermediate_size": t.intermediate_size,
            "num_attention_heads": t.heads,
            "vocab_size": 256,
            "tie_word_embeddings": True,
        }
    raise InputError(
        f"policy.model: {spec!r}: its shape is unknown here (no config.json at {path}); pass --config CONFIG.json"
    )
