"""The fault-injection harness at small sizes (tools/faults.py; `erl faults --trials 30` is the full run): a
killed dvc takes its stage with it, a kill mid-write or inside a multi-epoch block leaves no temporary file,
and the rerun gives the tables and checkpoints of an uninterrupted run."""

from __future__ import annotations

import random
import shutil

import pytest
import yaml
from e2e_util import run

from pipeline import guard
from tools import faults
from tools.bench import make_copy, sandbox_env

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("faults")
    params = faults._deep_update(yaml.safe_load((faults.ROOT / "params.yaml").read_text()), faults.SMALL)
    template = tmp / "template"
    make_copy(template, params)
    ref = tmp / "reference"
    shutil.copytree(template, ref, symlinks=True)
    proc = faults._repro(ref, sandbox_env(ref), tmp / "reference.log")
    assert proc.wait() == 0, (tmp / "reference.log").read_text()[-3000:]
    return template, ref / "artifacts"


@pytest.mark.parametrize("kind, loaded", [("dvc", False), ("write", True), ("block", True)])
def test_a_kill_leaves_nothing_half_done(kind, loaded, reference, tmp_path):
    """The write and block kills run beside a CPU-bound process while the reference ran idle: their checkpoints
    differed in bytes from the reference on a loaded machine (a kernel that summed in thread-timing order)."""
    template, ref = reference
    result = faults.trial(kind, random.Random(7), template, ref, tmp_path, loaded=loaded)
    assert result["rerun_rc"] == 0, result["rerun_tail"]
    assert result["second_writers"] == 0 and result["temp_files"] == 0
    assert result["identical"], result["differs"]


def test_sweep_leaves_what_the_pipeline_did_not_write(tmp_path):
    """bad input sweep-foreign-files: names of the same shape that no writer of the pipeline gives are kept."""
    (tmp_path / "epoch_001").mkdir()
    keep = [
        tmp_path / ".notes.tmp",
        tmp_path / "epoch_001" / ".my-draft.abc.tmp",
        tmp_path / ".x.old-1",
        tmp_path / "epoch_001" / "sub",
    ]
    for p in keep[:3]:
        p.write_text("mine")
    keep[3].mkdir()
    (keep[3] / ".attempts.parquet.abc.tmp").write_text("two folders down: not where the pipeline writes")
    assert guard.sweep(tmp_path) == []
    assert all(p.exists() for p in keep)


def test_sweep_removes_what_killed_writers_left(tmp_path):
    (tmp_path / "epoch_001").mkdir()
    left = [tmp_path / "epoch_001" / ".attempts.parquet.abc.tmp", tmp_path / ".policy.xyz.tmp", tmp_path / "x.parquet"]
    left[0].write_text("half")
    left[1].mkdir()
    left[2].write_text("kept")
    (tmp_path / "epoch_001" / ".policy.old-42").mkdir()
    assert sorted(p.name for p in guard.sweep(tmp_path)) == [
        ".attempts.parquet.abc.tmp",
        ".policy.old-42",
        ".policy.xyz.tmp",
    ]
    assert faults._temp_files(tmp_path) == [] and left[2].exists()


def test_the_harness_command_runs(tmp_path):
    res = run(["python", "-m", "tools.cli", "faults", "--help"], tmp_path)
    assert "--trials" in res.stdout
