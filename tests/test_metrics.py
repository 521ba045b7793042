"""pipeline/metrics.py on small fake rows."""

from __future__ import annotations

import pytest

from pipeline.metrics import eval_metrics, train_metrics

EPOCH = 3


def _rows():
    feedback = [
        {"rollout_id": r, "success": ok, "note": note}
        for r, ok, note in [
            ("a", True, "last 0 1"),
            ("b", False, "last 2 2"),
            ("c", False, "last 1 0"),
            ("d", False, None),
        ]
    ]
    reflections = [
        {"reflection_id": f"{r}/f", "rollout_id": r, "has_tag": tag, "reflection": text}
        for r, tag, text in [
            ("b", True, "play . last 2 2 "),
            ("c", False, "play . last 0 1"),
            ("d", True, "play . last 2 2"),
        ]
    ]
    retries = [
        {"retry_id": f"{r}-retry", "rollout_id": r, "success": ok, "control_success": ctl}
        for r, ok, ctl in [("b", True, False), ("c", False, False), ("d", True, True)]
    ]
    memory = [
        {"version": 1, "epoch": 1},
        {"version": 2, "epoch": 2},
        {"version": 3, "epoch": EPOCH},
        {"version": 4, "epoch": EPOCH},
    ]
    samples = [{"kind": k} for k in ["first"] * 4 + ["reflection"] * 3 + ["second"] * 3 + ["distilled"] * 2]
    steps = [{"loss": 1.0, "kl": 0.01, "grad_norm": 2.0}, {"loss": 3.0, "kl": 0.03, "grad_norm": 4.0}]
    return feedback, reflections, retries, memory, samples, steps


def test_train_metrics():
    m = train_metrics(*_rows(), epoch=EPOCH)
    assert m["train_pre_success"] == 0.25
    assert m["train_post_success"] == 0.75  # a (first) + b, d (retries)
    assert m["reflections"] == 3 and m["reflections_tagged"] == 2
    assert m["reflections_with_note"] == 1  # b ends with its own note; c has another's; d's feedback has none
    assert m["retry_success"] == pytest.approx(2 / 3)
    assert m["retry_control_success"] == pytest.approx(1 / 3)  # the plain s0 retries of the same failed tasks
    assert m["memory_adopted"] == 2  # versions 3 and 4 only
    assert (m["samples_first"], m["samples_reflection"], m["samples_second"], m["samples_distilled"]) == (4, 3, 3, 2)
    assert (
        m["update_loss"] == 2.0
        and m["update_kl"] == pytest.approx(0.03)
        and m["update_kl_first"] == pytest.approx(0.01)
        and m["grad_norm"] == 3.0
    )


def test_first_success_counts_even_if_its_retry_failed():
    feedback = [{"rollout_id": "a", "success": True}, {"rollout_id": "b", "success": False}]
    retries = [{"retry_id": f"{r}-retry", "rollout_id": r, "success": False} for r in "ab"]
    m = train_metrics(feedback, [], retries, [], [], [], epoch=1)
    assert m["train_post_success"] == 0.5


def test_several_retries_per_failure():
    """retry.samples > 1: every retry counts in retry_success, only the first in the success after one more try."""
    feedback = [{"rollout_id": "a", "success": False}, {"rollout_id": "b", "success": False}]
    retries = [
        {"retry_id": "a-retry", "rollout_id": "a", "success": False, "control_success": False},
        {"retry_id": "a-retry1", "rollout_id": "a", "success": True, "control_success": None},
        {"retry_id": "b-retry", "rollout_id": "b", "success": True, "control_success": True},
        {"retry_id": "b-retry1", "rollout_id": "b", "success": True, "control_success": None},
    ]
    m = train_metrics(feedback, [], retries, [], [], [], epoch=1)
    assert m["retry_success"] == 0.75 and m["retry_control_success"] == 0.5
    assert m["train_post_success"] == 0.5


def test_rlvr_like_epoch_and_empty_tables():
    feedback = [{"rollout_id": "a", "success": False}, {"rollout_id": "b", "success": True}]
    m = train_metrics(feedback, [], [], [], [], [], epoch=1)
    assert m["train_pre_success"] == m["train_post_success"] == 0.5
    assert m["reflections"] == 0 and m["retry_success"] is None and m["memory_adopted"] == 0
    assert m["reflections_with_note"] == 0
    assert m["retry_control_success"] is None
    assert m["update_loss"] is None and m["samples_first"] == 0


def test_eval_metrics():
    rows = [
        {"success": True, "reward": 1.0, "n_turns": 2, "n_tool_calls": 1},
        {"success": False, "reward": 0.0, "n_turns": 5, "n_tool_calls": 4},
        {"success": False, "reward": 0.5, "n_turns": 2, "n_tool_calls": 1},
    ]
    m = eval_metrics(rows)
    assert m["eval_success"] == pytest.approx(1 / 3) and m["eval_reward"] == 0.5
    assert m["eval_turns"] == 3.0 and m["eval_tool_calls"] == 2.0
    empty = {"eval_success": None, "eval_reward": None, "eval_turns": None, "eval_tool_calls": None}
    assert eval_metrics([]) == empty
