"""The tiny model's board-reading exercises on Sokoban: self-supervised (no reward, no goal semantics, no
solutions), read off the board or the simulator. Part of the warm-start curriculum (warmstart.py)."""

from __future__ import annotations

import random
from dataclasses import replace

from pipeline.envs.grid import MOVES, around_answer, neighbours
from pipeline.envs.sokoban import BOX, BOX_ON_GOAL, FLOOR, GOAL, OUTSIDE, WALL, Sokoban, SokobanState, move, symbol
from pipeline.tiny.warmstart import Exercises, noted_cell, which_answer

EXERCISE_PROMPTS = {
    "where": "find A and B .",
    "around": "read the cells next to A .",
    "next": "predict where A and B are after the action .",
    "which": "list the moves from A to each symbol .",
    "at": "is A at the cell of the note ? note :",
}
EXERCISE_WORDS = {"which": "none"}  # answer words of an exercise that no prompt, board or feedback contains


def _where(state: SokobanState) -> str:
    """Where the agent and the boxes are, each under the symbol the board shows for it (A/a, B/b)."""
    parts = [f"{symbol(state, *state.player)} {state.player[0]} {state.player[1]}"]
    parts += [f"{symbol(state, r, c)} {r} {c}" for r, c in state.boxes]
    return " ".join(parts)


def reading_exercise(
    env: Sokoban, state: SokobanState, kind: str, action: str, rng: random.Random | None = None
) -> tuple[str, str, str]:
    """(system, user, answer) of one exercise on ``state``: where the agent and the boxes are, which symbols
    surround the agent, the moves that reach each symbol ("which": the "around" answer inverted, every symbol
    asked about alike), or where they are after ``action`` (the simulator's answer). Read off the board or the
    simulator; never which move is good, whether the episode ends, or what a symbol means. Or ("at") whether
    the agent stands on the cell a note names (on its own cell half of the time; ``rng`` draws it)."""
    user = env.message(state, None)
    if kind == "where":
        return EXERCISE_PROMPTS[kind], user, _where(state)
    seen = neighbours(MOVES, state.player, lambda i, j: symbol(state, i, j))
    if kind == "around":
        return EXERCISE_PROMPTS[kind], user, around_answer(seen)
    if kind == "next":
        player, boxes, _ = move(state.spec["size"], state.player, state.boxes, action)
        nxt = replace(state, player=player, boxes=boxes)
        return EXERCISE_PROMPTS[kind], f"{user}\naction : {action}", _where(nxt)
    if kind == "which":
        return EXERCISE_PROMPTS[kind], user, which_answer(seen, (BOX, BOX_ON_GOAL, GOAL, FLOOR, WALL, OUTSIDE))
    if kind == "at":  # the note has the form of a reflection's copied note here, ``last r c``
        cell, answer = noted_cell(state.player, env.pad_to or env.max_size, rng or random.Random(0))
        return f"{EXERCISE_PROMPTS[kind]} last {cell[0]} {cell[1]}", user, answer
    raise ValueError(f"unknown exercise {kind!r}")


EXERCISES = Exercises(reading_exercise, EXERCISE_PROMPTS, EXERCISE_WORDS)
