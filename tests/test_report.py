"""pipeline/report.py: the report files from a fake 3-epoch history."""

from __future__ import annotations

import csv
import json

import pytest

from pipeline.report import COLUMNS, load_history, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def history(epochs: int = 3) -> list[dict]:
    rows = []
    for e in range(epochs + 1):
        row = {c: None for c in COLUMNS}
        row.update(epoch=e, eval_success=0.1 + 0.2 * e, eval_reward=0.1 + 0.2 * e, eval_kl=0.01 * e, eval_turns=4.0)
        row.update(eval_tool_calls=0.0)
        if e:
            row.update(
                train_pre_success=0.1 * e,
                train_post_success=0.15 * e,
                reflections=10 * e,
                reflections_tagged=5 * e,
                reflections_with_note=2 * e,
                retry_success=0.3,
                retry_control_success=0.1,
                memory_adopted=e,
                samples_first=64,
                samples_reflection=10,
                samples_second=10,
                samples_distilled=3,
                update_loss=1.0 / e,
                update_kl=0.01 * e,
                update_kl_first=0.005 * e,
                grad_norm=0.5,
            )
        rows.append(row)
    return rows


RUN = {"algorithm": "erl", "env": "frozenlake", "seed": 0}
TOP = [{"reflection_id": "e1/t0/r1/f", "total_advantage": 2.5, "reflection": "avoid <H> & go right"}]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("reports")
    summary = write_report(history(), out, RUN, TOP)
    return out, summary


def test_history_csv(report):
    out, _ = report
    with open(out / "history.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == COLUMNS
    assert len(rows) == 1 + 4
    assert [r[0] for r in rows[1:]] == ["0", "1", "2", "3"]
    epoch0 = dict(zip(COLUMNS, rows[1]))
    assert epoch0["train_pre_success"] == "" and float(epoch0["eval_success"]) == pytest.approx(0.1)
    epoch3 = dict(zip(COLUMNS, rows[4]))
    assert epoch3["memory_adopted"] == "3" and float(epoch3["update_kl"]) == pytest.approx(0.03)


def test_metrics_json(report):
    out, summary = report
    m = json.loads((out / "metrics.json").read_text())
    assert m == summary
    assert m["epoch"] == 3 and m["eval_success"] == pytest.approx(0.7)
    assert m["initial_eval_success"] == pytest.approx(0.1)
    held_out_retries = {"eval_reflect_success", "eval_two_tries_success"}  # only where evaluate.reflect_every ran
    assert set(m) == (set(COLUMNS) - held_out_retries) | {"initial_eval_success"}


@pytest.mark.parametrize("name", ["success.png", "training.png"])
def test_pngs(report, name):
    out, _ = report
    data = (out / name).read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 1000


def test_markdown(report):
    out, _ = report
    md = (out / "report.md").read_text()
    assert md.startswith("# ERL run report: erl on frozenlake (seed 0)")
    assert "![success](success.png)" in md and "![training](training.png)" in md
    assert "| epoch | eval_success |" in md
    assert "e1/t0/r1/f" in md


def test_html(report):
    out, _ = report
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2
    assert "avoid &lt;H&gt; &amp; go right" in page  # escaped
    assert page.rstrip().endswith("</html>")


def test_no_reflections(tmp_path):
    write_report(history(1), tmp_path, RUN, [])
    assert "- none" in (tmp_path / "report.md").read_text()


def test_load_history(tmp_path):
    files = []
    for row in reversed(history()):
        f = tmp_path / f"m{row['epoch']}.json"
        f.write_text(json.dumps({**{k: v for k, v in row.items() if v is not None}, "unrelated": 1}))
        files.append(f)
    rows = load_history(files)
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3]
    assert all(list(r) == COLUMNS for r in rows)
    assert rows[0]["train_pre_success"] is None


def test_load_history_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="erl dvc-yaml") as info:
        load_history([tmp_path / "metrics.json"])
    assert "metrics.json" in str(info.value)
