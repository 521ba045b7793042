"""Step 3, reflection: the same policy, under the reflector prompt u, writes a revised system prompt for each failed
first attempt."""

from __future__ import annotations

from pipeline.config import Params
from pipeline.memory import latest, slot_of
from pipeline.prompts import batch_line, parse_reflection, prompt_set, reflector_messages
from pipeline.rollout import encode_chat
from pipeline.seeding import derive_seed


def reflections(p: Params, epoch: int, feedback_rows: list[dict], memory_rows: list[dict], policy) -> list[dict]:
    """Gate, then reflect: only attempts with r1 < tau are reflected on (reflecting on successes invites
    instance-specific shortcuts). The reflector reads the attempt summary and feedback plus the latest memory, and
    writes a revised system prompt inside <prompt>...</prompt>. RLVR and the no-reflection ablation reflect on
    nothing."""
    slots = {f["rollout_id"]: slot_of(i, p.reflect.memory_slots) for i, f in enumerate(feedback_rows)}
    failed = [f for f in feedback_rows if f["reward"] < p.consolidate.tau] if p.reflects else []
    if not failed:
        return []
    prompts = prompt_set(p.policy.prompts, p.env.name)
    batch = batch_line(feedback_rows)
    tok = policy.tokenizer
    read = [(0, None) if p.ablation.no_memory else latest(memory_rows, slots[f["rollout_id"]]) for f in failed]
    ids = [
        encode_chat(tok, reflector_messages(prompts, f["summary"], mem_text, batch), p.policy.max_prompt_tokens)
        for f, (_, mem_text) in zip(failed, read)
    ]
    seeds = [derive_seed(p.seed, epoch, "reflect", f["rollout_id"]) for f in failed]
    gens = policy.engine.generate(ids, p.reflect.sampling, seeds)
    rows = []
    for f, (version, mem_text), prompt_ids, g, seed in zip(failed, read, ids, gens, seeds):
        raw = tok.decode(g.token_ids, skip_special_tokens=True)
        text, has_tag = parse_reflection(raw)  # no tag: the whole text (docs/method.md 5.3)
        text_ids = tok.encode(text, add_special_tokens=False)
        truncated = len(text_ids) > p.reflect.max_reflection_tokens
        if truncated:  # truncate rather than drop the episode (docs/method.md 5.4)
            text = tok.decode(text_ids[: p.reflect.max_reflection_tokens], skip_special_tokens=True)
        rows.append(
            {
                "reflection_id": f"{f['rollout_id']}-refl",
                "rollout_id": f["rollout_id"],
                "task_id": f["task_id"],
                "epoch": epoch,
                "memory_version": version,
                "memory_slot": slots[f["rollout_id"]],
                "memory_text": mem_text,
                "prompt_ids": prompt_ids,
                "response_ids": g.token_ids,
                "raw_text": raw,
                "reflection": text,
                "has_tag": has_tag,
                "truncated": truncated,
                "seed": seed,
            }
        )
    return rows
