"""The Engine interface served by vLLM (optional extra ``erl[vllm]``, GPU machines only), written against vLLM
0.33's offline API (vllm/entrypoints/llm.py). **It has never run here**: vLLM cannot be installed on the machines
of this workplace, and no GPU machine here can bring it (docs/guide.md, Scaling to GPUs).

Life cycle (pipeline/policy.py): one engine per process, built in-process (VLLM_ENABLE_V1_MULTIPROCESSING=0, so
the weights can be handed to its worker) with sleep mode on. While an update runs it sleeps at level 2 (weights
and KV cache freed); afterwards it wakes its weights, takes the new ones through the worker's
``reload_weights`` (from the trainer's tensors, or from the checkpoint's files), wakes its KV cache and drops its
prefix cache, instead of being rebuilt.

Reproducibility: per-request seeds keep the (run seed, epoch, stage, row) contract; with ``batch_invariant``
(VLLM_BATCH_INVARIANT=1, compute capability 8.0 or newer) a row's tokens do not depend on the other rows of the
batch, so reruns and rows split over processes compare. Even then a rerun is comparable bit for bit only on the
same GPU model, driver, CUDA, torch and vLLM versions."""

from __future__ import annotations

import os

from pipeline.config import Sampling
from pipeline.engine import Generation, stop_ids_of


class VLLMEngine:
    def __init__(
        self,
        path: str,
        dtype: str,
        seed: int,
        max_model_len: int,
        gpu_memory_utilization: float,
        batch_invariant: bool = True,
    ):
        # Read by vLLM when it is imported and when the engine starts: set before both.
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # the engine in this process: weights can be handed over
        if batch_invariant:
            os.environ["VLLM_BATCH_INVARIANT"] = "1"
        try:
            from vllm import LLM
        except ImportError as exc:  # pragma: no cover - depends on the optional extra
            raise RuntimeError("policy.engine: vllm needs the optional extra: pip install 'erl[vllm]'") from exc
        # The dtype is given explicitly: with "auto" vLLM would serve an fp32 config in fp16. The memory share is
        # given explicitly too: newer vLLM takes the whole GPU by default.
        self.llm = LLM(
            model=path,
            dtype=dtype,
            seed=seed,
            max_model_len=max_model_len,
            gpu_memory_utilization=gpu_memory_utilization,
            enable_sleep_mode=True,
        )
        self.tokenizer = self.llm.get_tokenizer()
        self.stop_ids = stop_ids_of(self.tokenizer)  # the transformers engine's stop tokens (<|im_end|>, ...)
        self.asleep = False

    def generate(self, prompts, sampling: Sampling, seeds) -> list[Generation]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        if self.asleep:  # slept without new weights (an update that failed): the checkpoint it had is gone
            raise RuntimeError("the vLLM engine sleeps and holds no weights; load a checkpoint first")
        params = [
            SamplingParams(
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                top_k=sampling.top_k,  # 0 = off, as in vLLM 0.33
                max_tokens=sampling.max_new_tokens,
                seed=int(s) % (2**31),
                stop_token_ids=self.stop_ids,
            )
            for s in seeds
        ]
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=list(p)) for p in prompts], params, use_tqdm=False)
        return [Generation(list(o.outputs[0].token_ids), o.outputs[0].finish_reason == "stop") for o in outs]

    def sleep(self) -> None:
        """Free the GPU for the update: level 2 drops the weights too (new ones come after it)."""
        self.llm.sleep(level=2)
        self.asleep = True

    def _reload(self, **kwargs) -> None:
        self.llm.wake_up(tags=["weights"])
        self.llm.collective_rpc("reload_weights", kwargs={"is_checkpoint_format": True, **kwargs})
        self.llm.wake_up(tags=["kv_cache"])
        self.llm.reset_prefix_cache()
        self.asleep = False

    def load_weights(self, state_dict: dict) -> None:
        """The trainer's new weights (Hugging Face names, storage dtype), in place."""
        self._reload(weights_iterator=iter(state_dict.items()))

    def load_checkpoint(self, path) -> None:
        """A checkpoint directory's weights, in place."""
        self._reload(weights_path=str(path))
