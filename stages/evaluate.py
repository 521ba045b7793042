"""evaluate: held-out first attempts only (step 7 of the round, pipeline/erl/evaluate.py; s0, no reflection, no memory),
``evaluate.samples_per_task`` samples per test task, plus the epoch's metrics for `dvc metrics show` / `dvc plots
show`. ``--epoch 0`` evaluates the initial policy (the baseline row of the curves).

  python -m stages.evaluate --epoch 3

Writes artifacts/epoch_NNN/eval.parquet, eval_retries.parquet (the held-out second attempts of
evaluate.reflect_every; empty otherwise) and metrics.json.
"""

from __future__ import annotations

import logging

from pipeline import stagekit
from pipeline.artifacts import read_rows, write_json, write_table
from pipeline.envs import make_env
from pipeline.erl import evaluate as erl_eval
from pipeline.metrics import eval_metrics, train_metrics
from pipeline.policy import Policy

log = logging.getLogger("erl")
KEYS = (
    "seed",
    "algorithm",
    "ablation",
    "env",
    "policy",
    "reflect",
    "evaluate",
    "consolidate.tau",
    "update.micro_batch_tokens",
)
TRAIN_TABLES = ("feedback", "reflections", "retries", "memory", "samples", "steps")


def main(argv=None) -> None:
    ctx = stagekit.parse("evaluate", __doc__, argv=argv, min_epoch=0)
    with stagekit.stage_errors("evaluate"):
        p, e = ctx.params, ctx.epoch
        rows, second, inputs, metrics = [], [], [], {"epoch": e, "eval_kl": None}
        if p.evaluated(e):  # held-out rollouts every evaluate.every epochs; training metrics every epoch
            policy, env = Policy(p, ctx.policy(e)), make_env(p.env, ctx.root)
            rows, episodes = erl_eval.evaluate(p, e, read_rows("tasks", ctx.tasks_test), policy, env)
            inputs = [ctx.policy(e), ctx.tasks_test]
            if e > 0:
                metrics["eval_kl"] = erl_eval.kl_to_initial(p, policy, ctx.policy(0), episodes)
                inputs.append(ctx.policy(0))
            if p.reflects_held_out(e):
                memory = read_rows("memory", ctx.path("memory"))
                second = erl_eval.evaluate_second_attempts(p, e, rows, episodes, memory, policy, env)
        metrics.update(eval_metrics(rows, second if p.reflects_held_out(e) else None))
        if e > 0:
            tables = {n: read_rows(n, ctx.path(n)) for n in TRAIN_TABLES}
            inputs += [ctx.path(n) for n in TRAIN_TABLES]
            metrics.update(train_metrics(**tables, epoch=e))
        if e == 0:
            metrics.pop("eval_kl")
        if ctx.main_process:
            lineage = ctx.lineage(inputs, KEYS, policy=ctx.policy(e) if rows else None)
            write_table("eval", rows, ctx.path("eval"), lineage)
            if e > 0:
                write_table("eval_retries", second, ctx.path("eval_retries"), lineage)
            write_json(metrics, ctx.dir() / "metrics.json")
            if p.train.trackers:  # the epoch's metrics, live (pipeline/live.py)
                from pipeline.live import Live

                live = Live(p.train.trackers, "epochs", e)
                live.log({k: v for k, v in metrics.items() if k != "epoch" and isinstance(v, int | float)})
                live.close()
        if rows:
            log.info("held-out success %.3f over %d episodes", metrics["eval_success"], len(rows))
        else:
            log.info("no held-out evaluation this epoch (evaluate.every: %d)", p.evaluate.every)


if __name__ == "__main__":
    stagekit.script(main, "evaluate")
