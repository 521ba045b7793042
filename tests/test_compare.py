"""`erl compare` end to end on tiny settings: two arms, one seed, one epoch, through real `dvc repro` runs."""

from __future__ import annotations

import copy
import csv

import pytest
import yaml
from e2e_util import ROOT, TINY, deep_update

from tools.compare import main as compare
from tools.compare import paired, summarize, write_markdown, write_outputs


def _run(final, retry, control):
    return [
        {"epoch": 0, "eval_success": 0.2, "seconds": 0.0},
        {
            "epoch": 1,
            "eval_success": final,
            "seconds": 50.0,
            "train_pre_success": 0.3,
            "train_post_success": 0.4,
            "retry_success": retry,
            "retry_control_success": control,
            "memory_adopted": 3,
        },
    ]


def test_summary_table_spread_and_retry_columns(tmp_path):
    results = {("erl", 0): _run(0.5, 0.4, 0.1), ("erl", 1): _run(0.7, 0.2, 0.3), ("rlvr", 0): _run(0.3, None, None)}
    summary = summarize(results)
    assert summary["erl"]["final"][0] == pytest.approx(0.6) and summary["erl"]["final"][1] == pytest.approx(
        0.1414, abs=1e-4
    )
    assert summary["rlvr"]["final"][1] is None  # one seed: no spread, not a fake 0
    assert summary["erl"]["retry"] == pytest.approx(0.3) and summary["erl"]["control"] == pytest.approx(0.2)
    write_markdown(summary, {"env": "frozenlake", "model": "tiny", "epochs": 1, "seeds": [0, 1]}, tmp_path / "c.md")
    md = (tmp_path / "c.md").read_text()
    assert "| tiny | frozenlake | 0.600 ± 0.141 | 0.300 |" in md
    assert (
        "| erl | 0.200 ± 0.000 | 0.600 ± 0.141 | 0.500, 0.700 | 0.300 ± 0.000 | 0.400 ± 0.000 | 0.300 | 0.200 "
        "| 0.300 / 0.200 | 3 | 50 |" in md
    )  # memory: adoptions per run, mean over seeds
    assert "| rlvr | 0.200 | 0.300 | 0.300 | 0.300 | 0.400 | - | - | - / - | 3 | 50 |" in md
    # the channel: ratio and difference of the second-half means, each seed's pair; rlvr has no retries
    assert "| erl | 0.300 | 0.200 | 1.50x | +0.100 | 0.400 / 0.100, 0.200 / 0.300 |" in md
    assert "| rlvr |" not in md.split("The retry channel")[1].split("Train pre/post")[0]
    assert "Partial" not in md


def test_paired_differences_against_rlvr_use_only_shared_seeds(tmp_path):
    results = {
        ("rlvr", 0): _run(0.3, None, None),
        ("rlvr", 1): _run(0.6, None, None),
        ("erl", 0): _run(0.5, 0.4, 0.1),
        ("erl", 1): _run(0.5, 0.2, 0.3),
        ("erl", 2): _run(0.9, 0.2, 0.3),
        ("erl-no-memory", 1): _run(0.7, 0.2, 0.3),
    }
    pairs = paired(results)
    assert set(pairs) == {"erl", "erl-no-memory"}  # not rlvr against itself
    erl = pairs["erl"]
    assert erl["seeds"] == [0, 1]  # seed 2 has no RLVR run to pair with
    assert erl["final_by_seed"] == pytest.approx([0.2, -0.1]) and erl["above"] == 1
    assert erl["final"][0] == pytest.approx(0.05) and erl["final"][1] == pytest.approx(0.2121, abs=1e-4)
    # mean over trained epochs (epoch 1 only here): the same differences
    assert erl["over_epochs"][0] == pytest.approx(0.05)
    assert pairs["erl-no-memory"]["final"] == (pytest.approx(0.1), None)  # one seed: no spread
    assert paired({("erl", 0): _run(0.5, 0.4, 0.1)}) == {}  # no RLVR arm: no table
    write_outputs(results, {"env": "frozenlake", "model": "tiny", "epochs": 1, "seeds": [0, 1, 2]}, tmp_path)
    md = (tmp_path / "compare.md").read_text()
    assert "(rlvr: 2, erl: 3, erl-no-memory: 1 seeds)" in md
    assert "| erl | rlvr | 0, 1 | +0.050 ± 0.212 | +0.200, -0.100 | 1 of 2 | +0.050 ± 0.212 |" in md
    assert "| erl-no-memory | rlvr | 1 | +0.100 | +0.100 | 1 of 1 | +0.100 |" in md
    html = (tmp_path / "compare.html").read_text()
    assert html.count("data:image/png;base64") == 4 and "mean over seeds" in html
    assert "| erl-no-memory | erl | 1 | +0.200 | +0.200 | 1 of 1 | +0.200 |" in md  # the ablation against ERL too
    assert "\n| rlvr | erl |" not in md and "\n| erl | erl |" not in md


