"""epochs: run whole epochs in one process. For each epoch from --first to --last, the seven steps (sample,
feedback, reflect, retry, consolidate, update, evaluate) run in order through the very same stage code as
the one-stage-per-step graph, so they read and write the same artifacts with the same schemas, row ids and
lineage footers. What changes is start-up: torch and transformers are imported once per block instead of
once per step, and DVC checks one stage instead of seven per epoch.

  python -m stages.epochs --first 1 --last 5

Chosen by ``train.epochs_per_stage`` (k >= 1: one such DVC stage per k epochs; 0: one stage per step).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import time
from pathlib import Path

from pipeline import layout, stagekit
from pipeline.config import load_or_exit, union_keys

log = logging.getLogger("erl")


KEYS = union_keys(*(importlib.import_module(f"stages.{s}").KEYS for s in layout.EPOCH_STAGES))


def first_unfinished(p, root: Path, first: int, last: int, keys: dict[str, tuple[str, ...]]) -> int:
    """The first epoch of ``first``..``last`` whose artifacts are not all there and current: every table's lineage
    footer names this code, these params and inputs that are still on disk unchanged, the checkpoint matches its
    manifest, and the metrics exist. DVC keeps a block's outputs (persist), so a block killed at epoch 3 resumes
    there, with the same outputs as an uninterrupted block: each epoch depends only on what the previous one left
    on disk and on seeds derived from (seed, epoch, row)."""
    from pipeline import checkpoint, lineage

    for e in range(first, last + 1):
        d = layout.epoch_dir(e, root)
        for stage, tables in layout.EPOCH_TABLES.items():
            for t in tables:
                if not lineage.current(layout.table_path(t, e, root), stage, p, keys[stage]):
                    return e
        if not layout.metrics_path(e, root).is_file():
            return e
        try:
            checkpoint.verify(d)
        except checkpoint.CheckpointError:
            return e
    return last + 1


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m stages.epochs",
        description=(__doc__ or "").strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--first", type=int, required=True, help="first epoch to run (1-based)")
    ap.add_argument("--last", type=int, required=True, help="last epoch to run")
    ap.add_argument("--params", default="params.yaml", help="parameter file (default: params.yaml)")
    ap.add_argument("--artifacts", default=str(layout.ARTIFACTS), help="artifact root (default: artifacts)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[epochs] %(message)s", stream=sys.stderr)
    epochs = load_or_exit(args.params).train.epochs
    if not 1 <= args.first <= args.last <= epochs:
        print(
            f"error: need 1 <= --first ({args.first}) <= --last ({args.last}) <= train.epochs ({epochs})",
            file=sys.stderr,
        )
        raise SystemExit(2)
    t0 = time.perf_counter()
    params, root = load_or_exit(args.params), Path(args.artifacts)
    steps = {s: importlib.import_module(f"stages.{s}") for s in layout.EPOCH_STAGES}
    start = first_unfinished(params, root, args.first, args.last, {s: m.KEYS for s, m in steps.items()})
    if start > args.first:
        log.info(
            "epochs %d-%d are finished and match their lineage: resuming at epoch %d", args.first, start - 1, start
        )
    common = ["--params", args.params, "--artifacts", str(root)]
    with stagekit.nested():
        for e in range(start, args.last + 1):
            for mod in steps.values():
                mod.main(["--epoch", str(e)] + common)
    logging.basicConfig(level=logging.INFO, format="[epochs] %(message)s", stream=sys.stderr, force=True)
    work = time.perf_counter() - t0
    from pipeline import policy

    log.info("epochs %d-%d done in %.1f s; generation engines built: %d", args.first, args.last, work, policy.BUILT)
    age = stagekit.process_age()
    if age is not None:  # parsed by `erl bench`, as for a single step
        log.info("timing: process %.3f s, work %.3f s", age, work)


if __name__ == "__main__":
    stagekit.script(main, "epochs")
