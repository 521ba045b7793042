"""Environment registry: ``env.name`` in params.yaml names the module ``pipeline.envs.<name>``, imported only
when used, so a run depends on the code of its own environment alone (see pipeline/codedeps.py)."""

from __future__ import annotations

import importlib
from pathlib import Path

from pipeline import layout
from pipeline.envs.base import Env, Step, Task, Trace

CLASSES = {"frozenlake": "FrozenLake", "sokoban": "Sokoban", "qa": "QA"}


def make_env(env_params, artifacts: Path = layout.ARTIFACTS) -> Env:
    """The environment ``env_params`` (params.env) names, built from its section of the params. ``artifacts``:
    the artifact root, where environments with files built by the init stage (the QA search index) find them."""
    name = env_params.name
    if name not in CLASSES:
        raise ValueError(f"env.name: unknown environment {name!r}")
    cls = getattr(importlib.import_module(f"pipeline.envs.{name}"), CLASSES[name])
    if name == "qa":
        return cls(env_params.qa, index_path=layout.qa_index_path(artifacts))
    return cls(getattr(env_params, name))


def budget_of(env_params) -> int:
    return getattr(env_params, env_params.name).budget


__all__ = ["Env", "Step", "Task", "Trace", "make_env", "budget_of"]
