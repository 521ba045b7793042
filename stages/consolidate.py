"""consolidate: the training samples and the memory (step 5 of the round, pipeline/erl/consolidate.py): first attempts,
reflections, second attempts and distilled second attempts under s0, with their advantages and source ids, and
the next memory version. Needs no model.

  python -m stages.consolidate --epoch 1

Reads attempts, feedback, reflections, retries of the epoch and memory of epoch-1; writes samples.parquet
and memory.parquet.
"""

from __future__ import annotations

import logging
from collections import Counter

from pipeline import stagekit
from pipeline.artifacts import read_rows, write_table
from pipeline.erl.consolidate import consolidate

log = logging.getLogger("erl")
KEYS = ("algorithm", "ablation", "consolidate")
TABLES = ("attempts", "feedback", "reflections", "retries")


def main(argv=None) -> None:
    ctx = stagekit.parse("consolidate", __doc__, argv=argv)
    with stagekit.stage_errors("consolidate"):
        p, e = ctx.params, ctx.epoch
        t = {n: read_rows(n, ctx.path(n)) for n in TABLES}
        memory_rows = read_rows("memory", ctx.path("memory", e - 1))
        samples, memory = consolidate(p, e, t["attempts"], t["feedback"], t["reflections"], t["retries"], memory_rows)
        if ctx.main_process:
            lineage = ctx.lineage([ctx.path(n) for n in TABLES] + [ctx.path("memory", e - 1)], KEYS)
            write_table("samples", samples, ctx.path("samples"), lineage)
            write_table("memory", memory, ctx.path("memory"), lineage)
        log.info(
            "samples by kind: %s; memory versions: %d (+%d)",
            dict(Counter(s["kind"] for s in samples)),
            len(memory),
            len(memory) - len(memory_rows),
        )


if __name__ == "__main__":
    stagekit.script(main, "consolidate")
