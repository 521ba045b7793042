"""evaluate: held-out first attempts only (s0, no reflection, no memory), ``evaluate.samples_per_task``
samples per test task, plus the epoch's metrics for `dvc metrics show` / `dvc plots show`.
``--epoch 0`` evaluates the initial policy (the baseline row of the curves).

  python -m stages.evaluate --epoch 3

Writes artifacts/epoch_NNN/eval.parquet and artifacts/epoch_NNN/metrics.json.
"""
from __future__ import annotations

import logging

from pipeline import stagekit
from pipeline.artifacts import read_rows, write_json, write_table
from pipeline.envs import budget_of, make_env
from pipeline.episodes import outcome, task_from_row
from pipeline.metrics import eval_metrics, train_metrics
from pipeline.prompts import prompt_set
from pipeline.seeding import derive_seed

log = logging.getLogger("erl")
KEYS = ("seed", "env", "policy", "evaluate", "consolidate.tau", "update.micro_batch_tokens")
TRAIN_TABLES = ("feedback", "reflections", "retries", "memory", "samples", "steps")


def kl_to_initial(p, ctx, engine, episodes) -> float | None:
    """Per-token KL(policy[e] || policy[0]) on the held-out replies (transformers engine only)."""
    model = getattr(engine, "model", None)
    if model is None:
        return None
    from pipeline.engine import load_causal_lm
    from pipeline.trainer import mean_token_kl

    ref, tok = load_causal_lm(str(ctx.policy(0)), p.policy.dtype, device=str(engine.device))
    samples = [{"prompt_ids": ep.prompt_ids, "response_ids": ep.response_ids} for ep in episodes]
    return mean_token_kl(model, ref, samples, engine.pad_id, engine.device, p.update.micro_batch_tokens)


def main(argv=None) -> None:
    ctx = stagekit.parse("evaluate", __doc__, argv=argv, min_epoch=0)
    with stagekit.stage_errors("evaluate"):
        from pipeline.policy import load_policy
        from pipeline.rollout import Episode, run_episodes

        p, e = ctx.params, ctx.epoch
        env, budget = make_env(p.env, ctx.root), budget_of(p.env)
        tasks = [task_from_row(t) for t in read_rows("tasks", ctx.tasks_test)]
        engine, tok = load_policy(p, ctx.policy(e))
        s0 = prompt_set(p.policy.prompts, p.env.name).system
        episodes = [
            Episode(f"e{e}-{t.task_id}-eval{k}", t, s0, derive_seed(p.seed, e, "evaluate", t.task_id, k))
            for t in tasks for k in range(p.evaluate.samples_per_task)
        ]
        run_episodes(engine, tok, env, episodes, p.evaluate.sampling, p.policy.history, p.policy.max_prompt_tokens,
                     budget, desc=f"evaluate e{e}")
        rows = []
        for i, ep in enumerate(episodes):
            trace = ep.trace(budget)
            r = env.reward(trace)
            rows.append({"rollout_id": ep.rollout_id, "task_id": ep.task.task_id, "epoch": e,
                         "sample_idx": i % p.evaluate.samples_per_task, "reward": r, "success": r >= p.consolidate.tau,
                         "outcome": outcome(trace), "n_turns": len(ep.steps), "actions": [s.action for s in ep.steps],
                         "responses": ep.responses})
        inputs = [ctx.policy(e), ctx.tasks_test]
        metrics = {"epoch": e, **eval_metrics(rows)}
        if e > 0:
            metrics["eval_kl"] = kl_to_initial(p, ctx, engine, episodes)
            inputs.append(ctx.policy(0))
            tables = {n: read_rows(n, ctx.path(n)) for n in TRAIN_TABLES}
            inputs += [ctx.path(n) for n in TRAIN_TABLES]
            metrics.update(train_metrics(**tables, epoch=e))
        write_table("eval", rows, ctx.path("eval"), ctx.lineage(inputs, KEYS, policy=ctx.policy(e)))
        write_json(metrics, ctx.dir() / "metrics.json")
        log.info("held-out success %.3f over %d episodes", metrics["eval_success"], len(rows))


if __name__ == "__main__":
    main()
