"""One round of Experiential Reinforcement Learning (experience -> reflection -> consolidation), top to bottom.

The method (arXiv 2602.13949; restated in docs/method.md): the policy attempts a task; if it
failed, the same policy reflects on the attempt and writes a revised system prompt; a second attempt runs under
that reflection; successful second attempts become memory and are distilled back under the plain prompt, so
the gain stays at deployment with no extra inference cost. RLVR is the same round with the first attempts only.

  step                      function here          DVC stage              writes
  0  task sets              task_sets()            stages/init.py         tasks_{train,test}.parquet
  1  first attempts         first_attempts()       stages/sample.py       attempts.parquet
  2  feedback (verifier)    feedback()             stages/feedback.py     feedback.parquet
  3  reflection             reflections()          stages/reflect.py      reflections.parquet
  4  second attempt         retries()              stages/retry.py        retries.parquet
  5  consolidation          consolidate()          stages/consolidate.py  samples.parquet, memory.parquet
  6  policy update          update()               stages/update.py       policy/, updates.parquet, steps.parquet
  7  evaluation             evaluate()             stages/evaluate.py     eval.parquet, metrics.json
     (beyond the paper)     evaluate_second_attempts()                    eval_retries.parquet

Each function takes the validated params ``p``, the epoch and the rows of the tables it reads, and returns the
rows of the tables it writes; the stages do the file I/O and the lineage. The pieces these steps call are in
their own modules: ``rollout`` (batched multi-turn play), ``prompts`` (every prompt), ``advantages`` (GRPO and
RAFT), ``losses`` and ``trainer`` (the clipped policy loss and the update loop), ``memory``, ``envs``.
Randomness comes only from seeds derived from (run seed, epoch, step, row id), never from global state.
Nothing here imports torch at module level: the model-free steps (feedback, consolidation) run without it.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

from pipeline.advantages import grpo, raft
from pipeline.config import Params
from pipeline.envs import Env, budget_of
from pipeline.episodes import episode_columns, outcome, retry_id, task_from_row, trace_from_row
from pipeline.memory import adopt, latest, slot_of
from pipeline.prompts import batch_line, parse_reflection, prompt_set, reflector_messages, retry_system
from pipeline.seeding import derive_seed

# ---- 0. task sets ----------------------------------------------------------------------------------------


def task_sets(p: Params, env: Env):
    """(train tasks, test tasks): deterministic per seed; no test map equals a training map."""
    train = env.generate("train", p.env.n_train, p.seed)
    keys = {env.map_key(t) for t in train}
    test = env.generate("test", p.env.n_test, p.seed, exclude=keys)
    return train, test


def task_rows(env: Env, tasks) -> list[dict]:
    return [
        {
            "task_id": t.task_id,
            "split": t.split,
            "env": env.name,
            "spec": json.dumps(t.spec, sort_keys=True),
            "optimal_len": t.optimal_len,
            "map_key": env.map_key(t),
        }
        for t in tasks
    ]


# ---- 1. first attempts -----------------------------------------------------------------------------------


def pick_tasks(pool: list[dict], k: int, seed: int, epoch: int) -> list[dict]:
    """The epoch's training tasks: a seeded draw without replacement from the pool (k <= pool is validated)."""
    rng = random.Random(derive_seed(seed, epoch, "sample-tasks"))
    return rng.sample(pool, k)


def first_attempts(p: Params, epoch: int, task_pool: list[dict], policy, env: Env) -> list[dict]:
    """``sample.rollouts_per_task[algorithm]`` attempts at each of the epoch's tasks under the plain system
    prompt s0: the experience the round learns from."""
    from pipeline.rollout import Episode, run_episodes

    tasks = pick_tasks(task_pool, p.sample.tasks_per_epoch, p.seed, epoch)
    s0 = prompt_set(p.policy.prompts, p.env.name).system
    episodes = []
    for t in tasks:
        for k in range(p.rollouts_per_task):
            rid = f"e{epoch}-{t['task_id']}-r{k}"
            episodes.append(Episode(rid, task_from_row(t), s0, derive_seed(p.seed, epoch, "sample", rid)))
    run_episodes(
        policy.engine,
        policy.tokenizer,
        env,
        episodes,
        p.sample.sampling,
        p.policy.history,
        p.policy.max_prompt_tokens,
        budget_of(p.env),
        desc=f"sample e{epoch}",
    )
    return [
        {
            "rollout_id": ep.rollout_id,
            "task_id": ep.task.task_id,
            "epoch": epoch,
            "sample_idx": i % p.rollouts_per_task,
            **episode_columns(ep),
        }
        for i, ep in enumerate(episodes)
    ]


# ---- 2. feedback -----------------------------------------------------------------------------------------


