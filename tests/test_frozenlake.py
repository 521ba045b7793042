"""FrozenLake environment: generation, step semantics, rendering, verifier. Pure Python, no torch."""

from __future__ import annotations

import json
import re

import pytest
from env_util import blk, play

from pipeline.config import EnvParams
from pipeline.envs import make_env
from pipeline.envs.base import Task
from pipeline.envs.frozenlake import FrozenLake, map_key, parse_action, solve, solve_path

# The plain board of docs/method.md (no padding, no restated lines); tests name what they change.
PLAIN = dict(
    min_size=2,
    max_size=9,
    pad_to=None,
    row_numbers=False,
    coords=False,
    near=False,
    relative=False,
    feedback_from=False,
    summary_boards=True,
)


def FL(**overrides) -> FrozenLake:
    return FrozenLake(**{**PLAIN, **overrides})


# 0: A D C      start (0,0), goal (2,2), hole (0,2) and (1,1)
# 1: D C D
# 2: D D B
SPEC = {"size": 3, "grid": ["DDC", "DCD", "DDD"], "start": [0, 0], "goal": [2, 2]}
TASK = Task(task_id="fl-unit-000000", split="unit", spec=SPEC, optimal_len=4)


# ---- generation ----------------------------------------------------------------------------------------


def test_generate_deterministic_per_seed_and_split():
    env = FL()
    a = env.generate("train", 50, seed=7)
    b = FL().generate("train", 50, seed=7)
    assert [t.spec for t in a] == [t.spec for t in b]
    assert [t.task_id for t in a] == [f"fl-train-{i:06d}" for i in range(50)]
    c = env.generate("train", 50, seed=8)
    d = env.generate("test", 50, seed=7)
    assert [t.spec for t in a] != [t.spec for t in c]
    assert [t.spec for t in a] != [t.spec for t in d]
    assert all(t.split == "train" for t in a)


def test_generated_maps_valid_and_distinct():
    env = FL()
    tasks = env.generate("train", 300, seed=0)
    keys = [map_key(t) for t in tasks]
    assert len(set(keys)) == len(keys)
    sizes = set()
    for t in tasks:
        s = t.spec
        json.dumps(s)  # JSON-serialisable
        n = s["size"]
        sizes.add(n)
        assert 2 <= n <= 9
        assert len(s["grid"]) == n and all(len(row) == n for row in s["grid"])
        assert set("".join(s["grid"])) <= {"C", "D"}
        assert s["start"] != s["goal"]
        (sr, sc), (gr, gc) = s["start"], s["goal"]
        assert s["grid"][sr][sc] == "D" and s["grid"][gr][gc] == "D"
        assert t.optimal_len == solve(s)
        assert 1 <= t.optimal_len <= env.budget
    assert sizes == set(range(2, 10))  # the whole range shows up in 300 draws


def test_train_test_disjoint_with_exclude():
    env = FL(min_size=2, max_size=3)  # small maps: collisions are likely without exclude
    train = env.generate("train", 100, seed=1)
    train_keys = {env.map_key(t) for t in train}
    test = env.generate("test", 50, seed=1, exclude=train_keys)
    assert not train_keys & {map_key(t) for t in test}
    plain = env.generate("test", 50, seed=1)
    assert train_keys & {map_key(t) for t in plain}  # sanity: exclusion actually mattered


def test_optimal_paths_fit_the_budget():
    env = FL(budget=3)
    tasks = env.generate("train", 100, seed=3)
    assert max(t.optimal_len for t in tasks) <= 3
    assert all(t.optimal_len <= 4 for t in FL(budget=4).generate("x", 50, seed=3))


def test_generate_gives_up_when_too_few_maps():
    env = FL(min_size=2, max_size=2)  # at most 12 * 4 distinct 2x2 maps
    with pytest.raises(RuntimeError, match="distinct"):
        env.generate("train", 100, seed=0)


def test_constructor_validation():
    with pytest.raises(ValueError):
        FL(pad_to=5)  # < max_size 9
    with pytest.raises(ValueError):
        FL(min_size=5, max_size=4)
    FL(max_size=5, pad_to=5)


