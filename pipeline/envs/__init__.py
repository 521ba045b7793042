"""Finding an environment by ``env.name``, without editing the library to add one (docs/environments.md):

- a built-in name (frozenlake, sokoban, qa);
- the name of an entry point in the ``erl.environments`` group of an installed package
  (``[project.entry-points."erl.environments"] mygame = "mygame:MyGame"``);
- a ``package.module:Class`` reference to an importable class.

The class subclasses :class:`pipeline.envs.base.Env` and carries its params model (``Params``, the section
``env.<Class.name>`` of params.yaml) and its prompt sets. Modules are imported only when used, so a run depends on
the code of its own environment alone (pipeline/registry.py finds the module without importing it). No torch."""

from __future__ import annotations

import functools
import importlib
from pathlib import Path

from pydantic import ValidationError

from pipeline import layout
from pipeline.envs.base import Env, EnvParamsBase, Step, Task, Trace
from pipeline.registry import BUILTIN, EnvNotFound, module_of, reference


@functools.cache
def find(name: str) -> type[Env]:
    """The environment class ``name`` stands for (see the module docstring); EnvNotFound on one line otherwise."""
    ref = reference(name)
    module, _, attr = ref.partition(":")
    try:
        obj = importlib.import_module(module)
    except ImportError as exc:
        raise EnvNotFound(f"env.name: {name!r}: cannot import {module!r} ({exc})") from None
    for part in attr.split(".") if attr else ():
        obj = getattr(obj, part, None)
    if not (isinstance(obj, type) and issubclass(obj, Env)):
        raise EnvNotFound(f"env.name: {name!r}: {ref} is not a subclass of pipeline.envs.base.Env")
    if not obj.name or not obj.name.isidentifier():
        raise EnvNotFound(f"env.name: {name!r}: {ref} sets no name (the key of its section, env.<name>)")
    return obj


def params_of(env_params, cls: type[Env] | None = None, source: str | Path = "params.yaml") -> EnvParamsBase:
    """The validated settings of the environment ``env_params.name`` (its section ``env.<Class.name>``);
    pipeline.config.ParamsError naming ``env.<section>.<key>`` when they are invalid."""
    from pipeline.config import ParamsError, format_error

    cls = cls or find(env_params.name)
    try:
        return cls.Params.model_validate(env_params.section(cls.name))
    except ValidationError as exc:
        raise ParamsError(format_error(exc, Path(source), prefix=("env", cls.name))) from None


def check_sections(env_params, prompts: str, source: str | Path = "params.yaml") -> None:
    """Validate the environment settings of params (the validate stage): ``env.name`` finds an environment that has
    the prompt set ``prompts`` (policy.prompts) and accepts its section; any other section must be that of a
    findable environment, and valid (a section no environment claims is a misspelt key)."""
    from pipeline.config import ParamsError

    try:
        used = find(env_params.name)
    except EnvNotFound as exc:
        raise ParamsError(f"{source}: {exc}") from None
    settings = params_of(env_params, used, source)
    if prompts not in used.prompts:
        raise ParamsError(
            f"{source}: policy.prompts: {env_params.name!r} has no prompt set {prompts!r} (it has {sorted(used.prompts)})"
        )
    problem = used.check(settings, prompts)
    if problem:
        raise ParamsError(f"{source}: env.{used.name}.{problem}")
    for key in env_params.model_extra or {}:
        if key == used.name:
            continue
        try:
            cls = find(key)
        except EnvNotFound:
            raise ParamsError(f"{source}: env.{key}: no environment of that name (its section is unused)") from None
        params_of(env_params, cls, source)


def with_defaults(raw: dict) -> dict:
    """Params as a mapping (``raw``, e.g. an expanded preset) with every environment section written out: the
    built-ins' and the section of the environment ``env.name`` uses, each its model's defaults under what ``raw``
    gives. What `erl preset` writes to params.yaml, so that DVC sees every value a run reads."""
    env = dict(raw.get("env") or {})
    for name in [*BUILTIN, env.get("name") or "frozenlake"]:
        try:
            cls = find(name)
        except EnvNotFound:
            continue  # validate reports it
        env[cls.name] = {**cls.Params().model_dump(mode="json"), **(env.get(cls.name) or {})}
    return {**raw, "env": env}


def make_env(env_params, artifacts: Path = layout.ARTIFACTS) -> Env:
    """The environment ``env_params`` (params.env) names, built from its section of the params. ``artifacts``:
    the artifact root, where an environment finds the files init built for it (the QA search index)."""
    cls = find(env_params.name)
    return cls(params_of(env_params, cls), artifacts=Path(artifacts))


def budget_of(env_params) -> int:
    """Turns (steps) per episode of the environment in use."""
    return params_of(env_params).budget


__all__ = [
    "Env",
    "EnvNotFound",
    "EnvParamsBase",
    "Step",
    "Task",
    "Trace",
    "budget_of",
    "check_sections",
    "find",
    "make_env",
    "module_of",
    "params_of",
    "with_defaults",
]
