"""Tool-use QA environment: answer scoring, the FTS5 search tool, reply parsing (malformed calls never
crash), the generated knowledge base (two searches answer every question, train/test disjoint), the
HotpotQA loader, determinism. Pure Python, no torch."""

from __future__ import annotations

import json
import random
import re

import pytest
from env_util import play

from pipeline.envs.base import Trace
from pipeline.envs.kb import generate_kb, load_hotpot
from pipeline.envs.qa import QA, exact_match, f1_score, normalize_answer, parse_reply, score_answer
from pipeline.envs.search import SearchIndex, build_index, fts_query

SMALL = dict(kb_people=200, kb_cities=10, kb_companies=10, kb_countries=4)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    env = QA(index_path=tmp_path_factory.mktemp("qa") / "qa_index.sqlite", **SMALL)
    env.build_index(seed=0)
    return env


@pytest.fixture(scope="module")
def tasks(env):
    train = env.generate("train", 150, seed=0)
    test = env.generate("test", 40, seed=0, exclude={env.map_key(t) for t in train})
    return train, test


def search(q: str) -> str:
    return f"```search : {q}```"


# ---- scoring -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, norm",
    [
        ("The Zarvo", "zarvo"),
        ("  an   old,  CITY! ", "old city"),
        ("a.b-c", "abc"),
        ("the", ""),
        ("Theater of the arts", "theater of arts"),
        ("\tmelk\n", "melk"),
    ],
)
def test_normalize(text, norm):
    assert normalize_answer(text) == norm


def test_exact_match_and_f1():
    assert exact_match("The Melk.", "melk") and not exact_match("melk city", "melk")
    assert f1_score("melk", "melk") == 1.0
    assert f1_score("city melk", "melk") == pytest.approx(2 / 3)
    assert f1_score("zarvo", "melk") == 0.0 and f1_score("", "melk") == 0.0
    assert f1_score("no", "yes") == 0.0 and f1_score("yes", "yes") == 1.0  # HotpotQA's yes/no rule


def test_score_answer_rewards():
    assert score_answer("the Melk", "melk") == ("exact", 1.0)
    assert score_answer("city melk", "melk") == ("partial", 0.6667)
    # same tokens in another order: F1 = 1 but not an exact match, so never the success reward
    event, reward = score_answer("zarvo melk", "melk zarvo")
    assert event == "partial" and reward < 1.0
    assert score_answer("a b c d e f melk", "melk") == ("wrong", 0.0)  # F1 0.25 < 0.3
    assert score_answer("zarvo", "melk") == ("wrong", 0.0)


# ---- the search tool ---------------------------------------------------------------------------------------


def test_fts_search_finds_the_entity_passage(env):
    kb = generate_kb(0, **{k.removeprefix("kb_"): v for k, v in SMALL.items()})
    index = SearchIndex(env.index_path)
    assert len(index.passages()) == len(kb.passages) and index.meta()["source"] == "kb"
    for p in kb.passages[:60]:
        top = index.search(p.title, 5)
        assert top and top[0] == (p.title, p.text), p.title
    assert len(index.search("is a person", 3)) == 3
    assert index.search("qqqqq", 5) == []


@pytest.mark.parametrize(
    "query",
    [
        '"',
        "'",
        'zarvo" OR "',
        "NEAR(a b)",
        "title:zarvo",
        "* ^ - + ( ) { } [ ] : ; ,",
        "AND",
        "OR NOT",
        "zarvo AND",
        "\\boxed{x}",
        "é ü ß 日本",
        "_",
        "a" * 5000,
        "",
        "   ",
        "\x00",
        "drop table passages; --",
    ],
)
def test_weird_queries_never_raise(env, query):
    q = fts_query(query)
    assert q is None or all(part.startswith('"') and part.endswith('"') for part in q.split(" OR "))
    assert isinstance(SearchIndex(env.index_path).search(query, 5), list)


def test_index_is_opened_read_only(env):
    con = SearchIndex(env.index_path)._connect()
    with pytest.raises(Exception, match="readonly|read-only"):
        con.execute("INSERT INTO meta VALUES ('x', 'y')")


def test_missing_index_fails_clearly(tmp_path, tasks):
    env = QA(index_path=tmp_path / "nope.sqlite", **SMALL)
    with pytest.raises(FileNotFoundError, match="init stage"):
        env.step(env.reset(tasks[0][0]), search("x"))


def test_build_index_is_atomic_and_rebuildable(tmp_path):
    path = tmp_path / "i.sqlite"
    assert build_index(path, [("t", "alpha beta")], {"k": "v"}) == 1
    assert build_index(path, [("t", "gamma"), ("u", "delta")]) == 2
    assert SearchIndex(path).passages() == [("t", "gamma"), ("u", "delta")]
    assert [p.name for p in tmp_path.iterdir()] == ["i.sqlite"]


