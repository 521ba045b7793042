"""feedback: the verifier. Rewards, success, the environment's feedback text and the attempt summary the
reflector will read, and GRPO group statistics over the rollouts of each task. Needs no model.

  python -m stages.feedback --epoch 1

Reads artifacts/epoch_NNN/attempts.parquet; writes artifacts/epoch_NNN/feedback.parquet.
"""
from __future__ import annotations

import logging

from pipeline import stagekit
from pipeline.advantages import grpo
from pipeline.artifacts import read_rows, write_table
from pipeline.envs import budget_of, make_env
from pipeline.episodes import outcome, trace_from_row
from pipeline.prompts import prompt_set

log = logging.getLogger("erl")
KEYS = ("env", "policy.prompts", "consolidate.tau")


def main(argv=None) -> None:
    ctx = stagekit.parse("feedback", __doc__, argv=argv)
    with stagekit.stage_errors("feedback"):
        p, e = ctx.params, ctx.epoch
        env, budget = make_env(p.env), budget_of(p.env)
        compact = prompt_set(p.policy.prompts, p.env.name).compact_summary
        attempts = read_rows("attempts", ctx.path("attempts"))
        rows = []
        for a in attempts:
            trace = trace_from_row(a, budget)
            r = env.reward(trace)
            rows.append({
                "rollout_id": a["rollout_id"], "task_id": a["task_id"], "epoch": e, "reward": r,
                "success": r >= p.consolidate.tau, "outcome": outcome(trace), "feedback": env.feedback(trace),
                "summary": env.summary(trace, a["initial_observation"], compact),
                "note": env.reflection_note(trace) if hasattr(env, "reflection_note") else None,
            })
        stats = grpo([r["task_id"] for r in rows], [r["reward"] for r in rows])
        for r, (size, mean, std, adv) in zip(rows, stats):
            r.update(group_size=size, group_mean=mean, group_std=std, advantage=adv)
        write_table("feedback", rows, ctx.path("feedback"), ctx.lineage([ctx.path("attempts")], KEYS))
        n_ok = sum(r["success"] for r in rows)
        log.info("%d attempts, %d successes (%.3f)", len(rows), n_ok, n_ok / max(1, len(rows)))


if __name__ == "__main__":
    main()
