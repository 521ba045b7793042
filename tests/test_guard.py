"""pipeline/guard.py where containers and shells start stages: as PID 1 or under a PID-1 shell (a container's
command), dvc itself as PID 1, and stages started detached. The parent watch arms in a stage's main, only under
dvc, and never takes PID 1 for a dead parent. Linux namespaces through `unshare`, as root."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from e2e_util import env, make_project

ROOT = Path(__file__).resolve().parent.parent

needs_unshare = pytest.mark.skipif(
    shutil.which("unshare") is None
    or subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True).returncode != 0,
    reason="needs unshare with PID namespaces (root)",
)


def _pid1(cmd: str, cwd: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    """``cmd`` run by a shell that is PID 1 of a new PID namespace (a container's command)."""
    return subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", "sh", "-c", cmd],
        cwd=cwd,
        env=env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@needs_unshare
def test_stages_run_under_a_pid_1_shell(tmp_path):
    """`python -m stages.validate --help` and a real validate, their parent PID 1: both finish (they were
    SIGKILLed at import, exit 137 with no output)."""
    py = sys.executable
    res = _pid1(f"{py} -m stages.validate --help", ROOT)
    assert res.returncode == 0 and "validate" in res.stdout, (res.returncode, res.stderr[-500:])
    art = tmp_path / "artifacts"
    res = _pid1(f"{py} -m stages.validate --artifacts {art}", ROOT)
    assert res.returncode == 0, (res.returncode, res.stderr[-1000:])
    assert (art / "validated.txt").is_file()
    res = _pid1(f"{py} -m tools.cli dvc-yaml --check", ROOT)
    assert res.returncode == 0, res.stderr[-500:]


@needs_unshare
@pytest.mark.slow
@pytest.mark.parametrize("shell", ["/bin/sh", "/bin/bash"])
def test_dvc_repro_as_pid_1(tmp_path, shell):
    """`dvc repro` as PID 1 (a container's command), its stages run through ``shell``: the stage's ancestor chain
    ends at dvc, PID 1, which it watches like any dvc."""
    repo = make_project(tmp_path / "repo", {"train": {"epochs": 1, "epochs_per_stage": 0}})
    cmd = f"SHELL={shell} {sys.executable} -m dvc repro validate init"
    res = _pid1(cmd, repo, timeout=600)
    assert res.returncode == 0, (res.returncode, res.stdout[-2000:], res.stderr[-2000:])
    assert (repo / "artifacts" / "init" / "checkpoint.json").is_file()


def test_a_detached_stage_survives_the_shell_that_started_it(tmp_path):
    """`nohup python -m stages.validate ... &` from a shell that exits at once: the stage is reparented (to PID 1
    or a subreaper) and finishes its work (it died at once, leaving an empty log)."""
    art, log = tmp_path / "artifacts", tmp_path / "log"
    cmd = f"nohup {sys.executable} -m stages.validate --artifacts {art} > {log} 2>&1 &"
    subprocess.run(["sh", "-c", cmd], cwd=ROOT, env=env(), check=True)
    for _ in range(120):
        if (art / "validated.txt").is_file():
            break
        time.sleep(0.5)
    assert (art / "validated.txt").is_file(), log.read_text()[-1000:]
    res = subprocess.run(
        ["setsid", sys.executable, "-m", "stages.validate", "--artifacts", str(art)], cwd=ROOT, env=env()
    )
    assert res.returncode == 0


def test_the_parent_watch_arms_only_under_dvc():
    """A stage run by hand has no dvc among its ancestors: nothing watches its parent."""
    from pipeline import guard

    assert guard._watched() == []


def test_stages_do_not_arm_the_watch_at_import():
    code = "import stages.validate, pipeline.guard as g; print(g._WATCHING)"
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env(), capture_output=True, text=True)
    assert res.stdout.strip() == "False", res.stderr
