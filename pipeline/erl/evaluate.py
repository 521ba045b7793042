"""Step 7, evaluation: held-out first attempts as at deployment, and (beyond the paper) second attempts after the
policy's own reflection."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import Params
from pipeline.envs import Env, budget_of
from pipeline.episodes import outcome, task_from_row
from pipeline.erl.reflect import reflections
from pipeline.prompts import batch_line, no_reflection_prompt, prompt_set, retry_system
from pipeline.rollout import Episode, play
from pipeline.seeding import derive_seed


def evaluate(p: Params, epoch: int, test_tasks: list[dict], policy, env: Env) -> tuple[list[dict], list]:
    """Held-out first attempts only, as at deployment: s0, no reflection, no memory, ``evaluate.samples_per_task``
    samples per test task. Returns the eval rows and the episodes (for :func:`kl_to_initial` and
    :func:`evaluate_second_attempts`)."""
    budget = budget_of(p.env)
    tasks = [task_from_row(t) for t in test_tasks]
    s0 = prompt_set(p.policy.prompts, p.env.name).system
    n = p.evaluate.samples_per_task
    episodes = [
        Episode(f"e{epoch}-{t.task_id}-eval{k}", t, s0, derive_seed(p.seed, epoch, "evaluate", t.task_id, k))
        for t in tasks
        for k in range(n)
    ]
    play(p, policy, env, episodes, p.evaluate.sampling, f"evaluate e{epoch}")
    rows = []
    for i, ep in enumerate(episodes):
        trace = ep.trace(budget)
        r = env.reward(trace)
        rows.append(
            {
                "rollout_id": ep.rollout_id,
                "task_id": ep.task.task_id,
                "epoch": epoch,
                "sample_idx": i % n,
                "reward": r,
                "success": r >= p.consolidate.tau,
                "outcome": outcome(trace),
                "n_turns": len(ep.steps),
                "n_tool_calls": ep.tool_calls,
                "actions": [s.action for s in ep.steps],
                "responses": ep.responses,
            }
        )
    return rows, episodes


def evaluate_second_attempts(
    p: Params, epoch: int, rows: list[dict], episodes, memory_rows: list[dict], policy, env: Env
) -> list[dict]:
    """Beyond the paper, which evaluates first attempts only: for each failed held-out first attempt, the policy's
    own reflection (reading the current memory, as in training) and a second attempt under it, and a plain second
    try under s0 (for RLVR, its best of two attempts). Evaluation sampling throughout; never trained."""
    budget, prompts = budget_of(p.env), prompt_set(p.policy.prompts, p.env.name)
    s0 = prompts.system
    by_id = {ep.rollout_id: ep for ep in episodes}
    summaries = [
        {
            "rollout_id": r["rollout_id"],
            "task_id": r["task_id"],
            "reward": r["reward"],
            "success": r["success"],
            "summary": env.summary(
                by_id[r["rollout_id"]].trace(budget),
                by_id[r["rollout_id"]].initial_observation,
                prompts.compact_summary,
                prompts.annotated_summary,
            ),
        }
        for r in rows
    ]
    failed = [f for f in summaries if not f["success"]]
    if not failed:
        return []
    systems: dict[str, str] = {}
    refl: dict[str, dict] = {}
    if p.reflects:
        for r in reflections(p, epoch, summaries, memory_rows, policy):
            refl[r["rollout_id"]] = r
            systems[r["rollout_id"]] = retry_system(prompts, r["reflection"])
    elif p.retries:  # the no-reflection ablation's second attempt
        batch = batch_line(summaries)
        for f in failed:
            systems[f["rollout_id"]] = no_reflection_prompt(prompts, f["summary"], batch)
    task = {ep.rollout_id: ep.task for ep in episodes}
    plain = [
        Episode(
            f"{f['rollout_id']}-plain",
            task[f["rollout_id"]],
            s0,
            derive_seed(p.seed, epoch, "eval-plain", f["rollout_id"]),
        )
        for f in failed
    ]
    guided = [
        Episode(f"{rid}-guided", task[rid], system, derive_seed(p.seed, epoch, "eval-guided", rid))
        for rid, system in systems.items()
    ]
    play(p, policy, env, plain + guided, p.evaluate.sampling, f"evaluate e{epoch} second attempts")
    second = {ep.rollout_id: env.reward(ep.trace(budget)) for ep in plain + guided}
    out = []
    for f in failed:
        rid, g = f["rollout_id"], second.get(f"{f['rollout_id']}-guided")
        out.append(
            {
                "rollout_id": rid,
                "task_id": f["task_id"],
                "epoch": epoch,
                "memory_version": refl[rid]["memory_version"] if rid in refl else None,
                "reflection": refl[rid]["reflection"] if rid in refl else None,
                "guided_reward": g,
                "guided_success": None if g is None else g >= p.consolidate.tau,
                "plain_reward": second[f"{rid}-plain"],
                "plain_success": second[f"{rid}-plain"] >= p.consolidate.tau,
            }
        )
    return out


def kl_to_initial(p: Params, policy, initial: Path, episodes) -> float | None:
    """Per-token KL(policy[e] || policy[0]) on the replies of the first ``evaluate.kl_samples`` held-out samples
    of each task, exact over the vocabulary: how far the policy has moved from where it started (transformers
    engine only; None with vLLM or kl_samples 0). ``episodes`` are :func:`evaluate`'s, k samples per task in a
    row."""
    model = getattr(policy.engine, "model", None)
    k, n = p.evaluate.kl_samples, p.evaluate.samples_per_task
    if model is None or k == 0:
        return None
    from pipeline.engine import load_causal_lm
    from pipeline.logprobs import mean_token_kl

    episodes = [ep for i, ep in enumerate(episodes) if i % n < k]
    ref, _ = load_causal_lm(str(initial), p.policy.dtype, device=str(policy.engine.device))
    replies = [{"prompt_ids": ep.prompt_ids, "response_ids": ep.response_ids} for ep in episodes]
    return mean_token_kl(model, ref, replies, policy.engine.pad_id, policy.engine.device, p.update.micro_batch_tokens)
