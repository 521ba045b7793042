"""pipeline/graph.py and `erl dvc-yaml` (tools/dvcgen.py): the committed dvc.yaml is what params.yaml gives; the
generated graph is well formed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline import graph, layout
from pipeline.config import Params, load_params
from tools import dvcgen

ROOT = Path(__file__).resolve().parent.parent


def test_committed_dvc_yaml_is_current():
    params = load_params(ROOT / "params.yaml")
    expected = graph.render(params)
    actual = (ROOT / "dvc.yaml").read_text()
    assert actual == expected, (
        f"dvc.yaml is out of step with params.yaml ({graph.shape(params)}): run `erl dvc-yaml` and commit the result"
    )


def _params(epochs: int, per_stage: int = 0, **sections) -> Params:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["train"].update(epochs=epochs, epochs_per_stage=per_stage)
    for name, values in sections.items():
        raw[name].update(values)
    return Params.model_validate(raw)


def _stages(epochs: int) -> dict:
    text = graph.render(_params(epochs))
    assert graph.generated_for(text) == graph.shape(_params(epochs))
    return yaml.safe_load(text)["stages"]


def test_render_3_stage_names():
    names = list(_stages(3))
    expected = ["validate", "init", "evaluate_e0"]
    for e in (1, 2, 3):
        expected += [f"{s}_e{e}" for s in layout.EPOCH_STAGES]
    expected.append("report")
    assert names == expected
    assert expected[3] == "sample_e1" and expected[-2] == "evaluate_e3"


def test_every_stage_depends_on_its_script_its_imports_and_validate():
    for name, spec in _stages(3).items():
        script = name.rsplit("_e", 1)[0] if "_e" in name else name
        assert spec["cmd"].startswith(f"python -m stages.{script}")
        assert f"stages/{script}.py" in spec["deps"], name
        assert "pipeline/config.py" in spec["deps"] and "pipeline" not in spec["deps"], name
        assert not any(d.startswith("tools/") for d in spec["deps"]), name
        if name != "validate":
            assert graph.VALIDATED.as_posix() in spec["deps"], name
    assert "params.yaml" in _stages(1)["validate"]["deps"]


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
        assert spec["params"] or name == "validate", f"{name} declares no params"
        for key in spec["params"]:
            try:
                _resolve(raw, key)
            except KeyError:
                missing.append(f"{name}: {key}")
    assert not missing, f"params.yaml lacks keys that dvc.yaml stages declare: {missing}"


def test_sample_depends_on_previous_checkpoint():
    stages = _stages(3)
    for e in (1, 2, 3):
        prev = layout.checkpoint_path(e - 1).as_posix()
        assert prev in stages[f"sample_e{e}"]["deps"] and prev in stages[f"update_e{e}"]["deps"]
        assert layout.policy_dir(e).as_posix() in stages[f"update_e{e}"]["outs"]
        assert layout.state_dir(e).as_posix() in stages[f"update_e{e}"]["outs"]
        assert layout.checkpoint_path(e).as_posix() in stages[f"update_e{e}"]["outs"]
    assert layout.policy_dir(0).as_posix() in stages["init"]["outs"]


def test_retention_evaluation_and_launcher_shape_the_graph():
    stages = yaml.safe_load(
        graph.render(
            _params(
                6,
                update={"keep_every": 3, "launcher": "accelerate", "accelerate_config": "acc.yaml"},
                evaluate={"every": 3},
            )
        )
    )["stages"]
    for e in range(1, 7):
        outs = stages[f"update_e{e}"]["outs"]
        kept = e in (3, 6)
        assert (layout.policy_dir(e).as_posix() in outs) == kept and layout.checkpoint_path(e).as_posix() in outs
        evaluated = layout.checkpoint_path(e).as_posix() in stages[f"evaluate_e{e}"]["deps"]
        assert evaluated == kept  # evaluation reads a checkpoint only where it runs
        assert stages[f"update_e{e}"]["cmd"] == f"accelerate launch --config_file acc.yaml -m stages.update --epoch {e}"
    text = graph.render(_params(6, update={"keep_every": 3}, evaluate={"every": 3}))
    assert "update.keep_every=3" in graph.generated_for(text) and "evaluate.every=3" in graph.generated_for(text)


@pytest.mark.parametrize("per_stage", [0, 5])
def test_no_stage_lists_a_dep_twice(per_stage):
    stages = _block_stages(6, per_stage) if per_stage else _stages(6)
    for name, spec in stages.items():
        assert len(spec["deps"]) == len(set(spec["deps"])), name  # epoch 1's previous policy is the initial one


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
        assert layout.metrics_path(e).as_posix() in report["deps"]


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
    proc = subprocess.run(
        [sys.executable, "-m", "tools.dvcgen", "--check", "--params", str(other), "--out", "dvc.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1, proc.stderr
    assert "erl dvc-yaml" in proc.stderr
    assert (ROOT / "dvc.yaml").read_bytes() == before  # --check never writes


def test_main_writes_then_checks(tmp_path, capsys):
    params = _other_params(tmp_path, 2)
    out = tmp_path / "dvc.yaml"
    assert dvcgen.main(["--check", "--params", str(params), "--out", str(out)]) == 1  # missing file
    assert dvcgen.main(["--params", str(params), "--out", str(out)]) == 0
    assert out.read_text() == graph.render(load_params(params))
    assert dvcgen.main(["--check", "--params", str(params), "--out", str(out)]) == 0


def test_main_bad_params_exits_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {epochs: 0}\n")
    assert dvcgen.main(["--check", "--params", str(bad), "--out", str(tmp_path / "dvc.yaml")]) == 2


@pytest.mark.parametrize("epochs", [1, 4])
def test_render_is_deterministic(epochs):
    assert graph.render(_params(epochs)) == graph.render(_params(epochs))


def _block_stages(epochs: int, per_stage: int) -> dict:
    return yaml.safe_load(graph.render(_params(epochs, per_stage)))["stages"]


def test_blocks_cover_every_epoch_once():
    assert layout.epoch_blocks(7, 3) == [(1, 3), (4, 6), (7, 7)]
    assert layout.epoch_blocks(4, 10) == [(1, 4)]
    names = list(_block_stages(7, 3))
    assert names == ["validate", "init", "evaluate_e0", "epochs_e1-e3", "epochs_e4-e6", "epoch_e7", "report"]
    assert [n for n, _ in layout.training_stages(7, 3)] == names[3:-1]
    assert [d for _, d in layout.training_stages(7, 3)] == [[1, 2, 3], [4, 5, 6], [7]]
    steps = layout.training_stages(2, 0)
    assert [n for n, d in steps if d] == ["evaluate_e1", "evaluate_e2"] and len(steps) == 14


def test_block_writes_what_the_steps_write():
    """A multi-epoch stage has exactly the outputs and metrics of its epochs' one-step stages, and reads from
    outside the block only what epoch `first`'s steps read from earlier epochs."""
    steps, blocks = _stages(4), _block_stages(4, 2)

    def outs(specs, names, key):
        got = set()
        for n in names:
            for o in specs[n].get(key, []):
                got.update([o] if isinstance(o, str) else o.keys())
        return got

    for name, (a, b) in zip(["epochs_e1-e2", "epochs_e3-e4"], layout.epoch_blocks(4, 2)):
        step_names = [layout.stage_name(s, e) for e in range(a, b + 1) for s in layout.EPOCH_STAGES]
        assert outs(blocks, [name], "outs") == outs(steps, step_names, "outs")
        assert outs(blocks, [name], "metrics") == outs(steps, step_names, "metrics")
        inner = outs(steps, step_names, "outs") | outs(steps, step_names, "metrics")
        outer = {d for n in step_names for d in steps[n]["deps"] if d.startswith("artifacts/") and d not in inner}
        assert outer <= set(blocks[name]["deps"]), outer - set(blocks[name]["deps"])
        assert blocks[name]["cmd"] == f"python -m stages.epochs --first {a} --last {b}"
        for s in layout.EPOCH_STAGES:
            assert f"stages/{s}.py" in blocks[name]["deps"]


def test_block_graph_is_a_dag_with_known_params():
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    produced: set[str] = set()
    for name, spec in _block_stages(5, 2).items():
        for dep in spec["deps"]:
            if dep.startswith("artifacts/"):
                assert dep in produced, f"{name} depends on {dep}, which no earlier stage writes"
        for o in spec["outs"] + spec.get("metrics", []):
            produced.update([o] if isinstance(o, str) else o.keys())
        for key in spec["params"]:
            _resolve(raw, key)
    epochs_keys = _block_stages(2, 1)["epoch_e1"]["params"]
    assert "env" in epochs_keys and "env.name" not in epochs_keys  # a section, not also its own keys


@pytest.mark.parametrize("first,last", [(0, 1), (2, 1), (1, 99)])
def test_epochs_stage_rejects_bad_ranges(first, last, capsys):
    from stages import epochs as block

    with pytest.raises(SystemExit) as exc:
        block.main(["--first", str(first), "--last", str(last), "--params", str(ROOT / "params.yaml")])
    assert exc.value.code == 2
    assert "train.epochs" in capsys.readouterr().err
