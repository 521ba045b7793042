"""Teacher-forced training on answer tokens: the embedded default's warm start, and the replay of its exercises
during RL updates (update.replay_coef)."""

from __future__ import annotations

import torch


def answer_loss(model, batch: list[tuple[list[int], list[int]]], pad_id: int, device="cpu") -> torch.Tensor:
    """Mean cross-entropy on the answer tokens of (prompt ids, answer ids) pairs, right-padded: the warm start's
    loss, and the replay's during RL updates."""
    width = max(len(a) + len(b) for a, b in batch)
    ids = torch.full((len(batch), width), pad_id, device=device)
    labels = torch.full((len(batch), width), -100, device=device)
    for r, (a, b) in enumerate(batch):
        ids[r, : len(a) + len(b)] = torch.tensor(a + b, device=device)
        labels[r, len(a) : len(a) + len(b)] = torch.tensor(b, device=device)
    return model(input_ids=ids, labels=labels).loss  # right padding: causal attention never sees the pads
