"""Tests of pipeline/flows.py on a fake DVC project whose stages have the real names but trivial cmds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.layout import EPOCH_STAGES, metrics_path, stage_name
from tools.flows import METRICS_ARTIFACT_KEY, REPORT_ARTIFACT_KEY, build_deployment, erl_train, run_stage

EPOCHS = 2


def _cmd(name: str, out: str, payload: str | dict) -> str:
    """A one-line python command that writes ``out`` (text, or a dict as JSON) and logs ``name`` to
    run_order.txt.

    No backslashes or double quotes inside: DVC 3.67 (ruamel) can fold a long cmd in dvc.lock right after
    an escaped backslash and corrupt it, after which the stage always reads as "changed command".
    """
    content = f"__import__('json').dumps({payload!r})" if isinstance(payload, dict) else repr(payload)
    code = (
        f"import pathlib as p; o = p.Path({out!r}); o.parent.mkdir(parents=True, exist_ok=True); "
        f"o.write_text({content}); open('run_order.txt', 'a').write({name!r} + chr(10))"
    )
    assert '"' not in code and "\\" not in code
    return f'"{sys.executable}" -c "{code}"'


def _expected_order(epochs: int = EPOCHS) -> list[str]:
    names = [stage_name("validate"), stage_name("init"), stage_name("evaluate", 0)]
    for e in range(1, epochs + 1):
        names += [stage_name(s, e) for s in EPOCH_STAGES]
    return names + [stage_name("report")]


def _fake_dvc_yaml(epochs: int = EPOCHS) -> dict:
    stages: dict[str, dict] = {}
    prev = None
    for name in _expected_order(epochs):
        if name.startswith("evaluate_e"):
            e = int(name.rsplit("_e", 1)[1])
            out = metrics_path(e).as_posix()
            text = {"accuracy": round(0.5 + 0.1 * e, 2), "reward": e}
        elif name == "report":
            out, text = "reports/report.md", "# ERL report"
        else:
            out, text = f"artifacts/{name}.txt", name
        st: dict = {"cmd": _cmd(name, out, text)}
        if prev is not None:
            st["deps"] = [prev]  # chain: each stage depends on the previous stage's output
        if name.startswith("evaluate_e"):
            st["metrics"] = [{out: {"cache": False}}]
        else:
            st["outs"] = [out]
        stages[name] = st
        prev = out
    return {"stages": stages}


@pytest.fixture
def fake_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(
        [sys.executable, "-m", "dvc", "init", "-q"], cwd=repo, check=True, env={**os.environ, "DVC_NO_ANALYTICS": "1"}
    )
    (repo / "params.yaml").write_text(yaml.safe_dump({"train": {"epochs": EPOCHS, "epochs_per_stage": 0}}))
    (repo / "dvc.yaml").write_text(yaml.safe_dump(_fake_dvc_yaml(), sort_keys=False))
    return repo


def test_run_stage_failure_names_stage(tmp_path: Path):
    """No server: task.fn runs the body directly; a failing stage raises with its name and output."""
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(
        [sys.executable, "-m", "dvc", "init", "-q"],
        cwd=tmp_path,
        check=True,
        env={**os.environ, "DVC_NO_ANALYTICS": "1"},
    )
    (tmp_path / "dvc.yaml").write_text(
        yaml.safe_dump(
            {"stages": {"update_e1": {"cmd": f'"{sys.executable}" -c "import sys; sys.exit(3)"', "outs": ["x.txt"]}}}
        )
    )
    with pytest.raises(RuntimeError, match="update_e1") as exc:
        run_stage.fn("update_e1", str(tmp_path))
    msg = str(exc.value)
    assert "failed" in msg and "update_e1" in msg.split(":", 1)[1]  # the DVC output tail is included


def test_build_deployment_schedule_and_limit():
    """No server: the deployment object carries the cron schedule and a concurrency limit of one."""
    from prefect.client.schemas.objects import ConcurrencyLimitStrategy

    d = build_deployment(repo=".", cron="0 3 * * *", name="erl-nightly", epochs=3)
    assert d.name == "erl-nightly"
    assert d.flow_name == "erl-train"
    assert [s.schedule.cron for s in d.schedules] == ["0 3 * * *"]
    assert d.concurrency_limit == 1
    assert d.concurrency_options.collision_strategy == ConcurrencyLimitStrategy.ENQUEUE
    assert d.parameters == {"repo": str(Path(".").resolve()), "epochs": 3, "stage_timeout": 6 * 3600.0}
    assert d.entrypoint == "tools.flows.erl_train"


def test_erl_train_end_to_end(prefect_server, fake_repo: Path):
    import httpx
    from prefect.settings import PREFECT_API_URL

    def read_artifacts(key: str, flow_run_id=None) -> list[dict]:
        # Raw POST /artifacts/filter: in this environment (prefect 3.8.8, fastapi 0.154, pydantic 2.14)
        # the server answers 422 to the nulls that PrefectClient.read_artifacts and Artifact.get send for
        # every filter they are not given, so leave those keys out.
        body: dict = {"artifacts": {"key": {"any_": [key]}}, "sort": "CREATED_DESC"}
        if flow_run_id:
            body["artifacts"]["flow_run_id"] = {"any_": [str(flow_run_id)]}
        r = httpx.post(f"{PREFECT_API_URL.value()}/artifacts/filter", json=body, timeout=30)
        r.raise_for_status()
        return r.json()

    expected = _expected_order()
    state = erl_train(repo=str(fake_repo), return_state=True)
    assert state.is_completed(), state
    summary = state.result()

    # every stage ran, once, in order (the fake cmds append their names to run_order.txt)
    assert (fake_repo / "run_order.txt").read_text().split() == expected
    assert list(summary["stages"]) == expected
    assert not any(v["skipped"] for v in summary["stages"].values())
    assert summary["epochs"] == EPOCHS
    assert summary["final_metrics"] == {"accuracy": 0.7, "reward": 2}
    assert summary["report"].endswith("report.md")

    # the metrics table artifact: one version per epoch, the last with all epochs, epoch column first
    arts = read_artifacts(METRICS_ARTIFACT_KEY, state.state_details.flow_run_id)
    assert len(arts) == EPOCHS and all(a["type"] == "table" for a in arts)  # one version per epoch
    rows = json.loads(arts[0]["data"])  # newest first
    assert rows == [{"epoch": e, "accuracy": round(0.5 + 0.1 * e, 2), "reward": e} for e in range(0, EPOCHS + 1)]
    assert list(rows[0])[0] == "epoch"
    report = read_artifacts(REPORT_ARTIFACT_KEY, state.state_details.flow_run_id)
    assert len(report) == 1 and report[0]["type"] == "markdown" and "# ERL report" in report[0]["data"]

    # second run: DVC skips everything, nothing executes
    summary2 = erl_train(repo=str(fake_repo))
    assert list(summary2["stages"]) == expected
    assert all(v["skipped"] for v in summary2["stages"].values()), summary2["stages"]
    assert (fake_repo / "run_order.txt").read_text().split() == expected


def test_training_plan_steps_and_blocks():
    from tools.flows import training_plan

    steps = training_plan(3, 0, 2)
    assert [n for n, _ in steps] == [stage_name(s, e) for e in (1, 2) for s in EPOCH_STAGES]
    assert [d for _, d in steps if d] == [[1], [2]]
    assert training_plan(10, 4) == [
        ("epochs_e1-e4", [1, 2, 3, 4]),
        ("epochs_e5-e8", [5, 6, 7, 8]),
        ("epochs_e9-e10", [9, 10]),
    ]
    assert training_plan(10, 4, 5) == training_plan(10, 4)[:2]  # whole blocks: epoch 5 ends with its block
    assert training_plan(10, 4, 0) == []


def test_the_flow_validates_params_like_the_stages(tmp_path):
    """A params.yaml that the stages would refuse stops the flow before any stage runs, naming the key; a section
    left out takes its defaults instead of failing with KeyError."""
    import pytest

    from pipeline.config import ParamsError
    from tools.flows import _read_train

    (tmp_path / "params.yaml").write_text("update:\n  lr: -1\n")
    with pytest.raises(ParamsError, match="update.lr"):
        _read_train(tmp_path)
    (tmp_path / "params.yaml").write_text("seed: 3\n")
    assert _read_train(tmp_path) == (40, 10)  # the defaults, params.yaml's values
