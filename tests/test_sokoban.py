"""Sokoban environment: generation (solvable within the budget, minimal optimal length), push rules,
no-effect and invalid moves, rendering, verifier texts. Pure Python, no torch."""

from __future__ import annotations

import itertools
import json

import pytest
from env_util import blk, play

from pipeline.envs.base import Task
from pipeline.envs.sokoban import Sokoban, map_key, solve, solve_path
from pipeline.tiny.sokoban import reading_exercise

PLAIN = dict(pad_to=None, row_numbers=False)  # the plain board; tests name what they change


def SK(**overrides) -> Sokoban:
    return Sokoban(**{**PLAIN, **overrides})


# 0: E E E E E E
# 1: E A D D D E      player (1,1), box (2,2), goal (2,4)
# 2: E D B D C E
# 3: E D D D D E
# 4: E D D D D E
# 5: E E E E E E
SPEC = {"size": 6, "player": [1, 1], "boxes": [[2, 2]], "goals": [[2, 4]]}
TASK = Task(task_id="sk-unit-000000", split="unit", spec=SPEC, optimal_len=3)
BOARD = "E E E E E E\nE A D D D E\nE D B D C E\nE D D D D E\nE D D D D E\nE E E E E E"
MOVES = {"left": (0, -1), "down": (1, 0), "right": (0, 1), "up": (-1, 0)}


# ---- an independent simulator and brute force (no BFS, no env code) ---------------------------------------


def simulate(spec: dict, actions) -> bool:
    """Whether ``actions`` leave every box on a goal at some point (the episode ends there)."""
    n = spec["size"]
    player = tuple(spec["player"])
    boxes = [tuple(b) for b in spec["boxes"]]
    goals = {tuple(g) for g in spec["goals"]}

    def free(cell):
        r, c = cell
        return 1 <= r <= n - 2 and 1 <= c <= n - 2 and cell not in boxes

    for a in actions:
        dr, dc = MOVES[a]
        nxt = (player[0] + dr, player[1] + dc)
        if nxt in boxes:
            beyond = (nxt[0] + dr, nxt[1] + dc)
            if free(beyond):
                boxes[boxes.index(nxt)] = beyond
                player = nxt
        elif free(nxt):
            player = nxt
        if set(boxes) == goals:
            return True
    return False


def brute_force(spec: dict, max_len: int) -> int:
    for length in range(1, max_len + 1):
        if any(simulate(spec, seq) for seq in itertools.product(MOVES, repeat=length)):
            return length
    return -1


# ---- generation ----------------------------------------------------------------------------------------


def test_generate_deterministic_per_seed_and_split():
    a = SK().generate("train", 40, seed=7)
    b = SK().generate("train", 40, seed=7)
    assert [t.spec for t in a] == [t.spec for t in b]
    assert [t.task_id for t in a] == [f"sk-train-{i:06d}" for i in range(40)]
    assert [t.spec for t in a] != [t.spec for t in SK().generate("train", 40, seed=8)]
    assert [t.spec for t in a] != [t.spec for t in SK().generate("test", 40, seed=7)]
    assert all(t.split == "train" for t in a)


def test_every_kept_layout_is_valid_and_solvable_within_budget():
    env = SK()
    tasks = env.generate("train", 300, seed=0)
    keys = [map_key(t) for t in tasks]
    assert len(set(keys)) == len(keys)
    sizes = set()
    for t in tasks:
        s = t.spec
        json.dumps(s)
        n = s["size"]
        sizes.add(n)
        assert 6 <= n <= 8 and len(s["boxes"]) == len(s["goals"]) == 1
        cells = [tuple(s["player"])] + [tuple(b) for b in s["boxes"]] + [tuple(g) for g in s["goals"]]
        assert len(set(cells)) == len(cells)
        assert all(1 <= r <= n - 2 and 1 <= c <= n - 2 for r, c in cells)  # inside the border wall
        assert 1 <= t.optimal_len <= env.budget
        state, trace = play(env, t, [blk(a) for a in solve_path(s)])
        assert trace.steps[-1].event == "solved" and env.reward(trace) == 1.0
        assert len(trace.steps) == t.optimal_len and all(st.moved for st in trace.steps)
    assert sizes == {6, 7, 8}


def test_solve_path_of_the_example():
    assert solve_path(SPEC) == ["down", "right", "right"] and solve(SPEC) == TASK.optimal_len
    assert solve(SPEC, max_len=2) == -1


def test_optimal_length_is_minimal_against_brute_force():
    env = SK(min_size=5, max_size=6, budget=5)
    tasks = env.generate("train", 25, seed=2)
    for t in tasks:
        assert brute_force(t.spec, env.budget) == t.optimal_len, t.spec
    # a layout whose box sits in a corner can never be solved; the generator rejects such layouts
    dead = {"size": 6, "player": [2, 2], "boxes": [[1, 1]], "goals": [[3, 3]]}
    assert solve(dead) == -1 and brute_force(dead, 5) == -1


