"""What an update continues from and leaves behind, beside the policy/ directory (pipeline/checkpoint.py): the
model in fp32 for training, the fp32 master weights (when the storage dtype is not fp32) and the AdamW moments,
and the whole checkpoint an update writes. Safetensors only, no pickle.

train_state/ holds ``master.safetensors`` (parameter name -> fp32 values) and ``optimizer.safetensors``
('<parameter name>.<state name>' -> tensor) when one process saved whole tensors; an update sharded over N
processes (update.strategy: fsdp2) saves ``master-RRRRR-of-NNNNN.safetensors`` and ``optimizer-...`` per process,
each holding its own rows of every tensor, with the row offset of each in the file's metadata. Reading takes the
rows a process needs from whichever files hold them, so the number of processes may change between epochs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from pipeline.checkpoint import (
    MASTER_FILE,
    OPTIMIZER_FILE,
    POLICY,
    STATE,
    CheckpointError,
    replace_dir,
    save_policy,
    temp_dir,
    write_manifest,
)

ROWS = "erl.rows"  # safetensors metadata of a shard file: JSON {tensor key: offset of its first row}


def _shard_name(base: str, rank: int, world: int) -> str:
    return base if world == 1 else base.replace(".safetensors", f"-{rank:05d}-of-{world:05d}.safetensors")


def _files(state_dir: Path, base: str) -> list[Path]:
    stem = base.removesuffix(".safetensors")
    return sorted(Path(state_dir).glob(f"{stem}.safetensors")) + sorted(
        Path(state_dir).glob(f"{stem}-*-of-*.safetensors")
    )


def _rows_of(t) -> tuple[int, object]:
    """(offset of the first row, local tensor) of a parameter or state tensor: its shard when it is a DTensor."""
    if hasattr(t, "to_local"):
        from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

        _, offset = compute_local_shape_and_global_offset(t.shape, t.device_mesh, t.placements)
        return (offset[0] if offset else 0), t.to_local()
    return 0, t


class _Reader:
    """The rows of tensors spread over the shard files of one kind (master or optimizer)."""

    def __init__(self, state_dir: Path, base: str):
        from safetensors import safe_open

        self.files = []
        for path in _files(state_dir, base):
            f = safe_open(str(path), framework="pt")
            meta = f.metadata() or {}
            offsets = json.loads(meta[ROWS]) if ROWS in meta else {}
            self.files.append((path, f, offsets))
        if not self.files:
            raise CheckpointError(f"{Path(state_dir) / base}: missing (no {base} or shards of it)")

    def keys(self) -> set[str]:
        return {k for _, f, _ in self.files for k in f.keys()}

    def read(self, key: str, start: int, rows: int | None, like):
        """Rows [start, start + rows) of ``key`` (the whole tensor when rows is None or it has no rows)."""
        import torch

        parts, covered = [], 0
        for _, f, offsets in self.files:
            if key not in f.keys():
                continue
            sl = f.get_slice(key)
            shape = sl.get_shape()
            if not shape or rows is None:
                return f.get_tensor(key)
            lo = offsets.get(key, 0)
            a, b = max(start, lo), min(start + rows, lo + shape[0])
            if a < b:
                parts.append(sl[a - lo : b - lo])
                covered += b - a
        if covered != (rows or 0):
            raise CheckpointError(f"{self.files[0][0].parent}: {key}: rows {start}..{start + rows} not all saved")
        return torch.cat(parts) if parts else torch.zeros((0, *like.shape[1:]), dtype=like.dtype)


def _local_values(named_params, reader: _Reader, suffix: str = "") -> dict:
    """For each parameter, the saved values of ``<name><suffix>`` in the rows it holds (its shard)."""
    out = {}
    for name, q in named_params:
        offset, local = _rows_of(q)
        rows = local.shape[0] if local.dim() else None
        out[name] = reader.read(f"{name}{suffix}", offset, rows, local)
    return out


def load_master(named_params, state_dir: Path) -> bool:
    """Copy the saved fp32 master weights into the parameters (each its own rows); False when none were saved."""
    import torch

    if not _files(state_dir, MASTER_FILE):
        return False
    reader = _Reader(state_dir, MASTER_FILE)
    missing = {n for n, _ in named_params} - reader.keys()
    if missing:
        raise CheckpointError(f"{state_dir}: no master weights for {sorted(missing)[:3]}")
    values = _local_values(named_params, reader)
    with torch.no_grad():
        for name, q in named_params:
            target = q.to_local() if hasattr(q, "to_local") else q
            target.copy_(values[name])
    return True


def load_for_training(policy_dir: Path, dtype: str, device: str = "cpu"):
    """(model in fp32, tokenizer) for an update: the fp32 master weights of the epoch when its train state has
    them, else the stored weights cast up (exact: every bf16 value is an fp32 value). A sharded update loads the
    master weights after sharding instead (:func:`load_master`)."""
    from pipeline.engine import load_causal_lm

    model, tok = load_causal_lm(str(policy_dir), "float32", device=device)
    load_master(list(model.named_parameters()), Path(policy_dir).parent / STATE)
    return model, tok


def load_optimizer_state(optimizer, named_params: list[tuple[str, object]], state_dir: Path) -> None:
    """Load AdamW moments saved by :func:`save_train_state` into ``optimizer`` (matched by parameter name; each
    parameter its own rows when it is sharded)."""
    reader = _Reader(state_dir, OPTIMIZER_FILE)
    by_name = dict(named_params)
    fields: dict[str, list[str]] = {}
    for key in sorted(reader.keys()):
        name, field = key.rsplit(".", 1)
        if name not in by_name:
            raise CheckpointError(f"{state_dir}: optimizer state for unknown parameter {name!r}")
        fields.setdefault(name, []).append(field)
    state: dict = {}
    for name, fs in fields.items():
        q = by_name[name]
        offset, local = _rows_of(q)
        for field in fs:
            v = reader.read(f"{name}.{field}", offset, local.shape[0] if local.dim() else None, local)
            if hasattr(q, "to_local") and v.dim():  # a shard of a sharded parameter: the same placement
                from torch.distributed.tensor import DTensor

                v = DTensor.from_local(
                    v.to(local.device), q.device_mesh, q.placements, shape=q.shape, stride=q.stride()
                )
            state.setdefault(q, {})[field] = v
    sd = optimizer.state_dict()
    ids = {}  # parameter -> the integer id optimizer.state_dict() gives it
    for group, group_sd in zip(optimizer.param_groups, sd["param_groups"]):
        ids.update((id(q), i) for q, i in zip(group["params"], group_sd["params"]))
    sd["state"] = {ids[id(q)]: st for q, st in state.items()}
    optimizer.load_state_dict(sd)


def save_train_state(out: Path, named_params: list[tuple[str, object]], optimizer, master: bool, runtime=None) -> None:
    """AdamW moments keyed '<parameter name>.<state name>' and, with ``master``, the fp32 parameters themselves,
    as safetensors in ``out`` (written atomically). With a sharded ``runtime`` (pipeline/sharding.FSDP2) every
    process writes its own rows, and all of them call this."""
    import torch
    from safetensors.torch import save_file

    out = Path(out)
    world = runtime.num_processes if runtime is not None else 1
    rank = runtime.process_index if runtime is not None else 0
    tmp = temp_dir(out) if rank == 0 else None
    if world > 1:
        tmp = Path(runtime.broadcast_object(str(tmp) if tmp else None))
    try:
        index = {id(q): name for name, q in named_params}
        tensors, offsets = {}, {}
        for q, st in optimizer.state.items():
            for k, v in st.items():
                key = f"{index[id(q)]}.{k}"
                t = v if torch.is_tensor(v) else torch.tensor(v)
                offsets[key], local = _rows_of(t) if t.dim() else (0, t)
                tensors[key] = local.detach().cpu().contiguous()
        meta = {ROWS: json.dumps(offsets, sort_keys=True)} if world > 1 else None
        save_file(tensors, str(tmp / _shard_name(OPTIMIZER_FILE, rank, world)), metadata=meta)
        if master:
            rows = {}
            for n, q in named_params:
                offsets[n], local = _rows_of(q)
                rows[n] = local.detach().float().cpu().contiguous()
            meta = {ROWS: json.dumps({n: offsets[n] for n in rows}, sort_keys=True)} if world > 1 else None
            save_file(rows, str(tmp / _shard_name(MASTER_FILE, rank, world)), metadata=meta)
        if world > 1:
            runtime.wait_for_everyone()
        if rank == 0:
            replace_dir(tmp, out)
    finally:
        if rank == 0:
            shutil.rmtree(tmp, ignore_errors=True)


def save_update(update, epoch_dir: Path, dtype: str, max_shard_size: str, carry: bool) -> None:
    """The checkpoint an update produced: policy/ in the storage dtype, train_state/ when the optimizer state is
    carried (with the fp32 master weights when the storage dtype is not fp32), then checkpoint.json. Every
    process calls it (gathering a sharded model is collective); the main process writes policy/."""
    from pipeline.sharding import FSDP2

    rt = update.accelerator
    sharded = isinstance(rt, FSDP2)
    state_dict = rt.full_state_dict(update.model) if sharded else rt.get_state_dict(update.model)
    epoch_dir = Path(epoch_dir)
    model = update.model if sharded else rt.unwrap_model(update.model)
    if rt.is_main_process:
        save_policy(
            model,
            update.tokenizer,
            epoch_dir / POLICY,
            None if dtype == "float32" else dtype,
            max_shard_size,
            state_dict,
        )
    if carry and (sharded or rt.is_main_process):
        save_train_state(
            epoch_dir / STATE,
            list(model.named_parameters()),
            update.optimizer,
            dtype != "float32",
            rt if sharded else None,
        )
    if rt.is_main_process:
        write_manifest(epoch_dir)
    if sharded or rt.num_processes > 1:
        rt.wait_for_everyone()  # the others may read the checkpoint next (an engine taking its weights)


def engine_weights(update, dtype: str) -> dict | None:
    """The new weights as the checkpoint stores them (the storage dtype), for an engine in this process to take in
    place; None when this process does not hold the whole model (fsdp2: it reads the checkpoint instead)."""
    from pipeline.checkpoint import storage_state_dict
    from pipeline.sharding import FSDP2

    rt = update.accelerator
    if isinstance(rt, FSDP2):
        return None
    model = rt.unwrap_model(update.model)
    sd = model.state_dict()
    return storage_state_dict(model, sd, dtype) if dtype != "float32" else {k: v.detach() for k, v in sd.items()}
