"""What an update continues from and leaves behind, beside the policy/ directory (pipeline/checkpoint.py): the
model in fp32 for training (the fp32 master weights of train_state/ when the storage dtype is not fp32), the AdamW
moments, and the whole checkpoint an update writes. Safetensors only, no pickle."""

from __future__ import annotations

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


def load_for_training(policy_dir: Path, dtype: str, device: str = "cpu"):
    """(model in fp32, tokenizer) for an update: the fp32 master weights of the epoch when its train state has
    them, else the stored weights cast up (exact: every bf16 value is an fp32 value)."""
    import torch
    from safetensors.torch import load_file

    from pipeline.engine import load_causal_lm

    model, tok = load_causal_lm(str(policy_dir), "float32", device=device)
    master = Path(policy_dir).parent / STATE / MASTER_FILE
    if master.is_file():
        sd = load_file(str(master))
        missing = set(dict(model.named_parameters())) - set(sd)
        if missing:
            raise CheckpointError(f"{master}: no master weights for {sorted(missing)[:3]}")
        with torch.no_grad():
            for name, q in model.named_parameters():
                q.copy_(sd[name])
    return model, tok


def load_optimizer_state(optimizer, named_params: list[tuple[str, object]], path: Path) -> None:
    """Load AdamW moments saved by :func:`save_train_state` into ``optimizer`` (matched by parameter name)."""
    from safetensors.torch import load_file

    flat = load_file(str(path))
    by_name = dict(named_params)
    state: dict = {}
    for key, v in flat.items():
        name, field = key.rsplit(".", 1)
        if name not in by_name:
            raise CheckpointError(f"{path}: optimizer state for unknown parameter {name!r}")
        state.setdefault(by_name[name], {})[field] = v
    sd = optimizer.state_dict()
    ids = {}  # parameter -> the integer id optimizer.state_dict() gives it
    for group, group_sd in zip(optimizer.param_groups, sd["param_groups"]):
        ids.update((id(q), i) for q, i in zip(group["params"], group_sd["params"]))
    sd["state"] = {ids[id(q)]: st for q, st in state.items()}
    optimizer.load_state_dict(sd)


def save_train_state(out: Path, named_params: list[tuple[str, object]], optimizer, master: bool) -> None:
    """AdamW moments keyed '<parameter name>.<state name>' and, with ``master``, the fp32 parameters themselves,
    as safetensors in ``out`` (written atomically)."""
    import torch
    from safetensors.torch import save_file

    out = Path(out)
    tmp = temp_dir(out)
    try:
        index = {id(q): name for name, q in named_params}
        tensors = {}
        for q, st in optimizer.state.items():
            for k, v in st.items():
                t = v if torch.is_tensor(v) else torch.tensor(v)
                tensors[f"{index[id(q)]}.{k}"] = t.detach().cpu().contiguous()
        save_file(tensors, str(tmp / OPTIMIZER_FILE))
        if master:
            save_file({n: q.detach().float().cpu().contiguous() for n, q in named_params}, str(tmp / MASTER_FILE))
        replace_dir(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def save_update(update, epoch_dir: Path, dtype: str, max_shard_size: str, carry: bool) -> None:
    """The checkpoint an update produced: policy/ in the storage dtype, train_state/ when the optimizer state is
    carried (with the fp32 master weights when the storage dtype is not fp32), then checkpoint.json. Every
    process calls it (gathering a sharded model is collective); the main process writes."""
    acc = update.accelerator
    state_dict = acc.get_state_dict(update.model)
    if not acc.is_main_process:
        return
    model = acc.unwrap_model(update.model)
    epoch_dir = Path(epoch_dir)
    save_policy(
        model, update.tokenizer, epoch_dir / POLICY, None if dtype == "float32" else dtype, max_shard_size, state_dict
    )
    if carry:
        save_train_state(epoch_dir / STATE, list(model.named_parameters()), update.optimizer, dtype != "float32")
    write_manifest(epoch_dir)
