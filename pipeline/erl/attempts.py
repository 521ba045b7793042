"""Step 1, first attempts: the experience the round learns from."""

from __future__ import annotations

from pipeline.config import Params
from pipeline.envs import Env
from pipeline.episodes import episode_columns, task_from_row
from pipeline.erl.tasks import pick_tasks
from pipeline.prompts import prompt_set
from pipeline.rollout import Episode, play
from pipeline.seeding import derive_seed


def first_attempts(p: Params, epoch: int, task_pool: list[dict], policy, env: Env) -> list[dict]:
    """``sample.rollouts_per_task[algorithm]`` attempts at each of the epoch's tasks under the plain system
    prompt s0."""
    tasks = pick_tasks(task_pool, p.sample.tasks_per_epoch, p.seed, epoch)
    s0 = prompt_set(p.policy.prompts, p.env.name).system
    episodes = []
    for t in tasks:
        for k in range(p.rollouts_per_task):
            rid = f"e{epoch}-{t['task_id']}-r{k}"
            episodes.append(Episode(rid, task_from_row(t), s0, derive_seed(p.seed, epoch, "sample", rid)))
    play(p, policy, env, episodes, p.sample.sampling, f"sample e{epoch}")
    return [
        {
            "rollout_id": ep.rollout_id,
            "task_id": ep.task.task_id,
            "epoch": epoch,
            "sample_idx": i % p.rollouts_per_task,
            **episode_columns(ep),
        }
        for i, ep in enumerate(episodes)
    ]
