"""feedback: the verifier (step 2 of the round, pipeline/erl/feedback.py). Rewards, success, the environment's feedback
text and the attempt summary the reflector will read, and GRPO group statistics over each task's rollouts.
Needs no model.

  python -m stages.feedback --epoch 1

Reads artifacts/epoch_NNN/attempts.parquet; writes artifacts/epoch_NNN/feedback.parquet.
"""

from __future__ import annotations

import logging

from pipeline import stagekit
from pipeline.artifacts import read_rows, write_table
from pipeline.envs import make_env
from pipeline.erl.feedback import feedback

log = logging.getLogger("erl")
KEYS = ("env", "policy.prompts", "consolidate.tau")


def main(argv=None) -> None:
    ctx = stagekit.parse("feedback", __doc__, argv=argv)
    with stagekit.stage_errors("feedback"):
        p, e = ctx.params, ctx.epoch
        rows = feedback(p, e, read_rows("attempts", ctx.path("attempts")), make_env(p.env))
        if ctx.main_process:
            write_table("feedback", rows, ctx.path("feedback"), ctx.lineage([ctx.path("attempts")], KEYS))
        n_ok = sum(r["success"] for r in rows)
        log.info("%d attempts, %d successes (%.3f)", len(rows), n_ok, n_ok / max(1, len(rows)))


if __name__ == "__main__":
    stagekit.script(main, "feedback")
