"""Batched generation on transformers: left padding, KV cache, one forward per new token for the whole
batch, and per-row random generators so a row's sample depends only on its own seed. The vLLM engine
(pipeline/vllm_engine.py) serves the same interface on GPUs."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from pipeline.config import Sampling


@dataclass
class Generation:
    token_ids: list[int]  # generated ids, the stop token included when one was produced
    finished: bool  # a stop token ended it (False: max_new_tokens reached)


class Engine(Protocol):
    def generate(
        self, prompts: Sequence[Sequence[int]], sampling: Sampling, seeds: Sequence[int]
    ) -> list[Generation]: ...


def filter_logits(logits: torch.Tensor, sampling: Sampling) -> torch.Tensor:
    """Temperature, top-k and top-p (nucleus) on a [B, V] tensor of logits; filtered entries become -inf."""
    logits = logits / max(sampling.temperature, 1e-6)
    if sampling.top_k and sampling.top_k < logits.shape[-1]:
        kth = torch.topk(logits, sampling.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if sampling.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cum = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
        drop = cum - torch.softmax(sorted_logits, dim=-1) >= sampling.top_p  # keep the token crossing top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return logits


class HFEngine:
    """Generation with a transformers causal LM held in this process."""

    def __init__(self, model, stop_ids: Sequence[int], pad_id: int, batch_size: int = 256):
        self.model = model
        self.stop_ids = sorted(set(int(i) for i in stop_ids))
        self.pad_id = int(pad_id)
        self.batch_size = batch_size

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def generate(self, prompts, sampling: Sampling, seeds) -> list[Generation]:
        if len(prompts) != len(seeds):
            raise ValueError("one seed per prompt")
        # Sorting by length keeps padding small; results are put back in the caller's order.
        order = sorted(range(len(prompts)), key=lambda i: (len(prompts[i]), i))
        out: list[Generation | None] = [None] * len(prompts)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            gens = self._generate_batch([prompts[i] for i in idx], sampling, [seeds[i] for i in idx])
            for i, g in zip(idx, gens):
                out[i] = g
        return out  # type: ignore[return-value]

    @torch.inference_mode()
    def _generate_batch(self, prompts, sampling: Sampling, seeds) -> list[Generation]:
        from transformers import DynamicCache

        dev = self.device
        bsz, width = len(prompts), max(len(p) for p in prompts)
        ids = torch.full((bsz, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((bsz, width), dtype=torch.long)
        for r, p in enumerate(prompts):
            ids[r, width - len(p) :] = torch.tensor(p, dtype=torch.long)
            mask[r, width - len(p) :] = 1
        ids, mask = ids.to(dev), mask.to(dev)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        stop = torch.tensor(self.stop_ids, device=dev)
        done = torch.zeros(bsz, dtype=torch.bool, device=dev)
        new_tokens: list[torch.Tensor] = []
        cache = DynamicCache()
        step_ids, step_pos = ids, pos
        for _ in range(sampling.max_new_tokens):
            logits = (
                self.model(
                    input_ids=step_ids,
                    attention_mask=mask,
                    position_ids=step_pos,
                    past_key_values=cache,
                    use_cache=True,
                )
                .logits[:, -1, :]
                .float()
            )
            if sampling.temperature == 0:
                nxt = logits.argmax(-1)
            else:
                probs = torch.softmax(filter_logits(logits, sampling), dim=-1).cpu()
                nxt = torch.stack([torch.multinomial(probs[r], 1, generator=gens[r])[0] for r in range(bsz)]).to(dev)
            nxt = torch.where(done, torch.full_like(nxt, self.pad_id), nxt)
            new_tokens.append(nxt)
            done = done | torch.isin(nxt, stop)
            if bool(done.all()):
                break
            step_ids = nxt[:, None]
            step_pos = step_pos[:, -1:] + 1
            # Finished rows keep receiving pad tokens; their outputs are discarded, so the mask stays 1.
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        toks = torch.stack(new_tokens, dim=1).tolist()
        result = []
        for row in toks:
            cut = next((j for j, t in enumerate(row) if t in self.stop_ids), None)
            result.append(Generation(row if cut is None else row[: cut + 1], cut is not None))
        return result


def usable_cores() -> int:
    """The cores this process may use: its CPU affinity, capped by a cgroup CPU quota when one is set."""
    import math

    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()[:2]
        if quota != "max":
            n = min(n, max(1, math.floor(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return n


def configure_threads() -> int:
    """Set torch's thread count to the cores this process may use (or ERL_THREADS). More threads than cores make
    torch processes that share a machine collapse: two processes with two threads each on 2 cores ran 3-7x
    slower, and SmolLM2 generated about 1 token/s with two threads while another process held a core."""
    n = int(os.environ.get("ERL_THREADS") or 0) or usable_cores()
    torch.set_num_threads(n)
    return n


def load_causal_lm(path: str, dtype: str = "float32", device: str | None = None):
    """A transformers causal LM and its tokenizer from a local directory or hub id (offline on CPU)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype))
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model.to(dev).eval()
    return model, tok


def stop_ids_of(tok) -> list[int]:
    ids = {tok.eos_token_id} if tok.eos_token_id is not None else set()
    for t in ("<|end|>", "<|im_end|>", "<|eot_id|>", "<|endoftext|>"):
        i = tok.convert_tokens_to_ids(t)
        if isinstance(i, int) and i != tok.unk_token_id and i is not None and i >= 0:
            ids.add(i)
    return sorted(i for i in ids if i is not None)