def feedback(p: Params, epoch: int, attempts: list[dict], env: Env) -> list[dict]:
    """The verifier: reward r1 and success (r1 >= tau), the environment's feedback text, the attempt summary the
    reflector will read, and the GRPO statistics of each task's group of rollouts."""
    budget = budget_of(p.env)
    prompts = prompt_set(p.policy.prompts, p.env.name)
    rows = []
    for a in attempts:
        trace = trace_from_row(a, budget)
        r = env.reward(trace)
        rows.append(
            {
                "rollout_id": a["rollout_id"],
                "task_id": a["task_id"],
                "epoch": epoch,
                "reward": r,
                "success": r >= p.consolidate.tau,
                "outcome": outcome(trace),
                "feedback": env.feedback(trace),
                "summary": env.summary(
                    trace, a["initial_observation"], prompts.compact_summary, prompts.annotated_summary
                ),
                "note": env.reflection_note(trace) if hasattr(env, "reflection_note") else None,
            }
        )
    stats = grpo([r["task_id"] for r in rows], [r["reward"] for r in rows])
    for r, (size, mean, std, adv) in zip(rows, stats):
        r.update(group_size=size, group_mean=mean, group_std=std, advantage=adv)
    return rows


# ---- 3. reflection ---------------------------------------------------------------------------------------


def reflections(p: Params, epoch: int, feedback_rows: list[dict], memory_rows: list[dict], policy) -> list[dict]:
    """Gate, then reflect: only attempts with r1 < tau are reflected on (reflecting on successes invites
    instance-specific shortcuts). The same policy, under the reflector prompt u, reads the attempt summary and
    feedback plus the latest memory, and writes a revised system prompt inside <prompt>...</prompt>. RLVR and
    the no-reflection ablation reflect on nothing."""
    slots = {f["rollout_id"]: slot_of(i, p.reflect.memory_slots) for i, f in enumerate(feedback_rows)}
    failed = [f for f in feedback_rows if f["reward"] < p.consolidate.tau] if p.reflects else []
    if not failed:
        return []
    from pipeline.rollout import encode_chat

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


# ---- 4. second attempt -----------------------------------------------------------------------------------


def _context(prompts, f: dict, batch: str) -> str:
    """The whole reflection context of a failed attempt (no memory), which the no-reflection ablation's second
    attempt reads in place of a reflection (the paper prompts; the tiny ones use the bare summary)."""
    return prompts.reflector_user.format(summary=f["summary"], memory=prompts.no_memory, batch=batch)


def retry_plan(p: Params, feedback_rows: list[dict], reflection_rows: list[dict]) -> list[tuple[dict, str | None, str]]:
    """(failed feedback row, reflection_id or None, system prompt) per second attempt: the reflection replaces
    s0 (the format reminder re-appended); in the no-reflection ablation, s0 + a generic instruction + the raw
    attempt summary. RLVR makes no second attempts."""
    if not p.retries:
        return []
    prompts = prompt_set(p.policy.prompts, p.env.name)
    batch = batch_line(feedback_rows)
    if p.ablation.no_reflection:
        return [
            (f, None, prompts.no_reflection_system.format(summary=f["summary"], context=_context(prompts, f, batch)))
            for f in feedback_rows
            if f["reward"] < p.consolidate.tau
        ]
    by_rollout = {f["rollout_id"]: f for f in feedback_rows}
    return [
        (by_rollout[r["rollout_id"]], r["reflection_id"], retry_system(prompts, r["reflection"]))
        for r in reflection_rows
    ]


