"""How the environments plug into the pipeline: per-environment prompt sets, the dvc.yaml graph of the QA
environment (its search index), and the warm-start hooks every environment offers. No torch."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml

from pipeline import graph, layout
from pipeline.config import EnvParams, Params
from pipeline.envs import make_env
from pipeline.envs.frozenlake import FrozenLake
from pipeline.prompts import PromptSet, prompt_set
from pipeline.registry import BUILTIN
from tools import dvcgen

ROOT = Path(__file__).resolve().parent.parent
ENVS = set(BUILTIN)


# ---- prompts -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("env_name", sorted(ENVS))
@pytest.mark.parametrize("name", ["tiny", "paper"])
def test_every_environment_has_both_sets_and_they_format(env_name, name):
    ps = prompt_set(name, env_name)
    assert isinstance(ps, PromptSet) and "<prompt>" in ps.reflector_system
    assert ps.system.strip() and ps.format_reminder.strip()
    filled = ps.no_reflection_system.format(summary="SUMMARY", context="CONTEXT")  # literal braces are escaped
    assert "SUMMARY" in filled or "CONTEXT" in filled
    assert "RULES" in ps.reflector_user.format(summary="S", memory="RULES", batch="B")


def test_each_environment_owns_its_prompt_sets():
    assert prompt_set("tiny", "frozenlake") is FrozenLake.prompts["tiny"]
    assert prompt_set("paper", "frozenlake") is FrozenLake.prompts["paper"]
    with pytest.raises(ValueError, match="gridworld"):
        prompt_set("tiny", "gridworld")
    with pytest.raises(ValueError, match="policy.prompts: no prompt set 'paper-text' for environment 'frozenlake'"):
        prompt_set("paper-text", "frozenlake")


def test_frozenlake_tiny_prompt_is_unchanged():
    # the committed default run depends on these exact strings
    ps = prompt_set("tiny", "frozenlake")
    assert ps.system == "play the game . answer with one action in ``` ``` : left down right up ."
    assert ps.format_reminder == "answer with one action in ``` ``` : left down right up ."


def test_qa_prompts_state_the_reply_format_the_env_parses():
    from pipeline.envs.qa import parse_reply

    for name in ("tiny", "paper", "paper-text"):
        ps = prompt_set(name, "qa")
        assert "search" in ps.system and "\\boxed{" in ps.system and "boxed" in ps.format_reminder
        assert "\\boxed{" in ps.no_reflection_system.format(summary="S", context="C")
    assert "``` block" in prompt_set("paper-text", "qa").system and "```" not in prompt_set("paper", "qa").system
    assert parse_reply("``` search : zarvo ```").kind == "search" and parse_reply("\\ boxed { zarvo }").kind == "answer"
    call = '<tool_call>{"name": "search", "arguments": {"query": "zarvo"}}</tool_call>'
    assert parse_reply(call, native=True).kind == "search" and parse_reply(call).kind is None


# ---- dvc.yaml ----------------------------------------------------------------------------------------------


def _params(epochs: int = 3, **env) -> Params:
    return Params.model_validate({"env": env, "train": {"epochs": epochs, "epochs_per_stage": 0}})


def _code(stage_spec: dict) -> set[str]:
    return {d for d in stage_spec["deps"] if d.endswith(".py")}


def test_grid_graphs_differ_only_in_the_environment_code():
    fl = yaml.safe_load(graph.render(_params(name="frozenlake")))["stages"]
    sk = yaml.safe_load(graph.render(_params(name="sokoban")))["stages"]
    assert list(fl) == list(sk)
    for name in fl:
        assert {k: v for k, v in fl[name].items() if k != "deps"} == {k: v for k, v in sk[name].items() if k != "deps"}
        assert not {d for d in _code(fl[name]) ^ _code(sk[name])} - {
            "pipeline/envs/frozenlake.py",
            "pipeline/envs/sokoban.py",
            "pipeline/tiny/frozenlake.py",
            "pipeline/tiny/sokoban.py",
        }, name
    assert "pipeline/envs/sokoban.py" not in _code(fl["sample_e1"]) and "pipeline/envs/frozenlake.py" in _code(
        fl["sample_e1"]
    )


def test_qa_graph_tracks_the_search_index():
    index = layout.qa_index_path().as_posix()
    stages = yaml.safe_load(graph.render(_params(2, name="qa")))["stages"]
    assert index in stages["init"]["outs"]
    for name in ("evaluate_e0", "sample_e1", "retry_e1", "evaluate_e1", "sample_e2", "retry_e2", "evaluate_e2"):
        assert index in stages[name]["deps"], name
    assert index not in stages["feedback_e1"]["deps"]  # the verifier needs only the trace
    hot = yaml.safe_load(graph.render(_params(1, name="qa", qa={"hotpot_path": "data/hotpot.json"})))["stages"]
    assert "data/hotpot.json" in hot["init"]["deps"]
    files = {"train_path": "d/train.json", "test_path": "d/dev.jsonl", "corpus_path": "d/wiki.jsonl"}
    real = yaml.safe_load(graph.render(_params(1, name="qa", qa=files)))["stages"]
    assert set(files.values()) <= set(real["init"]["deps"]) and index in real["init"]["outs"]
    served = {"train_path": "d/train.json", "test_path": "d/dev.jsonl", "retriever": "server", "server_url": "http://x"}
    remote = yaml.safe_load(graph.render(_params(1, name="qa", qa=served)))["stages"]
    assert index not in remote["init"]["outs"] and index not in remote["sample_e1"]["deps"]


def test_check_fails_when_env_changes_the_graph(tmp_path):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["env"]["name"] = "qa"
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    out = tmp_path / "dvc.yaml"
    out.write_text((ROOT / "dvc.yaml").read_text())
    assert dvcgen.main(["--check", "--params", str(params), "--out", str(out)]) == 1
    assert dvcgen.main(["--params", str(params), "--out", str(out)]) == 0
    assert layout.qa_index_path().as_posix() in out.read_text()


# ---- warm-start hooks --------------------------------------------------------------------------------------


@pytest.mark.parametrize("env_name", sorted(ENVS))
def test_every_environment_offers_random_reply_and_vocabulary(tmp_path, env_name):
    env = make_env(_params(name=env_name, qa={"kb_people": 50, "kb_cities": 5, "kb_companies": 5}).env, tmp_path)
    tasks = env.generate("train", 5, 0)
    if env_name == "qa":
        env.build_index(0)
    rng = random.Random(0)
    state = env.reset(tasks[0])
    for _ in range(20):
        _, step = env.step(state, env.random_reply(state, rng))
        assert step.valid
    assert isinstance(env.vocabulary(tasks), list)


def test_frozenlake_random_reply_matches_the_warm_start_format():
    env = make_env(EnvParams())
    state = env.reset(env.generate("train", 1, 0)[0])
    a, b = random.Random(5), random.Random(5)
    for _ in range(20):
        assert env.random_reply(state, a) == f"```{b.choice(env.actions)}```"
    assert env.vocabulary([]) == []  # random play covers every word; extra texts would change the default run