def test_solve_and_path():
    assert solve(SPEC) == 4
    path = solve_path(SPEC)
    assert path == ["down", "down", "right", "right"]
    blocked = {"size": 2, "grid": ["DC", "CD"], "start": [0, 0], "goal": [1, 1]}
    assert solve(blocked) == -1 and solve_path(blocked) is None


# ---- rendering -----------------------------------------------------------------------------------------


def test_render_symbols():
    env = FL()
    state = env.reset(TASK)
    assert env.render(state) == "A D C\nD C D\nD D B"
    state, _ = env.step(state, blk("down"))
    assert env.render(state) == "D D C\nA C D\nD D B"  # start shows as frozen once left


def test_render_pad_and_row_numbers():
    env = FL(max_size=4, pad_to=4, row_numbers=True)
    assert env.render(env.reset(TASK)) == "0 A D C X\n1 D C D X\n2 D D B X\n3 X X X X"
    env = FL(max_size=4, pad_to=4)
    assert env.render(env.reset(TASK)) == "A D C X\nD C D X\nD D B X\nX X X X"


def test_render_coords_and_near_restate_the_board():
    env = FL(max_size=4, pad_to=4, row_numbers=True, coords=True, near=True)
    board = "0 A D C X\n1 D C D X\n2 D D B X\n3 X X X X"
    assert env.render(env.reset(TASK)) == board + "\nA 0 0 B 2 2\nnear : left X down D right D up X"
    state, _ = play(env, TASK, [blk("right")])
    assert env.render(state).splitlines()[-2:] == ["A 0 1 B 2 2", "near : left D down C right C up X"]


def test_render_relative_offset_of_b():
    env = FL(max_size=4, relative=True, coords=True)
    assert env.render(env.reset(TASK)).splitlines()[-2:] == ["A 0 0 B 2 2", "B off +2 +2"]
    state, _ = play(env, TASK, [blk("right"), blk("right")])
    assert env.render(state).splitlines()[-1] == "B off +2 +0"
    assert make_env(EnvParams(frozenlake={"relative": True})).relative  # reachable from params.yaml


def test_agent_drawn_on_hole_and_goal():
    env = FL()
    state, trace = play(env, TASK, [blk("right"), blk("right")])
    assert trace.steps[-1].event == "hole"
    assert env.render(state) == "D D A\nD C D\nD D B"
    state, trace = play(env, TASK, [blk(a) for a in solve_path(SPEC)])
    assert env.render(state) == "D D C\nD C D\nD D A"


# ---- step semantics ------------------------------------------------------------------------------------


def test_off_grid_stays_in_place():
    env = FL()
    state0 = env.reset(TASK)
    state, step = env.step(state0, blk("up"))
    assert step.valid and not step.moved and step.action == "up"
    assert state.pos == (0, 0) and state.steps == 1 and not state.done and step.event == ""
    state, step = env.step(state, blk("left"))
    assert not step.moved and state.pos == (0, 0)


def test_hole_ends_with_reward_zero():
    env = FL()
    state, trace = play(env, TASK, [blk("down"), blk("right")])
    step = trace.steps[-1]
    assert step.event == "hole" and step.done and state.done and step.moved
    assert env.reward(trace) == 0.0


def test_goal_gives_reward_one_bfs_playthrough():
    env = FL()
    for task in env.generate("train", 100, seed=11):
        state, trace = play(env, task, [blk(a) for a in solve_path(task.spec)])
        assert state.done and trace.steps[-1].event == "goal"
        assert env.reward(trace) == 1.0
        assert len(trace.steps) == task.optimal_len
        assert all(s.valid and s.moved and s.done == (i == len(trace.steps) - 1) for i, s in enumerate(trace.steps))


def test_invalid_action_uses_a_step():
    env = FL()
    state = env.reset(TASK)
    for reply in ["down", "```jump```", "``` ```", "```left right```", "```Go left```"]:
        state, step = env.step(state, reply)
        assert step.action is None and not step.valid and not step.moved
    assert state.steps == 5 and state.pos == (0, 0) and state.steps_left == 3


