"""Generation spread over processes (``rollout.processes`` > 1; the stage runs under `accelerate launch`, gloo on
CPUs, one process per GPU on GPUs). Every process plays the same episodes and steps the same environments; only
the generation is shared out, and every process gets every generation back, so each holds the whole table and the
main process writes it.

The transformers engine's output for a row depends on the batch it runs in (padding and matrix shapes change
the last bits of the logits), so the processes share out the very batches one process would run, batch by batch
(batch b to process b mod N): the table is identical to the single-process one with the same policy.batch_size.
For parallel work there must be at least N batches per call (policy.batch_size at most rows / N). vLLM batches
on its own; each process's engine takes every N-th row (rows carry their own seeds), which is identical only
with batch-invariant kernels (policy.vllm.batch_invariant)."""

from __future__ import annotations

import torch.distributed as dist


def _ensure_group() -> None:
    if not dist.is_initialized():
        import os

        import torch

        dist.init_process_group("nccl" if torch.cuda.is_available() and os.environ.get("LOCAL_RANK") else "gloo")


class DistributedEngine:
    """An engine of this process, generating its share of every call and gathering the rest from the others."""

    def __init__(self, engine):
        _ensure_group()
        self.inner = engine
        self.rank, self.world = dist.get_rank(), dist.get_world_size()

    def __getattr__(self, name):  # model, device, pad_id, sleep, load_weights ... of the engine
        return getattr(self.inner, name)

    def generate(self, prompts, sampling, seeds):
        if hasattr(self.inner, "batches"):  # transformers: whole batches, as one process would run them
            mine = [b for i, b in enumerate(self.inner.batches(prompts)) if i % self.world == self.rank]
            part = self.inner.generate(prompts, sampling, seeds, batches=mine)
        else:
            idx = list(range(self.rank, len(prompts), self.world))
            gens = self.inner.generate([prompts[i] for i in idx], sampling, [seeds[i] for i in idx])
            part = [None] * len(prompts)
            for i, g in zip(idx, gens):
                part[i] = g
        everyone: list = [None] * self.world
        dist.all_gather_object(everyone, [(i, g) for i, g in enumerate(part) if g is not None])
        out: list = [None] * len(prompts)
        for pairs in everyone:
            for i, g in pairs:
                out[i] = g
        return out
