"""pipeline/codedeps.py: a stage's code dependencies are the files it imports for the environment in use, tools
are never among them, and the runtime check catches an import the walk missed. No torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import codedeps, layout
from pipeline.lineage import code_sha256, code_version

ROOT = Path(__file__).resolve().parent.parent
ENVS = ("frozenlake", "sokoban", "qa")


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("stage", layout.STAGES)
def test_no_stage_imports_a_tool(stage, env):
    files = codedeps.stage_files(stage, env)
    assert f"stages/{stage}.py" in files and "pipeline/config.py" in files
    assert not [f for f in files if f.startswith("tools/")], f"{stage} imports a tool"


def test_tool_modules_exist_outside_the_library():
    tools = {p.stem for p in (ROOT / "tools").glob("*.py")}
    assert {"audit", "compare", "bench", "flows", "cli", "dvcgen"} <= tools
    assert not {p.stem for p in (ROOT / "pipeline").glob("*.py")} & {
        "audit",
        "compare",
        "bench",
        "flows",
        "cli",
        "dvcgen",
    }


def test_a_run_depends_on_its_own_environment_only():
    fl = set(codedeps.stage_files("epochs", "frozenlake"))
    assert {"pipeline/envs/frozenlake.py", "pipeline/tiny/frozenlake.py", "pipeline/envs/grid.py"} <= fl
    assert not fl & {
        "pipeline/envs/sokoban.py",
        "pipeline/tiny/sokoban.py",
        "pipeline/envs/qa.py",
        "pipeline/envs/kb.py",
        "pipeline/envs/search.py",
    }
    qa = set(codedeps.stage_files("epochs", "qa"))
    assert {"pipeline/envs/qa.py", "pipeline/envs/kb.py", "pipeline/envs/search.py"} <= qa
    assert "pipeline/envs/frozenlake.py" not in qa and "pipeline/envs/grid.py" not in qa


def test_the_walk_sees_lazy_imports_and_the_steps_of_a_block():
    sample = set(codedeps.stage_files("sample", "frozenlake"))
    assert "pipeline/rollout.py" in sample  # imported by pipeline/erl/attempts.py
    block = set(codedeps.stage_files("epochs", "frozenlake"))
    assert {f"stages/{s}.py" for s in layout.EPOCH_STAGES} <= block
    assert "stages/init.py" not in block and "stages/report.py" not in block


def test_lineage_hashes_exactly_the_stage_files():
    files = codedeps.stage_files("feedback", "frozenlake")
    code = code_version("feedback", "frozenlake")
    assert code["code_sha256"] == code_sha256(files) and code["code_files"] == len(files)
    assert code_version("feedback", "sokoban")["code_sha256"] != code["code_sha256"]


def test_runtime_check_names_an_import_the_walk_missed(monkeypatch):
    import pipeline.report  # noqa: F401  (the report module, which the feedback stage does not import)

    assert "pipeline/report.py" in codedeps.undeclared("feedback", "frozenlake")
    monkeypatch.setattr(codedeps, "stage_files", lambda stage, env: sorted(codedeps.loaded_files()))
    assert codedeps.undeclared("feedback", "frozenlake") == []


def test_a_stage_run_as_a_script_passes_its_own_check(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "stages.validate", "--artifacts", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "validated.txt").is_file()
