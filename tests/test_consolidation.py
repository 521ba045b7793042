"""Consolidation (pipeline/erl/consolidate.py, step 5) and pipeline/memory.py on small fake tables (only the columns they read)."""

from __future__ import annotations

import math

import pytest

from pipeline import memory
from pipeline.advantages import EPS
from pipeline.config import Params
from pipeline.erl.consolidate import next_memory
from pipeline.erl.consolidate import training_samples as build_samples

EPOCH = 2


def params(**over) -> Params:
    """params.yaml's values, but keeping zero-advantage samples (the tests count every sample), with ``over``."""
    over = {**over, "consolidate": {"skip_zero_advantage": False, **over.get("consolidate", {})}}
    return Params.model_validate(over)


# Task t1: rollouts a, b, c (a succeeds; b, c fail and are reflected on and retried; b's retry succeeds).
# Task t2: rollouts d, e (e succeeds; d fails, is reflected on, and its retry succeeds: a group of one).
FIRST = {"a": ("t1", 1.0), "b": ("t1", 0.0), "c": ("t1", 0.0), "d": ("t2", 0.0), "e": ("t2", 1.0)}
RETRY = {"b": 1.0, "c": 0.0, "d": 1.0}


def tables():
    attempts = [
        {"rollout_id": r, "task_id": t, "prompt_ids": [[1, 2], [3]], "response_ids": [[10], [11, 12]]}
        for r, (t, _) in FIRST.items()
    ]
    feedback = [
        {"rollout_id": r, "task_id": t, "reward": rew, "advantage": 0.1 * i}
        for i, (r, (t, rew)) in enumerate(FIRST.items())
    ]
    reflections = [
        {
            "reflection_id": f"{r}/f",
            "rollout_id": r,
            "memory_slot": 0,
            "task_id": FIRST[r][0],
            "prompt_ids": [5, 6, 7],
            "response_ids": [8, 9],
            "reflection": f"rules from {r}",
        }
        for r in RETRY
    ]
    retries = [
        {
            "retry_id": f"{r}/y",
            "rollout_id": r,
            "reflection_id": f"{r}/f",
            "task_id": FIRST[r][0],
            "reward": rew,
            "success": rew >= 1.0,
            "prompt_ids": [[20, 21]],
            "response_ids": [[30, 31, 32]],
            "distill_prompt_ids": [[40]],
        }
        for r, rew in RETRY.items()
    ]
    return attempts, feedback, reflections, retries


def by_kind(samples) -> dict[str, dict[str, dict]]:
    out: dict[str, dict[str, dict]] = {}
    for s in samples:
        out.setdefault(s["kind"], {})[s["sample_id"]] = s
    return out


def test_erl_produces_four_kinds_with_source_ids():
    samples = build_samples(params(), EPOCH, *tables())
    kinds = by_kind(samples)
    assert set(kinds) == {"first", "reflection", "second", "distilled"}
    assert sorted(kinds["first"]) == [f"{r}/first" for r in sorted(FIRST)]
    assert sorted(kinds["reflection"]) == [f"{r}/f/reflection" for r in sorted(RETRY)]
    assert sorted(kinds["second"]) == [f"{r}/y/second" for r in sorted(RETRY)]
    assert sorted(kinds["distilled"]) == ["b/y/distilled", "d/y/distilled"]  # successful retries only
    assert len({s["sample_id"] for s in samples}) == len(samples)
    for s in samples:
        assert s["epoch"] == EPOCH
        assert s["n_tokens"] == sum(len(r) for r in s["response_ids"])
    for r, s in ((k[: -len("/first")], s) for k, s in kinds["first"].items()):
        assert (s["rollout_id"], s["reflection_id"], s["retry_id"], s["task_id"]) == (r, None, None, FIRST[r][0])
    for kind in ("reflection", "second", "distilled"):
        for s in kinds[kind].values():
            r = s["rollout_id"]
            assert (s["reflection_id"], s["retry_id"], s["task_id"]) == (f"{r}/f", f"{r}/y", FIRST[r][0])


