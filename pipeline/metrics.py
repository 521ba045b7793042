"""Per-epoch metrics (the names `dvc metrics show` and the report use), computed from the epoch's tables.
No torch here.

eval_success        held-out first-attempt success rate (s0 only, no reflection, no memory)
eval_reward         held-out mean first-attempt reward
eval_turns          held-out mean turns per first attempt
eval_tool_calls     held-out mean tool calls (QA: searches) per first attempt; 0 for environments without tools
eval_kl             per-token KL(policy[e] || policy[0]), exact over the vocabulary, on the first
                    evaluate.kl_samples held-out replies of each task
eval_reflect_success   held-out success after one more attempt guided by the policy's own reflection on each
                    failure (evaluate.reflect_every; beyond the paper)
eval_two_tries_success held-out success after one more plain attempt under s0 on each failure (best of two)
train_pre_success   training success of first attempts, before reflection
train_post_success  training success after reflection: a first-attempt success counts, else the retry's
reflections         reflections generated this epoch
reflections_tagged  of which with a <prompt>...</prompt> block
reflections_with_note  of which end with the note of their attempt's feedback (the fact the warm start teaches
                    the tiny reflector to copy, e.g. "last right 2 0"; 0 where the environment has no note)
retry_success       success rate of second attempts
retry_control_success  success rate of plain second tries under s0 on the same failed tasks (retry.control)
memory_adopted      reflections that became a memory version this epoch
samples_<kind>      training samples of each kind
update_loss         mean loss per optimizer step (per-sample sum over tokens, mean over samples)
update_kl           per-token k3 KL to the epoch-0 policy at the epoch's last optimizer step
update_kl_first     the same at its first step (= KL of the previous epoch's policy on this epoch's samples)
grad_norm           mean gradient norm before clipping
"""

from __future__ import annotations

from collections import Counter

from pipeline.episodes import is_first_retry


def _mean(xs) -> float | None:
    xs = list(xs)
    return sum(xs) / len(xs) if xs else None


def eval_metrics(eval_rows: list[dict], second: list[dict] | None = None) -> dict:
    """Held-out metrics; with ``second`` (the eval_retries rows of an epoch that ran them) also the success after
    one more attempt, guided by the policy's reflection or plain."""
    out = {
        "eval_success": _mean(float(r["success"]) for r in eval_rows),
        "eval_reward": _mean(r["reward"] for r in eval_rows),
        "eval_turns": _mean(r["n_turns"] for r in eval_rows),
        "eval_tool_calls": _mean(r["n_tool_calls"] for r in eval_rows),
    }
    if second is not None:

        def after(kind: str) -> float | None:
            if any(r[f"{kind}_success"] is None for r in second):
                return None  # no such second attempt in this run (RLVR has no reflections)
            won = {r["rollout_id"] for r in second if r[f"{kind}_success"]}
            return _mean(float(r["success"] or r["rollout_id"] in won) for r in eval_rows)

        out["eval_reflect_success"] = after("guided")
        out["eval_two_tries_success"] = after("plain")
    return out


def train_metrics(feedback, reflections, retries, memory, samples, steps, epoch: int) -> dict:
    # after one more attempt: the first guided retry of each failure (retry.samples may add more)
    retry_ok = {r["rollout_id"]: r["success"] for r in retries if is_first_retry(r["retry_id"])}
    note = {f["rollout_id"]: f.get("note") for f in feedback}
    kinds = Counter(s["kind"] for s in samples)
    return {
        "train_pre_success": _mean(float(f["success"]) for f in feedback),
        "train_post_success": _mean(float(f["success"] or retry_ok.get(f["rollout_id"], False)) for f in feedback),
        "reflections": len(reflections),
        "reflections_tagged": sum(bool(r["has_tag"]) for r in reflections),
        "reflections_with_note": sum(
            1
            for r in reflections
            if note.get(r["rollout_id"]) and r["reflection"].strip().endswith(note[r["rollout_id"]])
        ),
        "retry_success": _mean(float(r["success"]) for r in retries),
        "retry_control_success": _mean(
            float(r["control_success"]) for r in retries if r.get("control_success") is not None
        ),
        "memory_adopted": sum(1 for m in memory if m["epoch"] == epoch),
        **{f"samples_{k}": kinds.get(k, 0) for k in ("first", "reflection", "second", "distilled")},
        "update_loss": _mean(s["loss"] for s in steps),
        "update_kl": steps[-1]["kl"] if steps else None,
        "update_kl_first": steps[0]["kl"] if steps else None,
        "grad_norm": _mean(s["grad_norm"] for s in steps),
    }
