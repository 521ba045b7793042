"""pipeline/advantages.py: GRPO with the unbiased std, groups of one, all-equal groups, RAFT."""

from __future__ import annotations

import math

import pytest

from pipeline.advantages import EPS, grpo, raft


def test_grpo_by_hand():
    groups = ["a", "b", "a", "a", "b", "a"]
    rewards = [1.0, 0.5, 0.0, 0.0, 0.0, 1.0]
    out = grpo(groups, rewards)
    # group a: [1, 0, 0, 1] -> mean 0.5, unbiased std sqrt(4 * 0.25 / 3)
    std_a = math.sqrt(1.0 / 3.0)
    # group b: [0.5, 0] -> mean 0.25, unbiased std sqrt(2 * 0.0625 / 1)
    std_b = math.sqrt(0.125)
    expected = [
        (4, 0.5, std_a, 0.5 / (std_a + EPS)),
        (2, 0.25, std_b, 0.25 / (std_b + EPS)),
        (4, 0.5, std_a, -0.5 / (std_a + EPS)),
        (4, 0.5, std_a, -0.5 / (std_a + EPS)),
        (2, 0.25, std_b, -0.25 / (std_b + EPS)),
        (4, 0.5, std_a, 0.5 / (std_a + EPS)),
    ]
    assert len(out) == len(expected)
    for got, want in zip(out, expected):
        assert got[0] == want[0]
        assert got[1:] == pytest.approx(want[1:], rel=1e-12)
    # advantages sum to zero within each group
    assert sum(o[3] for g, o in zip(groups, out) if g == "a") == pytest.approx(0.0, abs=1e-12)


def test_group_of_one_gets_its_reward():
    assert grpo(["x"], [0.7]) == [(1, 0.7, 0.0, 0.7)]
    assert grpo(["x", "y"], [0.0, 1.0])[1] == (1, 1.0, 0.0, 1.0)


def test_all_equal_group_gets_zero():
    out = grpo(["t"] * 3, [1.0, 1.0, 1.0])
    assert [o[3] for o in out] == [0.0, 0.0, 0.0]
    assert all(o[2] == 0.0 for o in out)


def test_empty():
    assert grpo([], []) == []


def test_raft():
    assert raft(1.0) == 1.0
    assert raft(0.25) == 0.25
    assert raft(0.0) == 0.0
    assert raft(-0.5) == 0.0
    assert isinstance(raft(1), float)