def test_last_block_wins_case_and_digits():
    assert parse_action("```left``` then ```right```") == "right"
    assert parse_action("```LEFT```") == "left"
    assert parse_action("```\n  Up \n```") == "up"
    assert [parse_action(f"```{d}```") for d in "1234"] == ["left", "down", "right", "up"]
    assert parse_action("```5```") is None and parse_action("right") is None
    env = FL()
    state, step = env.step(env.reset(TASK), "```right``` no wait ```Down```")
    assert step.action == "down" and state.pos == (1, 0)
    state, step = env.step(env.reset(TASK), "```2```")
    assert step.action == "down" and state.pos == (1, 0)


def test_budget_exhaustion_gives_limit():
    env = FL(budget=3)
    state, trace = play(env, TASK, [blk("up"), blk("down"), blk("up")])
    assert [s.event for s in trace.steps] == ["", "", "limit"]
    assert [s.done for s in trace.steps] == [False, False, True]
    assert state.done and env.reward(trace) == 0.0


def test_goal_on_last_step_beats_limit():
    env = FL(budget=4)
    _, trace = play(env, TASK, [blk(a) for a in solve_path(SPEC)])
    assert trace.steps[-1].event == "goal" and env.reward(trace) == 1.0


def test_step_after_done_raises():
    env = FL()
    state, _ = play(env, TASK, [blk("right"), blk("right")])
    with pytest.raises(ValueError):
        env.step(state, blk("left"))


def test_step_observation_is_render_and_state_immutable():
    env = FL()
    s0 = env.reset(TASK)
    s1, step = env.step(s0, blk("down"))
    assert step.observation == env.render(s1)
    assert s0.pos == (0, 0) and s0.steps == 0  # old state untouched


# ---- messages and verifier text ------------------------------------------------------------------------


def test_message():
    env = FL()
    state = env.reset(TASK)
    assert env.message(state, None) == "A D C\nD C D\nD D B\nSteps left: 8"
    state, step = env.step(state, blk("up"))
    msg = env.message(state, step)
    assert msg.startswith("Your last action had no effect.") and msg.endswith("Steps left: 7")
    state, step = env.step(state, blk("down"))
    assert "no effect" not in env.message(state, step)


def test_feedback_texts():
    env = FL()
    _, trace = play(env, TASK, [blk("up"), "nothing", blk("down"), blk("down"), blk("right"), blk("right")])
    fb = env.feedback(trace)
    assert fb.startswith("You reached the goal at 2 2.")  # where the episode ended
    assert "2 (1 invalid, 1 blocked)" in fb and "Last action: right." in fb
    assert fb.endswith("Reward=1.0, steps=6")

    _, trace = play(env, TASK, [blk("right"), blk("right")])
    fb = env.feedback(trace)
    assert fb.startswith("You fell into a hole at 0 2.") and fb.endswith("Reward=0.0, steps=2")

    _, trace = play(FL(budget=2), TASK, ["?", "??"])
    fb = env.feedback(trace)
    assert fb.startswith("You ran out of steps at 0 0.") and "Last action: invalid." in fb
    assert "2 (2 invalid, 0 blocked)" in fb and fb.endswith("Reward=0.0, steps=2")
    assert env.feedback(trace) == fb  # deterministic


def test_summary():
    env = FL()
    state = env.reset(TASK)
    init = env.render(state)
    _, trace = play(env, TASK, [blk("up"), "x", blk("down")])
    text = env.summary(trace, init)
    assert text.startswith("Initial board:\n" + init)
    assert "Step 1: up (no effect)\nA D C" in text
    assert "Step 2: invalid (no effect)" in text
    assert "Step 3: down\nD D C\nA C D\nD D B" in text
    assert text.endswith(env.feedback(trace))


def test_compact_summary_with_and_without_boards():
    env = FL()
    init = env.render(env.reset(TASK))
    _, trace = play(env, TASK, [blk("up"), "x", blk("down")])
    acts = "Actions: up ( no effect ) invalid ( no effect ) down"
    full = env.summary(trace, init, compact=True)
    assert full.startswith("Initial board:\n" + init) and acts in full and "Final board:\nD D C\nA C D" in full
    short = FL(summary_boards=False).summary(trace, init, compact=True)
    assert short == f"{acts}\nFeedback: {env.feedback(trace)}"
    assert FL(summary_boards=False).summary(trace, init) == env.summary(trace, init)  # full summary unchanged