def test_optimal_length_two_boxes_against_brute_force():
    env = SK(min_size=5, max_size=5, boxes=2, budget=5)
    for t in env.generate("train", 10, seed=4):
        assert brute_force(t.spec, env.budget) == t.optimal_len, t.spec


def test_train_test_disjoint_with_exclude():
    env = SK(min_size=5, max_size=5, budget=4)  # 84 solvable layouts: collisions are likely without exclude
    train = env.generate("train", 50, seed=1)
    keys = {env.map_key(t) for t in train}
    test = env.generate("test", 30, seed=1, exclude=keys)
    assert not keys & {map_key(t) for t in test}
    assert keys & {map_key(t) for t in env.generate("test", 30, seed=1)}  # exclusion mattered


def test_generate_gives_up_when_too_few_layouts():
    with pytest.raises(RuntimeError, match="distinct"):
        SK(min_size=5, max_size=5, budget=4).generate("train", 100, seed=0)  # only 84 exist


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_size": 3},
        {"min_size": 7, "max_size": 6},
        {"boxes": 0},
        {"min_size": 4, "max_size": 4, "boxes": 2},
        {"budget": 0},
        {"pad_to": 7},
        {"row_numbers": "yes"},
    ],
)
def test_constructor_validation(kwargs):
    with pytest.raises(ValueError):
        SK(**kwargs)


# ---- rendering -----------------------------------------------------------------------------------------


def test_render_symbols_pad_and_row_numbers():
    env = SK()
    assert env.render(env.reset(TASK)) == BOARD
    env = SK(max_size=7, pad_to=7, row_numbers=True)
    lines = env.render(env.reset(TASK)).splitlines()
    assert lines[0] == "0 E E E E E E X" and lines[2] == "2 E D B D C E X"
    assert lines[-1] == "6 X X X X X X X" and len(lines) == 7


def test_goal_symbols_agent_and_box_on_goal():
    env = SK()
    spec = {"size": 6, "player": [3, 4], "boxes": [[2, 2]], "goals": [[2, 4]]}
    state, step = env.step(env.reset(spec), blk("up"))
    assert state.player == (2, 4) and step.moved
    assert env.render(state).splitlines()[2] == "E D B D a E"  # agent on the goal shows as a
    _, trace = play(env, TASK, [blk("down"), blk("right"), blk("right")])  # two pushes put the box on the goal
    assert trace.steps[-1].event == "solved"
    assert trace.steps[-1].observation.splitlines()[2] == "E D D A b E"  # box on the goal shows as b


# ---- step semantics ------------------------------------------------------------------------------------


def test_push_into_free_cell():
    env = SK()
    state, step = env.step(env.reset(TASK), blk("down"))
    state, step = env.step(state, blk("right"))
    assert step.moved and state.player == (2, 2) and state.boxes == ((2, 3),)


def test_push_blocked_by_wall():
    env = SK()
    spec = {"size": 6, "player": [2, 2], "boxes": [[2, 1]], "goals": [[4, 4]]}
    state, step = env.step(env.reset(spec), blk("left"))
    assert step.valid and not step.moved and state.player == (2, 2) and state.boxes == ((2, 1),)
    assert state.steps == 1 and env.message(state, step).startswith("Your last action had no effect.")


def test_push_blocked_by_another_box():
    env = SK(boxes=2)
    spec = {"size": 7, "player": [3, 1], "boxes": [[3, 2], [3, 3]], "goals": [[1, 1], [5, 5]]}
    state, step = env.step(env.reset(spec), blk("right"))
    assert step.valid and not step.moved and state.player == (3, 1) and state.boxes == ((3, 2), (3, 3))
    state, step = env.step(state, blk("up"))  # moving away still works
    assert step.moved and state.player == (2, 1)


def test_walking_into_wall_is_no_effect():
    env = SK()
    state, step = env.step(env.reset(TASK), blk("up"))
    assert step.valid and not step.moved and step.action == "up" and state.player == (1, 1)
    state, step = env.step(state, blk("left"))
    assert not step.moved and state.player == (1, 1) and state.steps == 2 and not state.done


def test_invalid_actions_use_a_step():
    env = SK()
    state = env.reset(TASK)
    for reply in ["down", "```jump```", "``` ```", "```left right```", "```5```"]:
        state, step = env.step(state, reply)
        assert step.action is None and not step.valid and not step.moved
    assert state.steps == 5 and state.player == (1, 1) and state.steps_left == 3


def test_actions_parsed_like_frozenlake():
    env = SK()
    state, step = env.step(env.reset(TASK), "```right``` no wait ```DOWN```")
    assert step.action == "down" and state.player == (2, 1)
    state, step = env.step(env.reset(TASK), "```3```")
    assert step.action == "right" and state.player == (1, 2)


