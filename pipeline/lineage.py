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

PACKAGE_ROOT = Path(__file__).resolve().parent.parent


@functools.lru_cache(maxsize=1)
def code_version() -> dict:
    """sha256 over the sources of pipeline/ and stages/ (works without Git), plus the Git commit if any."""
    h = hashlib.sha256()
    for sub in ("pipeline", "stages"):
        for f in sorted((PACKAGE_ROOT / sub).rglob("*.py")):
            h.update(f.relative_to(PACKAGE_ROOT).as_posix().encode() + b"\0" + f.read_bytes())
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PACKAGE_ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"code_sha256": h.hexdigest(), "git_commit": commit, "packages": package_versions()}


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


def stage_lineage(stage: str, epoch: int | None, inputs: list[Path], params: dict, policy: Path | None = None) -> dict:
    hashes = {Path(p).as_posix(): sha256_path(p) for p in inputs}
    return {
        "stage": stage,
        "epoch": epoch,
        "inputs": hashes,
        "params": params,
        "code": code_version(),
        "policy_sha256": hashes.get(Path(policy).as_posix()) if policy is not None else None,
    }
