"""Scheduled runs: a served deployment runs triggered flow runs to Completed, one at a time, and its cron makes
runs; one run per workspace however it is started; a stage that hangs past its timeout is killed with its
whole process group.

`serve` runs in a subprocess without PREFECT_API_URL, as `erl deploy` does on a fresh machine: it must start a
Prefect server and hand its URL to its flow-run subprocesses (before, each run started a temporary server of its
own and was Cancelled: "Deployment concurrency slot lost during provisioning").
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from test_flows import _expected_order, _fake_dvc_yaml

ROOT = Path(__file__).resolve().parent.parent
NAME = "erl-served-test"
RUN_TIMEOUT = 180


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def tiny_repo(tmp_path: Path) -> Path:
    """A DVC repo with train.epochs 1 and one-line stand-ins for its stages."""
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(
        [sys.executable, "-m", "dvc", "init", "-q"], cwd=repo, check=True, env={**os.environ, "DVC_NO_ANALYTICS": "1"}
    )
    (repo / "params.yaml").write_text(yaml.safe_dump({"train": {"epochs": 1, "epochs_per_stage": 0}}))
    (repo / "dvc.yaml").write_text(yaml.safe_dump(_fake_dvc_yaml(1), sort_keys=False))
    return repo


@pytest.fixture
def served(tmp_path: Path, tiny_repo: Path):
    """`python -m tools.flows serve` in a subprocess with a throwaway PREFECT_HOME and no PREFECT_API_URL;
    yields (api_url, deployment_id); SIGTERM at the end (the runner pauses its schedule, serve stops its server)."""
    import httpx

    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(tmp_path / "prefect_home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120",
        PREFECT_RUNNER_POLL_FREQUENCY="1",
    )  # the runner polls every 10 s by default
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tools.flows",
                "serve",
                "--repo",
                str(tiny_repo),
                "--name",
                NAME,
                "--port",
                str(port),
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, f"serve exited {proc.returncode}:\n{log_path.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"deployment not registered:\n{log_path.read_text()[-3000:]}"
            try:
                r = httpx.get(f"{url}/deployments/name/erl-train/{NAME}", timeout=5)
                if r.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        yield url, r.json()["id"], log_path
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_served_runs_complete_one_at_a_time(served, tiny_repo: Path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url, deployment_id, log_path = served
    t0 = time.monotonic()
    with temporary_settings(updates={PREFECT_API_URL: url}), get_client(sync_client=True) as client:
        # two triggers back to back: the second must wait for the first (runner limit 1 + deployment limit 1)
        ids = [client.create_flow_run_from_deployment(deployment_id).id for _ in range(2)]
        runs = {}
        while len(runs) < len(ids):
            assert time.monotonic() - t0 < RUN_TIMEOUT, f"runs not final:\n{log_path.read_text()[-3000:]}"
            for i in ids:
                fr = client.read_flow_run(i)
                if fr.state is not None and fr.state.is_final():
                    runs[i] = fr
            time.sleep(1)
        elapsed = time.monotonic() - t0
        # the server's scheduler turns the cron into future runs (every 5 s; it fails under SQLAlchemy 2.1)
        deadline = time.monotonic() + 30
        while True:
            auto = [
                fr
                for fr in client.read_flow_runs(
                    deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
                    sort=FlowRunSort.EXPECTED_START_TIME_ASC,
                    limit=50,  # this server answers 422 to a null sort/limit
                )
                if fr.auto_scheduled
            ]
            if auto or time.monotonic() > deadline:
                break
            time.sleep(1)
    a, b = (runs[i] for i in ids)
    for fr in (a, b):
        assert fr.state.is_completed(), (fr.state, log_path.read_text()[-3000:])
    assert a.end_time <= b.start_time or b.end_time <= a.start_time, "the two runs overlapped"
    # the first run executed every stage once; the second found them all up to date
    assert (tiny_repo / "run_order.txt").read_text().split() == _expected_order(1)
    print(f"\ntwo served runs Completed {elapsed:.1f} s after the first trigger")
    print(f"auto-scheduled runs: {len(auto)}")
    assert auto, "the server's scheduler created no runs from the cron (SQLAlchemy >= 2.1?)"


def test_workspace_lock_is_exclusive_and_dies_with_its_holder(tmp_path: Path):
    from tools.flows import workspace_lock

    probe = [
        sys.executable,
        "-c",
        "import sys; from pathlib import Path; from tools.flows import workspace_lock\n"
        "try:\n    with workspace_lock(Path(sys.argv[1]), timeout=0): print('got')\n"
        "except RuntimeError as e: print('busy', e)",
        str(tmp_path),
    ]
    with workspace_lock(tmp_path):
        out = subprocess.run(probe, capture_output=True, text=True, cwd=ROOT).stdout
        assert out.startswith("busy") and f"pid {os.getpid()}" in out, out
    assert subprocess.run(probe, capture_output=True, text=True, cwd=ROOT).stdout.strip() == "got"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path\n"
            "from tools.flows import workspace_lock\n"
            "with workspace_lock(Path(sys.argv[1])): print('held', flush=True); time.sleep(60)",
            str(tmp_path),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    holder.kill()  # SIGKILL: no cleanup code runs, the kernel drops the flock
    holder.wait()
    assert subprocess.run(probe, capture_output=True, text=True, cwd=ROOT).stdout.strip() == "got"


def test_stage_timeout_kills_the_whole_stage_process_group(tmp_path: Path):
    """A task's timeout_seconds fires as SIGALRM -> CancelledError in the main thread; _run_group must then kill
    the child AND its children (subprocess.run would SIGKILL only the child, orphaning the stage's command)."""
    from prefect.utilities.timeout import timeout

    from tools.flows import _run_group

    pids = tmp_path / "pids"
    child = (
        "import subprocess, sys, time, os; g = subprocess.Popen([sys.executable, '-c', 'import time; "
        "time.sleep(60)']); open(sys.argv[1], 'w').write(f'{os.getpid()} {g.pid}'); time.sleep(60)"
    )
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        with timeout(seconds=3):
            _run_group([sys.executable, "-c", child, str(pids)])
    assert time.monotonic() - t0 < 15
    for pid in map(int, pids.read_text().split()):
        assert _gone_within(pid, 5.0), f"{pid} survived the timeout"


def _gone_within(pid: int, seconds: float) -> bool:
    """Whether the process exits (or is a zombie awaiting its dead parent's reaper) within ``seconds``: a SIGKILL
    is delivered asynchronously, so on a busy machine a killed process can still be running an instant later."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            os.kill(pid, 0)
            stat = Path(f"/proc/{pid}/stat").read_text()
        except (ProcessLookupError, FileNotFoundError):
            return True
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def test_a_second_deploy_on_a_taken_port_says_so(tmp_path: Path):
    """bad input deploy-port-taken: something already listens on the port (another `erl deploy`'s server): the
    second one stops with one line instead of sharing a server it does not own."""
    port = _free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
        res = subprocess.run(
            [sys.executable, "-m", "tools.cli", "deploy", "--port", str(port), "--repo", str(tmp_path)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert res.returncode == 2, res.stderr[-2000:]
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and f"port {port} is in use" in lines[0], res.stderr[-2000:]
