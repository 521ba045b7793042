"""The Engine interface served by vLLM (optional extra ``erl[vllm]``, GPU machines only). Per-request seeds
keep the same (run seed, epoch, stage, row) determinism contract as the transformers engine, on one machine and
one vLLM version; vLLM's logits are batch-invariant only with VLLM_BATCH_INVARIANT=1 (Hopper and newer)."""

from __future__ import annotations

from pipeline.config import Sampling
from pipeline.engine import Generation, stop_ids_of


class VLLMEngine:
    def __init__(self, path: str, dtype: str, seed: int, max_model_len: int, gpu_memory_utilization: float):
        try:
            from vllm import LLM
        except ImportError as exc:  # pragma: no cover - depends on the optional extra
            raise RuntimeError("policy.engine: vllm needs the optional extra: pip install 'erl[vllm]'") from exc
        # The dtype is given explicitly: with "auto" vLLM would serve an fp32 config in fp16.
        self.llm = LLM(
            model=path,
            dtype=dtype,
            seed=seed,
            max_model_len=max_model_len,
            gpu_memory_utilization=gpu_memory_utilization,
        )
        self.tokenizer = self.llm.get_tokenizer()
        self.stop_ids = stop_ids_of(self.tokenizer)  # the transformers engine's stop tokens (<|im_end|>, ...)

    def generate(self, prompts, sampling: Sampling, seeds) -> list[Generation]:
        from vllm import SamplingParams, TokensPrompt

        params = [
            SamplingParams(
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                top_k=sampling.top_k if sampling.top_k > 0 else -1,
                max_tokens=sampling.max_new_tokens,
                seed=int(s) % (2**31),
                stop_token_ids=self.stop_ids,
            )
            for s in seeds
        ]
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=list(p)) for p in prompts], params, use_tqdm=False)
        result = []
        for o in outs:
            c = o.outputs[0]
            ids = list(c.token_ids)
            finished = c.finish_reason == "stop"
            result.append(Generation(ids, finished))
        return result
