"""sample: first attempts. The policy of the previous epoch plays ``sample.tasks_per_epoch`` training
tasks, ``sample.rollouts_per_task[algorithm]`` times each, under the plain system prompt s0.

  python -m stages.sample --epoch 1

Reads artifacts/init/tasks_train.parquet and the policy of epoch-1; writes artifacts/epoch_NNN/attempts.parquet.
"""
from __future__ import annotations

import logging
import random

from pipeline import stagekit
from pipeline.artifacts import read_rows, write_table
from pipeline.envs import budget_of, make_env
from pipeline.episodes import episode_columns, task_from_row
from pipeline.prompts import prompt_set
from pipeline.seeding import derive_seed

log = logging.getLogger("erl")
KEYS = ("seed", "algorithm", "env", "policy", "sample")


def pick_tasks(pool: list[dict], k: int, seed: int, epoch: int) -> list[dict]:
    """The epoch's training tasks: a seeded draw without replacement from the pool (k <= pool is validated)."""
    rng = random.Random(derive_seed(seed, epoch, "sample-tasks"))
    return rng.sample(pool, k)


def main(argv=None) -> None:
    ctx = stagekit.parse("sample", __doc__, argv=argv)
    with stagekit.stage_errors("sample"):
        from pipeline.policy import load_policy
        from pipeline.rollout import Episode, run_episodes

        p, e = ctx.params, ctx.epoch
        env = make_env(p.env, ctx.root)
        tasks = pick_tasks(read_rows("tasks", ctx.tasks_train), p.sample.tasks_per_epoch, p.seed, e)
        engine, tok = load_policy(p, ctx.policy(e - 1))
        s0 = prompt_set(p.policy.prompts, p.env.name).system
        episodes = []
        for t in tasks:
            for k in range(p.rollouts_per_task):
                rid = f"e{e}-{t['task_id']}-r{k}"
                episodes.append(Episode(rid, task_from_row(t), s0, derive_seed(p.seed, e, "sample", rid)))
        budget = budget_of(p.env)
        run_episodes(engine, tok, env, episodes, p.sample.sampling, p.policy.history, p.policy.max_prompt_tokens,
                     budget, desc=f"sample e{e}")
        rows = [
            {"rollout_id": ep.rollout_id, "task_id": ep.task.task_id, "epoch": e, "sample_idx": i % p.rollouts_per_task,
             **episode_columns(ep)}
            for i, ep in enumerate(episodes)
        ]
        lineage = ctx.lineage([ctx.tasks_train, ctx.policy(e - 1)], KEYS, policy=ctx.policy(e - 1))
        write_table("attempts", rows, ctx.path("attempts"), lineage)
        log.info("%d first attempts on %d tasks", len(rows), len(tasks))


if __name__ == "__main__":
    main()
