"""Environment registry: ``env.name`` in params.yaml picks one."""
from __future__ import annotations

from pipeline.envs.base import Env, Step, Task, Trace


def make_env(env_params) -> Env:
    if env_params.name == "frozenlake":
        from pipeline.envs.frozenlake import FrozenLake

        return FrozenLake(**env_params.frozenlake.model_dump())
    raise ValueError(f"env.name: unknown environment {env_params.name!r}")


def budget_of(env_params) -> int:
    return getattr(env_params, env_params.name).budget


__all__ = ["Env", "Step", "Task", "Trace", "make_env", "budget_of"]
