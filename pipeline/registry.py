"""What an environment name (``env.name``) stands for, as a ``module:Class`` reference, found without importing
anything: a built-in, an entry point of an installed package in the ``erl.environments`` group, or a reference
written out. pipeline/envs imports the class; pipeline/codedeps reads the module, to list its files as the stages'
code dependencies. Nothing here imports an environment."""

from __future__ import annotations

import importlib.metadata

from pipeline.errors import InputError

GROUP = "erl.environments"
BUILTIN = {
    "frozenlake": "pipeline.envs.frozenlake:FrozenLake",
    "sokoban": "pipeline.envs.sokoban:Sokoban",
    "qa": "pipeline.envs.qa:QA",
}


class EnvNotFound(InputError):
    """``env.name`` names no environment; the message says what was looked for, on one line."""


def reference(name: str) -> str:
    """The ``module:Class`` environment ``name`` stands for (read from the package metadata; nothing imported)."""
    if name in BUILTIN:
        return BUILTIN[name]
    if ":" in name:
        return name
    found = importlib.metadata.entry_points(group=GROUP).select(name=name)
    if found:
        return next(iter(found)).value
    raise EnvNotFound(
        f"env.name: no environment {name!r}: not a built-in ({', '.join(BUILTIN)}), no installed package has an "
        f"entry point {name!r} in the group {GROUP!r}, and it is not a package.module:Class reference"
    )


def module_of(name: str) -> str:
    """The module the class of environment ``name`` lives in."""
    return reference(name).partition(":")[0]


def distribution_of(module: str) -> tuple[str, str] | None:
    """(name, version) of the installed distribution that provides top-level package of ``module``; None for the
    project's own modules or a package that is not installed as a distribution (on PYTHONPATH only)."""
    top = module.split(".")[0]
    for dist in importlib.metadata.packages_distributions().get(top, []):
        try:
            return dist, importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None