def test_first_samples_carry_feedback_reward_and_advantage():
    attempts, feedback, *_ = tables()
    kinds = by_kind(build_samples(params(), EPOCH, *tables()))
    for f in feedback:
        s = kinds["first"][f"{f['rollout_id']}/first"]
        assert s["reward"] == f["reward"] and s["advantage"] == f["advantage"]
        assert s["prompt_ids"] == [[1, 2], [3]] and s["response_ids"] == [[10], [11, 12]]


def test_reflection_and_second_rewards_and_grouped_advantages():
    kinds = by_kind(build_samples(params(), EPOCH, *tables()))
    # t1's failed rollouts b, c: retry rewards [1, 0] -> mean .5, unbiased std sqrt(.5); t2: d alone -> A = R
    a = 0.5 / (math.sqrt(0.5) + EPS)
    expected = {"b": (1.0, a), "c": (0.0, -a), "d": (1.0, 1.0)}
    for r, (reward, adv) in expected.items():
        refl, second = kinds["reflection"][f"{r}/f/reflection"], kinds["second"][f"{r}/y/second"]
        assert refl["reward"] == reward == second["reward"]  # the reflection's reward is its retry's
        assert refl["advantage"] == pytest.approx(adv) and second["advantage"] == pytest.approx(adv)
        assert refl["prompt_ids"] == [[5, 6, 7]] and refl["response_ids"] == [[8, 9]]
        assert second["prompt_ids"] == [[20, 21]] and second["response_ids"] == [[30, 31, 32]]


def test_distilled_uses_distill_prompt_ids_and_raft():
    kinds = by_kind(build_samples(params(), EPOCH, *tables()))
    for s in kinds["distilled"].values():
        assert s["prompt_ids"] == [[40]]  # the same turns under s0
        assert s["response_ids"] == [[30, 31, 32]]
        assert s["advantage"] == max(s["reward"], 0.0) == 1.0


def test_distill_failed_adds_failed_retries_with_zero_advantage():
    kinds = by_kind(build_samples(params(consolidate={"distill_failed": True}), EPOCH, *tables()))
    assert sorted(kinds["distilled"]) == ["b/y/distilled", "c/y/distilled", "d/y/distilled"]
    assert kinds["distilled"]["c/y/distilled"]["advantage"] == 0.0


def test_train_flags_switch_kinds_off():
    flags = {"train_first": False, "train_reflection": False, "train_second": True, "train_distilled": False}
    samples = build_samples(params(consolidate=flags), EPOCH, *tables())
    assert {s["kind"] for s in samples} == {"second"}


def test_rlvr_produces_only_first_samples():
    attempts, feedback, _, _ = tables()
    samples = build_samples(params(algorithm="rlvr"), EPOCH, attempts, feedback, [], [])
    assert {s["kind"] for s in samples} == {"first"}
    assert len(samples) == len(attempts)


def test_skip_zero_advantage():
    attempts, feedback, reflections, retries = tables()  # rollout a has feedback advantage 0.0
    p = params(consolidate={"skip_zero_advantage": True, "distill_failed": True})
    samples = build_samples(p, EPOCH, attempts, feedback, reflections, retries)
    assert all(s["advantage"] != 0.0 for s in samples)
    ids = {s["sample_id"] for s in samples}
    assert "a/first" not in ids and "c/y/distilled" not in ids
    assert "b/first" in ids
    assert len(build_samples(params(consolidate={"distill_failed": True}), EPOCH, *tables())) == len(samples) + 2


# --- memory ------------------------------------------------------------------------------------------------


def test_latest_empty():
    assert memory.latest([]) == (0, None)


def test_latest_picks_highest_version():
    rows = [{"version": 2, "text": "two"}, {"version": 1, "text": "one"}]
    assert memory.latest(rows) == (2, "two")


