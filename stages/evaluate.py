"""evaluate: held-out first attempts only (step 7 of the round, pipeline/erl.py; s0, no reflection, no memory),
``evaluate.samples_per_task`` samples per test task, plus the epoch's metrics for `dvc metrics show` / `dvc plots
show`. ``--epoch 0`` evaluates the initial policy (the baseline row of the curves).

  python -m stages.evaluate --epoch 3

Writes artifacts/epoch_NNN/eval.parquet and artifacts/epoch_NNN/metrics.json.
"""

from __future__ import annotations

import logging

from pipeline import erl, stagekit
from pipeline.artifacts import read_rows, write_json, write_table
from pipeline.envs import make_env
from pipeline.metrics import eval_metrics, train_metrics
from pipeline.policy import Policy

log = logging.getLogger("erl")
KEYS = ("seed", "env", "policy", "evaluate", "consolidate.tau", "update.micro_batch_tokens")
TRAIN_TABLES = ("feedback", "reflections", "retries", "memory", "samples", "steps")


def main(argv=None) -> None:
    ctx = stagekit.parse("evaluate", __doc__, argv=argv, min_epoch=0)
    with stagekit.stage_errors("evaluate"):
        p, e = ctx.params, ctx.epoch
        rows, inputs, metrics = [], [], {"epoch": e, "eval_kl": None}
        if p.evaluated(e):  # held-out rollouts every evaluate.every epochs; training metrics every epoch
            policy = Policy(p, ctx.policy(e))
            rows, replies = erl.evaluate(p, e, read_rows("tasks", ctx.tasks_test), policy, make_env(p.env, ctx.root))
            inputs = [ctx.policy(e), ctx.tasks_test]
            if e > 0:
                metrics["eval_kl"] = erl.kl_to_initial(p, policy, ctx.policy(0), replies)
                inputs.append(ctx.policy(0))
        metrics.update(eval_metrics(rows))
        if e > 0:
            tables = {n: read_rows(n, ctx.path(n)) for n in TRAIN_TABLES}
            inputs += [ctx.path(n) for n in TRAIN_TABLES]
            metrics.update(train_metrics(**tables, epoch=e))
        if e == 0:
            metrics.pop("eval_kl")
        write_table("eval", rows, ctx.path("eval"), ctx.lineage(inputs, KEYS, policy=ctx.policy(e) if rows else None))
        write_json(metrics, ctx.dir() / "metrics.json")
        if rows:
            log.info("held-out success %.3f over %d episodes", metrics["eval_success"], len(rows))
        else:
            log.info("no held-out evaluation this epoch (evaluate.every: %d)", p.evaluate.every)


if __name__ == "__main__":
    stagekit.script(main, "evaluate")
