"""Which of the project's source files a stage runs: a walk over its imports, for the environment in use.
dvc.yaml lists exactly these files as the stage's code dependencies, the lineage footer hashes the same files,
and a stage run as a script checks when it ends that it imported nothing else. Editing a tool, or the module
of an environment the run does not use, therefore leaves `dvc status` clean. No torch here."""

from __future__ import annotations

import ast
import functools
import sys
from pathlib import Path

from pipeline.layout import EPOCH_STAGES

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("pipeline", "stages", "tools")

# Imports whose module name is computed at run time, so no walk over import statements can see them:
# reaching the key module means the run may also import these ("{env}" is env.name).
RUNTIME_IMPORTS: dict[str, tuple[str, ...]] = {
    "pipeline.envs": ("pipeline.envs.{env}",),  # make_env imports the environment by name
    "pipeline.tiny.warmstart": ("pipeline.tiny.{env}",),  # the warm start's exercises for that environment
    "stages.epochs": tuple(f"stages.{s}" for s in EPOCH_STAGES),  # runs the steps of an epoch by name
}


def module_file(name: str) -> Path | None:
    """The source file of project module ``name`` (a package's __init__.py), or None when there is none."""
    if name.split(".")[0] not in PACKAGES:
        return None
    base = ROOT.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imported(name: str, path: Path) -> set[str]:
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
    return {m for m in found if module_file(m) is not None}


def _with_parents(name: str) -> list[str]:
    """Importing a.b.c runs a/__init__.py and a/b/__init__.py first."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


@functools.cache
def stage_modules(stage: str, env: str) -> tuple[str, ...]:
    """Every project module ``stages.<stage>`` can import when ``env.name`` is ``env``, sorted."""
    todo, seen = [f"stages.{stage}"], set()
    while todo:
        name = todo.pop()
        for mod in _with_parents(name):
            if mod in seen or module_file(mod) is None:
                continue
            seen.add(mod)
            todo.extend(_imported(mod, module_file(mod)))
            todo.extend(t.format(env=env) for t in RUNTIME_IMPORTS.get(mod, ()))
    return tuple(sorted(seen))


def stage_files(stage: str, env: str) -> list[str]:
    """The source files of :func:`stage_modules`, relative to the project root (POSIX paths), sorted."""
    return sorted(module_file(m).relative_to(ROOT).as_posix() for m in stage_modules(stage, env))


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
