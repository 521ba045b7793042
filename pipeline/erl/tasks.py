"""Step 0, the task sets: the training pool and the held-out test set, drawn once by the init stage, and each
epoch's draw of training tasks from the pool."""

from __future__ import annotations

import json
import random

from pipeline.config import Params
from pipeline.envs import Env
from pipeline.seeding import derive_seed


def task_sets(p: Params, env: Env):
    """(train tasks, test tasks): deterministic per seed; no test map equals a training map."""
    train = env.generate("train", p.env.n_train, p.seed)
    keys = {env.map_key(t) for t in train}
    test = env.generate("test", p.env.n_test, p.seed, exclude=keys)
    return train, test


def task_rows(env: Env, tasks) -> list[dict]:
    return [
        {
            "task_id": t.task_id,
            "split": t.split,
            "env": env.name,
            "spec": json.dumps(t.spec, sort_keys=True),
            "optimal_len": t.optimal_len,
            "map_key": env.map_key(t),
        }
        for t in tasks
    ]


def pick_tasks(pool: list[dict], k: int, seed: int, epoch: int) -> list[dict]:
    """The epoch's training tasks: a seeded draw without replacement from the pool (k <= pool is validated)."""
    rng = random.Random(derive_seed(seed, epoch, "sample-tasks"))
    return rng.sample(pool, k)
