"""End-to-end smoke runs of the other environments: the real `dvc repro` in a temporary Git repository on
tiny settings with ``env.name`` switched to sokoban and to qa (nothing else about the pipeline changes).
Checks that every stage ran, the episodes are the environment's own, success means reward 1, and for QA
that init built the search index and the graph tracks it."""

from __future__ import annotations

import pytest
import yaml
from e2e_util import dvc, make_project

from pipeline import layout
from pipeline.artifacts import read_table

pytestmark = pytest.mark.slow
TABLES = ("attempts", "feedback", "reflections", "retries", "samples", "memory", "updates", "steps", "eval")

SOKOBAN = {
    "env": {"name": "sokoban", "sokoban": {"min_size": 6, "max_size": 7, "pad_to": 7, "row_numbers": True}},
    "train": {"epochs": 1},
}
QA = {
    "env": {"name": "qa", "qa": {"kb_people": 200, "kb_cities": 10, "kb_companies": 10, "kb_countries": 4}},
    # a search for two words is 6 tokens of the word-level model ("``` search : w w ```"): leave room
    "sample": {"sampling": {"max_new_tokens": 12}},
    "retry": {"sampling": {"max_new_tokens": 12}},
    "evaluate": {"sampling": {"max_new_tokens": 12}},
    "train": {"epochs": 1},
}


def _repro(tmp_path_factory, name, overrides):
    repo = make_project(tmp_path_factory.mktemp(name), overrides)
    res = dvc(repo, "repro", check=False)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    return repo


@pytest.fixture(scope="module")
def sokoban_run(tmp_path_factory):
    return _repro(tmp_path_factory, "sokoban", SOKOBAN)


@pytest.fixture(scope="module")
def qa_run(tmp_path_factory):
    return _repro(tmp_path_factory, "qa", QA)


def tables(repo, epoch=1):
    return {n: read_table(n, repo / layout.epoch_dir(epoch) / f"{n}.parquet").to_pandas() for n in TABLES}


def _common_checks(repo, actions: set):
    t = tables(repo)
    att, fb, refl, ret = t["attempts"], t["feedback"], t["reflections"], t["retries"]
    assert len(att) == 6 * 4 and set(fb.rollout_id) == set(att.rollout_id)
    assert ((fb.reward >= 0) & (fb.reward <= 1)).all()
    assert (fb.success == (fb.reward >= 1.0)).all(), "success means reward 1 (tau = 1)"
    assert set(refl.rollout_id) == set(fb.rollout_id[fb.reward < 1.0])
    assert set(ret.reflection_id) == set(refl.reflection_id)
    # the tiny model is barely warm-started here: its replies may all be invalid, but never another env's
    assert {a for row in att.actions for a in row if a is not None} <= actions
    assert len(t["eval"]) == 12 and len(t["steps"]) >= 1
    assert (repo / layout.metrics_path(1)).is_file() and (repo / "reports" / "report.md").is_file()
    return t


def test_sokoban_pipeline_runs(sokoban_run):
    t = _common_checks(sokoban_run, {"left", "down", "right", "up"})
    first = t["attempts"].initial_observation.iloc[0].splitlines()
    assert len(first) == 7 and first[0].startswith("0 E E")  # padded, row-numbered Sokoban boards
    tasks = read_table("tasks", sokoban_run / layout.epoch_dir(0) / "tasks_train.parquet").to_pandas()
    assert set(tasks.env) == {"sokoban"} and tasks.optimal_len.between(1, 8).all()
    assert {e for row in t["attempts"].events for e in row} <= {"", "solved", "limit"}


def test_qa_pipeline_runs_and_tracks_the_index(qa_run):
    index = qa_run / layout.qa_index_path()
    assert index.is_file() and index.stat().st_size > 0
    stages = yaml.safe_load((qa_run / "dvc.yaml").read_text())["stages"]
    assert layout.qa_index_path().as_posix() in stages["init"]["outs"]
    assert layout.qa_index_path().as_posix() in stages[layout.block_name(1, 1)]["deps"]  # the stage that runs epoch 1
    t = _common_checks(qa_run, {"search", "answer"})
    first = t["attempts"].initial_observation.iloc[0]
    assert first.startswith("question : in which ")
    assert set(t["feedback"].outcome) <= {"exact", "partial", "wrong", "limit"}
    res = dvc(qa_run, "status")
    assert "changed" not in res.stdout  # the index is a tracked, cached output like every other
