"""Advantages: GRPO within groups and RAFT for distilled samples (docs/method.md, section 2). No torch."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Sequence

EPS = 1e-6


def grpo(groups: Sequence[Hashable], rewards: Sequence[float]) -> list[tuple[int, float, float, float]]:
    """(group size, group mean, group std, advantage) per element. A = (R - mean) / (std + 1e-6) with the
    unbiased std; a group of one gets A = R (nothing to compare against)."""
    members: dict[Hashable, list[float]] = defaultdict(list)
    for g, r in zip(groups, rewards):
        members[g].append(float(r))
    stats = {}
    for g, rs in members.items():
        n, mean = len(rs), sum(rs) / len(rs)
        std = math.sqrt(sum((r - mean) ** 2 for r in rs) / (n - 1)) if n > 1 else 0.0
        stats[g] = (n, mean, std)
    out = []
    for g, r in zip(groups, rewards):
        n, mean, std = stats[g]
        adv = float(r) if n == 1 else (float(r) - mean) / (std + EPS)
        out.append((n, mean, std, adv))
    return out


def raft(reward: float) -> float:
    """Reward-weighted likelihood for distilled second attempts: A = max(r2, 0)."""
    return max(float(reward), 0.0)
