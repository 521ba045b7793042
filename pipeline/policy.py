"""A policy checkpoint opened for generation: the transformers engine on a CPU (or one GPU), or vLLM when
``policy.engine: vllm``. Both serve Engine.generate over token ids. The model is loaded on first use, so a step
with nothing to generate (no failed attempt to reflect on) never pays for it."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pipeline.config import Params


class Policy:
    def __init__(self, params: Params, path: Path):
        self.params, self.path = params, Path(path)

    @cached_property
    def _loaded(self):
        from pipeline import checkpoint
        from pipeline.engine import HFEngine, load_causal_lm, stop_ids_of
        from pipeline.torchsetup import configure_torch

        p = self.params
        configure_torch()
        checkpoint.verify(self.path.parent, (checkpoint.POLICY,))
        if p.policy.engine == "vllm":
            from pipeline.vllm_engine import VLLMEngine

            engine = VLLMEngine(
                str(self.path),
                p.policy.dtype,
                p.seed,
                p.policy.vllm.max_model_len,
                p.policy.vllm.gpu_memory_utilization,
            )
            return engine, engine.tokenizer
        model, tok = load_causal_lm(str(self.path), p.policy.dtype)
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        return HFEngine(model, stop_ids_of(tok), pad, p.policy.batch_size), tok

    @property
    def engine(self):
        return self._loaded[0]

    @property
    def tokenizer(self):
        return self._loaded[1]
