"""File-level lineage: what every artifact's footer records (stage, epoch, input hashes, parameters read,
code version, policy hash) and the check that recomputes it. No torch here."""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import platform
import subprocess
from pathlib import Path

from pipeline.artifacts import sha256_path
from pipeline.codedeps import ROOT, stage_files
from pipeline.layout import MODEL_STAGES
from pipeline.torchsetup import settings


def code_sha256(files: list[str]) -> str:
    """sha256 over the paths and contents of ``files`` (relative to the project root), in the given order."""
    h = hashlib.sha256()
    for f in files:
        h.update(f.encode() + b"\0" + (ROOT / f).read_bytes())
    return h.hexdigest()


@functools.cache
def code_version(stage: str, env: str) -> dict:
    """The code that ran a stage: sha256 over exactly the files DVC lists as its code dependencies (works
    without Git), the Git commit if any, and the versions of the packages that change numbers."""
    files = stage_files(stage, env)
    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "code_sha256": code_sha256(files),
        "code_files": len(files),
        "git_commit": commit,
        "packages": package_versions(),
        "environment": environment_version(env),
    }


def environment_version(env: str) -> dict:
    """Where environment ``env`` came from: its module and, for one installed as a package, the distribution's
    name and version (its files are hashed with the rest in ``code_sha256``)."""
    from pipeline.codedeps import PACKAGES, env_module
    from pipeline.registry import distribution_of

    module = env_module(env) or ""
    out = {"name": env, "module": module}
    if module and module.split(".")[0] not in PACKAGES:
        found = distribution_of(module)
        out.update({"package": found[0], "version": found[1]} if found else {"package": None})
    return out


# The packages whose versions change numbers: the same code and seed on another torch or transformers
# release need not give the same bytes (the embedded default's warm start did not, across two installs).
NUMERIC_PACKAGES = ("torch", "transformers", "tokenizers", "accelerate", "safetensors", "vllm")


@functools.lru_cache(maxsize=1)
def package_versions() -> dict:
    """Installed versions of NUMERIC_PACKAGES (absent ones left out) and Python, read without importing them."""
    out = {"python": platform.python_version()}
    for name in NUMERIC_PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def package_drift(recorded: dict) -> list[str]:
    """'name: recorded -> installed' for every package that changes numbers whose installed version differs
    from the one a run's lineage recorded (the same code and seed need not give the same bytes then)."""
    now = package_versions()
    return [
        f"{k}: {recorded[k]} -> {now.get(k, 'not installed')}" for k in sorted(recorded) if recorded[k] != now.get(k)
    ]


def stage_lineage(
    stage: str, epoch: int | None, inputs: list[Path], params: dict, env: str, policy: Path | None = None
) -> dict:
    hashes = {Path(p).as_posix(): sha256_path(p) for p in inputs}
    return {
        "stage": stage,
        "epoch": epoch,
        "inputs": hashes,
        "params": params,
        "code": code_version(stage, env),
        "policy_sha256": hashes.get(Path(policy).as_posix()) if policy is not None else None,
        # threads and deterministic kernels in force (pipeline/torchsetup.py), for the stages that use a model
        "torch": settings() if stage in MODEL_STAGES else None,
    }


def current(path: Path, stage: str, params, keys: tuple[str, ...]) -> bool:
    """Whether the table at ``path`` is what running ``stage`` now would write: its footer names the same code
    (sha256 of the stage's files), the same values of the params it reads, and inputs whose files are unchanged
    (a checkpoint deleted by retention counts when its manifest records the same sha256)."""
    import json

    from pipeline.artifacts import SchemaError, read_lineage

    try:
        meta = read_lineage(path)
    except (OSError, SchemaError, ValueError):
        return False
    if meta.get("stage") != stage or meta.get("params") != params.sections(*keys):
        return False
    if meta.get("code", {}).get("code_sha256") != code_version(stage, params.env.name)["code_sha256"]:
        return False
    for name, digest in meta.get("inputs", {}).items():
        p = Path(name)
        if not p.exists():
            manifest = p.parent / "checkpoint.json"
            try:
                if p.name == "policy" and json.loads(manifest.read_text()).get("policy_sha256") == digest:
                    continue
            except (OSError, ValueError):
                pass
            return False
        if sha256_path(p) != digest:
            return False
    return True
