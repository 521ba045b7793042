"""update: the policy update (step 6 of the round, pipeline/erl/update.py): the clipped loss and the k3 KL to the
epoch-0 policy over the epoch's samples, through accelerate. Writes the new checkpoint (a Hugging Face directory
with safetensors) and the audit trail: one row per trained sample (advantage, tokens, loss, optimizer step) and
one per optimizer step (gradient norm), each carrying the new and the parent checkpoint sha256. With
update.replay_coef > 0 each optimizer step also trains on warm-start exercises drawn on the training tasks.

  python -m stages.update --epoch 1                          # CPU, one process
  accelerate launch -m stages.update --epoch 1               # GPUs: DDP/FSDP/DeepSpeed per accelerate config
  accelerate launch --multi_gpu --num_processes 2 -m stages.update --epoch 1   # DDP, also on CPUs (gloo)
"""

from __future__ import annotations

import logging

from pipeline import stagekit
from pipeline.artifacts import read_rows, sha256_dir, write_table
from pipeline.envs import make_env
from pipeline.erl.update import update

log = logging.getLogger("erl")
KEYS = ("seed", "env", "policy", "update")


def steps_before(root, epoch: int) -> int:
    """Optimizer steps of the epochs before ``epoch`` (the x of the live step metrics), from their steps tables."""
    import pyarrow.parquet as pq

    from pipeline import layout

    n = 0
    for e in range(1, epoch):
        path = layout.table_path("steps", e, root)
        if path.is_file():
            n += pq.read_metadata(path).num_rows
    return n


def main(argv=None) -> None:
    ctx = stagekit.parse("update", __doc__, argv=argv)
    with stagekit.stage_errors("update"):
        from pipeline import checkpoint, trainstate
        from pipeline import policy as engines

        p, e = ctx.params, ctx.epoch
        engines.release()  # an engine of this process (a block of epochs) sleeps while the update trains
        parent, out = ctx.policy(e - 1), ctx.policy(e)
        replay = p.update.replay_coef > 0  # warm-start exercises drawn on the training tasks
        tasks = read_rows("tasks", ctx.tasks_train) if replay else None
        up = update(
            p,
            e,
            read_rows("samples", ctx.path("samples")),
            parent,
            ctx.policy(0),
            tasks,
            make_env(p.env, ctx.root),
            live_start=steps_before(ctx.root, e),
        )
        trainstate.save_update(up, ctx.dir(), p.policy.dtype, p.policy.max_shard_size, p.update.carry_optimizer_state)
        if engines.active(out):  # and takes the new weights in place
            version = checkpoint.verify(ctx.dir(), (checkpoint.POLICY,))["policy_sha256"]
            engines.hand_over(trainstate.engine_weights(up, p.policy.dtype), version, out)
        if not up.accelerator.is_main_process:
            return
        sha, parent_sha = sha256_dir(out), sha256_dir(parent)
        extra = {"update_id": f"e{e}", "epoch": e, "checkpoint_sha256": sha, "parent_sha256": parent_sha}
        inputs = [parent, ctx.policy(0), ctx.path("samples")] + ([ctx.tasks_train] if replay else [])
        lineage = ctx.lineage(inputs, KEYS, policy=parent)
        lineage["checkpoint_sha256"] = sha
        write_table("updates", [{**r, **extra} for r in up.sample_rows], ctx.path("updates"), lineage)
        write_table("steps", [{**r, **extra} for r in up.step_rows], ctx.path("steps"), lineage)
        for gone in checkpoint.retire(ctx.root, p, e):
            log.info("checkpoint retention: removed %s (its sha256 stays in checkpoint.json)", gone)
        last = up.step_rows[-1] if up.step_rows else {}
        log.info(
            "%d samples, %d optimizer steps, last loss %.4f, kl %.3g; checkpoint %s",
            len(up.sample_rows),
            len(up.step_rows),
            last.get("loss", float("nan")),
            last.get("kl", float("nan")),
            sha[:12],
        )


if __name__ == "__main__":
    stagekit.script(main, "update")
