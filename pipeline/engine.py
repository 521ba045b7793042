"""Batched generation on transformers: left padding, a KV cache, one forward per new token for the rows still
generating (a row that produced its stop token leaves the batch and its cache), and sampling by the Gumbel-max
trick from counter-based noise: the noise of token v at step t of a row is a hash of (the row's seed, t, v), so a
row's sample depends only on its own seed and logits, whatever else is in the batch, and a whole batch is sampled
in one vectorised operation. The vLLM engine (pipeline/vllm_engine.py) serves the same interface on GPUs."""

from __future__ import annotations

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
    """What the rollouts need of an engine, and the life cycle pipeline/policy.py drives."""

    def generate(
        self, prompts: Sequence[Sequence[int]], sampling: Sampling, seeds: Sequence[int]
    ) -> list[Generation]: ...

    def sleep(self) -> None: ...  # give GPU memory back while an update runs

    def load_weights(self, state_dict: dict) -> None: ...  # new weights in place

    def load_checkpoint(self, path) -> None: ...  # a checkpoint directory's weights in place


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

    # ---- life cycle: one engine per process (pipeline/policy.py) ----------------------------------------------

    def sleep(self) -> None:
        """Give the GPU memory back while an update runs (the weights wait in CPU memory); nothing on a CPU."""
        if self.device.type == "cuda":
            self._home = self.device
            self.model.to("cpu")
            torch.cuda.empty_cache()

    def _wake(self) -> None:
        home = getattr(self, "_home", None)
        if home is not None:
            self.model.to(home)
            self._home = None

    @torch.no_grad()
    def load_weights(self, state_dict: dict) -> None:
        """Take new weights in place (parameter names as saved; a tied output layer may be left out)."""
        self._wake()
        named = dict(self.model.named_parameters())
        missing = [n for n in named if n not in state_dict]
        if missing:
            raise ValueError(f"new weights lack {missing[:3]}")
        for n, q in named.items():
            q.copy_(state_dict[n].to(q.dtype))

    def load_checkpoint(self, path) -> None:
        """Take the weights of the checkpoint directory ``path`` in place (its safetensors, sharded or not)."""
        from pathlib import Path

        from safetensors.torch import load_file

        sd = {}
        for f in sorted(Path(path).glob("*.safetensors")):
            sd.update(load_file(str(f)))
        self.load_weights(sd)

    def batches(self, prompts) -> list[list[int]]:
        """The generation batches of ``prompts`` (indices): sorted by length, which keeps padding small, in slices
        of batch_size. A row's tokens depend on its batch, so this plan is what several processes share out."""
        order = sorted(range(len(prompts)), key=lambda i: (len(prompts[i]), i))
        return [order[s : s + self.batch_size] for s in range(0, len(order), self.batch_size)]

    def generate(self, prompts, sampling: Sampling, seeds, batches: list[list[int]] | None = None) -> list:
        """One generation per prompt, in the caller's order; with ``batches`` (a subset of :meth:`batches`) only
        the rows of those batches, the others None."""
        if len(prompts) != len(seeds):
            raise ValueError("one seed per prompt")
        self._wake()
        out: list[Generation | None] = [None] * len(prompts)
        for idx in self.batches(prompts) if batches is None else batches:
            gens = self._generate_batch([prompts[i] for i in idx], sampling, [seeds[i] for i in idx])
            for i, g in zip(idx, gens):
                out[i] = g
        return out

    @torch.inference_mode()
    def _generate_batch(self, prompts, sampling: Sampling, seeds) -> list[Generation]:
        from transformers import DynamicCache

        dev = self.device
        bsz = len(prompts)
        # Rows with the same prompt (a task's group of rollouts) share one prefill: the prompt runs once and its
        # cache is copied to each of its rows.
        unique: dict[tuple[int, ...], int] = {}
        group = torch.tensor([unique.setdefault(tuple(p), len(unique)) for p in prompts], device=dev)
        width = max(len(p) for p in unique)
        ids = torch.full((len(unique), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(unique), width), dtype=torch.long)
        for r, p in enumerate(unique):
            ids[r, width - len(p) :] = torch.tensor(p, dtype=torch.long)
            mask[r, width - len(p) :] = 1
        ids, mask = ids.to(dev), mask.to(dev)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        keys = torch.tensor([int(s) & MASK63 for s in seeds], dtype=torch.long, device=dev)
        stop = torch.tensor(self.stop_ids, dtype=torch.long, device=dev)
        rows = torch.arange(bsz, device=dev)  # the batch rows still generating
        steps: list[tuple[torch.Tensor, torch.Tensor]] = []  # (rows, their new token) per step
        cache = DynamicCache()
        logits = self.model(
            input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=cache, use_cache=True
        ).logits[:, -1, :]
        if len(unique) < bsz:
            cache.batch_select_indices(group)
        logits, mask, step_pos = logits[group], mask[group], pos[group][:, -1:]
        for t in range(sampling.max_new_tokens):
            nxt = sample(logits.float(), sampling, keys[rows], t)
            steps.append((rows, nxt))
            going = ~torch.isin(nxt, stop)
            if not bool(going.any()) or t + 1 == sampling.max_new_tokens:
                break
            if not bool(going.all()):  # finished rows leave the batch, with their cache
                keep = going.nonzero().squeeze(1)
                cache.batch_select_indices(keep)
                rows, nxt, mask, step_pos = rows[keep], nxt[keep], mask[keep], step_pos[keep]
            step_pos = step_pos + 1
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            logits = self.model(
                input_ids=nxt[:, None],
                attention_mask=mask,
                position_ids=step_pos,
                past_key_values=cache,
                use_cache=True,
            ).logits[:, -1, :]
        out: list[list[int]] = [[] for _ in range(bsz)]
        for r, tok in steps:
            for row, tid in zip(r.tolist(), tok.tolist()):
                out[row].append(tid)
        stops = set(self.stop_ids)
        return [Generation(toks, bool(toks) and toks[-1] in stops) for toks in out]


