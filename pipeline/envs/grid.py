"""What the grid games (FrozenLake, Sokoban) share: the four moves, how a reply names one, the symbols around
the agent, and what they tell the reflector, read off their rendered boards. No torch here."""

from __future__ import annotations

from pipeline.envs.base import Trace, last_code_block

ACTIONS: tuple[str, ...] = ("left", "down", "right", "up")
# (d_row, d_col) per canonical action.
MOVES: dict[str, tuple[int, int]] = {"left": (0, -1), "down": (1, 0), "right": (0, 1), "up": (-1, 0)}
# Digits 1..4 name the actions in the order of ACTIONS.
_ALIASES: dict[str, str] = {**{a: a for a in ACTIONS}, **{str(i + 1): a for i, a in enumerate(ACTIONS)}}


def parse_action(reply: str) -> str | None:
    """Canonical action named by the LAST ```...``` block of ``reply`` (case-insensitive, or 1-4), else None."""
    block = last_code_block(reply)
    if block is None:
        return None
    return _ALIASES.get(block.strip().lower())


def neighbours(moves: dict[str, tuple[int, int]], pos: tuple[int, int], cell) -> dict[str, str]:
    """The symbol each move from ``pos`` reaches (``cell(row, col)`` reads the board), in the order of ``moves``."""
    return {a: cell(pos[0] + dr, pos[1] + dc) for a, (dr, dc) in moves.items()}


def around_answer(seen: dict[str, str]) -> str:
    """The "around" reading exercise's answer: each move and the symbol it reaches, e.g. ``left D down C ...``."""
    return " ".join(f"{a} {sym}" for a, sym in seen.items())


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

    def summary(self, trace: Trace, initial_observation: str, compact: bool = False, annotated: bool = False) -> str:
        """Text of one attempt for the reflector: start board, each step's action/effect/board, feedback.
        ``compact``: the start board, the action list and the final board (short prompts for the tiny model);
        without ``summary_boards`` only the action list and the feedback. ``annotated`` (the paper prompts): each
        step's board before the action, the action with its reward, effect and whether it ended the episode, and
        a one-line comment on what happened, then the attempt's reward and feedback."""
        if annotated:
            return self._annotated(trace, initial_observation)
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

    def _annotated(self, trace: Trace, initial_observation: str) -> str:
        parts, before = [], initial_observation
        for i, s in enumerate(trace.steps, 1):
            reward = self.reward(Trace(steps=trace.steps[:i], budget=trace.budget)) if s.done else 0.0
            effect = "moved" if s.moved else "no effect"
            parts.append(
                f"Step {i}. Board before acting:\n{before}\nAction: {s.action or 'invalid'} (reward {reward}, {effect}, "
                f"{'done' if s.done else 'not done'}). {self.step_comment(s, before)}"
            )
            before = s.observation
        return "\n\n".join(parts + [f"Reward: {self.reward(trace)}. Feedback: {self.feedback(trace)}"])

    def step_comment(self, step, before: str) -> str:
        """One line on what a step did, as the reference reflection context comments it (docs/method.md 5.6)."""
        if step.action is None:
            return "Not a valid action."
        return "Did not move." if not step.moved else "Moved."
