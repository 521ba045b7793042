"""report: per-epoch history for `dvc plots show`, final metrics for `dvc metrics show`, PNG plots and a
Markdown + HTML report under reports/. Needs no model.

  python -m stages.report
"""

from __future__ import annotations

import logging

from pipeline import layout, stagekit
from pipeline.artifacts import read_rows
from pipeline.report import load_history, top_reflections, write_report

log = logging.getLogger("erl")
KEYS = ("seed", "algorithm", "env", "train")


def main(argv=None) -> None:
    ctx = stagekit.parse("report", __doc__, needs_epoch=False, argv=argv)
    with stagekit.stage_errors("report"):
        p = ctx.params
        epochs = range(1, p.train.epochs + 1)
        rows = load_history([layout.metrics_path(e, ctx.root) for e in range(0, p.train.epochs + 1)])
        run = {
            "algorithm": p.algorithm
            + ("-no-memory" if p.ablation.no_memory else "")
            + ("-no-reflection" if p.ablation.no_reflection else ""),
            "env": p.env.name,
            "seed": p.seed,
        }
        top = top_reflections(
            [read_rows("reflections", ctx.path("reflections", e)) for e in epochs],
            [read_rows("samples", ctx.path("samples", e)) for e in epochs],
        )
        summary = write_report(rows, layout.REPORTS, run, top)
        log.info("final held-out success %s; wrote %s", summary.get("eval_success"), layout.REPORTS)


if __name__ == "__main__":
    stagekit.script(main, "report")
