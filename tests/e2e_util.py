"""Make a throwaway copy of the project in a temporary Git + DVC repository with tiny settings."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

TINY = {
    "env": {"n_train": 60, "n_test": 12},
    "policy": {
        "tiny": {
            "hidden_size": 32,
            "layers": 2,
            "heads": 2,
            "intermediate_size": 64,
            "warmstart_steps": 20,
            "warmstart_batch_size": 16,
        }
    },
    "sample": {"tasks_per_epoch": 6},
    "evaluate": {"samples_per_task": 1},
    "reflect": {"sampling": {"max_new_tokens": 12}},
    "consolidate": {"skip_zero_advantage": False},  # keep every kind of sample even when no task succeeds
    "train": {"epochs": 2},
}


def deep_update(base: dict, over: dict) -> dict:
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            deep_update(base[k], v)
        else:
            base[k] = v
    return base


def env() -> dict:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))  # an environment package's too
    e = dict(os.environ, HF_HUB_OFFLINE="1", DVC_NO_ANALYTICS="1", PYTHONPATH=path)
    e["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{e.get('PATH', '')}"
    return e


def run(args, cwd, check=True, **kw):
    return subprocess.run(args, cwd=cwd, env=env(), capture_output=True, text=True, check=check, **kw)


def make_project(dst: Path, overrides: dict | None = None, base: str = "params.yaml", tiny: bool = True) -> Path:
    """A Git + DVC copy of the project in ``dst`` (pipeline/, stages/, generated dvc.yaml, one commit) with
    ``base`` (params.yaml, or a preset of presets/, expanded) + TINY (unless ``tiny`` is false) + overrides: the sandbox `erl bench` and `erl compare`
    run in."""
    from pipeline.config import expand
    from tools.bench import make_copy

    params = deep_update(
        expand(ROOT / base),
        deep_update(copy.deepcopy(TINY) if tiny else {}, overrides or {}),
    )
    make_copy(dst, params)
    return dst


def dvc(dst: Path, *args, check=True, timeout=1200):
    return run([sys.executable, "-m", "dvc", *args], dst, check=check, timeout=timeout)