def test_next_memory_adopts_successful_retries_in_a_chain():
    _, _, reflections, retries = tables()
    prev = [
        {
            "version": 1,
            "parent_version": 0,
            "epoch": 1,
            "reflection_id": "old/f",
            "retry_id": "old/y",
            "text": "old rules",
        }
    ]
    out = next_memory(params(), EPOCH, prev, reflections, retries)
    assert out[0] == prev[0] and out[0] is not prev[0]
    new = out[1:]
    assert [(m["version"], m["parent_version"]) for m in new] == [(2, 1), (3, 2)]
    assert [(m["reflection_id"], m["retry_id"], m["text"]) for m in new] == [
        ("b/f", "b/y", "rules from b"),
        ("d/f", "d/y", "rules from d"),
    ]
    assert all(m["epoch"] == EPOCH for m in new)
    assert memory.latest(out) == (3, "rules from d")


def test_next_memory_from_empty_starts_at_version_one():
    _, _, reflections, retries = tables()
    out = next_memory(params(), EPOCH, [], reflections, retries)
    assert [(m["version"], m["parent_version"]) for m in out] == [(1, 0), (2, 1)]


def test_next_memory_tau():
    _, _, reflections, retries = tables()
    for r in retries:  # partial credit (QA's token F1) is below tau: no memory
        r["reward"] = min(r["reward"], 0.99)
    assert next_memory(params(consolidate={"tau": 1.0}), EPOCH, [], reflections, retries) == []
    assert len(next_memory(params(consolidate={"tau": 0.9}), EPOCH, [], reflections, retries)) == 2


def test_no_memory_ablation_adopts_nothing():
    _, _, reflections, retries = tables()
    prev = [{"version": 1, "parent_version": 0, "epoch": 1, "reflection_id": "x", "retry_id": "y", "text": "t"}]
    assert next_memory(params(ablation={"no_memory": True}), EPOCH, prev, reflections, retries) == prev
    assert next_memory(params(ablation={"no_memory": True}), EPOCH, [], reflections, retries) == []


def test_no_reflections_adopts_nothing():
    _, _, _, retries = tables()
    for r in retries:
        r["reflection_id"] = None  # the no-reflection ablation: retries without reflections
    assert next_memory(params(ablation={"no_reflection": True}), EPOCH, [], [], retries) == []


def test_memory_slots_keep_independent_chains():
    """Two slots: each successful retry overwrites its own slot; a reflector reads the newest version of its slot."""
    _, _, reflections, retries = tables()
    for r in reflections:
        r["memory_slot"] = 0 if r["rollout_id"] == "b" else 1
    out = next_memory(params(reflect={"memory_slots": 2}), EPOCH, [], reflections, retries)
    assert [(m["version"], m["parent_version"], m["slot"]) for m in out] == [(1, 0, 0), (2, 0, 1)]
    assert memory.latest(out, 0) == (1, "rules from b") and memory.latest(out, 1) == (2, "rules from d")
    assert memory.latest(out, 2) == (0, None)
    assert [memory.slot_of(i, 3) for i in range(5)] == [0, 1, 2, 0, 1]


def test_several_retries_per_reflection():
    """retry.samples = 2: a reflection's reward is the mean of its retries', its sample names the first retry,
    every retry is a `second` sample, successful ones are distilled, and a reflection enters memory once."""
    attempts, feedback, reflections, retries = tables()
    extra = []
    for r in retries:
        twin = dict(r, retry_id=r["retry_id"] + "1", reward=1.0, success=True)  # the second draw always succeeds
        extra.append(twin)
    retries = retries + extra
    p = params(retry={"samples": 2})
    out = build_samples(p, EPOCH, attempts, feedback, reflections, retries)
    refl = {s["reflection_id"]: s for s in out if s["kind"] == "reflection"}
    assert refl["c/f"]["reward"] == 0.5 and refl["b/f"]["reward"] == 1.0  # c: one retry of two succeeded
    assert refl["c/f"]["retry_id"] == "c/y"
    assert sum(s["kind"] == "second" for s in out) == 6
    assert sum(s["kind"] == "distilled" for s in out) == 5
    mem = next_memory(p, EPOCH, [], reflections, retries)
    assert [(m["reflection_id"], m["retry_id"]) for m in mem] == [("b/f", "b/y"), ("c/f", "c/y1"), ("d/f", "d/y")]
