"""validate: check params.yaml, and that dvc.yaml was generated from it, before any other stage runs. Every
stage depends on this stage's output, so `dvc repro` runs it first whenever params.yaml changes, and a bad
value (or a graph change such as a new train.epochs) stops the run with a one-line error before DVC has removed
any stage's outputs. Its output never changes, so a valid edit reruns only the stages that read what changed.

  python -m stages.validate
"""

from __future__ import annotations

import sys
from pathlib import Path

from pipeline import graph, stagekit
from pipeline.artifacts import write_text
from pipeline.config import check_expanded, check_footprint

KEYS: tuple[str, ...] = ()  # the stage depends on the whole of params.yaml as a file


def main(argv=None) -> None:
    ctx = stagekit.parse("validate", __doc__, needs_epoch=False, argv=argv, check=check_params)
    with stagekit.stage_errors("validate"):
        dvc_yaml = Path("dvc.yaml")
        want = graph.shape(ctx.params)
        if dvc_yaml.exists() and dvc_yaml.read_text() != graph.render(ctx.params):
            have = graph.generated_for(dvc_yaml.read_text())
            why = (
                f"it was generated for {have}; params.yaml now gives {want}"
                if have and have != want
                else "its stages differ from what params.yaml and the code give"
            )
            print(
                f"error: dvc.yaml is out of step with params.yaml ({why}). Run `erl dvc-yaml` and then `dvc repro`, "
                f"or for an experiment `erl exp run -S key=value`, which does both.",
                file=sys.stderr,
            )
            raise SystemExit(2)
        warn_package_drift(ctx.root)
        write_text("params.yaml and dvc.yaml were checked by stages/validate.py\n", ctx.root / graph.VALIDATED.name)


def check_params(params, path: Path) -> None:
    """What validate checks beyond each key's own range, before anything is written: params.yaml holds its values
    itself (no `extends`), the environment exists and takes its settings and prompt set, and the run's tables fit
    this machine's free memory."""
    from pipeline.envs import budget_of, check_sections

    check_expanded(path)
    check_sections(params.env, params.policy.prompts, path)
    check_footprint(params, path, budget=budget_of(params.env))


def warn_package_drift(root: Path) -> None:
    """Warn when the packages that change numbers differ from those the run's first artifacts recorded."""
    from pipeline.artifacts import SchemaError, read_lineage
    from pipeline.lineage import package_drift

    first = root / "init" / "tasks_train.parquet"
    try:
        recorded = read_lineage(first)["code"]["packages"]
    except (OSError, SchemaError, KeyError, ValueError):
        return
    drift = package_drift(recorded)
    if drift:
        print(
            f"warning: installed packages differ from those that made {first} ({'; '.join(drift)}): rerun "
            "stages need not reproduce the recorded bytes; `bash scripts/setup.sh` installs the pinned versions "
            "(constraints.txt)",
            file=sys.stderr,
        )


if __name__ == "__main__":
    stagekit.script(main, "validate")
