"""Consolidation: turn one round's attempts, reflections and retries into training samples of four kinds
(method page, section 2) and the next memory version. Pure table logic, no torch, no tokenizer: every
token sequence was recorded by the stage that produced it."""
from __future__ import annotations

from pipeline.advantages import grpo, raft
from pipeline.config import Params
from pipeline.memory import adopt


def _sample(kind, source_id, epoch, task_id, rollout_id, reflection_id, retry_id, reward, adv, prompt_ids, response_ids):
    return {
        "sample_id": f"{source_id}/{kind}", "epoch": epoch, "kind": kind, "task_id": task_id,
        "rollout_id": rollout_id, "reflection_id": reflection_id, "retry_id": retry_id, "reward": float(reward),
        "advantage": float(adv), "prompt_ids": prompt_ids, "response_ids": response_ids,
        "n_tokens": sum(len(r) for r in response_ids),
    }


def build_samples(p: Params, epoch: int, attempts, feedback, reflections, retries) -> list[dict]:
    c = p.consolidate
    fb = {f["rollout_id"]: f for f in feedback}
    out: list[dict] = []
    if c.train_first:
        for a in attempts:
            f = fb[a["rollout_id"]]
            out.append(_sample("first", a["rollout_id"], epoch, a["task_id"], a["rollout_id"], None, None,
                               f["reward"], f["advantage"], a["prompt_ids"], a["response_ids"]))
    retry_of = {r["rollout_id"]: r for r in retries}
    if c.train_reflection and reflections:
        # Reward of a reflection = the reward of the second attempt it guided; grouped over the task's
        # failed rollouts. Each reflection is counted once (reference-code difference 4).
        rewards = [retry_of[r["rollout_id"]]["reward"] for r in reflections]
        stats = grpo([r["task_id"] for r in reflections], rewards)
        for r, rew, (_, _, _, adv) in zip(reflections, rewards, stats):
            out.append(_sample("reflection", r["reflection_id"], epoch, r["task_id"], r["rollout_id"], r["reflection_id"],
                               retry_of[r["rollout_id"]]["retry_id"], rew, adv, [r["prompt_ids"]], [r["response_ids"]]))
    if c.train_second and retries:
        stats = grpo([r["task_id"] for r in retries], [r["reward"] for r in retries])
        for r, (_, _, _, adv) in zip(retries, stats):
            out.append(_sample("second", r["retry_id"], epoch, r["task_id"], r["rollout_id"], r["reflection_id"],
                               r["retry_id"], r["reward"], adv, r["prompt_ids"], r["response_ids"]))
    if c.train_distilled:
        for r in retries:
            if r["success"] or c.distill_failed:
                out.append(_sample("distilled", r["retry_id"], epoch, r["task_id"], r["rollout_id"], r["reflection_id"],
                                   r["retry_id"], r["reward"], raft(r["reward"]), r["distill_prompt_ids"], r["response_ids"]))
    if c.skip_zero_advantage:
        out = [s for s in out if s["advantage"] != 0.0]
    return out


def next_memory(p: Params, epoch: int, memory_rows, reflections, retries) -> list[dict]:
    """Previous memory versions plus the reflections whose second attempt succeeded (none with no_memory)."""
    if p.ablation.no_memory or not reflections:
        return [dict(r) for r in memory_rows]
    text = {r["reflection_id"]: r["reflection"] for r in reflections}
    wins = sorted((r for r in retries if r["reflection_id"] and r["reward"] >= p.consolidate.tau), key=lambda r: r["retry_id"])
    return adopt(memory_rows, [{"reflection_id": r["reflection_id"], "retry_id": r["retry_id"], "text": text[r["reflection_id"]]}
                               for r in wins], epoch)
