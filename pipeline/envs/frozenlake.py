"""FrozenLake (deterministic, not slippery) with abstract symbols, per docs/method.md, section 3.

Pure standard library: no torch, no numpy. Everything is deterministic given (seed, split).

Symbols: A = agent, B = goal, C = hole, D = frozen (the start tile is frozen and shows as D once the agent
has left it). The agent is always drawn on top of its cell, including on a hole or the goal (episode over).
Padding cells (render option ``pad_to``) show as X.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, replace
from typing import Any

from pydantic import Field, model_validator

from pipeline.envs.base import Env, EnvParamsBase, Step, Task, Trace
from pipeline.envs.grid import (
    ACTIONS,
    GRID_REMINDER,
    MOVES,
    TINY,
    GridText,
    around_answer,
    neighbours,
    paper_prompts,
    parse_action,
)
from pipeline.paramtypes import Real, resolve

AGENT, GOAL, HOLE, FROZEN, OUTSIDE = "A", "B", "C", "D", "X"

OUTCOME = {
    "goal": "You reached the goal.",
    "hole": "You fell into a hole.",
    "limit": "You ran out of steps.",
}


class FrozenLakeParams(EnvParamsBase):
    """env.frozenlake: board sizes, hole density, step budget, and how boards are written."""

    min_size: int = Field(3, ge=2, le=9, description="smallest board side")
    max_size: int = Field(5, ge=2, le=9, description="largest board side")
    p_frozen_low: Real = Field(0.6, gt=0.0, lt=1.0)
    p_frozen_high: Real = Field(0.85, gt=0.0, le=1.0)
    budget: int = Field(8, ge=1, description="steps per episode")
    pad_to: int | None = Field(5, ge=2, description="render boards padded to this side with X (tiny model)")
    row_numbers: bool = Field(True, description="prefix each board row with its index")
    coords: bool = Field(True, description="add a line with the coordinates of A and B (encoding choice)")
    near: bool = Field(True, description="add a line naming the symbol next to A in each direction (encoding choice)")
    relative: bool = Field(
        True, description="add a line with the offset of B from A, rows then columns (encoding choice)"
    )
    feedback_from: bool = Field(
        True,
        description="the feedback also names the cell the last action was taken from ('Last action: right at "
        "2 0.'), and the warm start's reflection note copies that move ('last right 2 0') instead "
        "of where the attempt ended ('last 2 1')",
    )
    hidden_holes: int = Field(
        0,
        ge=0,
        le=3,
        description="holes that look like frozen ice (D) on the board: drawn on a shortest path from start to goal, "
        "each leaving another path of the same length open, so only falling in reveals them and a "
        "reflection can carry what the board does not show (0 = every hole visible, as in the paper)",
    )
    summary_boards: bool = Field(
        False,
        description="the reflector's compact summary (prompts: tiny) shows the start and final boards; "
        "false: only the action list and the feedback, a third of the tokens (see reports/results.md)",
    )

    @model_validator(mode="after")
    def _ranges(self):
        if self.min_size > self.max_size:
            raise ValueError("min_size must be <= max_size")
        if self.p_frozen_low >= self.p_frozen_high:
            raise ValueError("p_frozen_low must be < p_frozen_high")
        if self.pad_to is not None and self.pad_to < self.max_size:
            raise ValueError("pad_to must be >= max_size")
        return self


def _spec_of(task_or_spec: Task | dict[str, Any]) -> dict[str, Any]:
    return task_or_spec.spec if isinstance(task_or_spec, Task) else task_or_spec


def map_key(task_or_spec: Task | dict[str, Any]) -> str:
    """Canonical string of a map (grid + start + goal); equal maps give equal keys."""
    spec = _spec_of(task_or_spec)
    (sr, sc), (gr, gc) = spec["start"], spec["goal"]
    return f"{spec['size']}|{'/'.join(spec['grid'])}|{sr},{sc}|{gr},{gc}"


def _bfs_path(grid: list[str], start: tuple[int, int], goal: tuple[int, int]) -> list[str] | None:
    """Shortest action sequence from start to goal through frozen cells (4-neighbour), None if unreachable."""
    n = len(grid)
    start, goal = tuple(start), tuple(goal)
    prev: dict[tuple[int, int], tuple[tuple[int, int], str] | None] = {start: None}
    queue = deque([start])
    while queue:
        cell = queue.popleft()
        if cell == goal:
            path: list[str] = []
            while prev[cell] is not None:
                cell, action = prev[cell]  # type: ignore[misc]
                path.append(action)
            return path[::-1]
        r, c = cell
        for action in ACTIONS:
            dr, dc = MOVES[action]
            nr, nc = r + dr, c + dc
            if 0 <= nr < n and 0 <= nc < n and (nr, nc) not in prev and grid[nr][nc] == FROZEN:
                prev[(nr, nc)] = (cell, action)
                queue.append((nr, nc))
    return None


def solve_path(spec: Task | dict[str, Any]) -> list[str] | None:
    """One optimal action sequence for a map (BFS), None when the goal is unreachable."""
    spec = _spec_of(spec)
    return _bfs_path(spec["grid"], tuple(spec["start"]), tuple(spec["goal"]))


def solve(spec: Task | dict[str, Any]) -> int:
    """BFS optimal path length in moves; -1 when the goal is unreachable."""
    path = solve_path(spec)
    return -1 if path is None else len(path)


@dataclass(frozen=True)
class FrozenLakeState:
    """Immutable episode state; ``step`` returns a new one."""

    spec: dict[str, Any]
    pos: tuple[int, int]
    steps: int = 0  # steps used so far (invalid actions count)
    budget: int = 8
    done: bool = False
    event: str = ""  # last event: "" | "goal" | "hole" | "limit"

    @property
    def steps_left(self) -> int:
        return self.budget - self.steps


class FrozenLake(GridText, Env):
    name = "frozenlake"
    actions = ACTIONS
    Params = FrozenLakeParams
    prompts = {"tiny": TINY, "paper": paper_prompts("FrozenLake", GRID_REMINDER)}
    sep = " "  # between the cells of a rendered row

    def __init__(self, params: FrozenLakeParams | None = None, artifacts=None, **overrides) -> None:
        """``params`` (env.frozenlake; default: params.yaml's values), with ``overrides`` of single keys."""
        p = resolve(FrozenLakeParams, params, overrides)
        super().__init__(p, artifacts)
        self.min_size, self.max_size = p.min_size, p.max_size
        self.p_frozen_low, self.p_frozen_high = p.p_frozen_low, p.p_frozen_high
        self.pad_to, self.row_numbers = p.pad_to, p.row_numbers
        self.coords, self.near, self.relative = p.coords, p.near, p.relative
        self.feedback_from, self.summary_boards = p.feedback_from, p.summary_boards
        self.hidden_holes = p.hidden_holes

    # ---- tasks -------------------------------------------------------------------------------------------

    map_key = staticmethod(map_key)

    def _sample_spec(self, rng: random.Random) -> dict[str, Any]:
        n = rng.randint(self.min_size, self.max_size)
        p = self.p_frozen_low + (self.p_frozen_high - self.p_frozen_low) * rng.random()  # in [low, high)
        cells = [[FROZEN if rng.random() < p else HOLE for _ in range(n)] for _ in range(n)]
        s, g = rng.sample(range(n * n), 2)
        start, goal = divmod(s, n), divmod(g, n)
        cells[start[0]][start[1]] = FROZEN
        cells[goal[0]][goal[1]] = FROZEN
        return {"size": n, "grid": ["".join(row) for row in cells], "start": list(start), "goal": list(goal)}

    def generate(self, split: str, n: int, seed: int, exclude: set[str] | None = None) -> list[Task]:
        """``n`` distinct solvable maps, deterministic in (seed, split), none whose map_key is in ``exclude``."""
        rng = random.Random(f"{seed}:{split}:frozenlake")
        exclude = exclude or set()
        seen: set[str] = set()
        tasks: list[Task] = []
        max_tries = 1000 + 200 * n
        tries = 0
        while len(tasks) < n:
            if tries >= max_tries:
                raise RuntimeError(
                    f"frozenlake: found only {len(tasks)} of {n} distinct solvable maps for split {split!r} "
                    f"after {max_tries} tries (sizes {self.min_size}-{self.max_size}, optimal length at most "
                    f"{self.budget}, {len(exclude)} excluded); widen the ranges or ask for fewer"
                )
            tries += 1
            spec = self._sample_spec(rng)
            length = solve(spec)
            if not 1 <= length <= self.budget:  # also rejects unreachable (-1)
                continue
            if self.hidden_holes:
                spec = self._hide_holes(spec, rng)
                if spec is None:
                    continue
                length = solve(spec)
            key = map_key(spec)
            if key in seen or key in exclude:
                continue
            seen.add(key)
            tasks.append(Task(task_id=f"fl-{split}-{len(tasks):06d}", split=split, spec=spec, optimal_len=length))
        return tasks

    def _hide_holes(self, spec: dict[str, Any], rng: random.Random) -> dict[str, Any] | None:
        """``spec`` with ``hidden_holes`` frozen cells of a shortest path (a random one; not the start or the goal)
        turned into holes that render as ice, each leaving another path of the same length open; None when no
        cell allows that.

        Why the same length: the hole then costs nothing to a player who knows where it is, so what a failure
        teaches is exactly which of the equally short ways is closed, the fact the feedback states. A hole that
        forced a longer way would test planning a detour instead, which no note can supply."""
        grid = [list(row) for row in spec["grid"]]
        hidden: list[list[int]] = []
        length = solve(spec)
        for _ in range(self.hidden_holes):
            path = _random_shortest_path(grid, tuple(spec["start"]), tuple(spec["goal"]), rng)
            cells = path[1:-1] if path else []
            rng.shuffle(cells)
            for r, c in cells:
                grid[r][c] = HOLE
                if solve({**spec, "grid": ["".join(row) for row in grid]}) == length:
                    hidden.append([r, c])
                    break
                grid[r][c] = FROZEN
            else:
                return None
        return {**spec, "grid": ["".join(row) for row in grid], "hidden": sorted(hidden)}

    # ---- episode -----------------------------------------------------------------------------------------

    def reset(self, task: Task | dict[str, Any]) -> FrozenLakeState:
        spec = _spec_of(task)
        return FrozenLakeState(spec=spec, pos=tuple(spec["start"]), budget=self.budget)

    def render(self, state: FrozenLakeState) -> str:
        spec = state.spec
        n = spec["size"]
        goal = tuple(spec["goal"])
        width = n if self.pad_to is None else self.pad_to
        lines = []
        for r in range(width):
            row = []
            for c in range(width):
                if r >= n or c >= n:
                    row.append(OUTSIDE)
                elif (r, c) == state.pos:
                    row.append(AGENT)
                elif (r, c) == goal:
                    row.append(GOAL)
                else:
                    row.append(cell_symbol(state, r, c))
            line = self.sep.join(row)
            lines.append(f"{r} {line}" if self.row_numbers else line)
        # Encoding options for small models: the same visible information, restated. Neither says what a
        # symbol means or which move is good.
        if self.coords:
            (ar, ac), (gr, gc) = state.pos, goal
            lines.append(f"{AGENT} {ar} {ac} {GOAL} {gr} {gc}")
        if self.relative:
            (ar, ac), (gr, gc) = state.pos, goal
            lines.append(f"{GOAL} off {gr - ar:+d} {gc - ac:+d}")
        if self.near:
            lines.append("near : " + around_answer(neighbours(MOVES, state.pos, lambda i, j: cell_symbol(state, i, j))))
        return "\n".join(lines)

    def step(self, state: FrozenLakeState, reply: str) -> tuple[FrozenLakeState, Step]:
        if state.done:
            raise ValueError("step() called on a finished episode")
        action = parse_action(reply)
        pos, moved = state.pos, False
        if action is not None:
            n = state.spec["size"]
            dr, dc = MOVES[action]
            nr, nc = pos[0] + dr, pos[1] + dc
            if 0 <= nr < n and 0 <= nc < n:
                pos, moved = (nr, nc), True
        steps = state.steps + 1
        event = ""
        if pos == tuple(state.spec["goal"]):
            event = "goal"
        elif state.spec["grid"][pos[0]][pos[1]] == HOLE:
            event = "hole"
        elif steps >= state.budget:
            event = "limit"
        new = replace(state, pos=pos, steps=steps, done=bool(event), event=event)
        return new, Step(
            action=action,
            valid=action is not None,
            moved=moved,
            event=event,
            done=new.done,
            observation=self.render(new),
        )

    def message(self, state: FrozenLakeState, last_step: Step | None = None) -> str:
        """User-turn text: optional no-effect notice, the board, the remaining step budget."""
        parts = []
        if last_step is not None and not last_step.moved:
            parts.append("Your last action had no effect.")
        parts.append(self.render(state))
        parts.append(f"Steps left: {state.steps_left}")
        return "\n".join(parts)

    def vocabulary(self, tasks: list[Task]) -> list[str]:
        """Texts covering words random play would not show: none. Boards, messages, summaries and feedback
        from random play (warmstart.corpus_texts) already contain every FrozenLake word, and adding texts
        would reorder the embedded tokenizer's vocabulary and so change the committed default run."""
        return []

    def last_move(self, trace: Trace) -> tuple[str, tuple[int, int]] | None:
        """The attempt's last action ("invalid" when the reply named none) and the cell it was taken from."""
        if not trace.steps:
            return None
        last, (r, c) = trace.steps[-1], self.end_cell(trace)
        if last.moved:
            dr, dc = MOVES[last.action]
            r, c = r - dr, c - dc
        return last.action or "invalid", (r, c)

    def reflection_note(self, trace: Trace) -> str | None:
        """What the warm start's copying exercise copies from the feedback into a reflection: where the attempt
        ended (``last r c``), or with ``feedback_from`` the last action and the cell it was taken from
        (``last right 2 0``), which the feedback then states."""
        if not self.feedback_from:
            return super().reflection_note(trace)
        if not trace.steps:
            return None
        action, (r, c) = self.last_move(trace)
        return f"last {action} {r} {c}"

    def step_comment(self, step: Step, before: str) -> str:
        if step.action is None:
            return "Not a valid action."
        if not step.moved:
            return "Did not move."
        return {"goal": "Reached the goal.", "hole": "Moved into a hole."}.get(step.event, "Moved to a safe tile.")

    # ---- verifier ----------------------------------------------------------------------------------------

    def reward(self, trace: Trace) -> float:
        return 1.0 if trace.steps and trace.steps[-1].event == "goal" else 0.0

    def feedback(self, trace: Trace) -> str:
        steps = trace.steps
        event = steps[-1].event if steps else ""
        outcome = OUTCOME.get(event, "The episode did not finish.")
        invalid = sum(1 for s in steps if not s.valid)
        blocked = sum(1 for s in steps if s.valid and not s.moved)
        if steps:
            last = steps[-1].action or "invalid"
        else:
            last = "none"
        where = self.end_cell(trace)
        if where is not None:
            outcome = f"{outcome[:-1]} at {where[0]} {where[1]}."
        if self.feedback_from and steps:
            _, (fr, fc) = self.last_move(trace)
            last = f"{last} at {fr} {fc}"
        return (
            f"{outcome} Actions with no effect: {invalid + blocked} ({invalid} invalid, {blocked} blocked). "
            f"Last action: {last}. Reward={self.reward(trace)}, steps={len(steps)}"
        )


def cell_symbol(state: FrozenLakeState, r: int, c: int) -> str:
    """The symbol cell (r, c) shows, the agent left out: X off the board, else B, C or D (a hidden hole shows D)."""
    n = state.spec["size"]
    if not (0 <= r < n and 0 <= c < n):
        return OUTSIDE
    if (r, c) == tuple(state.spec["goal"]):
        return GOAL
    if state.spec["grid"][r][c] == HOLE and [r, c] not in state.spec.get("hidden", ()):
        return HOLE
    return FROZEN


def distances(grid, goal: tuple[int, int]) -> dict[tuple[int, int], int]:
    """Moves from every frozen cell that can reach the goal to the goal (breadth first from the goal)."""
    n = len(grid)
    dist = {goal: 0}
    queue = deque([goal])
    while queue:
        r, c = queue.popleft()
        for dr, dc in MOVES.values():
            cell = (r + dr, c + dc)
            if 0 <= cell[0] < n and 0 <= cell[1] < n and cell not in dist and grid[cell[0]][cell[1]] == FROZEN:
                dist[cell] = dist[(r, c)] + 1
                queue.append(cell)
    return dist


def _random_shortest_path(grid, start: tuple[int, int], goal: tuple[int, int], rng: random.Random) -> list | None:
    """The cells of one shortest path through frozen cells, ties broken at random; None when there is none."""
    dist = distances(grid, goal)
    if start not in dist:
        return None
    path = [start]
    while path[-1] != goal:
        r, c = path[-1]
        steps = [(r + dr, c + dc) for dr, dc in MOVES.values() if dist.get((r + dr, c + dc)) == dist[(r, c)] - 1]
        path.append(rng.choice(steps))
    return path
