"""sample: first attempts (step 1 of the round, pipeline/erl/attempts.py). The policy of the previous epoch plays
``sample.tasks_per_epoch`` training tasks, ``sample.rollouts_per_task[algorithm]`` times each, under s0.

  python -m stages.sample --epoch 1

Reads artifacts/init/tasks_train.parquet and the policy of epoch-1; writes artifacts/epoch_NNN/attempts.parquet.
"""

from __future__ import annotations

import logging

from pipeline import stagekit
from pipeline.artifacts import read_rows, write_table
from pipeline.envs import make_env
from pipeline.erl.attempts import first_attempts
from pipeline.policy import Policy

log = logging.getLogger("erl")
KEYS = ("seed", "algorithm", "env", "policy", "sample")


def main(argv=None) -> None:
    ctx = stagekit.parse("sample", __doc__, argv=argv)
    with stagekit.stage_errors("sample"):
        p, e = ctx.params, ctx.epoch
        policy = Policy(p, ctx.policy(e - 1))
        rows = first_attempts(p, e, read_rows("tasks", ctx.tasks_train), policy, make_env(p.env, ctx.root))
        if ctx.main_process:
            lineage = ctx.lineage([ctx.tasks_train, ctx.policy(e - 1)], KEYS, policy=ctx.policy(e - 1))
            write_table("attempts", rows, ctx.path("attempts"), lineage)
        log.info("%d first attempts on %d tasks", len(rows), p.sample.tasks_per_epoch)


if __name__ == "__main__":
    stagekit.script(main, "sample")
