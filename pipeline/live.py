"""Live metrics of a running experiment, where its users look (``train.trackers``):

  dvclive      DVCLive folders that `dvc exp show`, `dvc plots show` and the VS Code extension read while the run
               goes: ``dvclive/steps`` (x = optimizer step across epochs: loss, KL, clipped share, gradient norm,
               learning rate, tokens per second, memory) and ``dvclive/epochs`` (x = epoch: success before and
               after reflection, held-out success, reflections, memory adopted, ...). dvc.yaml declares both at its
               top level; no stage owns them, so DVC neither deletes nor caches them. They are a view: the record
               is each epoch's steps.parquet and metrics.json.
  tensorboard  event files under ``runs/`` (accelerate's TensorBoard tracker; needs the tensorboard package)
  wandb        Weights & Biases, offline unless WANDB_MODE says otherwise (needs the wandb package)

Nothing here needs the network (DVC Studio stays off: DVC_STUDIO_OFFLINE). Only the process that writes a stage's
tables logs. A stage that runs again (a kill, a rerun) first drops its own rows from the DVCLive files, so each
step appears once."""

from __future__ import annotations

import csv
import os
from pathlib import Path

LIVE_DIR = Path("dvclive")
STREAMS = ("steps", "epochs")


def _truncate(folder: Path, start: int) -> None:
    """Drop the rows of step >= ``start`` from a DVCLive folder's .tsv files (a rerun writes them again)."""
    for tsv in (folder / "plots" / "metrics").rglob("*.tsv"):
        with open(tsv, newline="") as f:
            rows = list(csv.reader(f, delimiter="\t"))
        if not rows or "step" not in rows[0]:
            continue
        i = rows[0].index("step")
        keep = [rows[0]] + [r for r in rows[1:] if len(r) > i and r[i].isdigit() and int(r[i]) < start]
        if len(keep) < len(rows):
            with open(tsv, "w", newline="") as f:
                csv.writer(f, delimiter="\t", lineterminator="\n").writerows(keep)


class Live:
    """One stream of live metrics (``steps`` or ``epochs``) for the trackers named; a no-op when none is."""

    def __init__(self, trackers, stream: str, start: int, config: dict | None = None):
        self.stream, self.step = stream, start
        self.dvclive = self.tb = self.wandb = None
        if "dvclive" in trackers:
            os.environ.setdefault("DVC_STUDIO_OFFLINE", "true")
            from dvclive import Live as DVCLive

            folder = LIVE_DIR / stream
            _truncate(folder, start)
            self.dvclive = DVCLive(str(folder), resume=True, save_dvc_exp=False, dvcyaml=None, report=None)
        if "tensorboard" in trackers:
            from accelerate.tracking import TensorBoardTracker

            self.tb = TensorBoardTracker(f"erl-{stream}", "runs")
            self.tb.start()
        if "wandb" in trackers:
            os.environ.setdefault("WANDB_MODE", "offline")
            from accelerate.tracking import WandBTracker

            self.wandb = WandBTracker("erl", name=stream)
            self.wandb.start()
            if config:
                self.wandb.store_init_configuration(config)

    def log(self, values: dict, step: int | None = None) -> None:
        """Metrics of one step (None values left out), at ``step`` or the next one."""
        step = self.step if step is None else step
        values = {k: float(v) for k, v in values.items() if v is not None}
        if self.dvclive is not None:
            self.dvclive.step = step
            for k, v in values.items():
                self.dvclive.log_metric(k, v)
            self.dvclive.next_step()
        for t in (self.tb, self.wandb):
            if t is not None:
                t.log({f"{self.stream}/{k}": v for k, v in values.items()}, step=step)
        self.step = step + 1

    def close(self) -> None:
        if self.dvclive is not None:
            self.dvclive.end()
        for t in (self.tb, self.wandb):
            if t is not None:
                t.finish()


def memory_gib() -> float:
    """Peak memory of this process so far: the GPU's allocated bytes on a GPU, else the resident set."""
    import resource
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
