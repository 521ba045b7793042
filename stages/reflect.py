"""reflect: for every failed first attempt (reward < consolidate.tau), the same policy, under the reflector
prompt, reads the attempt summary, the feedback and the latest memory version and writes a reflection
(a revised system prompt inside <prompt>...</prompt>). RLVR and the no-reflection ablation write an
empty table with the same schema.

  python -m stages.reflect --epoch 1

Reads the policy of epoch-1, attempts, feedback and memory of epoch-1; writes reflections.parquet.
"""
from __future__ import annotations

import logging

from pipeline import stagekit
from pipeline.artifacts import read_rows, write_table
from pipeline.memory import latest
from pipeline.prompts import parse_reflection, prompt_set, reflector_messages
from pipeline.seeding import derive_seed

log = logging.getLogger("erl")
KEYS = ("seed", "algorithm", "ablation", "env.name", "policy", "reflect", "consolidate.tau")


def main(argv=None) -> None:
    ctx = stagekit.parse("reflect", __doc__, argv=argv)
    with stagekit.stage_errors("reflect"):
        p, e = ctx.params, ctx.epoch
        inputs = [ctx.policy(e - 1), ctx.path("feedback"), ctx.path("memory", e - 1)]
        feedback = read_rows("feedback", ctx.path("feedback"))
        memory_rows = read_rows("memory", ctx.path("memory", e - 1))
        failed = [f for f in feedback if f["reward"] < p.consolidate.tau] if p.reflects else []
        rows = []
        if failed:
            from pipeline.policy import load_policy
            from pipeline.rollout import encode_chat

            prompts = prompt_set(p.policy.prompts, p.env.name)
            version, mem_text = (0, None) if p.ablation.no_memory else latest(memory_rows)
            engine, tok = load_policy(p, ctx.policy(e - 1))
            ids = [encode_chat(tok, reflector_messages(prompts, f["summary"], mem_text), p.policy.max_prompt_tokens)
                   for f in failed]
            seeds = [derive_seed(p.seed, e, "reflect", f["rollout_id"]) for f in failed]
            gens = engine.generate(ids, p.reflect.sampling, seeds)
            for f, prompt_ids, g, seed in zip(failed, ids, gens, seeds):
                raw = tok.decode(g.token_ids, skip_special_tokens=True)
                text, has_tag = parse_reflection(raw)
                text_ids = tok.encode(text, add_special_tokens=False)
                truncated = len(text_ids) > p.reflect.max_reflection_tokens
                if truncated:  # truncate rather than drop the episode (reference-code difference 7)
                    text = tok.decode(text_ids[: p.reflect.max_reflection_tokens], skip_special_tokens=True)
                rows.append({
                    "reflection_id": f"{f['rollout_id']}-refl", "rollout_id": f["rollout_id"], "task_id": f["task_id"],
                    "epoch": e, "memory_version": version, "memory_text": mem_text, "prompt_ids": prompt_ids,
                    "response_ids": g.token_ids, "raw_text": raw, "reflection": text, "has_tag": has_tag,
                    "truncated": truncated, "seed": seed,
                })
        write_table("reflections", rows, ctx.path("reflections"), ctx.lineage(inputs, KEYS, policy=ctx.policy(e - 1)))
        log.info("%d reflections (%d with a <prompt> block)", len(rows), sum(r["has_tag"] for r in rows))


if __name__ == "__main__":
    main()