def test_module_is_pure_python():
    import subprocess
    import sys

    code = "import sys, pipeline.envs.frozenlake; assert not {'torch', 'numpy'} & set(sys.modules), sys.modules.keys()"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_reading_exercises_are_read_off_the_board():
    from pipeline.tiny.frozenlake import reading_exercise

    env = FL(min_size=3, max_size=5, pad_to=5, row_numbers=True)
    for task in env.generate("train", 30, 3):
        s = env.reset(task)
        _, user, ans = reading_exercise(env, s, "where", "left")
        r, c = s.pos
        gr, gc = task.spec["goal"]
        assert ans == f"A {r} {c} B {gr} {gc}" and user == env.message(s, None)
        rows = [line.split()[1:] for line in env.render(s).splitlines()]
        _, _, around = reading_exercise(env, s, "around", "left")
        words = around.split()
        for name, (dr, dc) in {"left": (0, -1), "down": (1, 0), "right": (0, 1), "up": (-1, 0)}.items():
            sym = words[words.index(name) + 1]
            rr, cc = r + dr, c + dc
            inside = 0 <= rr < 5 and 0 <= cc < 5
            assert sym == (rows[rr][cc] if inside else "X")
        for action in ("left", "down", "right", "up"):
            _, user, ans = reading_exercise(env, s, "next", action)
            nxt, step = env.step(s, f"```{action}```")
            assert user.endswith(f"action : {action}")
            assert ans == f"A {nxt.pos[0]} {nxt.pos[1]} end {'yes' if step.event in ('goal', 'hole') else 'no'}"
            assert "goal" not in ans and "hole" not in ans  # the semantics stay hidden
        # "which" inverts "around": every move appears under exactly the symbol it reaches, every symbol is listed
        _, _, which = reading_exercise(env, s, "which", "left")
        groups = {w[0]: w[1:] for w in (part.split() for part in re.split(r" (?=[BCDX] )", which))}
        assert list(groups) == ["B", "C", "D", "X"]
        seen = dict(zip(words[0::2], words[1::2]))
        for sym, moves in groups.items():
            assert moves == (
                ["none"] if not any(v == sym for v in seen.values()) else [a for a in seen if seen[a] == sym]
            )


def test_unused_exercises_leave_the_tokenizer_alone():
    """Adding an exercise kind must not change the vocabulary (and so the init) of runs that do not use it."""
    from pipeline.tiny.warmstart import reading_vocabulary

    env = FL(min_size=3, max_size=5, pad_to=5, row_numbers=True)
    default = " ".join(reading_vocabulary(env, ("where", "around", "next", "next")))
    assert "none" not in default.split() and "symbol" not in default.split()
    assert "none" in " ".join(reading_vocabulary(env, ("which",))).split()


def test_feedback_from_names_the_cell_of_the_last_move():
    env = FL(feedback_from=True)
    _, trace = play(env, TASK, [blk("right"), blk("right")])  # (0,0) -> (0,1) -> hole (0,2)
    fb = env.feedback(trace)
    assert fb.startswith("You fell into a hole at 0 2.") and "Last action: right at 0 1." in fb
    assert env.last_move(trace) == ("right", (0, 1)) and env.reflection_note(trace) == "last right 0 1"
    _, trace = play(env, TASK, [blk("down"), blk("left")])  # the blocked move was taken where A stands
    assert env.last_move(trace) == ("left", (1, 0)) and "Last action: left at 1 0." in env.feedback(trace)
    _, trace = play(FL(budget=1, feedback_from=True), TASK, ["?"])
    assert env.last_move(trace) == ("invalid", (0, 0))
    assert env.last_move(play(env, TASK, [])[1]) is None and env.reflection_note(play(env, TASK, [])[1]) is None
    # off by default: the feedback and the note keep their old form
    plain = FL()
    _, trace = play(plain, TASK, [blk("right"), blk("right")])
    assert "Last action: right." in plain.feedback(trace) and plain.reflection_note(trace) == "last 0 2"


