"""How the update is spread over processes (``update.strategy``):

  ddp    accelerate's DistributedDataParallel: every process holds a whole replica (fp32 master weights,
         gradients, AdamW moments) and gradients are all-reduced once per optimizer step.
  fsdp2  torch's fully_shard, per decoder layer and at the root: each process holds 1/N of the fp32 master
         weights, gradients and moments, gathers a layer's weights (in bf16 on a GPU) just before it runs and
         reduce-scatters its gradients just after; the frozen reference model is sharded the same way. With
         ``update.offload: params`` the shards, their gradients and the optimizer step live in CPU memory
         (torch's CPUOffloadPolicy), which is what fits Qwen3-4B on one 80 GB GPU.

Under fsdp2 every forward pass is a collective (each layer's all-gather), so every process must make the same
number of forward calls in each phase of the update, whatever its shard of the samples: :class:`FSDP2` offers
``agree_max`` for the trainer to pad its passes to the largest count. Gradients are reduce-scattered at every
micro-batch, so they stay sharded (accumulating without a sync would hold a whole unsharded gradient).

:class:`FSDP2` offers the part of accelerate's Accelerator the trainer uses, so pipeline/trainer.py runs the
same loop under either strategy. It runs on CPUs over gloo too (a CPU mesh), which is how the tests check it;
accelerate's own FSDP plugin does not (on a CPU it silently becomes DDP)."""

from __future__ import annotations

import contextlib
import os
import tempfile
import types

import torch
import torch.distributed as dist

STRATEGIES = ("ddp", "fsdp2")


def init_distributed(cpu: bool) -> None:
    """The default process group: from the launcher's environment (RANK, WORLD_SIZE, MASTER_ADDR under
    `accelerate launch` or torchrun), else a group of one (a single process still shards, and offloads)."""
    if dist.is_initialized():
        return
    backend = "gloo" if cpu else "nccl"
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        dist.init_process_group(backend)
        return
    store = dist.FileStore(os.path.join(tempfile.mkdtemp(prefix="erl-pg-"), "store"), 1)
    dist.init_process_group(backend, store=store, rank=0, world_size=1)


def decoder_layers(model) -> list[torch.nn.Module]:
    """The decoder layers of a Hugging Face causal LM (the units FSDP shards and gathers one at a time)."""
    layers = getattr(model.get_decoder(), "layers", None)
    if layers is None:
        raise ValueError(f"update.strategy fsdp2: no decoder layers found in {type(model).__name__}")
    return list(layers)


class FSDP2:
    """The update's runtime under fully_shard: device, processes, and the calls the trainer makes."""

    def __init__(self, bf16: bool, offload: str = "none"):
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, OffloadPolicy

        cuda = torch.cuda.is_available()
        init_distributed(cpu=not cuda)
        self.num_processes, self.process_index = dist.get_world_size(), dist.get_rank()
        self.is_main_process = self.process_index == 0
        if cuda:
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            self.device = torch.device("cuda", local)
        else:
            self.device = torch.device("cpu")
        # An explicit mesh of this device type: without one fully_shard picks the accelerator's type, and on a
        # machine with GPUs a gloo group would then move the model to CUDA (PyTorch issue 132471).
        self.mesh = init_device_mesh(self.device.type, (self.num_processes,))
        self.mp = (
            MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
            if bf16
            else MixedPrecisionPolicy()
        )
        self.offload = CPUOffloadPolicy(pin_memory=cuda) if offload == "params" else OffloadPolicy()

    def shard(self, model, trainable: bool = True):
        """``model`` sharded in place: each decoder layer its own group, the rest (embeddings, final norm, the
        output layer, tied or not) the root's. Returns the model."""
        from torch.distributed.fsdp import FSDPModule, fully_shard, register_fsdp_forward_method

        kw = {"mesh": self.mesh, "mp_policy": self.mp, "offload_policy": self.offload}
        for layer in decoder_layers(model):
            fully_shard(layer, **kw)
        fully_shard(model, **kw)
        for m in model.modules():
            if isinstance(m, FSDPModule):
                # Sum the gradients and divide by the processes itself, rather than ask the backend to average:
                # gloo's reduce-scatter has been seen to sum when asked to average (PyTorch issue 162338).
                m.set_force_sum_reduction_for_comms(True)
        # Log-probs call the backbone and the output layer themselves (pipeline/logprobs.py); through a method
        # registered as a forward, the root's parameters are gathered for them as for model(...).
        from pipeline.logprobs import response_logprobs

        def sharded_logprobs(self_, *args, **kwargs):
            return response_logprobs(self_, *args, sharded_call=True, **kwargs)

        model.erl_response_logprobs = types.MethodType(sharded_logprobs, model)
        register_fsdp_forward_method(model, "erl_response_logprobs")
        if not trainable:
            model.requires_grad_(False)
        return model

    # ---- what the trainer calls, as on accelerate's Accelerator -----------------------------------------------

    def autocast(self):
        return contextlib.nullcontext()  # the mixed precision policy computes in bf16 already

    def no_sync(self, model):
        return contextlib.nullcontext()  # every micro-batch reduce-scatters: gradients stay sharded

    def backward(self, loss) -> None:
        loss.backward()

    def clip_grad_norm_(self, parameters, max_norm: float) -> torch.Tensor:
        norm = torch.nn.utils.clip_grad_norm_(list(parameters), max_norm)
        return norm.full_tensor() if hasattr(norm, "full_tensor") else norm

    def gather(self, t: torch.Tensor) -> torch.Tensor:
        parts = [torch.zeros_like(t) for _ in range(self.num_processes)]
        dist.all_gather(parts, t.contiguous())
        return torch.cat(parts)

    def agree_max(self, n: int) -> int:
        """The largest ``n`` of all processes (how many forward calls each must make in a phase)."""
        t = torch.tensor([n], dtype=torch.long, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return int(t.item())

    def gather_object(self, obj) -> list:
        out: list = [None] * self.num_processes
        dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj):
        """The main process's ``obj`` on every process (a small picklable value, e.g. a path)."""
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def wait_for_everyone(self) -> None:
        dist.barrier()

    def full_state_dict(self, model) -> dict:
        """The whole model's state dict on the main process (CPU tensors), {} on the others; every process calls it."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def agree_max(runtime, n: int) -> int:
    """How many forward calls every process makes for a phase in which this one needs ``n``: the largest count
    under fsdp2 (each forward is a collective); ``n`` itself otherwise."""
    return runtime.agree_max(n) if isinstance(runtime, FSDP2) else n


def all_sum(runtime, values: list[float]) -> list[float]:
    """``values`` summed over the processes (each process passes its own); themselves with one process."""
    if runtime.num_processes == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=runtime.device)
    if isinstance(runtime, FSDP2):
        dist.all_reduce(t)
    else:
        t = runtime.reduce(t, reduction="sum")
    return t.tolist()


def is_sharded(model) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)
