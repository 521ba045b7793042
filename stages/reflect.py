"""reflect: reflections (step 3 of the round, pipeline/erl/reflect.py). For every failed first attempt (reward <
consolidate.tau) the same policy, under the reflector prompt, reads the attempt summary, the feedback and the
latest memory version and writes a revised system prompt inside <prompt>...</prompt>. RLVR and the
no-reflection ablation write an empty table with the same schema.

  python -m stages.reflect --epoch 1

Reads the policy of epoch-1, feedback and memory of epoch-1; writes reflections.parquet.
"""

from __future__ import annotations

import logging

from pipeline import stagekit
from pipeline.artifacts import read_rows, write_table
from pipeline.erl.reflect import reflections
from pipeline.policy import Policy

log = logging.getLogger("erl")
KEYS = ("seed", "algorithm", "ablation", "env.name", "policy", "reflect", "consolidate.tau")


def main(argv=None) -> None:
    ctx = stagekit.parse("reflect", __doc__, argv=argv)
    with stagekit.stage_errors("reflect"):
        p, e = ctx.params, ctx.epoch
        inputs = [ctx.policy(e - 1), ctx.path("feedback"), ctx.path("memory", e - 1)]
        rows = reflections(
            p,
            e,
            read_rows("feedback", ctx.path("feedback")),
            read_rows("memory", ctx.path("memory", e - 1)),
            Policy(p, ctx.policy(e - 1)),
        )
        if ctx.main_process:
            lineage = ctx.lineage(inputs, KEYS, policy=ctx.policy(e - 1))
            write_table("reflections", rows, ctx.path("reflections"), lineage)
        log.info("%d reflections (%d with a <prompt> block)", len(rows), sum(r["has_tag"] for r in rows))


if __name__ == "__main__":
    stagekit.script(main, "reflect")
