"""Policy checkpoints: Hugging Face model directories (config, tokenizer, safetensors; no pickle) that
`from_pretrained` loads like a hub model, and the AdamW moments that travel with them from epoch to epoch."""

from __future__ import annotations

from pathlib import Path

OPTIMIZER_FILE = "optimizer.safetensors"


def save_policy(model, tok, out: Path, state_dict=None) -> None:
    """``model`` and ``tok`` as a Hugging Face directory at ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, state_dict=state_dict)
    tok.save_pretrained(out)


def save_update(update, out: Path) -> None:
    """The checkpoint an update produced (main process only): the unwrapped model, its tokenizer, and the
    optimizer state when it is carried to the next epoch."""
    acc = update.accelerator
    save_policy(acc.unwrap_model(update.model), update.tokenizer, out, state_dict=acc.get_state_dict(update.model))
    if update.carry_optimizer:
        save_optimizer(update.optimizer, Path(out) / OPTIMIZER_FILE)


def save_optimizer(optimizer, path) -> None:
    """AdamW moments as safetensors (no pickle), keyed '<param index>.<state name>'."""
    import torch
    from safetensors.torch import save_file

    state = optimizer.state_dict()["state"]
    tensors = {
        f"{i}.{k}": (v if torch.is_tensor(v) else torch.tensor(v)).detach().cpu().contiguous()
        for i, st in state.items()
        for k, v in st.items()
    }
    save_file(tensors, str(path))


def load_optimizer(optimizer, path) -> None:
    from safetensors.torch import load_file

    flat = load_file(str(path))
    state: dict[int, dict] = {}
    for key, v in flat.items():
        i, name = key.split(".", 1)
        state.setdefault(int(i), {})[name] = v
    sd = optimizer.state_dict()
    sd["state"] = state
    optimizer.load_state_dict(sd)