def test_merge_combines_runs_made_separately_and_refuses_clashes(tmp_path, capsys):
    write_outputs(
        {("rlvr", 0): _run(0.3, None, None), ("erl", 1): _run(0.7, 0.2, 0.3)},
        {"env": "frozenlake", "model": "tiny", "epochs": 1, "seeds": [0, 1]},
        tmp_path / "a",
    )
    write_outputs(
        {("erl", 0): _run(0.5, 0.4, 0.1)},
        {"env": "frozenlake", "model": "tiny", "epochs": 1, "seeds": [0]},
        tmp_path / "b",
    )
    a, b = tmp_path / "a" / "compare.csv", tmp_path / "b" / "compare.csv"
    assert compare(["--merge", str(a), str(b), "--out", str(tmp_path / "m"), "--note", "b ran elsewhere."]) == 0
    md = (tmp_path / "m" / "compare.md").read_text()
    assert "\nb ran elsewhere.\n" in md and "same machine" in md
    # the same table as one comparison of the three runs would give; arms in the usual order (rlvr first)
    assert "| tiny | frozenlake | 0.300 | 0.600 ± 0.141 |" in md
    assert (
        "| erl | 0.200 ± 0.000 | 0.600 ± 0.141 | 0.500, 0.700 | 0.300 ± 0.000 | 0.400 ± 0.000 | 0.300 | 0.200 "
        "| 0.300 / 0.200 | 3 | 50 |" in md
    )
    assert "seeds [0, 1]" in md and str(a) in md and "Partial" not in md
    assert len(list(csv.DictReader(open(tmp_path / "m" / "compare.csv")))) == 6
    capsys.readouterr()
    assert compare(["--merge", str(a), str(a), "--out", str(tmp_path / "x")]) == 2  # the same run twice
    assert "rlvr seed 0 is in both" in capsys.readouterr().err
    write_outputs(
        {("rlvr", 5): _run(0.3, None, None)[:1]},
        {"env": "frozenlake", "model": "tiny", "epochs": 0, "seeds": [5]},
        tmp_path / "c",
    )
    assert compare(["--merge", str(a), str(tmp_path / "c" / "compare.csv"), "--out", str(tmp_path / "y")]) == 2
    assert "different lengths" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()  # nothing written on an error


def test_partial_outputs_say_which_runs_finished(tmp_path):
    results = {("erl", 0): _run(0.5, 0.4, 0.1)}
    write_outputs(results, {"env": "frozenlake", "model": "tiny", "epochs": 1, "seeds": [0, 1]}, tmp_path, partial=True)
    assert (
        "**Partial:**" in (tmp_path / "compare.md").read_text()
        and "erl seed 0" in (tmp_path / "compare.md").read_text()
    )
    assert len(list(csv.DictReader(open(tmp_path / "compare.csv")))) == 2


@pytest.mark.slow
def test_compare_writes_table_curves_and_csv(tmp_path):
    # two epochs in one multi-epoch stage: the wall clock is spread over the epochs of a stage
    over = {"train": {"epochs": 2, "epochs_per_stage": 2}}
    params = deep_update(yaml.safe_load((ROOT / "params.yaml").read_text()), deep_update(copy.deepcopy(TINY), over))
    pfile = tmp_path / "params.yaml"
    pfile.write_text(yaml.safe_dump(params))
    out = tmp_path / "reports"
    assert (
        compare(
            ["--params", str(pfile), "--arms", "erl", "rlvr", "--seeds", "1", "--first-seed", "3", "--out", str(out)]
        )
        == 0
    )
    md = (out / "compare.md").read_text()
    assert "seeds [3]" in md
    assert "| model | task | erl | rlvr |" in md and "| tiny | frozenlake |" in md
    rows = list(csv.DictReader(open(out / "compare.csv")))
    assert {r["seed"] for r in rows} == {"3"}
    assert {(r["arm"], r["epoch"]) for r in rows} == {(a, e) for a in ("erl", "rlvr") for e in ("0", "1", "2")}
    assert all(0.0 <= float(r["eval_success"]) <= 1.0 for r in rows)
    # training wall-clock: zero at the epoch-0 evaluation, then rising epoch by epoch
    for arm in ("erl", "rlvr"):
        secs = [float(r["seconds"]) for r in rows if r["arm"] == arm]
        assert secs[0] == 0 and 0 < secs[1] < secs[2]
    assert "Partial" not in md
    html = (out / "compare.html").read_text()
    assert html.count("data:image/png;base64") == 4  # mean curves, every run, against seconds, the retry channel


def test_compare_rejects_bad_params(tmp_path, capsys):
    bad = tmp_path / "p.yaml"
    bad.write_text("algorithm: ppo\n")
    assert compare(["--params", str(bad)]) == 2
    assert "algorithm" in capsys.readouterr().err


@pytest.mark.parametrize("args", [["--seeds", "0"], ["--first-seed", "-1"]])
def test_compare_rejects_bad_seed_ranges(args, capsys):
    with pytest.raises(SystemExit) as exc:
        compare(args)
    assert exc.value.code == 2
    assert "--seeds" in capsys.readouterr().err


def test_epochs_without_evaluation_are_left_out_of_curves_and_finals(tmp_path):
    """evaluate.every > 1 leaves eval_success None on the epochs between evaluations: the outputs are written,
    the final is the last evaluated epoch's, and the columns of an evaluation that never ran show '-'."""

    def run(mid, final, **last):
        rows = [{"epoch": 0, "eval_success": 0.1, "seconds": 0.0}]
        rows += [{"epoch": e, "eval_success": None, "seconds": 10.0 * e, "retry_success": 0.2} for e in (1, 2, 3)]
        rows[2]["eval_success"] = mid
        return rows + [{"epoch": 4, "eval_success": final, "seconds": 40.0, **last}]

    results = {
        ("erl", 0): run(0.3, 0.5, eval_reflect_success=0.6, eval_two_tries_success=None),
        ("rlvr", 0): run(0.2, 0.4, eval_two_tries_success=0.45),
    }
    write_outputs(results, {"env": "frozenlake", "model": "tiny", "epochs": 4, "seeds": [0]}, tmp_path)
    md = (tmp_path / "compare.md").read_text()
    assert "| tiny | frozenlake | 0.500 | 0.400 |" in md
    assert "| erl | 0.500 | 0.600 | - |" in md and "| rlvr | 0.400 | - | 0.450 |" in md
    assert (tmp_path / "compare.html").read_text().count("data:image/png;base64,") == 4  # + the retry channel
