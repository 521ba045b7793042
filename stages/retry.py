"""retry: second attempts (step 4 of the round, pipeline/erl/retry.py). Each failed task is attempted again with its
reflection as the system prompt (s0 replaced, format reminder re-appended); in the no-reflection ablation with
s0 + a generic instruction + the raw attempt summary. Each turn is also re-encoded under s0 for the distilled
sample. With retry.control every failed task is also replayed once under s0 alone (never trained), so the gain
a reflection brings over a plain second try is measured. RLVR writes an empty table.

  python -m stages.retry --epoch 1

Reads the policy of epoch-1, tasks, feedback and reflections; writes retries.parquet.
"""

from __future__ import annotations

import logging

from pipeline import stagekit
from pipeline.artifacts import read_rows, write_table
from pipeline.envs import make_env
from pipeline.erl.retry import retries
from pipeline.policy import Policy

log = logging.getLogger("erl")
KEYS = ("seed", "algorithm", "ablation", "env", "policy", "retry", "consolidate.tau")


def main(argv=None) -> None:
    ctx = stagekit.parse("retry", __doc__, argv=argv)
    with stagekit.stage_errors("retry"):
        p, e = ctx.params, ctx.epoch
        inputs = [ctx.policy(e - 1), ctx.tasks_train, ctx.path("feedback"), ctx.path("reflections")]
        rows = retries(
            p,
            e,
            read_rows("feedback", ctx.path("feedback")),
            read_rows("reflections", ctx.path("reflections")),
            read_rows("tasks", ctx.tasks_train),
            Policy(p, ctx.policy(e - 1)),
            make_env(p.env, ctx.root),
        )
        if ctx.main_process:
            write_table("retries", rows, ctx.path("retries"), ctx.lineage(inputs, KEYS, policy=ctx.policy(e - 1)))
        log.info("%d second attempts, %d successes", len(rows), sum(r["success"] for r in rows))


if __name__ == "__main__":
    stagekit.script(main, "retry")