def retries(
    p: Params,
    epoch: int,
    feedback_rows: list[dict],
    reflection_rows: list[dict],
    task_pool: list[dict],
    policy,
    env: Env,
) -> list[dict]:
    """Second attempts on the failed tasks under their reflections, reward r2. Each turn is also re-encoded
    under s0 (``distill_prompt_ids``): the distilled sample of consolidation. With ``retry.control`` every
    failed task is also replayed once under s0 alone (never trained): the plain second try a reflection must
    beat, on the same tasks."""
    todo = retry_plan(p, feedback_rows, reflection_rows)
    if not todo:
        return []
    from pipeline.rollout import Episode, replay_prompts, run_episodes

    budget = budget_of(p.env)
    tasks = {t["task_id"]: task_from_row(t) for t in task_pool}
    engine, tok = policy.engine, policy.tokenizer
    # retry.samples guided attempts per failure (episodes.retry_id)
    todo = [(f, refl_id, system, j) for f, refl_id, system in todo for j in range(p.retry.samples)]
    episodes = []
    for f, _, system, j in todo:
        rid = retry_id(f["rollout_id"], j)
        episodes.append(Episode(rid, tasks[f["task_id"]], system, derive_seed(p.seed, epoch, "retry", rid)))
    run_episodes(
        engine,
        tok,
        env,
        episodes,
        p.retry.sampling,
        p.policy.history,
        p.policy.max_prompt_tokens,
        budget,
        desc=f"retry e{epoch}",
    )
    s0 = prompt_set(p.policy.prompts, p.env.name).system
    controls: list = [None] * len(todo)
    if p.retry.control:  # one plain try per failure, beside its first guided attempt
        controls = [
            Episode(f"{ep.rollout_id}-control", ep.task, s0, derive_seed(p.seed, epoch, "control", ep.rollout_id))
            if j == 0
            else None
            for (_, _, _, j), ep in zip(todo, episodes)
        ]
        run_episodes(
            engine,
            tok,
            env,
            [c for c in controls if c is not None],
            p.retry.sampling,
            p.policy.history,
            p.policy.max_prompt_tokens,
            budget,
            desc=f"control e{epoch}",
        )
    rows = []
    for (f, refl_id, _, _), ep, ctl in zip(todo, episodes, controls):
        trace = ep.trace(budget)
        r = env.reward(trace)
        c = env.reward(ctl.trace(budget)) if ctl is not None else None
        rows.append(
            {
                "retry_id": ep.rollout_id,
                "rollout_id": f["rollout_id"],
                "reflection_id": refl_id,
                "task_id": f["task_id"],
                "epoch": epoch,
                **episode_columns(ep),
                "distill_prompt_ids": replay_prompts(tok, ep, s0, p.policy.history, p.policy.max_prompt_tokens),
                "reward": r,
                "success": r >= p.consolidate.tau,
                "outcome": outcome(trace),
                "control_reward": c,
                "control_success": None if c is None else c >= p.consolidate.tau,
            }
        )
    return rows


# ---- 5. consolidation ------------------------------------------------------------------------------------


