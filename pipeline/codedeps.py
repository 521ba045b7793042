"""Which source files a stage runs: a walk over its imports, for the environment in use (the project's files, and
those of an environment package outside the project, pipeline/registry.py). dvc.yaml lists exactly these files as the stage's code dependencies, the lineage footer hashes the same files,
and a stage run as a script checks when it ends that it imported nothing else. Editing a tool, or the module
of an environment the run does not use, therefore leaves `dvc status` clean. No torch here."""

from __future__ import annotations

import ast
import functools
import importlib.util
import sys
from pathlib import Path

from pipeline.layout import EPOCH_STAGES
from pipeline.registry import BUILTIN, EnvNotFound, module_of

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("pipeline", "stages", "tools")

# Imports whose module name is computed at run time, so no walk over import statements can see them:
# reaching the key module means the run may also import these ("{env_module}": the module of env.name's class,
# a built-in's or an outside package's; "{env}": env.name).
RUNTIME_IMPORTS: dict[str, tuple[str, ...]] = {
    "pipeline.envs": ("{env_module}",),  # find() imports the environment by name
    "pipeline.tiny.warmstart": ("pipeline.tiny.{env}",),  # a built-in game's exercises (its warmstart() hook)
    "stages.epochs": tuple(f"stages.{s}" for s in EPOCH_STAGES),  # runs the steps of an epoch by name
    "stages.validate": tuple(m.partition(":")[0] for m in BUILTIN.values()),  # checks every built-in's section
}


@functools.cache
def _package_root(top: str) -> Path | None:
    """The directory an outside top-level package or module is found in (its package is not imported)."""
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations))).resolve().parent
    return Path(spec.origin).resolve().parent if spec.origin and spec.origin.endswith(".py") else None


def module_file(name: str, outside: str | None = None) -> Path | None:
    """The source file of module ``name`` (a package's __init__.py), or None when there is none: the project's
    modules, and those of ``outside`` (the top-level package of an environment that lives outside the project)."""
    top = name.split(".")[0]
    if top in PACKAGES:
        root = ROOT
    elif top == outside:
        root = _package_root(top)
        if root is None:
            return None
    else:
        return None
    base = root.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def env_module(env: str) -> str | None:
    """The module of environment ``env``'s class (None when no environment has that name: validate says so)."""
    try:
        return module_of(env)
    except EnvNotFound:
        return None


def _outside(env: str) -> str | None:
    """The top-level package of ``env``'s module when it is not the project's."""
    module = env_module(env)
    top = module.split(".")[0] if module else None
    return top if top and top not in PACKAGES else None


def _imported(name: str, path: Path, outside: str | None = None) -> set[str]:
    """Project modules named by the import statements of one file, wherever they stand (function bodies too:
    a lazy import is still an import the stage may run)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)  # `from pkg import module`
    return {m for m in found if module_file(m, outside) is not None}


def _with_parents(name: str) -> list[str]:
    """Importing a.b.c runs a/__init__.py and a/b/__init__.py first."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


@functools.cache
def stage_modules(stage: str, env: str) -> tuple[str, ...]:
    """Every module ``stages.<stage>`` can import when ``env.name`` is ``env``, sorted: the project's, and those of
    an environment package outside it."""
    outside, module = _outside(env), env_module(env) or ""
    todo, seen = [f"stages.{stage}"], set()
    while todo:
        name = todo.pop()
        for mod in _with_parents(name):
            path = module_file(mod, outside)
            if mod in seen or path is None:
                continue
            seen.add(mod)
            todo.extend(_imported(mod, path, outside))
            todo.extend(t.format(env=env, env_module=module) for t in RUNTIME_IMPORTS.get(mod, ()))
    return tuple(sorted(seen))


def stage_files(stage: str, env: str) -> list[str]:
    """The source files of :func:`stage_modules`, sorted: relative to the project root (POSIX paths), absolute for
    an environment package installed elsewhere."""
    outside = _outside(env)
    out = []
    for m in stage_modules(stage, env):
        path = module_file(m, outside)
        out.append(path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.as_posix())
    return sorted(out)


def loaded_files() -> set[str]:
    """The project's source files this process has imported (relative POSIX paths)."""
    out = set()
    for mod in list(sys.modules.values()):
        f = getattr(mod, "__file__", None)
        if not f:
            continue
        p = Path(f).resolve()
        if p.suffix == ".py" and p.is_relative_to(ROOT) and p.relative_to(ROOT).parts[0] in PACKAGES:
            out.add(p.relative_to(ROOT).as_posix())
    return out


def undeclared(stage: str, env: str) -> list[str]:
    """Project files this process imported that the stage's declared code dependencies lack: empty unless the
    walk above misses an import (then dvc.yaml would not rerun the stage when that file changes)."""
    return sorted(loaded_files() - set(stage_files(stage, env)))
