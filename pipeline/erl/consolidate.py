"""Step 5, consolidation: the round's training samples, four kinds trained by one loss, and the memory after the
round. Needs no model."""

from __future__ import annotations

import math

from pipeline.advantages import grpo, raft
from pipeline.config import Params
from pipeline.memory import adopt


def _sample(
    kind: str,
    source_id: str,
    epoch: int,
    row: dict,
    *,
    reward,
    advantage,
    prompt_ids,
    response_ids,
    reflection_id=None,
    retry_id=None,
) -> dict:
    """One training sample of ``kind`` built from ``row`` (its task_id and rollout_id), with its own id
    ``<source_id>/<kind>`` and the ids of the reflection and retry it came from."""
    return {
        "sample_id": f"{source_id}/{kind}",
        "epoch": epoch,
        "kind": kind,
        "task_id": row["task_id"],
        "rollout_id": row["rollout_id"],
        "reflection_id": reflection_id,
        "retry_id": retry_id,
        "reward": float(reward),
        "advantage": float(advantage),
        "prompt_ids": prompt_ids,
        "response_ids": response_ids,
        "n_tokens": sum(len(r) for r in response_ids),
    }


def training_samples(p: Params, epoch: int, attempts, feedback_rows, reflection_rows, retry_rows) -> list[dict]:
    """The round's training samples, four kinds trained by one loss:

      first       s0 + task -> y1           GRPO over the task's rollouts
      reflection  u + summary -> reflection GRPO over the task's failed rollouts, reward = r2 of the retry it guided
      second      reflection + task -> y2   GRPO over the task's failed rollouts
      distilled   s0 + task -> y2           RAFT: A = max(r2, 0), successful retries only (unless distill_failed)

    The distilled sample is the consolidation: the behaviour the reflection produced, trained without it."""
    c = p.consolidate
    fb = {f["rollout_id"]: f for f in feedback_rows}
    out: list[dict] = []
    if c.train_first:
        for a in attempts:
            f = fb[a["rollout_id"]]
            out.append(
                _sample(
                    "first",
                    a["rollout_id"],
                    epoch,
                    a,
                    reward=f["reward"],
                    advantage=f["advantage"],
                    prompt_ids=a["prompt_ids"],
                    response_ids=a["response_ids"],
                )
            )
    retries_of: dict[str, list[dict]] = {}
    for r in retry_rows:
        retries_of.setdefault(r["rollout_id"], []).append(r)
    if c.train_reflection and reflection_rows:
        # Each reflection is counted once (docs/method.md 5.2), rewarded with its retries' mean reward.
        rewards = [
            math.fsum(x["reward"] for x in retries_of[r["rollout_id"]]) / len(retries_of[r["rollout_id"]])
            for r in reflection_rows
        ]
        stats = grpo([r["task_id"] for r in reflection_rows], rewards)
        for r, rew, (_, _, _, adv) in zip(reflection_rows, rewards, stats):
            out.append(
                _sample(
                    "reflection",
                    r["reflection_id"],
                    epoch,
                    r,
                    reward=rew,
                    advantage=adv,
                    prompt_ids=[r["prompt_ids"]],
                    response_ids=[r["response_ids"]],
                    reflection_id=r["reflection_id"],
                    retry_id=retries_of[r["rollout_id"]][0]["retry_id"],  # its first guided retry (rows keep order)
                )
            )
    if c.train_second and retry_rows:
        stats = grpo([r["task_id"] for r in retry_rows], [r["reward"] for r in retry_rows])
        for r, (_, _, _, adv) in zip(retry_rows, stats):
            out.append(
                _sample(
                    "second",
                    r["retry_id"],
                    epoch,
                    r,
                    reward=r["reward"],
                    advantage=adv,
                    prompt_ids=r["prompt_ids"],
                    response_ids=r["response_ids"],
                    reflection_id=r["reflection_id"],
                    retry_id=r["retry_id"],
                )
            )
    if c.train_distilled:
        for r in retry_rows:
            if r["success"] or c.distill_failed:
                out.append(
                    _sample(
                        "distilled",
                        r["retry_id"],
                        epoch,
                        r,
                        reward=r["reward"],
                        advantage=raft(r["reward"]),
                        prompt_ids=r["distill_prompt_ids"],
                        response_ids=r["response_ids"],
                        reflection_id=r["reflection_id"],
                        retry_id=r["retry_id"],
                    )
                )
    if c.skip_zero_advantage:
        out = [s for s in out if s["advantage"] != 0.0]
    return out


def next_memory(p: Params, epoch: int, memory_rows, reflection_rows, retry_rows) -> list[dict]:
    """The memory after this round: the previous versions plus each reflection whose second attempt succeeded
    (r2 >= tau, docs/method.md 5.1). The memory is read by later reflections, never by a first attempt. Nothing
    is stored in the no-memory ablation."""
    if p.ablation.no_memory or not reflection_rows:
        return [dict(r) for r in memory_rows]
    refl = {r["reflection_id"]: r for r in reflection_rows}
    first_win: dict[str, dict] = {}  # each reflection adopted once, however many of its retries succeeded
    for r in sorted(retry_rows, key=lambda r: r["retry_id"]):
        if r["reflection_id"] and r["reward"] >= p.consolidate.tau:
            first_win.setdefault(r["reflection_id"], r)
    wins = sorted(first_win.values(), key=lambda r: r["retry_id"])
    return adopt(
        memory_rows,
        [
            {
                "reflection_id": r["reflection_id"],
                "retry_id": r["retry_id"],
                "text": refl[r["reflection_id"]]["reflection"],
                "slot": refl[r["reflection_id"]]["memory_slot"],
            }
            for r in wins
        ],
        epoch,
    )


def consolidate(p: Params, epoch: int, attempts, feedback_rows, reflection_rows, retry_rows, memory_rows):
    """(training samples, memory rows) of the round."""
    samples = training_samples(p, epoch, attempts, feedback_rows, reflection_rows, retry_rows)
    return samples, next_memory(p, epoch, memory_rows, reflection_rows, retry_rows)
