"""How well can a first attempt do on FrozenLake with hidden holes? The ceiling that internalisation is bounded by.

A first attempt sees the map with its hidden hole drawn as ice, so no policy can know which of the equally short
ways is closed; what it could learn is only where the task generator tends to put hidden holes. For the held-out
maps of a run (``init/tasks_test.parquet``) this prints the expected success of:

- ``uniform move``: at each cell, a uniformly random move among those that shorten the way to B on the visible
  map (a player that knows the board and nothing about hidden holes);
- ``uniform path``: a uniformly random shortest path of the visible map;
- ``best shortest``: the shortest path with the least posterior probability of holding the hidden hole, the
  posterior being the generator's own distribution (``FrozenLake._hide_holes``: a shortest path drawn move by
  move at random, then a random cell of it whose loss keeps the length), given what the map shows;
- ``best walk``: the same over every walk within the step budget (a detour may skirt the likely cells).

The last is the Bayes-optimal first attempt: no policy, however trained, does better on average. Supports
``hidden_holes: 1``.

  python scripts/hidden_ceiling.py                                 # the main job's artifacts/ and params.yaml
  python scripts/hidden_ceiling.py --artifacts A --params P --split train
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.envs.frozenlake import FROZEN, HOLE, MOVES, distances  # noqa: E402

Cell = tuple[int, int]


def visible(spec: dict) -> list[list[str]]:
    """The map as a player sees it: hidden holes drawn as ice."""
    grid = [list(row) for row in spec["grid"]]
    for r, c in spec.get("hidden", ()):
        grid[r][c] = FROZEN
    return grid


def closer(dist: dict[Cell, int], cell: Cell) -> list[Cell]:
    """The neighbours of ``cell`` one move nearer the goal (``dist``: distances to it)."""
    steps = [(cell[0] + dr, cell[1] + dc) for dr, dc in MOVES.values()]
    return [x for x in steps if dist.get(x) == dist[cell] - 1]


def shortest_paths(grid: list[list[str]], start: Cell, goal: Cell) -> list[tuple[list[Cell], float]]:
    """Every shortest path from start to goal, each with its chance of being drawn move by move at random
    (as ``_random_shortest_path`` draws it)."""
    dist = distances(grid, goal)
    paths: list[tuple[list[Cell], float]] = []

    def extend(path: list[Cell], p: float) -> None:
        if path[-1] == goal:
            paths.append((path, p))
            return
        steps = closer(dist, path[-1])
        for x in steps:
            extend([*path, x], p / len(steps))

    extend([start], 1.0)
    return paths


def posterior(grid: list[list[str]], start: Cell, goal: Cell, paths: list) -> dict[Cell, float]:
    """Where the generator puts the hidden hole, given the visible map and its ``shortest_paths``: a path drawn
    as they are, then a random cell of it (not its ends) whose loss keeps the shortest length; a path with no
    such cell rejects the map."""
    length = len(paths[0][0]) - 1
    keeps_length: dict[Cell, bool] = {}

    def may_hide(cell: Cell) -> bool:
        if cell not in keeps_length:
            g = [row[:] for row in grid]
            g[cell[0]][cell[1]] = HOLE
            keeps_length[cell] = distances(g, goal).get(start) == length
        return keeps_length[cell]

    weights: dict[Cell, float] = {}
    accepted = 0.0
    for path, p in paths:
        options = [c for c in path[1:-1] if may_hide(c)]
        if options:
            accepted += p
            for c in options:
                weights[c] = weights.get(c, 0.0) + p / len(options)
    return {c: w / accepted for c, w in weights.items()}


def ceilings(spec: dict, budget: int) -> dict[str, float]:
    """The four success rates above for one map."""
    hidden = {tuple(h) for h in spec["hidden"]}
    if len(hidden) != 1:
        raise SystemExit(f"hidden_ceiling: supports one hidden hole per map, this map has {len(hidden)}")
    grid = visible(spec)
    n, start, goal = len(grid), tuple(spec["start"]), tuple(spec["goal"])
    dist = distances(grid, goal)
    paths = shortest_paths(grid, start, goal)
    where = posterior(grid, start, goal, paths)

    def uniform_move(cell: Cell) -> float:
        if cell in hidden:
            return 0.0
        if cell == goal:
            return 1.0
        return statistics.fmean(uniform_move(x) for x in closer(dist, cell))

    best = [0.0]

    def walk(cell: Cell, steps: int, seen: frozenset, mass: float) -> None:
        if cell == goal:
            best[0] = max(best[0], 1.0 - mass)
            return
        if steps == budget or 1.0 - mass <= best[0]:
            return
        for dr, dc in MOVES.values():
            x = (cell[0] + dr, cell[1] + dc)
            if 0 <= x[0] < n and 0 <= x[1] < n and grid[x[0]][x[1]] == FROZEN:
                walk(x, steps + 1, seen | {x}, mass + (0.0 if x in seen else where.get(x, 0.0)))

    walk(start, 0, frozenset([start]), 0.0)
    return {
        "uniform move": uniform_move(start),
        "uniform path": sum(not hidden.intersection(p) for p, _ in paths) / len(paths),
        "best shortest": max(1.0 - sum(where.get(c, 0.0) for c in p) for p, _ in paths),
        "best walk": best[0],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--artifacts", type=Path, default=ROOT / "artifacts")
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    ap.add_argument("--split", choices=["test", "train"], default="test")
    args = ap.parse_args(argv)

    from pipeline import layout
    from pipeline.artifacts import read_rows
    from pipeline.config import load_or_exit

    env = load_or_exit(args.params).env
    if env.name != "frozenlake" or not env.frozenlake.hidden_holes:
        raise SystemExit(f"hidden_ceiling: {args.params} is not FrozenLake with hidden holes")
    path = layout.epoch_dir(0, args.artifacts) / f"tasks_{args.split}.parquet"
    if not path.exists():
        raise SystemExit(f"hidden_ceiling: {path} not found (run init first)")
    rows = [ceilings(json.loads(t["spec"]), env.frozenlake.budget) for t in read_rows("tasks", path)]
    print(f"{len(rows)} {args.split} maps of {args.artifacts}: expected first-attempt success")
    for key in rows[0]:
        print(f"  {key:14s} {statistics.fmean(r[key] for r in rows):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
