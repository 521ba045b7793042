"""What the grid games (FrozenLake, Sokoban) share: the four moves, how a reply names one, their prompt sets, the
symbols around the agent, and what they tell the reflector, read off their rendered boards. No torch here."""

from __future__ import annotations

from pipeline.envs.base import Trace, last_code_block
from pipeline.prompts import PromptSet, braces

ACTIONS: tuple[str, ...] = ("left", "down", "right", "up")
# (d_row, d_col) per canonical action.
MOVES: dict[str, tuple[int, int]] = {"left": (0, -1), "down": (1, 0), "right": (0, 1), "up": (-1, 0)}
# Digits 1..4 name the actions in the order of ACTIONS.
_ALIASES: dict[str, str] = {**{a: a for a in ACTIONS}, **{str(i + 1): a for i, a in enumerate(ACTIONS)}}


# The embedded default's prompts, shared by the grid games: short, in the words its tokenizer knows.
TINY = PromptSet(
    system="play the game . answer with one action in ``` ``` : left down right up .",
    format_reminder="answer with one action in ``` ``` : left down right up .",
    reflector_system="the attempt failed . write a better prompt in <prompt> </prompt> .",
    reflector_user="{summary}\nmemory : {memory}",
    no_memory="none",
    no_reflection_system=(
        "play the game . answer with one action in ``` ``` : left down right up . use your past attempt .\n{summary}"
    ),
    compact_summary=True,
)

# What the reference prompts carry (docs/method.md, section 6), in this project's words. The solver reasons before
# it acts and ends with the action alone; it is told the valid actions and nothing of the rules.
_GRID_SOLVER = (
    "You are a reasoning engine playing a grid game. What you know of its rules and strategy may be incomplete or "
    "wrong; your only way to act is to choose the next action. Each turn: analyse the board, judge the long-term "
    "value of the position (High, Medium or Low), and for your two best candidate actions predict what each would "
    "do right now, in the form 'result, because ...'. Then choose one.\n"
    "Write your reasoning first (state analysis; value; the two candidates and their consequences), then end your "
    "reply with the chosen action alone in a final ``` block, for example:\n```Left```"
)
GRID_REMINDER = "Valid actions: Up, Down, Left, Right. The last line of your reply is the action alone, in a ``` block."
SOKOBAN_REMINDER = GRID_REMINDER + " A box moves only when the cell behind it is free."
_GRID_REFLECTOR = (
    "You are a strategist who writes the master rulebook of a grid game from attempts that succeeded and attempts "
    "that failed. Think about the long term, learn from the contrast between what worked and what did not, and "
    "merge everything into one consistent theory. Be concise and authoritative.\n"
    "Write exactly one <prompt>...</prompt> block containing two sections:\n"
    "Rules: what each symbol means and which one is you, how to read the board, what each action does, the "
    "objective and what ends an episode.\n"
    "Strategy: the core strategies and tactical tips that win."
)
_GRID_CONTEXT = (
    "Inferred information from past attempts (may be inaccurate):\n{memory}\n\n"
    "{batch}\n\n"
    "The attempt:\n{summary}\n\n"
    "Think step by step and give an improved instruction for the game GAME inside <prompt></prompt> tags."
)


def paper_prompts(game: str, reminder: str) -> PromptSet:
    """The paper prompt set of a grid game named ``game`` (the reflector's last line names it, as the reference's
    does), its format reminder ``reminder``."""
    solver = f"{_GRID_SOLVER}\n{reminder}"
    return PromptSet(
        system=solver,
        format_reminder=reminder,
        reflector_system=_GRID_REFLECTOR,
        reflector_user=_GRID_CONTEXT.replace("GAME", game),
        no_memory=solver,  # with no memory yet, the reflector starts from s0
        no_reflection_system=(
            braces(solver)
            + "\nUse the data of your past attempt below to decide better this time.\n{context}\n"
            + braces(reminder)
        ),
        annotated_summary=True,
    )


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

    def warmstart(self):
        """The game's board-reading exercises (pipeline/tiny/<name>.py), imported by name: only a tiny run needs them."""
        import importlib

        return importlib.import_module(f"pipeline.tiny.{self.name}").EXERCISES
