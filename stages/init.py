"""init: the train and test task sets (step 0, pipeline/erl/tasks.py), the initial policy (epoch 0) and the empty
memory table.

  python -m stages.init                  # embedded default (policy.model: tiny), built offline
  python -m stages.init --params p.yaml  # policy.model: a local HF directory or hub id is copied in

Outputs: artifacts/init/{tasks_train,tasks_test,memory}.parquet, artifacts/init/policy/ (an HF model dir),
artifacts/init/init.json (warm-start loss curve and timings), and what the environment's ``prepare`` hook builds
(QA with retriever: index, the search index artifacts/init/qa_index.sqlite, which later stages open read-only).
"""

from __future__ import annotations

import logging

from pipeline import checkpoint, stagekit
from pipeline.artifacts import write_json, write_table
from pipeline.envs import make_env
from pipeline.erl import tasks
from pipeline.torchsetup import configure_torch

log = logging.getLogger("erl")
KEYS = ("seed", "env", "policy")


def initial_policy(p, env, train, out) -> dict:
    """The tiny embedded default built for ``env``, or policy.model imported as an ordinary HF directory."""
    import torch

    torch.manual_seed(p.seed)
    if p.policy.model == "tiny":
        from pipeline.tiny.model import build

        return build(p, env, train, out)
    from pipeline.checkpoint import import_model

    info = import_model(p.policy.model, out, p.policy.dtype, p.policy.max_shard_size)
    check_update_memory(p, info["config"])
    return info


def check_update_memory(p, config: dict) -> None:
    """Refuse, before the run starts, an update that cannot fit the GPUs it would run on (`erl memory`'s rule:
    numbers and settings that would fit in the message); on a machine without one, log the estimate."""
    import torch

    from pipeline import gpumem

    shape = gpumem.Shape.from_config(config)
    if not torch.cuda.is_available():
        log.info("update memory estimate per GPU:\n%s", gpumem.describe(gpumem.estimate(shape, gpumem.Setup.of(p, 1))))
        return
    gpus = torch.cuda.device_count() if p.update.launcher == "accelerate" else 1
    setup, device = gpumem.Setup.of(p, gpus), torch.cuda.get_device_properties(0).total_memory
    est = gpumem.estimate(shape, setup)
    where = f"{gpus} x {device / gpumem.GiB:.0f} GiB ({torch.cuda.get_device_name(0)})"
    if not gpumem.fits(est, device):
        alts = gpumem.suggestions(shape, setup, device)
        raise gpumem.DoesNotFit(
            f"the update of {p.policy.model} would need about {est['peak'] / gpumem.GiB:.0f} GiB per GPU on {where}; "
            + ("settings that would fit: " + "; ".join(alts) if alts else "no single setting fits: more GPUs")
            + f" (`erl memory` says more):\n{gpumem.describe(est, device)}"
        )
    log.info("update memory estimate per GPU on %s (fits):\n%s", where, gpumem.describe(est, device))


def main(argv=None) -> None:
    ctx = stagekit.parse("init", __doc__, needs_epoch=False, argv=argv)
    with stagekit.stage_errors("init"):
        configure_torch()  # threads and deterministic kernels, before the lineage records them
        p = ctx.params
        env = make_env(p.env, ctx.root)
        if p.policy.model != "tiny":
            checkpoint.preflight(p.policy.model)  # a model that cannot be used stops init before it writes
        else:
            from pipeline.tiny.warmstart import check_kinds

            check_kinds(env, p.policy.tiny.warmstart_exercises)
        train, test = tasks.task_sets(p, env)
        log.info("tasks: %d train, %d test", len(train), len(test))
        done = env.prepare(p.seed)  # e.g. the QA search index: the warm start below already searches
        if done:
            log.info("%s", done)
        # The model first: a model that cannot be read stops init before it has written anything else.
        info = initial_policy(p, env, train, ctx.policy(0))
        lineage = ctx.lineage([], KEYS)
        write_table("tasks", tasks.task_rows(env, train), ctx.tasks_train, lineage)
        write_table("tasks", tasks.task_rows(env, test), ctx.tasks_test, lineage)
        write_table("memory", [], ctx.path("memory", 0), lineage)
        info["policy_sha256"] = checkpoint.write_manifest(ctx.dir(0))["policy_sha256"]
        write_json(info, ctx.dir(0) / "init.json")


if __name__ == "__main__":
    stagekit.script(main, "init")
