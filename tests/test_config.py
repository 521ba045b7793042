"""pipeline/config.py: defaults, the repo's params.yaml, and one ParamsError per kind of bad input, each naming
the offending dotted key. Plus the stage entry point's exit code 2 before anything is written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.config import Params, ParamsError, expand, load_params

ROOT = Path(__file__).resolve().parent.parent


def _write(tmp_path: Path, data, name: str = "params.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def _error(tmp_path: Path, data) -> str:
    """The error of params ``data`` as the validate stage reports it (the core keys at load, then the environment's
    sections, which only its own params model knows)."""
    from pipeline.envs import check_sections

    with pytest.raises(ParamsError) as info:
        path = _write(tmp_path, data)
        p = load_params(path)
        check_sections(p.env, p.policy.prompts, path)
    return str(info.value)


def test_defaults_load():
    p = Params()
    assert p.algorithm == "erl" and p.seed == 0
    assert p.env.name == "frozenlake"
    assert p.sample.rollouts_per_task == {"erl": 4, "rlvr": 8}


def test_code_defaults_are_params_yaml():
    """One source of defaults: params.yaml holds every key the code reads, and every default in the code equals
    it, so a reader of params.yaml knows every value a run used."""
    from pipeline.envs import with_defaults

    # the environments' sections come from their own params models (pipeline/envs)
    assert with_defaults(Params().model_dump(mode="json")) == yaml.safe_load((ROOT / "params.yaml").read_text())


def _keys(d: dict, prefix: str = "") -> set[str]:
    out = set()
    for k, v in d.items():
        out |= _keys(v, f"{prefix}{k}.") if isinstance(v, dict) and k != "rollouts_per_task" else {f"{prefix}{k}"}
    return out


@pytest.mark.parametrize("preset", sorted(p.stem for p in (ROOT / "presets").glob("*.yaml")))
def test_every_preset_expands_to_a_complete_valid_params_yaml(preset, tmp_path):
    """A preset names only what it changes; `erl preset` writes params.yaml with every key (DVC tracks only the
    keys the file holds), in params.yaml's layout, and `erl preset default` gives params.yaml back byte for byte."""
    from pipeline import graph
    from tools.presets import main as preset_main

    out = tmp_path / "params.yaml"
    out.write_text((ROOT / "params.yaml").read_text())
    assert preset_main([preset, "--out", str(out), "--no-dvc-yaml"]) == 0
    raw = yaml.safe_load(out.read_text())
    from pipeline.envs import with_defaults

    assert _keys(raw) == _keys(with_defaults(Params().model_dump(mode="json"))), preset
    assert load_params(out) == Params.model_validate(with_defaults(expand(ROOT / "presets" / f"{preset}.yaml")))
    assert load_params(out) != Params()
    stages = yaml.safe_load(graph.render(load_params(out)))["stages"]
    assert "validate" in stages and "report" in stages
    assert preset_main(["default", "--out", str(out), "--no-dvc-yaml"]) == 0
    assert out.read_text() == (ROOT / "params.yaml").read_text()


def test_empty_file_gives_defaults(tmp_path):
    assert load_params(_write(tmp_path, "")) == Params()


def test_repo_params_yaml_validates():
    p = load_params(ROOT / "params.yaml")
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert p.train.epochs == raw["train"]["epochs"]
    assert p.algorithm == raw["algorithm"]


@pytest.mark.parametrize(
    "data, key",
    [
        ({"sample": {"tasks_per_epoch": "x"}}, "sample.tasks_per_epoch"),  # wrong type
        ({"update": {"lr": -1}}, "update.lr"),  # out of range
        ({"evaluate": {"sampling": {"top_p": 1.5}}}, "evaluate.sampling.top_p"),  # out of range, nested twice
        ({"bogus": 1}, "bogus"),  # unknown key at the top level
        ({"update": {"bogus": 1}}, "update.bogus"),  # unknown nested key
        ({"algorithm": "ppo"}, "algorithm"),  # unknown algorithm
        ({"env": {"name": "gridworld"}}, "env.name"),  # unknown env
        ({"env": {"sokoban": {"boxes": 0}}}, "env.sokoban.boxes"),
        ({"env": {"sokoban": {"min_size": 3}}}, "env.sokoban.min_size"),
        ({"env": {"sokoban": {"budget": 0}}}, "env.sokoban.budget"),
        ({"env": {"sokoban": {"bogus": 1}}}, "env.sokoban.bogus"),
        ({"env": {"qa": {"budget": 0}}}, "env.qa.budget"),
        ({"env": {"qa": {"top_k": 0}}}, "env.qa.top_k"),
        ({"env": {"qa": {"hotpot_path": ""}}}, "env.qa.hotpot_path"),
        ({"env": {"qa": {"kb_people": 0}}}, "env.qa.kb_people"),
        ({"env": {"qa": {"kb_test_share": 1.5}}}, "env.qa.kb_test_share"),
        ({"env": {"qa": {"bogus": 1}}}, "env.qa.bogus"),
        ({"env": {"frozenlak": {"budget": 3}}}, "env.frozenlak"),  # a section no environment claims
        ({"env": {"qa": {"retriever": "server"}}}, "env.qa"),  # a server needs its URL
        ({"env": {"qa": {"train_path": "t.json"}}}, "env.qa"),  # train without test
        ({"env": {"name": "qa", "qa": {"tool_calls": "native"}}}, "env.qa.tool_calls"),  # tiny prompts: text
        ({"env": {"name": "qa"}, "policy": {"prompts": "paper"}}, "env.qa.tool_calls"),  # paper prompts: native
        ({"policy": {"prompts": "paper-text"}}, "policy.prompts"),  # a set frozenlake does not have
        ({"sample": {"rollouts_per_task": {"erl": 0, "rlvr": 8}}}, "sample"),
    ],
)
def test_bad_values_name_the_key(tmp_path, data, key):
    msg = _error(tmp_path, data)
    assert f": {key}:" in msg and "\n" not in msg, msg  # one line: the file, the key, what is wrong


