"""A policy checkpoint opened for generation: the transformers engine on a CPU (or one GPU), or vLLM when
``policy.engine: vllm``. Both serve Engine.generate over token ids.

One engine per process, for as long as the process lives: a block of epochs (stages/epochs.py) opens each
epoch's checkpoint through the same engine. Opening a checkpoint the engine already holds costs nothing; the
update puts the engine to sleep (its GPU memory freed) while it trains and hands it the new weights in place
afterwards (:func:`release`, :func:`hand_over`), so an engine is built once per process, not once per step.
Which weights an engine holds is known by the checkpoint's identity, the sha256 of its policy/ directory in its
manifest. The model is loaded on first use, so a step with nothing to generate never pays for it.

With ``rollout.processes`` > 1 (a stage started by `accelerate launch`), every process runs the same episodes and
its engine generates its own share of each turn's batches (pipeline/distgen.py)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from pipeline.config import Params


@dataclass
class Live:
    """The engine of this process and the checkpoint (policy_sha256) whose weights it holds."""

    key: tuple
    engine: object
    tokenizer: object
    version: str | None


_LIVE: Live | None = None
BUILT = 0  # engines built by this process (a block builds one; `erl bench` and the tests count them)


def _key(p: Params, path: Path) -> tuple:
    """What an engine is built for: a change of any of it builds another engine. The run's artifact root is part
    of it: another run (another root) may hold another model under the same policy.model."""
    v = p.policy.vllm
    return (
        str(Path(path).resolve().parent.parent),
        p.policy.engine,
        p.policy.model,
        p.policy.dtype,
        p.policy.batch_size,
        v.max_model_len,
        v.gpu_memory_utilization,
        v.batch_invariant,
        p.rollout.processes,
    )


class Policy:
    def __init__(self, params: Params, path: Path):
        self.params, self.path = params, Path(path)

    @cached_property
    def _loaded(self):
        global _LIVE, BUILT
        from pipeline import checkpoint
        from pipeline.torchsetup import configure_torch

        p = self.params
        configure_torch()
        version = checkpoint.verify(self.path.parent, (checkpoint.POLICY,))["policy_sha256"]
        key = _key(p, self.path)
        if _LIVE is not None and _LIVE.key == key:
            if _LIVE.version != version:
                _LIVE.engine.load_checkpoint(self.path)
                _LIVE.version = version
            return _LIVE.engine, _LIVE.tokenizer
        engine, tok = _build(p, self.path)
        BUILT += 1
        _LIVE = Live(key, engine, tok, version)
        return engine, tok

    @property
    def engine(self):
        return self._loaded[0]

    @property
    def tokenizer(self):
        return self._loaded[1]


def _build(p: Params, path: Path):
    if p.policy.engine == "vllm":
        from pipeline.vllm_engine import VLLMEngine

        v = p.policy.vllm
        engine = VLLMEngine(
            str(path), p.policy.dtype, p.seed, v.max_model_len, v.gpu_memory_utilization, v.batch_invariant
        )
        tok = engine.tokenizer
    else:
        from pipeline.engine import HFEngine, load_causal_lm, stop_ids_of

        model, tok = load_causal_lm(str(path), p.policy.dtype)
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        engine = HFEngine(model, stop_ids_of(tok), pad, p.policy.batch_size)
    if p.rollout.processes > 1:
        from pipeline.distgen import DistributedEngine

        engine = DistributedEngine(engine)
    return engine, tok


def active(path: Path | None = None) -> bool:
    """Whether this process holds an engine (of the run whose checkpoint ``path`` is)."""
    return _LIVE is not None and (path is None or _LIVE.key[0] == str(Path(path).resolve().parent.parent))


def release() -> None:
    """Before an update: the live engine (if any) gives back its GPU memory and forgets its weights."""
    if _LIVE is not None:
        _LIVE.engine.sleep()
        _LIVE.version = None


def hand_over(state_dict: dict | None, version: str, path: Path) -> None:
    """After an update: the live engine (if any, of this run) takes the new checkpoint's weights in place,
    ``state_dict`` (in the storage dtype, as saved) when this process holds them whole, else read from ``path``."""
    if not active(path):
        return
    if state_dict is not None:
        _LIVE.engine.load_weights(state_dict)
    else:
        _LIVE.engine.load_checkpoint(path)
    _LIVE.version = version