# ---- replies -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply, kind, arg",
    [
        ("```search : zarvo```", "search", "zarvo"),
        ("let me look.\n```Search:  zarvo   city ```", "search", "zarvo city"),
        ("``` search : a ``` then ``` search : b ```", "search", "b"),  # the last block wins
        ("so \\boxed{Melk}", "answer", "Melk"),
        ("\\ boxed { melk }", "answer", "melk"),  # what a word-level tokenizer decodes
        ("\\boxed{a} no, \\boxed{b {c}}", "answer", "b {c}"),  # the last one, braces balanced
    ],
)
def test_parse_valid_replies(reply, kind, arg):
    call = parse_reply(reply)
    assert (call.kind, call.arg) == (kind, arg)


@pytest.mark.parametrize(
    "reply, why",
    [
        ("", "reply with a search block or a boxed answer"),
        ("melk", "reply with a search block or a boxed answer"),
        ("```search : x``` \\boxed{y}", "a search and an answer in one reply"),
        ("```left```", "a search block reads search : words"),
        ("``` ```", "a search block reads search : words"),
        ("```lookup : zarvo```", "unknown tool lookup"),
        ("```search :   ```", "empty search query"),
        ("```search : ?! ...```", "empty search query"),
        ("\\boxed{}", "empty answer"),
        ("\\boxed{ the . }", "empty answer"),
        ("\\boxed{melk", "the boxed answer is not closed"),
    ],
)
def test_malformed_calls_are_invalid_and_say_why(env, tasks, reply, why):
    assert parse_reply(reply).kind is None and why in parse_reply(reply).error
    state, step = env.step(env.reset(tasks[0][0]), reply)
    assert not step.valid and step.action is None and not step.moved and not step.done
    assert f"invalid : {why}" in step.observation and f"invalid : {why}" in env.message(state, step)
    assert state.steps == 1 and state.steps_left == env.budget - 1


def test_random_garbage_never_crashes(env, tasks):
    rng = random.Random(0)
    alphabet = "`\\{}[]():;\"' search boxed SEARCH the a OR AND NEAR * ^ zarvo\n\t"
    for _ in range(300):
        state = env.reset(rng.choice(tasks[0]))
        while not state.done:
            reply = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
            state, step = env.step(state, reply)
            assert step.observation == env.render(state)


def test_random_replies_are_well_formed(env, tasks):
    rng = random.Random(1)
    kinds = set()
    for task in tasks[0][:30]:
        state = env.reset(task)
        while not state.done:
            reply = env.random_reply(state, rng)
            kinds.add(parse_reply(reply).kind)
            state, step = env.step(state, reply)
            assert step.valid
    assert kinds == {"search", "answer"}


# ---- episodes ----------------------------------------------------------------------------------------------


def scripted_replies(env, task):
    """Answer a generated question by reading the passages two searches return (no access to the answer)."""
    question = task.spec["question"]
    person = re.search(r"(?:was|of) (\w+ \w+) (?:born|based) \?$", question).group(1)
    state, step = env.step(env.reset(task), search(person))
    passage = next(p for p in state.passages if p.startswith(f"{person} is a person"))
    if "country" in question:
        bridge = re.search(r"born in the city (\w+)", passage).group(1)
        pattern = rf"(?:^|\. ){bridge} lies in the country (\w+)"
    else:
        bridge = re.search(r"works for the company (\w+)", passage).group(1)
        pattern = rf"(?:^|\. ){bridge} is based in the city (\w+)"
    state, step = env.step(state, search(bridge))
    answer = next(m.group(1) for p in state.passages if (m := re.search(pattern, p)))
    return [search(person), search(bridge), f"\\boxed{{{answer}}}"]


def test_two_searches_answer_every_question(env, tasks):
    train, test = tasks
    for task in train + test:
        replies = scripted_replies(env, task)
        state, trace = play(env, task, replies)
        assert [s.action for s in trace.steps] == ["search", "search", "answer"]
        assert trace.steps[-1].event == "exact" and state.done and env.reward(trace) == 1.0
        assert len(trace.steps) == task.optimal_len == 3
        assert env.feedback(trace).startswith("Your answer was correct.")


def test_wrong_and_partial_answers(env, tasks):
    task = tasks[0][0]
    gold = task.spec["answer"]
    _, trace = play(env, task, [f"\\boxed{{the city {gold}}}"])
    assert trace.steps[-1].event == "partial" and env.reward(trace) == 0.6667
    assert env.feedback(trace).startswith("Your answer was partly correct.")
    assert gold not in env.feedback(trace)  # the gold answer is never revealed
    _, trace = play(env, task, ["\\boxed{nowhere}"])
    assert trace.steps[-1].event == "wrong" and env.reward(trace) == 0.0 and trace.steps[-1].done


