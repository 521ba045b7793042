"""Speed and memory of a real model's generation and update on this machine, at a preset's settings.

  python scripts/bench_model.py --params presets/smollm2.yaml

Converts or copies policy.model once (as init does), then measures: generation tokens/s at the preset's
sampling, batch and a first-turn prompt of its paper prompts; update tokens/s of one optimizer step (fp32 master
weights, the preset's gradient checkpointing and log-prob chunking); the peak resident memory. Per-stage and
per-epoch seconds of the whole pipeline come from `erl bench --params ... --epochs 1`. Run it alone: two torch
processes on 2 cores slow each other 3-7x.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.config import load_or_exit  # noqa: E402
from pipeline.envs import make_env  # noqa: E402
from pipeline.erl import tasks  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default=str(ROOT / "presets/smollm2.yaml"))
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8, 16], help="generation batch sizes to time")
    ap.add_argument("--train-tokens", type=int, default=4096, help="tokens in the timed optimizer step")
    args = ap.parse_args(argv)
    p = load_or_exit(args.params)
    import torch
    from accelerate import Accelerator

    from pipeline import checkpoint, trainstate
    from pipeline.policy import Policy
    from pipeline.prompts import prompt_set
    from pipeline.rollout import encode_chat, turn_messages
    from pipeline.torchsetup import configure_torch
    from pipeline.trainer import train_epoch
    from stages.init import initial_policy

    threads = configure_torch()
    with tempfile.TemporaryDirectory(prefix="bench-model-") as tmp:
        env = make_env(p.env, Path(tmp))
        train, _ = tasks.task_sets(p, env)
        t0 = time.perf_counter()
        policy_dir = Path(tmp) / "init" / "policy"
        info = initial_policy(p, env, train, policy_dir)
        checkpoint.write_manifest(policy_dir.parent)
        print(
            f"{p.policy.model}: {info.get('parameters', 0) / 1e6:.1f} M parameters, init {time.perf_counter() - t0:.1f} s, "
            f"{threads} torch threads"
        )
        policy = Policy(p, policy_dir)
        tok, engine = policy.tokenizer, policy.engine
        system = prompt_set(p.policy.prompts, p.env.name).system
        msgs = turn_messages(system, [env.message(env.reset(train[0]), None)], [], p.policy.history)
        prompt = encode_chat(tok, msgs, p.policy.max_prompt_tokens)
        s = p.sample.sampling
        for b in args.batches:
            t0 = time.perf_counter()
            gens = engine.generate([prompt] * b, s, list(range(b)))
            dt = time.perf_counter() - t0
            n = sum(len(g.token_ids) for g in gens)
            print(
                f"generate: batch {b:3d}, prompt {len(prompt)} tokens, {n} new tokens in {dt:.1f} s = {n / dt:.1f} tokens/s"
            )
        model, _ = trainstate.load_for_training(policy_dir, p.policy.dtype)
        if p.update.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        ref = engine.model
        per = 512
        samples = [
            {
                "sample_id": f"s{i}",
                "kind": "first",
                "advantage": 1.0 if i % 2 else -1.0,
                "prompt_ids": [prompt[: per // 2]],
                "response_ids": [gens[0].token_ids[: per // 2] or [tok.eos_token_id]],
            }
            for i in range(max(1, args.train_tokens // per))
        ]
        n_tok = sum(len(x["prompt_ids"][0]) + len(x["response_ids"][0]) for x in samples)
        acc = Accelerator(cpu=not torch.cuda.is_available())
        u = p.update.model_copy(update={"minibatch_size": len(samples), "ppo_epochs": 1})
        opt = torch.optim.AdamW(model.parameters(), lr=u.lr)
        model, opt = acc.prepare(model, opt)
        t0 = time.perf_counter()
        train_epoch(acc, model, ref, opt, samples, u, tok.pad_token_id or 0, 0)
        dt = time.perf_counter() - t0
        print(
            f"update: one optimizer step on {len(samples)} samples, {n_tok} tokens (old, reference and trained "
            f"passes) in {dt:.1f} s = {n_tok / dt:.0f} tokens/s; gradient checkpointing "
            f"{p.update.gradient_checkpointing}, log-prob chunk {p.update.logprob_chunk}"
        )
    print(f"peak resident memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
