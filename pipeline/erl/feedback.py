"""Step 2, the verifier: reward and success of each first attempt, the environment's feedback text, the summary
the reflector will read, and the GRPO statistics of each task's group of rollouts. Needs no model."""

from __future__ import annotations

from pipeline.advantages import grpo
from pipeline.config import Params
from pipeline.envs import Env, budget_of
from pipeline.episodes import outcome, trace_from_row
from pipeline.prompts import prompt_set


def feedback(p: Params, epoch: int, attempts: list[dict], env: Env) -> list[dict]:
    """Reward r1 and success (r1 >= tau), feedback, summary and group statistics per attempt."""
    budget = budget_of(p.env)
    prompts = prompt_set(p.policy.prompts, p.env.name)
    rows = []
    for a in attempts:
        trace = trace_from_row(a, budget)
        r = env.reward(trace)
        rows.append(
            {
                "rollout_id": a["rollout_id"],
                "task_id": a["task_id"],
                "epoch": epoch,
                "reward": r,
                "success": r >= p.consolidate.tau,
                "outcome": outcome(trace),
                "feedback": env.feedback(trace),
                "summary": env.summary(
                    trace, a["initial_observation"], prompts.compact_summary, prompts.annotated_summary
                ),
                "note": env.reflection_note(trace),
            }
        )
    stats = grpo([r["task_id"] for r in rows], [r["reward"] for r in rows])
    for r, (size, mean, std, adv) in zip(rows, stats):
        r.update(group_size=size, group_mean=mean, group_std=std, advantage=adv)
    return rows