def test_wrong_type_shows_the_value(tmp_path):
    msg = _error(tmp_path, {"sample": {"tasks_per_epoch": "x"}})
    assert "sample.tasks_per_epoch" in msg and "'x'" in msg


def test_min_size_above_max_size(tmp_path):
    msg = _error(tmp_path, {"env": {"frozenlake": {"min_size": 6, "max_size": 4, "pad_to": None}}})
    assert "env.frozenlake" in msg and "min_size must be <= max_size" in msg


def test_pad_to_below_max_size(tmp_path):
    msg = _error(tmp_path, {"env": {"frozenlake": {"min_size": 3, "max_size": 6, "pad_to": 5}}})
    assert "env.frozenlake" in msg and "pad_to must be >= max_size" in msg


def test_new_environments_validate_and_give_budgets():
    from pipeline.envs import budget_of, make_env

    for name, budget in (("frozenlake", 8), ("sokoban", 8), ("qa", 5)):
        p = Params.model_validate({"env": {"name": name}})
        assert budget_of(p.env) == budget and make_env(p.env).name == name
    p = Params.model_validate({"env": {"name": "sokoban", "sokoban": {"min_size": 6, "max_size": 7, "pad_to": 7}}})
    assert make_env(p.env).pad_to == 7


def test_sokoban_ranges_name_the_section(tmp_path):
    msg = _error(tmp_path, {"env": {"sokoban": {"min_size": 8, "max_size": 6}}})
    assert "env.sokoban" in msg and "min_size must be <= max_size" in msg
    msg = _error(tmp_path, {"env": {"sokoban": {"min_size": 4, "max_size": 6, "boxes": 2}}})
    assert "env.sokoban" in msg and "too few floor cells" in msg
    msg = _error(tmp_path, {"env": {"sokoban": {"pad_to": 7}}})
    assert "env.sokoban" in msg and "pad_to must be >= max_size" in msg


def test_qa_held_out_share_names_the_key(tmp_path):
    msg = _error(tmp_path, {"env": {"qa": {"kb_test_share": 0.01}}})
    assert "env.qa" in msg and "kb_test_share" in msg


def test_qa_index_lives_under_the_artifact_root(tmp_path):
    from pipeline.envs import make_env

    env = make_env(Params.model_validate({"env": {"name": "qa"}}).env, tmp_path)
    assert env.index_path == tmp_path / "init" / "qa_index.sqlite"


def test_several_errors_all_reported(tmp_path):
    msg = _error(tmp_path, {"update": {"lr": -1, "bogus": 2}, "algorithm": "ppo"})
    for key in ("update.lr", "update.bogus", "algorithm"):
        assert f"  {key}:" in msg, msg


def test_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(ParamsError, match="file not found") as info:
        load_params(path)
    assert str(path) in str(info.value)


def test_invalid_yaml(tmp_path):
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(_write(tmp_path, "update: {lr: [1, 2\n"))


def test_top_level_not_a_mapping(tmp_path):
    with pytest.raises(ParamsError, match="mapping"):
        load_params(_write(tmp_path, "- 1\n- 2\n"))


def test_sections_returns_dotted_keys():
    p = Params()
    assert p.sections("policy.prompts", "seed") == {"policy.prompts": "tiny", "seed": 0}
    whole = p.sections("consolidate")
    assert whole == {"consolidate": p.consolidate.model_dump(mode="json")}


def test_rollouts_per_task_follows_algorithm():
    base = {"sample": {"rollouts_per_task": {"erl": 3, "rlvr": 7}}}
    assert Params.model_validate({**base, "algorithm": "erl"}).rollouts_per_task == 3
    assert Params.model_validate({**base, "algorithm": "rlvr"}).rollouts_per_task == 7


