"""report: per-epoch history for `dvc plots show`, final metrics for `dvc metrics show`, PNG plots and a
Markdown + HTML report under reports/. Needs no model.

  python -m stages.report
"""
from __future__ import annotations

import logging
from collections import defaultdict

from pipeline import dag, stagekit
from pipeline.artifacts import read_rows
from pipeline.report import load_history, write_report

log = logging.getLogger("erl")
KEYS = ("seed", "algorithm", "env", "train")


def top_reflections(ctx, epochs: int, k: int = 10) -> list[dict]:
    """Reflections ranked by the total advantage of the samples they produced (reflection, second, distilled)."""
    total: dict[str, float] = defaultdict(float)
    text: dict[str, str] = {}
    for e in range(1, epochs + 1):
        for r in read_rows("reflections", ctx.path("reflections", e)):
            text[r["reflection_id"]] = r["reflection"]
        for s in read_rows("samples", ctx.path("samples", e)):
            if s["reflection_id"]:
                total[s["reflection_id"]] += s["advantage"]
    ranked = sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
    return [{"reflection_id": rid, "total_advantage": adv, "reflection": text.get(rid, "")} for rid, adv in ranked]


def main(argv=None) -> None:
    ctx = stagekit.parse("report", __doc__, needs_epoch=False, argv=argv)
    with stagekit.stage_errors("report"):
        p = ctx.params
        epochs = p.train.epochs
        rows = load_history([dag.metrics_path(e, ctx.root) for e in range(0, epochs + 1)])
        run = {"algorithm": p.algorithm + ("-no-memory" if p.ablation.no_memory else "")
               + ("-no-reflection" if p.ablation.no_reflection else ""), "env": p.env.name, "seed": p.seed}
        summary = write_report(rows, dag.REPORTS, run, top_reflections(ctx, epochs))
        log.info("final held-out success %s; wrote %s", summary.get("eval_success"), dag.REPORTS)


if __name__ == "__main__":
    main()