def test_budget_exhaustion_and_step_after_done():
    env = SK(budget=3)
    state, trace = play(env, TASK, [blk("up"), blk("left"), blk("up")])
    assert [s.event for s in trace.steps] == ["", "", "limit"] and [s.done for s in trace.steps] == [False, False, True]
    assert env.reward(trace) == 0.0
    with pytest.raises(ValueError):
        env.step(state, blk("down"))


def test_solved_on_last_step_beats_limit():
    env = SK(budget=3)
    _, trace = play(env, TASK, [blk("down"), blk("right"), blk("right")])
    assert trace.steps[-1].event == "solved" and env.reward(trace) == 1.0


# ---- messages and verifier text ------------------------------------------------------------------------


def test_message_and_feedback():
    env = SK()
    state = env.reset(TASK)
    assert env.message(state, None) == BOARD + "\nSteps left: 8"
    _, trace = play(env, TASK, [blk("up"), "nothing", blk("down"), blk("right"), blk("right")])
    fb = env.feedback(trace)
    assert fb.startswith("You solved the puzzle at 2 3.")
    assert "2 (1 invalid, 1 blocked)" in fb and "Last action: right." in fb and fb.endswith("Reward=1.0, steps=5")
    _, trace = play(SK(budget=2), TASK, ["?", blk("up")])
    fb = env.feedback(trace)
    assert fb.startswith("You ran out of steps at 1 1.") and fb.endswith("Reward=0.0, steps=2")


def test_summary():
    env = SK()
    init = env.render(env.reset(TASK))
    _, trace = play(env, TASK, [blk("up"), "x", blk("down")])
    text = env.summary(trace, init)
    assert text.startswith("Initial board:\n" + init)
    assert "Step 1: up (no effect)" in text and "Step 2: invalid (no effect)" in text
    assert text.endswith(env.feedback(trace))
    compact = env.summary(trace, init, compact=True)
    assert "Actions: up ( no effect ) invalid ( no effect ) down" in compact and "Final board:" in compact


def test_random_reply_and_vocabulary():
    import random

    env = SK()
    rng = random.Random(0)
    replies = {env.random_reply(env.reset(TASK), rng) for _ in range(50)}
    assert replies == {f"```{a}```" for a in env.actions}
    words = set(" ".join(env.vocabulary([TASK])).split())
    assert {"A", "a", "B", "b", "C", "D", "E", "X", "Steps"} <= words


def test_module_is_pure_python():
    import subprocess
    import sys

    code = "import sys, pipeline.envs.sokoban; assert not {'torch', 'numpy'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_reading_exercises_never_reveal_solutions():
    env = SK(min_size=6, max_size=7, pad_to=7, row_numbers=True)
    for task in env.generate("train", 20, 3):
        s = env.reset(task)
        _, user, ans = reading_exercise(env, s, "where", "left")
        (r, c), ((br, bc),) = s.player, s.boxes
        assert user == env.message(s, None) and ans == f"A {r} {c} B {br} {bc}"
        rows = [line.split()[1:] for line in env.render(s).splitlines()]
        words = reading_exercise(env, s, "around", "left")[2].split()
        for name, (dr, dc) in MOVES.items():
            assert words[words.index(name) + 1] == rows[r + dr][c + dc]
        for action in MOVES:
            _, user, ans = reading_exercise(env, s, "next", action)
            nxt, _ = env.step(s, f"```{action}```")
            assert user.endswith(f"action : {action}")
            assert ans.split()[1:3] == [str(nxt.player[0]), str(nxt.player[1])]
            assert "solved" not in ans and "end" not in ans
        # "which" inverts "around": every move is listed under the symbol it reaches, and only there
        which = reading_exercise(env, s, "which", "left")[2].split()
        seen = dict(zip(words[0::2], words[1::2]))
        for i, w in enumerate(which):
            if w in MOVES:
                sym = next(x for x in reversed(which[:i]) if x not in MOVES)
                assert sym == seen[w]
        assert sorted(w for w in which if w in MOVES) == sorted(MOVES)


def test_at_exercise_asks_whether_the_agent_stands_on_the_noted_cell():
    import random

    env = SK(min_size=6, max_size=7, pad_to=7, row_numbers=True)
    rng, answers = random.Random(0), []
    for task in env.generate("train", 40, 3):
        s = env.reset(task)
        system, user, ans = reading_exercise(env, s, "at", "left", rng)
        r, c = map(int, system.split()[-2:])
        assert system.split()[-3] == "last" and user == env.message(s, None)  # the form of Sokoban's note
        assert ans == ("yes" if (r, c) == s.player else "no") and 0 <= r < 7 and 0 <= c < 7
        answers.append(ans)
    assert 8 < answers.count("yes") < 32
