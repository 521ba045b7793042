"""update: one policy update on the epoch's samples with the clipped loss and the k3 KL to the epoch-0
policy, through accelerate. Writes the new checkpoint (an HF directory with safetensors) and the audit
trail: one row per trained sample (advantage, tokens, loss, optimizer step) and one per optimizer step
(gradient norm), each carrying the new and the parent checkpoint sha256. With update.replay_coef > 0 each
optimizer step also trains on warm-start exercises drawn on artifacts/init/tasks_train.parquet (replay).

  python -m stages.update --epoch 1                          # CPU, one process
  accelerate launch -m stages.update --epoch 1               # GPUs: DDP/FSDP/DeepSpeed per accelerate config
  accelerate launch --multi_gpu --num_processes 2 -m stages.update --epoch 1   # DDP, also on CPUs (gloo)
"""
from __future__ import annotations

import logging
import math

from pipeline import stagekit
from pipeline.artifacts import read_rows, sha256_dir, write_table

log = logging.getLogger("erl")
KEYS = ("seed", "env", "policy", "update")
OPTIMIZER_FILE = "optimizer.safetensors"


def main(argv=None) -> None:
    ctx = stagekit.parse("update", __doc__, argv=argv)
    with stagekit.stage_errors("update"):
        import torch
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs, gather_object

        from pipeline.engine import load_causal_lm
        from pipeline.seeding import derive_seed
        from pipeline.trainer import load_optimizer, save_optimizer, train_epoch

        p, e, u = ctx.params, ctx.epoch, ctx.params.update
        parent, out = ctx.policy(e - 1), ctx.policy(e)
        samples = read_rows("samples", ctx.path("samples"))
        # Buffers (rotary frequencies) are the same everywhere: not broadcasting them keeps a forward pass free of
        # collectives, so processes whose shards need different numbers of micro-batches cannot deadlock.
        accelerator = Accelerator(cpu=not torch.cuda.is_available(),
                                  kwargs_handlers=[DistributedDataParallelKwargs(broadcast_buffers=False)])
        torch.manual_seed(derive_seed(p.seed, e, "update") % 2**31)
        model, tok = load_causal_lm(str(parent), p.policy.dtype, device="cpu")
        ref_model, _ = load_causal_lm(str(ctx.policy(0)), p.policy.dtype, device="cpu")
        for q in ref_model.parameters():
            q.requires_grad_(False)
        lr = u.lr_at(e)
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=u.weight_decay)
        carry = u.carry_optimizer_state and accelerator.num_processes == 1
        if carry and (parent / OPTIMIZER_FILE).exists():
            load_optimizer(optimizer, parent / OPTIMIZER_FILE)
            for g in optimizer.param_groups:
                g["lr"], g["weight_decay"] = lr, u.weight_decay
        model, optimizer = accelerator.prepare(model, optimizer)
        ref_model = accelerator.prepare_model(ref_model, evaluation_mode=True)
        mine = samples[accelerator.process_index :: accelerator.num_processes]
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        replay = None
        if u.replay_coef > 0:  # every process its own share of one epoch's exercises
            n_steps = u.ppo_epochs * math.ceil(len(samples) / u.minibatch_size)
            replay = replay_ids(ctx, tok, n_steps * accelerator.num_processes)[
                accelerator.process_index :: accelerator.num_processes]
        sample_rows, step_rows = train_epoch(accelerator, model, ref_model, optimizer, mine, u, pad,
                                             derive_seed(p.seed, e, "update-order"), replay)
        sample_rows = gather_object(sample_rows)  # steps: the main process's view is recorded
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            unwrapped = accelerator.unwrap_model(model)
            unwrapped.save_pretrained(out, state_dict=accelerator.get_state_dict(model))
            tok.save_pretrained(out)
            if carry:
                save_optimizer(optimizer, out / OPTIMIZER_FILE)
            sha, parent_sha = sha256_dir(out), sha256_dir(parent)
            update_id = f"e{e}"
            extra = {"update_id": update_id, "epoch": e, "checkpoint_sha256": sha, "parent_sha256": parent_sha}
            inputs = [parent, ctx.policy(0), ctx.path("samples")] + ([ctx.tasks_train] if replay else [])
            lineage = ctx.lineage(inputs, KEYS, policy=parent)
            lineage["checkpoint_sha256"] = sha
            write_table("updates", [{**r, **extra} for r in sample_rows], ctx.path("updates"), lineage)
            write_table("steps", [{**r, **extra} for r in step_rows], ctx.path("steps"), lineage)
            last = step_rows[-1] if step_rows else {}
            log.info("%d samples, %d optimizer steps, last loss %.4f, kl %.3g; checkpoint %s",
                     len(sample_rows), len(step_rows), last.get("loss", float("nan")), last.get("kl", float("nan")), sha[:12])


def replay_ids(ctx, tok, n_steps: int) -> list[tuple[list[int], list[int]]]:
    """The warm-start exercises this epoch replays (update.replay_coef), encoded: update.replay_batch for each
    of ``n_steps`` optimizer steps, fresh ones each epoch, drawn on the training tasks with a seed of (seed,
    epoch)."""
    from pipeline import warmstart
    from pipeline.envs import make_env
    from pipeline.episodes import task_from_row
    from pipeline.prompts import prompt_set
    from pipeline.seeding import derive_seed
    from pipeline.tiny import encode_example

    p, u = ctx.params, ctx.params.update
    env = make_env(p.env, ctx.root)
    tasks = [task_from_row(t) for t in read_rows("tasks", ctx.tasks_train)]
    examples = warmstart.replay_examples(
        env, prompt_set(p.policy.prompts, p.env.name), tasks, u.replay_batch * max(1, n_steps),
        derive_seed(p.seed, ctx.epoch, "replay"),
        u.replay_reading, tuple(p.policy.tiny.warmstart_exercises), p.policy.tiny.warmstart_memory)
    return [encode_example(tok, ex) for ex in examples]


if __name__ == "__main__":
    main()