# ---- sampling ------------------------------------------------------------------------------------------------

MASK63 = (1 << 63) - 1


def _signed(x: int) -> int:
    """A 64-bit constant as torch's int64 holds it (two's complement)."""
    return x - (1 << 64) if x >= 1 << 63 else x


_GOLDEN, _MIX1, _MIX2 = _signed(0x9E3779B97F4A7C15), _signed(0xBF58476D1CE4E5B9), _signed(0x94D049BB133111EB)


def _shr(x: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 tensors (torch's >> is arithmetic)."""
    return (x >> k) & ((1 << (64 - k)) - 1)


def uniform_noise(keys: torch.Tensor, step: int, vocab: int) -> torch.Tensor:
    """[rows, vocab] uniforms in (0, 1), each a function of (its row's key, ``step``, the token) alone: splitmix64
    over the three, in int64 arithmetic that wraps around (a counter-based generator, as Philox is)."""
    v = torch.arange(vocab, dtype=torch.long, device=keys.device)
    t = torch.full((), step + 1, dtype=torch.long, device=keys.device)
    z = keys[:, None] * _GOLDEN + t * _MIX1 + v[None, :] * _MIX2 + _GOLDEN
    z = (z ^ _shr(z, 30)) * _MIX1
    z = (z ^ _shr(z, 27)) * _MIX2
    z = z ^ _shr(z, 31)
    return (_shr(z, 11).double() + 0.5) * (1.0 / (1 << 53))


def sample(logits: torch.Tensor, sampling: Sampling, keys: torch.Tensor, step: int) -> torch.Tensor:
    """One token per row of [rows, vocab] logits: argmax at temperature 0; otherwise the Gumbel-max trick, the
    argmax of the filtered, tempered logits plus Gumbel noise, which draws exactly from their softmax."""
    if sampling.temperature == 0:
        return logits.argmax(-1)
    gumbel = -torch.log(-torch.log(uniform_noise(keys, step, logits.shape[-1])))
    return (filter_logits(logits, sampling).double() + gumbel).argmax(-1)


def load_causal_lm(path: str, dtype: str = "float32", device: str | None = None):
    """A transformers causal LM and its tokenizer from a local directory or hub id (offline on CPU)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    from pipeline.checkpoint import refuse_remote_code

    refuse_remote_code(path)
    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype), trust_remote_code=False)
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
