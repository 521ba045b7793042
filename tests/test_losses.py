"""The clipped policy loss with dual clip, and the k3 KL estimator."""

from __future__ import annotations

import math

import torch

from pipeline.losses import k3_kl, ppo_clip


def loss_of(ratio: float, adv: float, low=0.2, high=0.28, c=3.0) -> float:
    logp = torch.tensor([[math.log(ratio)]])
    old = torch.zeros(1, 1)
    loss, _, _ = ppo_clip(logp, old, torch.tensor([[adv]]), low, high, c)
    return float(loss)


def test_unclipped_inside_range():
    assert math.isclose(loss_of(1.1, 2.0), -2.2, rel_tol=1e-6)
    assert math.isclose(loss_of(0.9, -1.0), 0.9, rel_tol=1e-6)


def test_positive_advantage_clipped_at_upper_bound():
    # ratio 2 > 1.28: the objective stops growing (loss = -A * 1.28)
    assert math.isclose(loss_of(2.0, 1.0), -1.28, rel_tol=1e-6)
    # ratio below the range with A > 0: unclipped (pessimistic max keeps the smaller objective)
    assert math.isclose(loss_of(0.5, 1.0), -0.5, rel_tol=1e-6)


def test_negative_advantage_dual_clip():
    # ratio 10 with A = -1: plain PPO loss would be 10; dual clip bounds it by -A * c = 3
    assert math.isclose(loss_of(10.0, -1.0), 3.0, rel_tol=1e-6)
    # ratio 2 with A = -1: max(2, 1.28) = 2 < 3, unaffected
    assert math.isclose(loss_of(2.0, -1.0), 2.0, rel_tol=1e-6)
    # ratio below range, A < 0: clipped at 1 - 0.2
    assert math.isclose(loss_of(0.5, -1.0), 0.8, rel_tol=1e-6)


def test_gradient_zero_when_clipped():
    logp = torch.tensor([[math.log(2.0)]], requires_grad=True)
    loss, clipped, _ = ppo_clip(logp, torch.zeros(1, 1), torch.tensor([[1.0]]), 0.2, 0.28, 3.0)
    loss.sum().backward()
    assert float(logp.grad) == 0.0 and float(clipped) == 1.0


def test_k3_is_nonnegative_zero_at_equality_and_matches_kl_on_average():
    a = torch.randn(1000)
    assert torch.all(k3_kl(a, a) == 0)
    assert torch.all(k3_kl(a, a + torch.randn(1000)) >= 0)
    # E_{x~p}[k3] = KL(p || q) for two categorical distributions
    p = torch.tensor([0.5, 0.3, 0.2])
    q = torch.tensor([0.2, 0.3, 0.5])
    expected = float((p * (p / q).log()).sum())
    est = float((p * k3_kl(p.log(), q.log())).sum())
    assert math.isclose(est, expected, rel_tol=1e-5)
