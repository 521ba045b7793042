"""Loading a policy checkpoint for generation: the transformers engine on CPU (or one GPU), or vLLM when
``policy.engine: vllm``. Both expose Engine.generate over token ids."""
from __future__ import annotations

import os
from pathlib import Path

from pipeline.config import Params


def load_policy(params: Params, path: Path):
    """(engine, tokenizer) for the checkpoint at ``path``."""
    import torch

    from pipeline.engine import HFEngine, load_causal_lm, stop_ids_of

    torch.set_num_threads(int(os.environ.get("ERL_THREADS", torch.get_num_threads())))
    if params.policy.engine == "vllm":
        from pipeline.vllm_engine import VLLMEngine

        engine = VLLMEngine(str(path), dtype=params.policy.dtype, seed=params.seed)
        return engine, engine.tokenizer
    model, tok = load_causal_lm(str(path), params.policy.dtype)
    return HFEngine(model, stop_ids_of(tok), tok.pad_token_id if tok.pad_token_id is not None else 0, params.policy.batch_size), tok