def test_warmstart_copy_exercise_copies_the_environment_note():
    import random

    from pipeline.prompts import prompt_set
    from pipeline.tiny.warmstart import format_examples

    env = FL(min_size=3, max_size=5, pad_to=5, row_numbers=True, feedback_from=True)
    tasks = env.generate("train", 40, 0)
    prompts = prompt_set("tiny", "frozenlake")
    few = format_examples(env, prompts, tasks, 400, 0, reflect_share=0.15)
    many = format_examples(env, prompts, tasks, 400, 0, reflect_share=0.5)
    count = lambda exs: sum(e.kind == "reflect-format" for e in exs)  # noqa: E731
    assert 30 < count(few) < 90 and 160 < count(many) < 240
    for e in many:
        if e.kind == "reflect-format":  # the note is copied verbatim from the feedback in the prompt
            note = re.search(r"last (\w+) (\d) (\d) </prompt>$", e.answer)
            assert note and f"Last action: {note[1]} at {note[2]} {note[3]}." in e.messages[1]["content"]
    retry_notes = [
        e
        for e in many
        if e.kind == "format" and "\nanswer with" in e.messages[0]["content"] and " last " in e.messages[0]["content"]
    ]
    assert retry_notes and all(
        re.search(r" last (left|down|right|up) [0-4] [0-4]\n", e.messages[0]["content"]) for e in retry_notes
    )
    from pipeline.tiny.frozenlake import random_note

    assert re.fullmatch(r"last (left|down|right|up) [0-4] [0-4]", random_note(env, random.Random(1)))


def test_replay_examples_are_reading_and_copy_exercises_only():
    from pipeline.prompts import prompt_set
    from pipeline.tiny.warmstart import replay_examples

    env = FL(min_size=3, max_size=5, pad_to=5, row_numbers=True, coords=True, feedback_from=True, summary_boards=False)
    tasks = env.generate("train", 40, 0)
    prompts = prompt_set("tiny", "frozenlake")
    kinds = ("where", "at")
    exs = replay_examples(env, prompts, tasks, 200, 7, 0.25, kinds, memory_share=0.5)
    by_kind = {k: sum(e.kind == k for e in exs) for k in {e.kind for e in exs}}
    assert len(exs) == 200 and by_kind["reflect-format"] == 150 and by_kind["where"] + by_kind["at"] == 50
    assert "format" not in by_kind  # never the random-action turns
    copies = [e for e in exs if e.kind == "reflect-format"]
    for e in copies:  # the short summary (no boards), the note copied from its feedback
        assert e.messages[1]["content"].startswith("Actions: ")
        note = re.search(r"last (\w+) (\d) (\d) </prompt>$", e.answer)
        assert note and f"Last action: {note[1]} at {note[2]} {note[3]}." in e.messages[1]["content"]
    assert 40 < sum("memory : none" not in e.messages[1]["content"] for e in copies) < 110
    assert len({e.kind for e in exs[:20]}) > 1  # shuffled, not in blocks
    again = replay_examples(env, prompts, tasks, 200, 7, 0.25, kinds, memory_share=0.5)
    other = replay_examples(env, prompts, tasks, 200, 8, 0.25, kinds, memory_share=0.5)
    assert [e.answer for e in again] == [e.answer for e in exs] != [e.answer for e in other]


def test_at_exercise_answers_whether_a_stands_on_the_noted_cell():
    import random

    from pipeline.tiny.frozenlake import reading_exercise

    env = FL(min_size=3, max_size=5, pad_to=5, row_numbers=True, coords=True)
    rng, answers = random.Random(0), []
    for task in env.generate("train", 60, 2):
        s = env.reset(task)
        system, user, ans = reading_exercise(env, s, "at", "up", rng)
        r, c = map(int, system.split()[-2:])
        assert system.split()[-4:-2] == ["last", "up"] and user == env.message(s, None)
        assert ans == ("yes" if (r, c) == s.pos else "no")
        answers.append(ans)
    assert 15 < answers.count("yes") < 45  # both answers occur, about half each