def test_reward_from_the_stored_trace(env, tasks):
    """The feedback stage rebuilds traces from table rows: reward and feedback survive the round trip."""
    from pipeline.episodes import trace_from_row

    task = tasks[0][1]
    _, trace = play(env, task, ["junk", search("zzzz"), f"\\boxed{{{task.spec['answer']} x}}"])
    row = {
        "actions": [s.action for s in trace.steps],
        "moved": [s.moved for s in trace.steps],
        "events": [s.event for s in trace.steps],
        "observations": [s.observation for s in trace.steps],
    }
    again = trace_from_row(row, env.budget)
    assert env.reward(again) == env.reward(trace) == 0.6667
    assert env.feedback(again) == env.feedback(trace)
    assert "2 (1 invalid, 1 empty searches)" in env.feedback(trace)


def test_running_out_of_turns(env, tasks):
    state, trace = play(env, tasks[0][0], [search("zarvo")] * 4 + ["nothing"])
    assert [s.event for s in trace.steps] == ["", "", "", "", "limit"] and state.done
    assert env.reward(trace) == 0.0 and env.feedback(trace).startswith("You ran out of turns without answering.")
    with pytest.raises(ValueError):
        env.step(state, search("x"))


def test_message_and_observation(env, tasks):
    task = tasks[0][0]
    state = env.reset(task)
    assert env.message(state, None) == f"question : {task.spec['question']}\nTurns left: 5"
    state, step = env.step(state, search("person"))
    lines = env.message(state, step).splitlines()
    assert lines[1] == "search : person" and lines[2].startswith("1 . ") and len(lines) == 2 + env.top_k + 1
    assert lines[-1] == "Turns left: 4" and step.observation == env.render(state)
    state, step = env.step(state, "oops")  # the passages stay; the reason is added
    assert "invalid : reply with a search block or a boxed answer ." in step.observation
    assert "search : person" in step.observation


def test_summary(env, tasks):
    task = tasks[0][0]
    init = env.render(env.reset(task))
    bridge = task.spec["bridge"]
    _, trace = play(env, task, [search(bridge), "x", search("qqqq"), "\\boxed{melk}"])
    full = env.summary(trace, init)
    assert full.startswith("Initial observation:\n" + init) and "Step 2: invalid (no effect)" in full
    assert f"Step 1: search\nquestion : {task.spec['question']}\nsearch : {bridge}\n1 . {bridge} is a" in full
    assert full.endswith(env.feedback(trace))
    compact = env.summary(trace, init, compact=True)
    assert f"Actions: search : {bridge} ; invalid ; search : qqqq ( no effect ) ; answer : melk" in compact
    assert compact.endswith(env.feedback(trace))
    assert "1 . " not in compact  # no passages in the compact form


def test_vocabulary_covers_every_shown_word(env, tasks):
    words = set()
    for text in env.vocabulary(tasks[0]):
        words.update(re.findall(r"\w+|[^\w\s]+", text))
    rng = random.Random(3)
    for task in tasks[0][:40]:
        state = env.reset(task)
        shown = [env.message(state, None)]
        trace = Trace(budget=env.budget)
        while not state.done:
            state, step = env.step(state, env.random_reply(state, rng))
            trace.steps.append(step)
            shown.append(env.message(state, step))
        shown += [env.summary(trace, env.render(env.reset(task)), c) for c in (False, True)]
        for text in shown:
            missing = set(re.findall(r"\w+|[^\w\s]+", text)) - words
            assert not missing, (missing, text)


# ---- generation ----------------------------------------------------------------------------------------


def test_train_test_disjoint_by_question_and_bridge(tasks):
    train, test = tasks
    assert not {t.spec["question"] for t in train} & {t.spec["question"] for t in test}
    assert not {t.spec["bridge"] for t in train} & {t.spec["bridge"] for t in test}
    assert len({t.spec["question"] for t in train}) == len(train)
    assert [t.task_id for t in test[:2]] == ["qa-test-000000", "qa-test-000001"]


def test_generate_and_kb_deterministic(tmp_path):
    a, b = QA(**SMALL), QA(**SMALL)
    assert [t.spec for t in a.generate("train", 50, 5)] == [t.spec for t in b.generate("train", 50, 5)]
    assert [t.spec for t in a.generate("train", 50, 5)] != [t.spec for t in a.generate("train", 50, 6)]
    assert list(a.corpus(5)) == list(b.corpus(5)) and list(a.corpus(5)) != list(a.corpus(6))
    json.dumps(a.generate("test", 5, 5)[0].spec)
    for env in (a, b):
        env.index_path = tmp_path / f"{id(env)}.sqlite"
        env.build_index(5)
    assert SearchIndex(a.index_path).passages() == SearchIndex(b.index_path).passages()


