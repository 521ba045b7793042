"""Environment registry: ``env.name`` in params.yaml picks one."""
from __future__ import annotations

from pathlib import Path

from pipeline import dag
from pipeline.envs.base import Env, Step, Task, Trace


def make_env(env_params, artifacts: Path = dag.ARTIFACTS) -> Env:
    """The environment ``env_params`` describes. ``artifacts``: the artifact root, where environments with
    files built by the init stage (the QA search index) find them."""
    if env_params.name == "frozenlake":
        from pipeline.envs.frozenlake import FrozenLake

        return FrozenLake(**env_params.frozenlake.model_dump())
    if env_params.name == "sokoban":
        from pipeline.envs.sokoban import Sokoban

        return Sokoban(**env_params.sokoban.model_dump())
    if env_params.name == "qa":
        from pipeline.envs.qa import QA

        return QA(**env_params.qa.model_dump(), index_path=dag.qa_index_path(artifacts))
    raise ValueError(f"env.name: unknown environment {env_params.name!r}")


def budget_of(env_params) -> int:
    return getattr(env_params, env_params.name).budget


__all__ = ["Env", "Step", "Task", "Trace", "make_env", "budget_of"]
