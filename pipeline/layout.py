"""Names of the stages and of their per-epoch artifacts: the one place the DVC graph, the stages, the
Prefect flow and the audit code agree on. No torch, no heavy imports."""

from __future__ import annotations

from pathlib import Path

# One epoch = one experience -> reflection -> consolidation round, in this order.
EPOCH_STAGES: tuple[str, ...] = ("sample", "feedback", "reflect", "retry", "consolidate", "update", "evaluate")
# The per-epoch tables each step writes (artifacts/epoch_NNN/<table>.parquet), in the order of the steps.
EPOCH_TABLES: dict[str, tuple[str, ...]] = {
    "sample": ("attempts",),
    "feedback": ("feedback",),
    "reflect": ("reflections",),
    "retry": ("retries",),
    "consolidate": ("samples", "memory"),
    "update": ("updates", "steps"),
    "evaluate": ("eval", "eval_retries"),
}
TABLES: tuple[str, ...] = tuple(t for step in EPOCH_STAGES for t in EPOCH_TABLES[step])
# The stages that compute with torch (a model): their lineage records the torch settings in force.
MODEL_STAGES: tuple[str, ...] = ("init", "sample", "reflect", "retry", "update", "evaluate")
# Every stage script (stages/<name>.py): validate checks params first, epochs runs whole epochs in one process.
STAGES: tuple[str, ...] = ("validate", "init", *EPOCH_STAGES, "epochs", "report")
ARTIFACTS = Path("artifacts")
INIT_DIR = ARTIFACTS / "init"


def stage_name(stage: str, epoch: int | None = None) -> str:
    """DVC stage name: ``init``, ``report`` or ``<stage>_e<epoch>`` (e.g. ``update_e3``)."""
    return stage if epoch is None else f"{stage}_e{epoch}"


def epoch_blocks(epochs: int, per_stage: int) -> list[tuple[int, int]]:
    """(first, last) epochs of each multi-epoch stage when ``train.epochs_per_stage`` is ``per_stage`` >= 1."""
    return [(a, min(a + per_stage - 1, epochs)) for a in range(1, epochs + 1, per_stage)]


def block_name(first: int, last: int) -> str:
    """DVC stage running epochs ``first``..``last`` in one process: ``epoch_e3`` or ``epochs_e1-e5``."""
    return f"epoch_e{first}" if first == last else f"epochs_e{first}-e{last}"


def training_stages(epochs: int, per_stage: int = 0) -> list[tuple[str, list[int]]]:
    """The DVC stages between ``evaluate_e0`` and ``report``, in order, each with the epochs whose metrics
    exist once it has run: one stage per step (``per_stage`` 0) or one per block of epochs."""
    if per_stage <= 0:
        return [(stage_name(s, e), [e] if s == "evaluate" else []) for e in range(1, epochs + 1) for s in EPOCH_STAGES]
    return [(block_name(a, b), list(range(a, b + 1))) for a, b in epoch_blocks(epochs, per_stage)]


def table_path(table: str, epoch: int, root: Path = ARTIFACTS) -> Path:
    """Where epoch ``epoch``'s ``table`` is (memory.parquet of epoch 0 is init's empty memory)."""
    return epoch_dir(epoch, root) / f"{table}.parquet"


def epoch_dir(epoch: int, root: Path = ARTIFACTS) -> Path:
    """Folder of one epoch's artifacts; epoch 0 is the init stage's output."""
    return root / "init" if epoch == 0 else root / f"epoch_{epoch:03d}"


def policy_dir(epoch: int, root: Path = ARTIFACTS) -> Path:
    """Checkpoint after ``epoch`` updates (epoch 0 = the initial policy written by init)."""
    return epoch_dir(epoch, root) / "policy"


def state_dir(epoch: int, root: Path = ARTIFACTS) -> Path:
    """What the update after ``epoch`` continues from: AdamW moments and fp32 master weights (pipeline/checkpoint.py)."""
    return epoch_dir(epoch, root) / "train_state"


def checkpoint_path(epoch: int, root: Path = ARTIFACTS) -> Path:
    """The manifest of an epoch's checkpoint (sha256 of every file): what later stages depend on in dvc.yaml."""
    return epoch_dir(epoch, root) / "checkpoint.json"


def qa_index_path(root: Path = ARTIFACTS) -> Path:
    """The QA environment's search index (SQLite FTS5), built by init when ``env.name`` is ``qa``."""
    return epoch_dir(0, root) / "qa_index.sqlite"


def metrics_path(epoch: int, root: Path = ARTIFACTS) -> Path:
    return epoch_dir(epoch, root) / "metrics.json"


REPORTS = Path("reports")