# ---- hidden holes (env.frozenlake.hidden_holes) ---------------------------------------------------------


def test_hidden_holes_sit_on_a_shortest_path_and_render_as_ice():
    env = FL(hidden_holes=1)
    tasks = env.generate("train", 200, seed=5)
    assert [t.spec for t in tasks] == [t.spec for t in FL(hidden_holes=1).generate("train", 200, seed=5)]
    for t in tasks:
        s = t.spec
        assert len(s["hidden"]) == 1
        r, c = s["hidden"][0]
        assert s["grid"][r][c] == "C"  # a hole in the task ...
        assert [r, c] not in (s["start"], s["goal"])
        assert t.optimal_len == solve(s) and 1 <= t.optimal_len <= env.budget
        # ... that leaves a way as short as there was without it
        opened = {**s, "grid": [row[:c] + "D" + row[c + 1 :] if i == r else row for i, row in enumerate(s["grid"])]}
        assert solve(opened) == solve(s)
        state = env.reset(t)
        board = env.render(state).split("\n")
        assert board[r].split(" ")[c] == "D"  # shows as frozen
        visible = sum(row.count("C") for row in s["grid"]) - 1
        assert sum(line.split(" ").count("C") for line in board) == visible


def test_only_falling_in_reveals_a_hidden_hole():
    # 0: A D D    hidden hole at (0,1): the board shows no hole at all
    # 1: D D D
    # 2: D D B
    spec = {"size": 3, "grid": ["DCD", "DDD", "DDD"], "start": [0, 0], "goal": [2, 2], "hidden": [[0, 1]]}
    task = Task(task_id="fl-unit-000001", split="unit", spec=spec, optimal_len=4)
    env = FL(near=True, feedback_from=True)
    assert "C" not in env.render(env.reset(task))
    state, trace = play(env, task, [blk("right")])
    assert trace.steps[-1].event == "hole" and env.reward(trace) == 0.0
    text = env.feedback(trace)
    assert "at 0 1." in text  # the feedback says where the episode ended, no more
    state, trace = play(env, task, [blk(a) for a in ["down", "right", "right", "down"]])
    assert trace.steps[-1].event == "goal"


def test_hidden_holes_keep_train_and_test_apart_and_default_off():
    env = FL(min_size=3, max_size=4, hidden_holes=1)
    train = env.generate("train", 60, seed=2)
    test = env.generate("test", 40, seed=2, exclude={map_key(t) for t in train})
    assert not {map_key(t) for t in train} & {map_key(t) for t in test}
    assert all("hidden" not in t.spec for t in FL().generate("train", 50, seed=2))
    assert [t.spec for t in FL().generate("train", 50, seed=2)] == [t.spec for t in FL().generate("train", 50, seed=2)]


def test_hidden_ceiling_posterior_is_the_generators_own_distribution():
    # scripts/hidden_ceiling.py bounds first-attempt success by where the generator puts a hidden hole given
    # the visible map; check its closed form against the generator run many times on the same visible maps
    import importlib.util
    import random
    from collections import Counter
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "scripts" / "hidden_ceiling.py"
    spec_ = importlib.util.spec_from_file_location("hidden_ceiling", path)
    hc = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(hc)
    env = FL(hidden_holes=1)
    for task in env.generate("train", 6, seed=3):
        grid = hc.visible(task.spec)
        shown = {**task.spec, "grid": ["".join(row) for row in grid]}
        rng = random.Random(0)
        draws = [env._hide_holes(shown, rng) for _ in range(3000)]
        kept = [tuple(d["hidden"][0]) for d in draws if d is not None]
        freq = {c: k / len(kept) for c, k in Counter(kept).items()}
        start, goal = tuple(task.spec["start"]), tuple(task.spec["goal"])
        want = hc.posterior(grid, start, goal, hc.shortest_paths(grid, start, goal))
        assert set(freq) <= set(want)
        assert max(abs(freq.get(c, 0.0) - w) for c, w in want.items()) < 0.04
        bounds = hc.ceilings(task.spec, env.budget)
        assert 0.0 <= bounds["best shortest"] <= bounds["best walk"] <= 1.0