def _sample(
    kind, source_id, epoch, task_id, rollout_id, reflection_id, retry_id, reward, adv, prompt_ids, response_ids
):
    return {
        "sample_id": f"{source_id}/{kind}",
        "epoch": epoch,
        "kind": kind,
        "task_id": task_id,
        "rollout_id": rollout_id,
        "reflection_id": reflection_id,
        "retry_id": retry_id,
        "reward": float(reward),
        "advantage": float(adv),
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
                    a["task_id"],
                    a["rollout_id"],
                    None,
                    None,
                    f["reward"],
                    f["advantage"],
                    a["prompt_ids"],
                    a["response_ids"],
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
                    r["task_id"],
                    r["rollout_id"],
                    r["reflection_id"],
                    retries_of[r["rollout_id"]][0]["retry_id"],  # its first guided retry (rows keep their order)
                    rew,
                    adv,
                    [r["prompt_ids"]],
                    [r["response_ids"]],
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
                    r["task_id"],
                    r["rollout_id"],
                    r["reflection_id"],
                    r["retry_id"],
                    r["reward"],
                    adv,
                    r["prompt_ids"],
                    r["response_ids"],
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
                        r["task_id"],
                        r["rollout_id"],
                        r["reflection_id"],
                        r["retry_id"],
                        r["reward"],
                        raft(r["reward"]),
                        r["distill_prompt_ids"],
                        r["response_ids"],
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


# ---- 6. policy update ------------------------------------------------------------------------------------


@dataclass
class Update:
    """What one update leaves: the trained model (as accelerate holds it) and the audit rows."""

    accelerator: object
    model: object
    optimizer: object
    tokenizer: object
    sample_rows: list[dict]  # one per (sample, ppo epoch): advantage, tokens, loss, KL, optimizer step
    step_rows: list[dict]  # one per optimizer step: loss, KL, gradient norm, lr
    carry_optimizer: bool


def update(
    p: Params,
    epoch: int,
    samples: list[dict],
    parent: Path,
    initial: Path,
    replay_tasks: list[dict] | None = None,
    env: Env | None = None,
) -> Update:
    """One epoch of updates on the round's samples: per-token PPO clip (range [1 - clip_low, 1 + clip_high],
    dual clip c for negative advantages) plus a k3 KL penalty to the frozen initial policy, summed over a
    sample's own tokens and averaged over samples; old log-probs recomputed just before the update. Minibatches
    of ``update.minibatch_size`` samples, ``update.ppo_epochs`` passes, AdamW on fp32 master weights whatever the
    storage dtype (with bf16 compute on a GPU), its moments and the master weights carried from epoch to epoch,
    lr on a cosine over the epochs. Through accelerate: one process on a CPU, DDP under ``accelerate launch``,
    each process training its own shard. With ``update.replay_coef`` > 0 (the tiny model only) each optimizer
    step also replays warm-start exercises drawn on ``replay_tasks`` of ``env``."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, gather_object

    from pipeline import checkpoint
    from pipeline.engine import configure_threads, load_causal_lm
    from pipeline.trainer import train_epoch

    u = p.update
    configure_threads()
    cuda = torch.cuda.is_available()
    # Buffers (rotary frequencies) are the same everywhere: not broadcasting them keeps a forward pass free of
    # collectives, so processes whose shards need different numbers of micro-batches cannot deadlock.
    accelerator = Accelerator(
        cpu=not cuda,
        mixed_precision="bf16" if cuda and p.policy.dtype == "bfloat16" else "no",
        kwargs_handlers=[DistributedDataParallelKwargs(broadcast_buffers=False)],
    )
    torch.manual_seed(derive_seed(p.seed, epoch, "update") % 2**31)
    checkpoint.verify(parent.parent)
    model, tok = checkpoint.load_for_training(parent, p.policy.dtype)
    if u.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    checkpoint.verify(initial.parent, (checkpoint.POLICY,))
    ref_model, _ = load_causal_lm(str(initial), p.policy.dtype, device=str(accelerator.device))
    for q in ref_model.parameters():
        q.requires_grad_(False)
    lr = u.lr_at(epoch)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=u.weight_decay)
    state = parent.parent / checkpoint.STATE / checkpoint.OPTIMIZER_FILE
    if u.carry_optimizer_state and state.is_file():  # every process loads the same moments
        checkpoint.load_optimizer_state(optimizer, list(model.named_parameters()), state)
        for g in optimizer.param_groups:
            g["lr"], g["weight_decay"] = lr, u.weight_decay
    model, optimizer = accelerator.prepare(model, optimizer)
    mine = samples[accelerator.process_index :: accelerator.num_processes]
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    replayed = None
    if u.replay_coef > 0:  # every process its own share of one epoch's exercises
        from pipeline.tiny.warmstart import replay_encoded

        n_steps = u.ppo_epochs * math.ceil(len(samples) / u.minibatch_size)
        replayed = replay_encoded(p, epoch, env, replay_tasks, tok, n_steps * accelerator.num_processes)[
            accelerator.process_index :: accelerator.num_processes
        ]
    sample_rows, step_rows = train_epoch(
        accelerator, model, ref_model, optimizer, mine, u, pad, derive_seed(p.seed, epoch, "update-order"), replayed
    )
    sample_rows = gather_object(sample_rows)  # steps: the main process's view is recorded
    accelerator.wait_for_everyone()
    return Update(accelerator, model, optimizer, tok, sample_rows, step_rows, u.carry_optimizer_state)


# ---- 7. evaluation ---------------------------------------------------------------------------------------


def evaluate(p: Params, epoch: int, test_tasks: list[dict], policy, env: Env) -> tuple[list[dict], list]:
    """Held-out first attempts only, as at deployment: s0, no reflection, no memory, ``evaluate.samples_per_task``
    samples per test task. Returns the eval rows and the episodes (for :func:`kl_to_initial` and
    :func:`evaluate_second_attempts`)."""
    from pipeline.rollout import Episode, run_episodes

    budget = budget_of(p.env)
    tasks = [task_from_row(t) for t in test_tasks]
    s0 = prompt_set(p.policy.prompts, p.env.name).system
    n = p.evaluate.samples_per_task
    episodes = [
        Episode(f"e{epoch}-{t.task_id}-eval{k}", t, s0, derive_seed(p.seed, epoch, "evaluate", t.task_id, k))
        for t in tasks
        for k in range(n)
    ]
    run_episodes(
        policy.engine,
        policy.tokenizer,
        env,
        episodes,
        p.evaluate.sampling,
        p.policy.history,
        p.policy.max_prompt_tokens,
        budget,
        desc=f"evaluate e{epoch}",
    )
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
    from pipeline.rollout import Episode, run_episodes

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
            systems[f["rollout_id"]] = prompts.no_reflection_system.format(
                summary=f["summary"], context=_context(prompts, f, batch)
            )
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
    run_episodes(
        policy.engine,
        policy.tokenizer,
        env,
        plain + guided,
        p.evaluate.sampling,
        p.policy.history,
        p.policy.max_prompt_tokens,
        budget,
        desc=f"evaluate e{epoch} second attempts",
    )
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
    from pipeline.trainer import mean_token_kl

    episodes = [ep for i, ep in enumerate(episodes) if i % n < k]
    ref, _ = load_causal_lm(str(initial), p.policy.dtype, device=str(policy.engine.device))
    replies = [{"prompt_ids": ep.prompt_ids, "response_ids": ep.response_ids} for ep in episodes]
    return mean_token_kl(model, ref, replies, policy.engine.pad_id, policy.engine.device, p.update.micro_batch_tokens)
