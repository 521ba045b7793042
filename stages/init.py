"""init: the train and test task sets (step 0, pipeline/erl.py), the initial policy (epoch 0) and the empty
memory table.

  python -m stages.init                  # embedded default (policy.model: tiny), built offline
  python -m stages.init --params p.yaml  # policy.model: a local HF directory or hub id is copied in

Outputs: artifacts/init/{tasks_train,tasks_test,memory}.parquet, artifacts/init/policy/ (an HF model dir),
artifacts/init/init.json (warm-start loss curve and timings); with env.name: qa also the search index
artifacts/init/qa_index.sqlite, which later stages open read-only.
"""

from __future__ import annotations

import logging

from pipeline import erl, stagekit
from pipeline.artifacts import sha256_dir, write_json, write_table
from pipeline.envs import make_env

log = logging.getLogger("erl")
KEYS = ("seed", "env", "policy")


def initial_policy(p, env, train, out) -> dict:
    """The tiny embedded default built for ``env``, or a copy of the named model as an HF directory."""
    import torch

    torch.manual_seed(p.seed)
    if p.policy.model == "tiny":
        from pipeline.tiny.model import build

        return build(p, env, train, out)
    from pipeline.checkpoint import save_policy
    from pipeline.engine import load_causal_lm

    model, tok = load_causal_lm(p.policy.model, p.policy.dtype, device="cpu")
    save_policy(model, tok, out)
    return {"model": p.policy.model, "warmstart": []}


def main(argv=None) -> None:
    ctx = stagekit.parse("init", __doc__, needs_epoch=False, argv=argv)
    with stagekit.stage_errors("init"):
        p = ctx.params
        env = make_env(p.env, ctx.root)
        train, test = erl.task_sets(p, env)
        log.info("tasks: %d train, %d test", len(train), len(test))
        if p.env.name == "qa":  # the search tool's index: the warm start below already searches
            log.info("search index: %d passages", env.build_index(p.seed))
        lineage = ctx.lineage([], KEYS)
        write_table("tasks", erl.task_rows(env, train), ctx.tasks_train, lineage)
        write_table("tasks", erl.task_rows(env, test), ctx.tasks_test, lineage)
        write_table("memory", [], ctx.path("memory", 0), lineage)
        info = initial_policy(p, env, train, ctx.policy(0))
        info["policy_sha256"] = sha256_dir(ctx.policy(0))
        write_json(info, ctx.dir(0) / "init.json")


if __name__ == "__main__":
    stagekit.script(main, "init")
