"""pipeline/dvcgen.py: the committed dvc.yaml is what params.yaml gives; the generated graph is well formed."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline import dag, dvcgen
from pipeline.config import load_params

ROOT = Path(__file__).resolve().parent.parent


def test_committed_dvc_yaml_is_current():
    params = load_params(ROOT / "params.yaml")
    epochs = params.train.epochs
    expected = dvcgen.render(epochs, params)
    actual = (ROOT / "dvc.yaml").read_text()
    assert actual == expected, (
        f"dvc.yaml is out of step with params.yaml (train.epochs={epochs}): run `erl dvc-yaml` "
        "(or `python -m pipeline.dvcgen`) and commit the result"
    )


def _stages(epochs: int) -> dict:
    text = dvcgen.render(epochs)
    assert text.startswith(dvcgen.HEADER)
    return yaml.safe_load(text)["stages"]


def test_render_3_stage_names():
    names = list(_stages(3))
    expected = ["init", "evaluate_e0"]
    for e in (1, 2, 3):
        expected += [f"{s}_e{e}" for s in dag.EPOCH_STAGES]
    expected.append("report")
    assert names == expected
    assert expected[2] == "sample_e1" and expected[-2] == "evaluate_e3"


def test_every_stage_depends_on_its_script_and_pipeline():
    for name, spec in _stages(3).items():
        script = name.rsplit("_e", 1)[0] if "_e" in name else name
        assert spec["cmd"].startswith(f"python -m stages.{script}")
        assert f"stages/{script}.py" in spec["deps"], name
        assert "pipeline" in spec["deps"], name
        assert (ROOT / f"stages/{script}.py").is_file()


def _resolve(raw: dict, dotted: str):
    value = raw
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(dotted)
        value = value[part]
    return value


def test_every_params_entry_exists_in_params_yaml():
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    missing = []
    for name, spec in _stages(3).items():
        assert spec["params"], f"{name} declares no params"
        for key in spec["params"]:
            try:
                _resolve(raw, key)
            except KeyError:
                missing.append(f"{name}: {key}")
    assert not missing, f"params.yaml lacks keys that dvc.yaml stages declare: {missing}"


def test_sample_depends_on_previous_policy():
    stages = _stages(3)
    for e in (1, 2, 3):
        prev = dag.policy_dir(e - 1).as_posix()
        assert prev in stages[f"sample_e{e}"]["deps"]
        assert dag.policy_dir(e).as_posix() in stages[f"update_e{e}"]["outs"]
    assert dag.policy_dir(0).as_posix() in stages["init"]["outs"]


def test_every_dep_is_produced_upstream():
    """Each artifact dependency is an output of an earlier stage (so the graph is a DAG in stage order)."""
    produced: set[str] = set()
    for name, spec in _stages(3).items():
        for dep in spec["deps"]:
            if dep.startswith("artifacts/"):
                assert dep in produced, f"{name} depends on {dep}, which no earlier stage writes"
        for o in spec["outs"] + spec.get("metrics", []):
            produced.update([o] if isinstance(o, str) else o.keys())


def test_report_reads_every_epoch_metrics():
    report = _stages(2)["report"]
    for e in (0, 1, 2):
        assert dag.metrics_path(e).as_posix() in report["deps"]


def _other_params(tmp_path: Path, epochs: int) -> Path:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["train"]["epochs"] = epochs
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_check_fails_when_epochs_differ(tmp_path):
    epochs = load_params(ROOT / "params.yaml").train.epochs
    other = _other_params(tmp_path, epochs + 1)
    before = (ROOT / "dvc.yaml").read_bytes()
    proc = subprocess.run([sys.executable, "-m", "pipeline.dvcgen", "--check", "--params", str(other),
                           "--out", "dvc.yaml"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert "erl dvc-yaml" in proc.stderr
    assert (ROOT / "dvc.yaml").read_bytes() == before  # --check never writes


def test_main_writes_then_checks(tmp_path, capsys):
    params = _other_params(tmp_path, 2)
    out = tmp_path / "dvc.yaml"
    assert dvcgen.main(["--check", "--params", str(params), "--out", str(out)]) == 1  # missing file
    assert dvcgen.main(["--params", str(params), "--out", str(out)]) == 0
    assert out.read_text() == dvcgen.render(2)
    assert dvcgen.main(["--check", "--params", str(params), "--out", str(out)]) == 0


def test_main_bad_params_exits_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {epochs: 0}\n")
    assert dvcgen.main(["--check", "--params", str(bad), "--out", str(tmp_path / "dvc.yaml")]) == 2


@pytest.mark.parametrize("epochs", [1, 4])
def test_render_is_deterministic(epochs):
    assert dvcgen.render(epochs) == dvcgen.render(epochs)
