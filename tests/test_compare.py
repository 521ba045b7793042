"""`erl compare` end to end on tiny settings: two arms, one seed, one epoch, through real `dvc repro` runs."""
from __future__ import annotations

import copy
import csv

import pytest
import yaml

from e2e_util import ROOT, TINY, deep_update
from pipeline.compare import main as compare

pytestmark = pytest.mark.slow


def test_compare_writes_table_curves_and_csv(tmp_path):
    params = deep_update(yaml.safe_load((ROOT / "params.yaml").read_text()), deep_update(copy.deepcopy(TINY), {"train": {"epochs": 1}}))
    pfile = tmp_path / "params.yaml"
    pfile.write_text(yaml.safe_dump(params))
    out = tmp_path / "reports"
    assert compare(["--params", str(pfile), "--arms", "erl", "rlvr", "--seeds", "1", "--out", str(out)]) == 0
    md = (out / "compare.md").read_text()
    assert "| model | task | erl | rlvr |" in md and "| tiny | frozenlake |" in md
    rows = list(csv.DictReader(open(out / "compare.csv")))
    assert {(r["arm"], r["epoch"]) for r in rows} == {("erl", "0"), ("erl", "1"), ("rlvr", "0"), ("rlvr", "1")}
    assert all(0.0 <= float(r["eval_success"]) <= 1.0 for r in rows)
    # training wall-clock: zero at the epoch-0 evaluation, positive after an epoch
    assert all((float(r["seconds"]) == 0) == (r["epoch"] == "0") for r in rows)
    html = (out / "compare.html").read_text()
    assert html.count("data:image/png;base64") == 2


def test_compare_rejects_bad_params(tmp_path, capsys):
    bad = tmp_path / "p.yaml"
    bad.write_text("algorithm: ppo\n")
    assert compare(["--params", str(bad)]) == 2
    assert "algorithm" in capsys.readouterr().err
