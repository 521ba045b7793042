"""The contract every environment implements: task generation, a step function over the policy's reply,
and the verifier (reward + feedback text) computed from a finished trace. No torch here."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Protocol

# The action is the content of the LAST ```...``` block of a reply (method page, turn protocol).
_BLOCK = re.compile(r"```(.*?)```", re.DOTALL)


def last_code_block(reply: str) -> str | None:
    """Content of the last ```...``` block of ``reply``, stripped; None when there is none."""
    blocks = _BLOCK.findall(reply)
    if not blocks:
        return None
    return blocks[-1].strip()


@dataclass
class Task:
    """One task instance. ``spec`` is a JSON-serialisable dict the environment can rebuild the task from."""

    task_id: str
    split: str
    spec: dict[str, Any]
    optimal_len: int


@dataclass
class Step:
    """What one reply did to the environment."""

    action: str | None  # canonical action name, None when the reply had no valid action
    valid: bool  # the reply named a valid action
    moved: bool  # the action changed the state
    event: str  # "" | "goal" | "hole" | env-specific terminal event
    done: bool  # the episode is over (terminal event or budget used up)
    observation: str  # the rendered state after the step


@dataclass
class Trace:
    """Everything that happened in one episode, enough to recompute reward and feedback."""

    steps: list[Step] = field(default_factory=list)
    budget: int = 0


class Env(Protocol):
    name: str
    actions: tuple[str, ...]

    def generate(self, split: str, n: int, seed: int, exclude: set[str] | None = None) -> list[Task]: ...

    def reset(self, task: Task) -> Any: ...

    def render(self, state: Any) -> str: ...

    def step(self, state: Any, reply: str) -> tuple[Any, Step]: ...

    def reward(self, trace: Trace) -> float: ...

    def feedback(self, trace: Trace) -> str: ...

    def summary(self, trace: Trace, initial_observation: str, compact: bool = False) -> str: ...

    def message(self, state: Any, last_step: Step | None) -> str: ...

    def map_key(self, task: Task) -> str: ...


def neighbours(moves: dict[str, tuple[int, int]], pos: tuple[int, int], cell) -> dict[str, str]:
    """The symbol each move from ``pos`` reaches (``cell(row, col)`` reads the board), in the order of ``moves``."""
    return {a: cell(pos[0] + dr, pos[1] + dc) for a, (dr, dc) in moves.items()}


def around_answer(seen: dict[str, str]) -> str:
    """The "around" reading exercise's answer: each move and the symbol it reaches, e.g. ``left D down C ...``."""
    return " ".join(f"{a} {sym}" for a, sym in seen.items())


def which_answer(seen: dict[str, str], symbols: tuple[str, ...]) -> str:
    """The "which" exercise's answer, the "around" answer inverted: for every symbol in ``symbols`` (all asked
    about alike) the moves that reach it, or ``none``, e.g. ``B none C right up D left down X none``."""
    return " ".join(f"{sym} {' '.join(a for a in seen if seen[a] == sym) or 'none'}" for sym in symbols)


def noted_cell(pos: tuple[int, int], side: int, rng) -> tuple[tuple[int, int], str]:
    """The "at" exercise's cell and answer: ``pos`` itself half of the time, else a random cell of a ``side`` x
    ``side`` board; "yes" when the cell is ``pos``."""
    cell = tuple(pos) if rng.random() < 0.5 else (rng.randrange(side), rng.randrange(side))
    return cell, "yes" if cell == tuple(pos) else "no"


def random_cell_note(rng, side: int = 5) -> str:
    """A note of the default form (``last r c``) on a random cell of a ``side`` x ``side`` board: what the warm
    start's retry-format turns show in place of a copied note."""
    return f"last {rng.randrange(side)} {rng.randrange(side)}"


class GridText:
    """What the grid games (FrozenLake, Sokoban) tell the reflector, read off their rendered boards: where the
    agent ended and the attempt's summary. Needs ``sep``, ``row_numbers``, ``feedback`` and ``agent_symbols``
    (every symbol the agent can show as)."""

    agent_symbols: tuple[str, ...] = ("A",)
    sep: str
    row_numbers: bool
    summary_boards: bool = True  # the compact summary shows the start and final boards

    def end_cell(self, trace: Trace) -> tuple[int, int] | None:
        """Where the agent stood when the attempt ended (None for an empty trace)."""
        return self._agent_cell(trace.steps[-1].observation) if trace.steps else None

    def reflection_note(self, trace: Trace) -> str | None:
        """The fact the warm start's copying exercise copies from the feedback into a reflection (compact prompt
        sets only): where the attempt ended, ``last r c``. None for an empty trace."""
        end = self.end_cell(trace)
        return None if end is None else f"last {end[0]} {end[1]}"

    def random_note(self, rng) -> str:
        """A note of the same form on a random cell (5x5, whatever the board size: the form the default warm
        start has always used)."""
        return random_cell_note(rng)

    def _agent_cell(self, observation: str) -> tuple[int, int] | None:
        """(row, col) of the agent in a rendered board."""
        for r, line in enumerate(observation.splitlines()):
            cells = line.split(self.sep) if self.sep else list(line)
            if self.row_numbers:
                cells = cells[1:]
            for sym in self.agent_symbols:
                if sym in cells:
                    return r, cells.index(sym)
        return None

    def summary(self, trace: Trace, initial_observation: str, compact: bool = False) -> str:
        """Text of one attempt for the reflector: start board, each step's action/effect/board, feedback.
        ``compact``: the start board, the action list and the final board (short prompts for the tiny model);
        without ``summary_boards`` only the action list and the feedback."""
        if compact:
            acts = " ".join((s.action or "invalid") + ("" if s.moved else " ( no effect )") for s in trace.steps)
            if not self.summary_boards:
                return f"Actions: {acts}\nFeedback: {self.feedback(trace)}"
            final = trace.steps[-1].observation if trace.steps else initial_observation
            return (
                f"Initial board:\n{initial_observation}\nActions: {acts}\nFinal board:\n{final}\n"
                f"Feedback: {self.feedback(trace)}"
            )
        parts = [f"Initial board:\n{initial_observation}"]
        for i, s in enumerate(trace.steps, 1):
            note = "" if s.moved else " (no effect)"
            parts.append(f"Step {i}: {s.action or 'invalid'}{note}\n{s.observation}")
        parts.append(f"Feedback: {self.feedback(trace)}")
        return "\n\n".join(parts)
