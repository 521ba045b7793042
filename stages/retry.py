"""retry: second attempts. Each failed task is attempted again with its reflection as the system prompt
(s0 replaced, format reminder re-appended); in the no-reflection ablation with s0 + a generic instruction
+ the raw attempt summary. Each turn is also re-encoded under s0 for the distilled sample. With
retry.control, every failed task is also replayed once under s0 alone (no reflection, no feedback; never
trained), so the gain a reflection brings over a plain second try is measured. RLVR writes an empty table.

  python -m stages.retry --epoch 1

Reads the policy of epoch-1, tasks, attempts' feedback and reflections; writes retries.parquet.
"""
from __future__ import annotations

import logging

from pipeline import stagekit
from pipeline.artifacts import read_rows, write_table
from pipeline.envs import budget_of, make_env
from pipeline.episodes import episode_columns, outcome, task_from_row
from pipeline.prompts import prompt_set, retry_system
from pipeline.seeding import derive_seed

log = logging.getLogger("erl")
KEYS = ("seed", "algorithm", "ablation", "env", "policy", "retry", "consolidate.tau")


def plan(p, feedback: list[dict], reflections: list[dict]) -> list[tuple[dict, str | None, str]]:
    """(failed feedback row, reflection_id or None, system prompt) per second attempt."""
    if not p.retries:
        return []
    prompts = prompt_set(p.policy.prompts, p.env.name)
    if p.ablation.no_reflection:
        return [(f, None, prompts.no_reflection_system.format(summary=f["summary"]))
                for f in feedback if f["reward"] < p.consolidate.tau]
    by_rollout = {f["rollout_id"]: f for f in feedback}
    return [(by_rollout[r["rollout_id"]], r["reflection_id"], retry_system(prompts, r["reflection"])) for r in reflections]


def main(argv=None) -> None:
    ctx = stagekit.parse("retry", __doc__, argv=argv)
    with stagekit.stage_errors("retry"):
        p, e = ctx.params, ctx.epoch
        inputs = [ctx.policy(e - 1), ctx.tasks_train, ctx.path("feedback"), ctx.path("reflections")]
        todo = plan(p, read_rows("feedback", ctx.path("feedback")), read_rows("reflections", ctx.path("reflections")))
        rows = []
        if todo:
            from pipeline.policy import load_policy
            from pipeline.rollout import Episode, replay_prompts, run_episodes

            env, budget = make_env(p.env, ctx.root), budget_of(p.env)
            tasks = {t["task_id"]: task_from_row(t) for t in read_rows("tasks", ctx.tasks_train)}
            engine, tok = load_policy(p, ctx.policy(e - 1))
            episodes = []
            for f, _, system in todo:
                rid = f"{f['rollout_id']}-retry"
                episodes.append(Episode(rid, tasks[f["task_id"]], system, derive_seed(p.seed, e, "retry", rid)))
            run_episodes(engine, tok, env, episodes, p.retry.sampling, p.policy.history, p.policy.max_prompt_tokens,
                         budget, desc=f"retry e{e}")
            s0 = prompt_set(p.policy.prompts, p.env.name).system
            controls: list = [None] * len(todo)
            if p.retry.control:  # the same failed tasks, replayed under s0 alone: what a reflection must beat
                controls = [Episode(f"{ep.rollout_id}-control", ep.task, s0, derive_seed(p.seed, e, "control", ep.rollout_id))
                            for ep in episodes]
                run_episodes(engine, tok, env, controls, p.retry.sampling, p.policy.history, p.policy.max_prompt_tokens,
                             budget, desc=f"control e{e}")
            for (f, refl_id, _), ep, ctl in zip(todo, episodes, controls):
                trace = ep.trace(budget)
                r = env.reward(trace)
                c = env.reward(ctl.trace(budget)) if ctl is not None else None
                rows.append({
                    "retry_id": ep.rollout_id, "rollout_id": f["rollout_id"], "reflection_id": refl_id,
                    "task_id": f["task_id"], "epoch": e, **episode_columns(ep),
                    "distill_prompt_ids": replay_prompts(tok, ep, s0, p.policy.history, p.policy.max_prompt_tokens),
                    "reward": r, "success": r >= p.consolidate.tau, "outcome": outcome(trace),
                    "control_reward": c, "control_success": None if c is None else c >= p.consolidate.tau,
                })
        write_table("retries", rows, ctx.path("retries"), ctx.lineage(inputs, KEYS, policy=ctx.policy(e - 1)))
        n_ok = sum(r["success"] for r in rows)
        log.info("%d second attempts, %d successes", len(rows), n_ok)


if __name__ == "__main__":
    main()
