"""Sokoban with abstract symbols, per docs/method.md, section 3.

Pure standard library: no torch, no numpy. Everything is deterministic given (seed, split).

A square grid of side n with a border wall and no interior walls, ``boxes`` boxes and as many goals. The
player moves left/down/right/up; walking into a box pushes it one cell if the cell beyond is free (not a wall,
not another box), otherwise nothing moves; walking into a wall leaves the player in place. Reward 1 when every
box stands on a goal. A layout is kept only if a BFS over (player, box positions) solves it within the budget.

Symbols: A = agent, a = agent on a goal, B = box, b = box on a goal, C = goal, D = floor, E = wall. Padding
cells (render option ``pad_to``) show as X.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, replace
from typing import Any

from pydantic import Field, model_validator

from pipeline.envs.base import Env, EnvParamsBase, Step, Task, Trace
from pipeline.envs.grid import ACTIONS, MOVES, SOKOBAN_REMINDER, TINY, GridText, paper_prompts, parse_action
from pipeline.paramtypes import resolve

AGENT, AGENT_ON_GOAL, BOX, BOX_ON_GOAL, GOAL, FLOOR, WALL, OUTSIDE = "A", "a", "B", "b", "C", "D", "E", "X"

OUTCOME = {
    "solved": "You solved the puzzle.",
    "limit": "You ran out of steps.",
}

Cell = tuple[int, int]


class SokobanParams(EnvParamsBase):
    """env.sokoban: board sizes, boxes, move budget, and how boards are written."""

    min_size: int = Field(6, ge=4, le=12, description="smallest board side (border wall included)")
    max_size: int = Field(8, ge=4, le=12, description="largest board side (border wall included)")
    boxes: int = Field(1, ge=1, le=4, description="boxes (and goals) per layout")
    budget: int = Field(8, ge=1, description="moves per episode; layouts are kept only if solvable within it")
    pad_to: int | None = Field(8, ge=4, description="render boards padded to this side with X (tiny model)")
    row_numbers: bool = Field(True, description="prefix each board row with its index")

    @model_validator(mode="after")
    def _ranges(self):
        if self.min_size > self.max_size:
            raise ValueError("min_size must be <= max_size")
        if (self.min_size - 2) ** 2 < 2 * self.boxes + 1:
            raise ValueError("min_size leaves too few floor cells for the boxes, their goals and the player")
        if self.pad_to is not None and self.pad_to < self.max_size:
            raise ValueError("pad_to must be >= max_size")
        return self


def _spec_of(task_or_spec: Task | dict[str, Any]) -> dict[str, Any]:
    return task_or_spec.spec if isinstance(task_or_spec, Task) else task_or_spec


def _cells(pairs) -> tuple[Cell, ...]:
    return tuple(sorted((int(r), int(c)) for r, c in pairs))


def map_key(task_or_spec: Task | dict[str, Any]) -> str:
    """Canonical string of a layout (size + player + boxes + goals); equal layouts give equal keys."""
    spec = _spec_of(task_or_spec)
    pr, pc = spec["player"]
    boxes = ";".join(f"{r},{c}" for r, c in _cells(spec["boxes"]))
    goals = ";".join(f"{r},{c}" for r, c in _cells(spec["goals"]))
    return f"{spec['size']}|{pr},{pc}|{boxes}|{goals}"


def is_wall(n: int, r: int, c: int) -> bool:
    """The border (and anything beyond it) is wall; the interior is open floor."""
    return not (0 < r < n - 1 and 0 < c < n - 1)


def move(n: int, player: Cell, boxes: tuple[Cell, ...], action: str) -> tuple[Cell, tuple[Cell, ...], bool]:
    """One move under the push rules: (new player, new sorted boxes, whether anything moved)."""
    dr, dc = MOVES[action]
    target = (player[0] + dr, player[1] + dc)
    if is_wall(n, *target):
        return player, boxes, False
    if target in boxes:
        beyond = (target[0] + dr, target[1] + dc)
        if is_wall(n, *beyond) or beyond in boxes:
            return player, boxes, False
        boxes = tuple(sorted(beyond if b == target else b for b in boxes))
    return target, boxes, True


def solve_path(spec: Task | dict[str, Any], max_len: int | None = None) -> list[str] | None:
    """One shortest action sequence that puts every box on a goal (BFS over player and box positions), None
    when there is none (of at most ``max_len`` moves, when given)."""
    spec = _spec_of(spec)
    n, goals = spec["size"], _cells(spec["goals"])
    start = (tuple(spec["player"]), _cells(spec["boxes"]))
    prev: dict[Any, tuple[Any, str] | None] = {start: None}
    queue = deque([(start, 0)])
    while queue:
        state, depth = queue.popleft()
        if state[1] == goals:  # both sorted
            path: list[str] = []
            while prev[state] is not None:
                state, action = prev[state]  # type: ignore[misc]
                path.append(action)
            return path[::-1]
        if max_len is not None and depth >= max_len:
            continue
        for action in ACTIONS:
            player, boxes, moved = move(n, state[0], state[1], action)
            nxt = (player, boxes)
            if moved and nxt not in prev:
                prev[nxt] = (state, action)
                queue.append((nxt, depth + 1))
    return None


def solve(spec: Task | dict[str, Any], max_len: int | None = None) -> int:
    """Optimal solution length in moves; -1 when unsolvable (within ``max_len``, when given)."""
    path = solve_path(spec, max_len)
    return -1 if path is None else len(path)


@dataclass(frozen=True)
class SokobanState:
    """Immutable episode state; ``step`` returns a new one."""

    spec: dict[str, Any]
    player: Cell
    boxes: tuple[Cell, ...]
    goals: tuple[Cell, ...]
    steps: int = 0  # steps used so far (invalid actions count)
    budget: int = 8
    done: bool = False
    event: str = ""  # last event: "" | "solved" | "limit"

    @property
    def steps_left(self) -> int:
        return self.budget - self.steps


def symbol(state: SokobanState, r: int, c: int) -> str:
    n = state.spec["size"]
    if not (0 <= r < n and 0 <= c < n):
        return OUTSIDE
    if is_wall(n, r, c):
        return WALL
    on_goal = (r, c) in state.goals
    if (r, c) == state.player:
        return AGENT_ON_GOAL if on_goal else AGENT
    if (r, c) in state.boxes:
        return BOX_ON_GOAL if on_goal else BOX
    return GOAL if on_goal else FLOOR


class Sokoban(GridText, Env):
    name = "sokoban"
    actions = ACTIONS
    Params = SokobanParams
    # the same actions and reply format as FrozenLake; the rules stay hidden just the same
    prompts = {"tiny": TINY, "paper": paper_prompts("Sokoban", SOKOBAN_REMINDER)}
    sep = " "  # between the cells of a rendered row
    agent_symbols = (AGENT, AGENT_ON_GOAL)  # where the attempt ended, for the feedback and end_cell

    def __init__(self, params: SokobanParams | None = None, artifacts=None, **overrides) -> None:
        """``params`` (env.sokoban; default: params.yaml's values), with ``overrides`` of single keys."""
        p = resolve(SokobanParams, params, overrides)
        super().__init__(p, artifacts)
        self.min_size, self.max_size, self.n_boxes = p.min_size, p.max_size, p.boxes
        self.pad_to, self.row_numbers = p.pad_to, p.row_numbers

    # ---- tasks -------------------------------------------------------------------------------------------

    map_key = staticmethod(map_key)

    def _sample_spec(self, rng: random.Random) -> dict[str, Any]:
        n = rng.randint(self.min_size, self.max_size)
        floor = [(r, c) for r in range(1, n - 1) for c in range(1, n - 1)]
        picked = rng.sample(floor, 2 * self.n_boxes + 1)  # distinct: no box starts on a goal
        player, boxes, goals = picked[0], picked[1 : 1 + self.n_boxes], picked[1 + self.n_boxes :]
        return {
            "size": n,
            "player": list(player),
            "boxes": [list(b) for b in sorted(boxes)],
            "goals": [list(g) for g in sorted(goals)],
        }

    def generate(self, split: str, n: int, seed: int, exclude: set[str] | None = None) -> list[Task]:
        """``n`` distinct layouts solvable within the budget, deterministic in (seed, split), none whose
        map_key is in ``exclude``."""
        rng = random.Random(f"{seed}:{split}:sokoban")
        exclude = exclude or set()
        seen: set[str] = set()
        tasks: list[Task] = []
        max_tries = 1000 + 200 * n
        tries = 0
        while len(tasks) < n:
            if tries >= max_tries:
                raise RuntimeError(
                    f"sokoban: found only {len(tasks)} of {n} distinct solvable layouts for split {split!r} "
                    f"after {max_tries} tries (sizes {self.min_size}-{self.max_size}, {self.n_boxes} boxes, optimal "
                    f"length at most {self.budget}, {len(exclude)} excluded); widen the ranges or ask for fewer"
                )
            tries += 1
            spec = self._sample_spec(rng)
            key = map_key(spec)
            if key in seen or key in exclude:
                continue
            length = solve(spec, self.budget)
            if not 1 <= length <= self.budget:  # also rejects unsolvable (-1)
                continue
            seen.add(key)
            tasks.append(Task(task_id=f"sk-{split}-{len(tasks):06d}", split=split, spec=spec, optimal_len=length))
        return tasks

    # ---- episode -----------------------------------------------------------------------------------------

    def reset(self, task: Task | dict[str, Any]) -> SokobanState:
        spec = _spec_of(task)
        return SokobanState(
            spec=spec,
            player=tuple(spec["player"]),
            boxes=_cells(spec["boxes"]),
            goals=_cells(spec["goals"]),
            budget=self.budget,
        )

    def render(self, state: SokobanState) -> str:
        n = state.spec["size"]
        width = n if self.pad_to is None else self.pad_to
        lines = []
        for r in range(width):
            line = self.sep.join(symbol(state, r, c) for c in range(width))
            lines.append(f"{r} {line}" if self.row_numbers else line)
        return "\n".join(lines)

    def step(self, state: SokobanState, reply: str) -> tuple[SokobanState, Step]:
        if state.done:
            raise ValueError("step() called on a finished episode")
        action = parse_action(reply)
        player, boxes, moved = state.player, state.boxes, False
        if action is not None:
            player, boxes, moved = move(state.spec["size"], player, boxes, action)
        steps = state.steps + 1
        event = ""
        if boxes == state.goals:  # both sorted
            event = "solved"
        elif steps >= state.budget:
            event = "limit"
        new = replace(state, player=player, boxes=boxes, steps=steps, done=bool(event), event=event)
        return new, Step(
            action=action,
            valid=action is not None,
            moved=moved,
            event=event,
            done=new.done,
            observation=self.render(new),
        )

    def message(self, state: SokobanState, last_step: Step | None = None) -> str:
        """User-turn text: optional no-effect notice, the board, the remaining step budget."""
        parts = []
        if last_step is not None and not last_step.moved:
            parts.append("Your last action had no effect.")
        parts.append(self.render(state))
        parts.append(f"Steps left: {state.steps_left}")
        return "\n".join(parts)

    def vocabulary(self, tasks: list[Task]) -> list[str]:
        """Texts covering every word this environment can show (for the embedded word-level tokenizer)."""
        texts = [
            " ".join((AGENT, AGENT_ON_GOAL, BOX, BOX_ON_GOAL, GOAL, FLOOR, WALL, OUTSIDE)),
            *OUTCOME.values(),
            "Your last action had no effect.",
            "Steps left:",
            "The episode did not finish.",
            "Actions with no effect: (invalid, blocked). Last action: invalid none. Reward=, steps= at",
            "Initial board: Actions: Final board: Feedback: Step ( no effect ) (no effect)",
            " ".join(self.actions),
        ]
        texts += [str(i) for i in range(max(self.budget, self.pad_to or self.max_size) + 1)]
        texts += [self.render(self.reset(t)) for t in tasks[:1]]
        return texts

    def step_comment(self, step: Step, before: str) -> str:
        if step.action is None:
            return "Not a valid action."
        if not step.moved:
            return "Did not move."
        pushed = _box_cells(before) != _box_cells(step.observation)
        if step.event == "solved":
            return "Pushed the last box onto a goal: solved."
        return "Pushed a box." if pushed else "Moved."

    # ---- verifier ----------------------------------------------------------------------------------------

    def reward(self, trace: Trace) -> float:
        return 1.0 if trace.steps and trace.steps[-1].event == "solved" else 0.0

    def feedback(self, trace: Trace) -> str:
        steps = trace.steps
        event = steps[-1].event if steps else ""
        outcome = OUTCOME.get(event, "The episode did not finish.")
        invalid = sum(1 for s in steps if not s.valid)
        blocked = sum(1 for s in steps if s.valid and not s.moved)
        last = (steps[-1].action or "invalid") if steps else "none"
        where = self.end_cell(trace)
        if where is not None:
            outcome = f"{outcome[:-1]} at {where[0]} {where[1]}."
        return (
            f"{outcome} Actions with no effect: {invalid + blocked} ({invalid} invalid, {blocked} blocked). "
            f"Last action: {last}. Reward={self.reward(trace)}, steps={len(steps)}"
        )


def _box_cells(board: str) -> list[tuple[int, int]]:
    """Where the boxes stand on a rendered board."""
    lines = board.splitlines()
    return [(r, i) for r, line in enumerate(lines) for i, c in enumerate(line.split()) if c in (BOX, BOX_ON_GOAL)]