def test_kb_is_word_level_friendly():
    kb = generate_kb(0)
    for p in kb.passages[:300]:
        assert p.text == p.text.lower() and re.fullmatch(r"[a-z]+( [a-z.?]+)*", p.text), p.text
    for q in kb.questions[:300]:
        assert re.fullmatch(r"[a-z]+( [a-z?]+)*", q.question) and q.answer.isalpha()
    words = {w for p in kb.passages for w in p.text.split()}
    assert len(words) < 400  # a small vocabulary for the embedded word-level tokenizer


def test_default_sizes_supply_the_default_task_counts():
    env = QA()
    train = env.generate("train", 2000, 0)
    env.generate("test", 100, 0, exclude={env.map_key(t) for t in train})


def test_too_many_questions_fail_clearly():
    with pytest.raises(RuntimeError, match="distinct questions"):
        QA(**SMALL).generate("test", 10_000, 0)


@pytest.mark.parametrize("kwargs", [{"budget": 0}, {"top_k": 0}, {"kb_test_share": 0.01}, {"kb_cities": 1}])
def test_constructor_validation(kwargs):
    with pytest.raises(ValueError):
        QA(**kwargs)


# ---- HotpotQA ----------------------------------------------------------------------------------------------

HOTPOT = [
    {
        "_id": "1",
        "question": "Which country is the birthplace of Ada Quill?",
        "answer": "Norland",
        "supporting_facts": [["Ada Quill", 0], ["Brisk", 0]],
        "context": [
            ["Ada Quill", ["Ada Quill was born in Brisk.", " She wrote poems."]],
            ["Brisk", ["Brisk is a town in Norland."]],
        ],
    },
    {
        "_id": "2",
        "question": "Who founded the company that makes Zephyr kites?",
        "answer": "Tom Vale",
        "supporting_facts": [["Zephyr (kite)", 0], ["Vale Kites", 1]],
        "context": [
            ["Zephyr (kite)", ["Zephyr is a kite made by Vale Kites."]],
            ["Vale Kites", ["Vale Kites is a kite maker.", "It was founded by Tom Vale."]],
            ["Brisk", ["Brisk is a town in Norland."]],
        ],
    },
    {
        "_id": "3",
        "question": "Is Brisk a town?",
        "answer": "yes",
        "supporting_facts": [["Brisk", 0]],
        "context": [["Brisk", ["Brisk is a town in Norland."]]],
    },
]


@pytest.fixture()
def hotpot_file(tmp_path):
    path = tmp_path / "hotpot.json"
    path.write_text(json.dumps(HOTPOT))
    return path


def test_hotpot_loader(hotpot_file):
    passages, questions = load_hotpot(hotpot_file)
    assert [p.title for p in passages] == ["Ada Quill", "Brisk", "Zephyr (kite)", "Vale Kites"]  # deduplicated
    assert passages[0].text == "Ada Quill : Ada Quill was born in Brisk. She wrote poems."
    assert questions[1].answer == "Tom Vale" and questions[1].support == ("Zephyr (kite)", "Vale Kites")


def test_hotpot_loader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="hotpot_path"):
        load_hotpot(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_hotpot(bad)
    bad.write_text(json.dumps([{"answer": "x"}]))
    with pytest.raises(ValueError, match="item 0"):
        load_hotpot(bad)


def test_hotpot_environment_end_to_end(tmp_path, hotpot_file):
    env = QA(hotpot_path=str(hotpot_file), index_path=tmp_path / "idx.sqlite")
    assert env.build_index(seed=0) == 4
    train = env.generate("train", 2, 0)
    test = env.generate("test", 1, 0, exclude={env.map_key(t) for t in train})
    assert {t.spec["question"] for t in train + test} == {q["question"] for q in HOTPOT}
    assert env.generate("train", 2, 0)[0].spec == train[0].spec  # deterministic
    task = next(t for t in train + test if t.spec["answer"] == "Norland")
    assert task.optimal_len == 3 and task.spec["source"] == "hotpot"
    state, step = env.step(env.reset(task), search("Ada Quill"))
    assert state.passages[0].startswith("Ada Quill :")
    state, step = env.step(state, search("Brisk"))
    assert any("Norland" in p for p in state.passages)
    _, step = env.step(state, "The answer is \\boxed{norland.}")
    assert step.event == "exact"
