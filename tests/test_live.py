"""pipeline/live.py: live metrics in DVCLive folders, the x of each row its step, a rerun of a stage replacing its
own rows; and dvc.yaml declaring the folders at its top level. No network (DVC Studio off)."""

from __future__ import annotations

import csv
import json

import pytest

from pipeline import live


def _rows(folder, name):
    with open(folder / "plots" / "metrics" / f"{name}.tsv") as f:
        return [(int(r["step"]), float(r[name])) for r in csv.DictReader(f, delimiter="\t")]


def test_steps_continue_across_stages_and_a_rerun_replaces_its_rows(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a = live.Live(["dvclive"], "steps", 0)
    for v in (1.0, 2.0, 3.0):
        a.log({"loss": v})
    a.close()
    b = live.Live(["dvclive"], "steps", 3)  # the next epoch's update starts where the last one ended
    b.log({"loss": 4.0})
    b.close()
    folder = tmp_path / live.LIVE_DIR / "steps"
    assert _rows(folder, "loss") == [(0, 1.0), (1, 2.0), (2, 3.0), (3, 4.0)]
    again = live.Live(["dvclive"], "steps", 2)  # epoch 2 killed and run again from its first step
    again.log({"loss": 30.0})
    again.log({"loss": 40.0})
    again.close()
    assert _rows(folder, "loss") == [(0, 1.0), (1, 2.0), (2, 30.0), (3, 40.0)]
    assert json.loads((folder / "metrics.json").read_text())["loss"] == 40.0


def test_no_tracker_no_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    t = live.Live([], "epochs", 1)
    t.log({"eval_success": 0.5})
    t.close()
    assert not (tmp_path / live.LIVE_DIR).exists()


@pytest.mark.parametrize("trackers, declared", [(["dvclive"], True), ([], False)])
def test_dvc_yaml_declares_the_live_folders(trackers, declared):
    import yaml

    from pipeline import graph
    from pipeline.config import Params

    p = Params.model_validate({"train": {"trackers": trackers}})
    doc = yaml.safe_load(graph.render(p))
    assert ("dvclive/steps/metrics.json" in doc.get("metrics", [])) == declared
    assert any("dvclive/epochs/plots/metrics" in entry for entry in doc["plots"]) == declared
