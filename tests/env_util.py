"""Helpers shared by the environment tests."""

from __future__ import annotations

from pipeline.envs.base import Trace


def play(env, task, replies):
    """Step a fresh episode of ``task`` through ``replies``; the final state and the trace."""
    state = env.reset(task)
    trace = Trace(budget=env.budget)
    for reply in replies:
        state, step = env.step(state, reply)
        trace.steps.append(step)
    return state, trace


def blk(text: str) -> str:
    """A grid-game reply whose last ``` block is ``text``."""
    return f"I will go.\n```{text}```"