def test_flags_follow_algorithm_and_ablation():
    assert Params().reflects and Params().retries
    assert not Params(algorithm="rlvr").reflects and not Params(algorithm="rlvr").retries
    p = Params.model_validate({"ablation": {"no_reflection": True}})
    assert not p.reflects and p.retries


# --- the stage entry point: exit 2 before anything is written -------------------------------------------
# stages/feedback.py imports only pipeline.{stagekit,advantages,artifacts,envs,episodes,prompts} (no torch) and
# calls stagekit.parse() -- which validates params and the epoch -- before reading or writing any table.


def _run_feedback(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stages.feedback", *args], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_feedback_stage_bad_params_exits_2(tmp_path):
    bad = _write(tmp_path, {"update": {"lr": -1}}, "bad.yaml")
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    proc = _run_feedback("--epoch", "1", "--params", str(bad), "--artifacts", str(artifacts))
    assert proc.returncode == 2, proc.stderr
    assert "update.lr" in proc.stderr
    assert list(artifacts.rglob("*")) == []


def test_feedback_stage_epoch_out_of_range_exits_2(tmp_path):
    artifacts = tmp_path / "artifacts"
    proc = _run_feedback("--epoch", "99", "--params", str(ROOT / "params.yaml"), "--artifacts", str(artifacts))
    assert proc.returncode == 2, proc.stderr
    assert "train.epochs" in proc.stderr
    assert not artifacts.exists()


@pytest.mark.parametrize(
    "data,key",
    [
        ({"sample": {"tasks_per_epoch": True}}, "sample.tasks_per_epoch"),
        ({"sample": {"tasks_per_epoch": 2.5}}, "sample.tasks_per_epoch"),
        ({"consolidate": {"train_first": "yes"}}, "consolidate.train_first"),
    ],
)
def test_strict_types(tmp_path, data, key):
    assert f": {key}:" in _error(tmp_path, data)


def test_scientific_notation_reals_accepted(tmp_path):
    # PyYAML reads 1e-6 (no dot) as a string; real-valued keys accept it.
    path = tmp_path / "params.yaml"
    path.write_text("update:\n  lr: 1e-6\n")
    assert load_params(path).update.lr == 1e-6


def test_tasks_per_epoch_cannot_exceed_pool(tmp_path):
    msg = _error(tmp_path, {"env": {"n_train": 10}, "sample": {"tasks_per_epoch": 11}})
    assert "tasks_per_epoch" in msg


def test_paper_preset_validates_and_matches_the_method_page():
    p = load_params(ROOT / "presets" / "paper.yaml")
    assert p.policy.prompts == "paper" and p.policy.history == 0
    assert p.sample.rollouts_per_task == {"erl": 4, "rlvr": 10}
    assert (p.update.lr, p.update.clip_low, p.update.clip_high, p.update.dual_clip, p.update.kl_coef) == (
        1e-6,
        0.2,
        0.28,
        3.0,
        0.001,
    )
    assert (p.evaluate.sampling.temperature, p.evaluate.sampling.top_p, p.evaluate.sampling.top_k) == (0.7, 0.8, 20)
    from pipeline.envs import params_of

    fl = params_of(p.env)
    assert (fl.min_size, fl.max_size, fl.budget) == (2, 9, 8)


def test_lr_schedule_constant_by_default_and_cosine_when_asked():
    from pipeline.config import UpdateParams

    const = UpdateParams(lr=1e-3, lr_decay_epochs=0)
    assert [const.lr_at(e) for e in (1, 7, 500)] == [1e-3] * 3
    cos = UpdateParams(lr=1e-3, lr_decay_epochs=5, lr_final=0.1)
    lrs = [cos.lr_at(e) for e in range(1, 8)]
    assert lrs[0] == pytest.approx(1e-3) and lrs[4] == pytest.approx(1e-4)
    assert lrs[2] == pytest.approx(0.55e-3)  # halfway: the mean of the two ends
    assert all(a > b for a, b in zip(lrs[:4], lrs[1:5]))  # strictly decreasing over the decay
    assert lrs[5] == lrs[6] == pytest.approx(1e-4)  # held at the final value after it
    assert UpdateParams(lr=1e-3, lr_decay_epochs=1, lr_final=0.5).lr_at(1) == pytest.approx(5e-4)


def test_lr_final_out_of_range_names_the_key(tmp_path):
    assert "update.lr_final" in _error(tmp_path, {"update": {"lr_final": 0}})


def test_replay_needs_the_embedded_default(tmp_path):
    msg = _error(tmp_path, {"policy": {"model": "some/hub-model"}, "update": {"replay_coef": 1.0}})
    assert "update.replay_coef" in msg and "policy.model: tiny" in msg
    assert _error(tmp_path, {"update": {"replay_coef": -1}}).count("update.replay_coef") == 1
    hub = {"policy": {"model": "some/hub-model"}, "update": {"replay_coef": 0.0}}
    assert load_params(_write(tmp_path, hub)).update.replay_coef == 0.0
