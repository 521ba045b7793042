"""Step 4, the second attempt: each failed task again, under the reflection written for it."""

from __future__ import annotations

from pipeline.config import Params
from pipeline.envs import Env, budget_of
from pipeline.episodes import episode_columns, outcome, retry_id, task_from_row
from pipeline.prompts import batch_line, no_reflection_prompt, prompt_set, retry_system
from pipeline.rollout import Episode, play, replay_prompts
from pipeline.seeding import derive_seed


def retry_plan(p: Params, feedback_rows: list[dict], reflection_rows: list[dict]) -> list[tuple[dict, str | None, str]]:
    """(failed feedback row, reflection_id or None, system prompt) per second attempt: the reflection replaces
    s0 (the format reminder re-appended); in the no-reflection ablation, s0 + a generic instruction + the raw
    attempt summary. RLVR makes no second attempts."""
    if not p.retries:
        return []
    prompts = prompt_set(p.policy.prompts, p.env.name)
    if p.ablation.no_reflection:
        batch = batch_line(feedback_rows)
        return [
            (f, None, no_reflection_prompt(prompts, f["summary"], batch))
            for f in feedback_rows
            if f["reward"] < p.consolidate.tau
        ]
    by_rollout = {f["rollout_id"]: f for f in feedback_rows}
    return [
        (by_rollout[r["rollout_id"]], r["reflection_id"], retry_system(prompts, r["reflection"]))
        for r in reflection_rows
    ]


def retries(
    p: Params,
    epoch: int,
    feedback_rows: list[dict],
    reflection_rows: list[dict],
    task_pool: list[dict],
    policy,
    env: Env,
) -> list[dict]:
    """Second attempts on the failed tasks under their reflections, reward r2. Each turn is also re-encoded
    under s0 (``distill_prompt_ids``): the distilled sample of consolidation. With ``retry.control`` every
    failed task is also replayed once under s0 alone (never trained): the plain second try a reflection must
    beat, on the same tasks."""
    todo = retry_plan(p, feedback_rows, reflection_rows)
    if not todo:
        return []
    budget = budget_of(p.env)
    tasks = {t["task_id"]: task_from_row(t) for t in task_pool}
    # retry.samples guided attempts per failure (episodes.retry_id)
    todo = [(f, refl_id, system, j) for f, refl_id, system in todo for j in range(p.retry.samples)]
    episodes = []
    for f, _, system, j in todo:
        rid = retry_id(f["rollout_id"], j)
        episodes.append(Episode(rid, tasks[f["task_id"]], system, derive_seed(p.seed, epoch, "retry", rid)))
    play(p, policy, env, episodes, p.retry.sampling, f"retry e{epoch}")
    s0 = prompt_set(p.policy.prompts, p.env.name).system
    controls: list = [None] * len(todo)
    if p.retry.control:  # one plain try per failure, beside its first guided attempt
        controls = [
            Episode(f"{ep.rollout_id}-control", ep.task, s0, derive_seed(p.seed, epoch, "control", ep.rollout_id))
            if j == 0
            else None
            for (_, _, _, j), ep in zip(todo, episodes)
        ]
        play(p, policy, env, [c for c in controls if c is not None], p.retry.sampling, f"control e{epoch}")
    tok = policy.tokenizer
    rows = []
    for (f, refl_id, _, _), ep, ctl in zip(todo, episodes, controls):
        trace = ep.trace(budget)
        r = env.reward(trace)
        c = env.reward(ctl.trace(budget)) if ctl is not None else None
        rows.append(
            {
                "retry_id": ep.rollout_id,
                "rollout_id": f["rollout_id"],
                "reflection_id": refl_id,
                "task_id": f["task_id"],
                "epoch": epoch,
                **episode_columns(ep),
                "distill_prompt_ids": replay_prompts(
                    tok, ep, s0, p.policy.history, p.policy.max_prompt_tokens, env.tools()
                ),
                "reward": r,
                "success": r >= p.consolidate.tau,
                "outcome": outcome(trace),
                "control_reward": c,
                "control_success": None if c is None else c >= p.consolidate.tau,
            }
        )
    return rows
