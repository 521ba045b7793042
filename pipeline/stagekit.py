"""What every stage entry point shares: argument parsing (--epoch, --params, --artifacts), validated
params, the epoch's artifact paths, lineage metadata, and error reporting with a non-zero exit."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

# Every stage runs offline; set before transformers or the hub client is imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

from pipeline import codedeps, guard, layout  # noqa: E402
from pipeline.config import Params, ParamsError, load_or_exit  # noqa: E402
from pipeline.errors import InputError  # noqa: E402
from pipeline.lineage import stage_lineage  # noqa: E402

log = logging.getLogger("erl")


@dataclass
class StageContext:
    stage: str
    epoch: int | None
    params: Params
    root: Path
    params_path: Path = Path("params.yaml")

    def dir(self, epoch: int | None = None) -> Path:
        return layout.epoch_dir(self.epoch if epoch is None else epoch, self.root)

    def path(self, table: str, epoch: int | None = None) -> Path:
        return self.dir(epoch) / f"{table}.parquet"

    def policy(self, epoch: int) -> Path:
        return layout.policy_dir(epoch, self.root)

    @property
    def tasks_train(self) -> Path:
        return layout.epoch_dir(0, self.root) / "tasks_train.parquet"

    @property
    def tasks_test(self) -> Path:
        return layout.epoch_dir(0, self.root) / "tasks_test.parquet"

    @property
    def main_process(self) -> bool:
        """Whether this process writes the stage's outputs: the only one, or rank 0 of a stage started by
        `accelerate launch` (rollout.processes, an update over several processes)."""
        return int(os.environ.get("RANK", "0") or 0) == 0

    def lineage(self, inputs: list[Path], keys: tuple[str, ...], policy: Path | None = None) -> dict:
        return stage_lineage(self.stage, self.epoch, inputs, self.params.sections(*keys), self.params.env.name, policy)


def parse(
    stage: str,
    doc: str | None,
    needs_epoch: bool = True,
    argv: list[str] | None = None,
    min_epoch: int = 1,
    check=None,
) -> StageContext:
    """The stage's arguments and validated params, with the artifact root's lock held. ``check(params, path)``
    may raise ParamsError: it runs before anything is written (exit 2, one line)."""
    ap = argparse.ArgumentParser(
        prog=f"python -m stages.{stage}",
        description=(doc or "").strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if needs_epoch:
        ap.add_argument("--epoch", type=int, required=True, help="ERL round (1-based)")
    ap.add_argument("--params", default="params.yaml", help="parameter file (default: params.yaml)")
    ap.add_argument("--artifacts", default=str(layout.ARTIFACTS), help="artifact root (default: artifacts)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"[{stage}] %(message)s", stream=sys.stderr, force=True)
    params = load_or_exit(args.params)
    if check is not None:
        try:
            check(params, Path(args.params))
        except ParamsError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
    global _ENV
    _ENV = params.env.name
    epoch = getattr(args, "epoch", None)
    if needs_epoch and not min_epoch <= epoch <= params.train.epochs:
        print(f"error: --epoch {epoch} is outside {min_epoch}..train.epochs ({params.train.epochs})", file=sys.stderr)
        raise SystemExit(2)
    root = Path(args.artifacts)
    guard.die_with_parent()
    try:
        guard.hold_lock(root, stage)
    except guard.LockHeld as exc:
        print(f"error: {stage}: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    for gone in guard.sweep(root):
        log.info("removed %s, left by a writer that was killed", gone)
    return StageContext(stage=stage, epoch=epoch, params=params, root=root, params_path=Path(args.params))


_NESTED = False
_ENV: str | None = None  # env.name of the params the last parse() read: which environment's code the stage ran


def script(main, stage: str) -> None:
    """Run a stage's ``main`` as a script, then check that it imported no project file its declared code
    dependencies (dvc.yaml, the lineage footer's hash) lack: such a file could change without DVC rerunning the
    stage. Exit 3 naming the files when it did."""
    main()
    if _ENV is None:
        return
    missing = codedeps.undeclared(stage, _ENV)
    if missing:
        print(
            f"error: {stage}: imported {', '.join(missing)}, which its code dependencies lack "
            f"(pipeline/codedeps.py misses an import; fix the walk, then run `erl dvc-yaml`)",
            file=sys.stderr,
        )
        raise SystemExit(3)


@contextmanager
def nested():
    """Steps run inside one process (stages.epochs): they leave the process timing line to the runner."""
    global _NESTED
    before, _NESTED = _NESTED, True
    try:
        yield
    finally:
        _NESTED = before


@contextmanager
def stage_errors(ctx_name: str):
    """Turn the errors a user can fix (missing or malformed inputs) into one line and exit code 1."""
    t0 = time.perf_counter()
    try:
        yield
    except (FileNotFoundError, InputError, ParamsError) as exc:
        print(f"error: {ctx_name}: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    _wait_for_the_writer()
    work = time.perf_counter() - t0
    age = process_age()
    log.info("done in %.1f s", work)
    if age is not None and not _NESTED:  # parsed by `erl bench`: start-up = process - work
        log.info("timing: process %.3f s, work %.3f s", age, work)


def _wait_for_the_writer() -> None:
    """With several processes (a block of epochs under `accelerate launch`), the others wait here until the main
    process has written the step's tables, which the next step reads. torch is not imported for it: a process
    with a process group has imported it already."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def process_age() -> float | None:
    """Seconds since this process started (Linux /proc), or None elsewhere."""
    try:
        ticks = os.sysconf("SC_CLK_TCK")
        start = int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19]) / ticks
        uptime = float(open("/proc/uptime").read().split()[0])
        return uptime - start
    except (OSError, ValueError, IndexError):
        return None


def dump(obj) -> str:
    return json.dumps(obj, sort_keys=True)
