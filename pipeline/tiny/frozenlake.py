"""The tiny model's board-reading exercises on FrozenLake: self-supervised (no reward, no goal semantics, no
solutions), read off the board or the simulator. Part of the warm-start curriculum (warmstart.py)."""

from __future__ import annotations

import random

from pipeline.envs.frozenlake import (
    ACTIONS,
    FROZEN,
    GOAL,
    HOLE,
    MOVES,
    OUTSIDE,
    FrozenLake,
    FrozenLakeState,
    cell_symbol,
)
from pipeline.envs.grid import around_answer, neighbours
from pipeline.tiny.warmstart import Exercises, noted_cell, random_cell_note, which_answer

EXERCISE_PROMPTS = {
    "where": "find A and B .",
    "around": "read the cells next to A .",
    "next": "predict the board after the action .",
    "which": "list the moves from A to each symbol .",
    "at": "is A at the cell of the note ? note :",
}
EXERCISE_WORDS = {"which": "none"}  # answer words of an exercise that no prompt, board or feedback contains


def reading_exercise(
    env: FrozenLake, state: FrozenLakeState, kind: str, action: str, rng: random.Random | None = None
) -> tuple[str, str, str]:
    """(system, user, answer) of one exercise on ``state``: where A and B are, which symbols surround A,
    where A is after ``action`` and whether the episode ends there (goal and hole alike say only "end yes"), or
    the moves from A that reach each symbol ("which": the "around" answer inverted, every symbol asked about
    alike), or whether A stands on the cell a note names ("at": the note has the form of a reflection's copied
    note, ``last right 2 0``, on A's own cell half of the time; ``rng`` draws it). The answers are read off the
    board or the simulator; they never say which move is good."""
    user = env.message(state, None)
    r, c = state.pos
    if kind == "where":
        gr, gc = state.spec["goal"]
        return EXERCISE_PROMPTS[kind], user, f"A {r} {c} B {gr} {gc}"
    if kind == "around":
        return (
            EXERCISE_PROMPTS[kind],
            user,
            around_answer(neighbours(MOVES, state.pos, lambda i, j: cell_symbol(state, i, j))),
        )
    if kind == "next":
        nxt, step = env.step(state, f"```{action}```")
        nr, nc = nxt.pos
        end = "yes" if step.event in ("goal", "hole") else "no"
        return EXERCISE_PROMPTS[kind], f"{user}\naction : {action}", f"A {nr} {nc} end {end}"
    if kind == "which":
        seen = neighbours(MOVES, state.pos, lambda i, j: cell_symbol(state, i, j))
        return EXERCISE_PROMPTS[kind], user, which_answer(seen, (GOAL, HOLE, FROZEN, OUTSIDE))
    if kind == "at":
        cell, answer = noted_cell((r, c), env.pad_to or env.max_size, rng or random.Random(0))
        return f"{EXERCISE_PROMPTS[kind]} last {action} {cell[0]} {cell[1]}", user, answer
    raise ValueError(f"unknown exercise {kind!r}")


def random_note(env: FrozenLake, rng: random.Random) -> str:
    """A note of the reflection's copied form on a random cell (the warm start's retry-format turns and
    distracting memories): ``last r c``, or with ``feedback_from`` ``last <action> r c``."""
    if not env.feedback_from:
        return random_cell_note(rng)
    side = env.pad_to or env.max_size
    return f"last {rng.choice(ACTIONS)} {rng.randrange(side)} {rng.randrange(side)}"


EXERCISES = Exercises(reading_exercise, EXERCISE_PROMPTS, EXERCISE_WORDS, random_note)
