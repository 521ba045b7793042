"""Prefect flows that run the project's DVC stages epoch by epoch.

Prefect sits *outside* DVC: one Prefect task per DVC stage and epoch, each a ``dvc repro <stage>``
subprocess. DVC decides what to skip (it is the only cache; Prefect task caching is off); Prefect adds
retries, scheduling, run history and artifacts (a per-epoch metrics table, the report). Prefect never
runs inside a stage: the stages' own code must not import or start it.

Usage::

    python -m tools.flows run [--repo .] [--epochs N]
    python -m tools.flows serve [--repo .] [--cron "0 3 * * *"] [--name erl-nightly] [--epochs N] [--port 4200]

Served runs execute in a ``python -m prefect.engine`` subprocess that must report to the SAME API server as
the runner (the deployment's concurrency lease lives in that server's memory), so ``serve`` never uses
Prefect's per-process temporary server: without PREFECT_API_URL it starts ``prefect server start`` (API, UI
and the scheduler that turns the cron into runs) on 127.0.0.1:PORT and hands its URL to every run.
"""

from __future__ import annotations

import os

# Defaults for a local, offline Prefect. They must be in the environment before `prefect` is first
# imported (Prefect freezes its settings at import), so they are set here, above the prefect imports;
# values already set win.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import contextlib  # noqa: E402
import fcntl  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import TYPE_CHECKING, Any  # noqa: E402

from prefect import flow, task  # noqa: E402
from prefect.artifacts import create_markdown_artifact, create_table_artifact  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.exceptions import MissingContextError  # noqa: E402
from prefect.logging import get_run_logger  # noqa: E402

from pipeline.layout import metrics_path, stage_name, training_stages  # noqa: E402

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment

METRICS_ARTIFACT_KEY = "erl-epoch-metrics"
REPORT_ARTIFACT_KEY = "erl-report"
REPORT_MD = Path("reports") / "report.md"
REPORT_HTML = Path("reports") / "report.html"
STAGE_ENV = {"HF_HUB_OFFLINE": "1", "DVC_NO_ANALYTICS": "1"}
OUTPUT_TAIL_LINES = 40
# Where a served run imports the flow from; spelled out because under `python -m tools.flows` the
# flow's own __module__ is "__main__", which a deployment's flow-run subprocess cannot import.
FLOW_ENTRYPOINT = "tools.flows.erl_train"
DEFAULT_PORT = 4200
SERVER_STARTUP_TIMEOUT = float(os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"])
# One run per DVC workspace, deployment or not: a flock that the flow process holds (DVC git-ignores .dvc/tmp).
WORKSPACE_LOCK = Path(".dvc") / "tmp" / "erl-train.lock"
STAGE_KILL_GRACE = 10.0
STAGE_TIMEOUT = 6 * 3600.0  # seconds; a multi-epoch block of the main job takes minutes, a paper epoch an hour


def _logger() -> logging.Logger | logging.LoggerAdapter:
    """The Prefect run logger inside a run; a plain logger under ``task.fn(...)`` or outside a run."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(__name__)


def _skipped(stage: str, output: str) -> bool:
    """DVC prints ``Stage '<name>' didn't change, skipping`` for each up-to-date stage it visits."""
    return re.search(rf"Stage '{re.escape(stage)}' didn't change, skipping", output) is not None


def _kill_group(proc: subprocess.Popen, grace: float = STAGE_KILL_GRACE) -> None:
    """SIGTERM the process group led by ``proc``, SIGKILL it after ``grace`` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError):  # grandchildren that outlived the leader
        os.killpg(proc.pid, signal.SIGKILL)


def _run_group(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess:
    """``subprocess.run`` in a new session whose whole process group dies with the call.

    ``subprocess.run`` alone SIGKILLs only its direct child when interrupted (a task's ``timeout_seconds``
    arrives as an exception raised by SIGALRM, a served run's cancellation as SIGTERM), leaving the stage's
    own command running as an orphan next to the retry."""
    proc = subprocess.Popen(cmd, start_new_session=True, **kw)
    try:
        out, err = proc.communicate()
    except BaseException:
        _kill_group(proc)
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@contextlib.contextmanager
def workspace_lock(repo: Path, timeout: float | None = None, poll: float = 2.0) -> Iterator[Path]:
    """Hold an exclusive ``flock`` on ``<repo>/.dvc/tmp/erl-train.lock`` for the block: one run per workspace.

    Waits (``timeout=None``: as long as it takes; raises RuntimeError after ``timeout`` seconds). The kernel
    drops the lock when the holder exits however it exits, and the fd is not inherited by the stages."""
    path = repo / WORKSPACE_LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        t0, told = time.monotonic(), False
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                fh.seek(0)
                holder = fh.read().strip() or "unknown"
                if timeout is not None and time.monotonic() - t0 >= timeout:
                    raise RuntimeError(f"another erl-train run holds {path} ({holder})") from None
                if not told:
                    _logger().warning("waiting for the erl-train run holding %s (%s)", path, holder)
                    told = True
                time.sleep(poll)
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {os.uname().nodename} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        fh.flush()
        try:
            yield path
        finally:
            fh.seek(0)
            fh.truncate()
            fcntl.flock(fh, fcntl.LOCK_UN)


@task(retries=2, retry_delay_seconds=10, cache_policy=NO_CACHE, task_run_name="dvc-repro-{stage}")
def run_stage(stage: str, repo: str) -> dict[str, Any]:
    """Run ``dvc repro <stage>`` in ``repo``; DVC skips it when nothing it depends on changed.

    Returns ``{"stage", "seconds", "skipped"}``. Raises RuntimeError (stage name + output tail) on failure.
    """
    log = _logger()
    cmd = [sys.executable, "-m", "dvc", "repro", stage]
    env = {**os.environ, **STAGE_ENV}
    t0 = time.perf_counter()
    proc = _run_group(cmd, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seconds = time.perf_counter() - t0
    output = proc.stdout or ""
    if proc.returncode != 0:
        tail = "\n".join(output.splitlines()[-OUTPUT_TAIL_LINES:])
        log.error("stage %s failed after %.1f s (exit %d)", stage, seconds, proc.returncode)
        raise RuntimeError(f"DVC stage {stage!r} failed (exit {proc.returncode}) in {repo}:\n{tail}")
    skipped = _skipped(stage, output)
    log.info("stage %s %s in %.1f s", stage, "skipped (unchanged)" if skipped else "ran", seconds)
    return {"stage": stage, "seconds": round(seconds, 3), "skipped": skipped}


def _read_train(repo: Path) -> tuple[int, int]:
    """(train.epochs, train.epochs_per_stage) of ``repo``'s params.yaml, validated as the stages validate it (a
    section left out takes its defaults; a bad value stops the flow naming the key)."""
    from pipeline.config import load_params

    train = load_params(repo / "params.yaml").train
    return train.epochs, train.epochs_per_stage


def training_plan(all_epochs: int, per_stage: int, epochs: int | None = None) -> list[tuple[str, list[int]]]:
    """The training stages to run for ``epochs`` (default: all) epochs of a graph generated for
    ``all_epochs`` and ``per_stage``, each with the epochs whose metrics it completes. Multi-epoch stages
    run whole, so the plan may end past ``epochs`` (at the end of the block holding it)."""
    n = all_epochs if epochs is None else int(epochs)
    if per_stage <= 0:
        return training_stages(n)
    return [(name, done) for name, done in training_stages(all_epochs, per_stage) if done[0] <= n]


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, f"{key}."))
        else:
            out[key] = v
    return out


def _read_metrics(repo: Path, epoch: int) -> dict[str, Any] | None:
    path = repo / metrics_path(epoch)
    if not path.is_file():
        _logger().warning("no metrics for epoch %d at %s; skipping it in the table", epoch, path)
        return None
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        _logger().warning("metrics at %s are not a JSON object; skipping", path)
        return None
    return _flatten(data)


def _publish_report(repo: Path) -> str | None:
    md, html = repo / REPORT_MD, repo / REPORT_HTML
    parts: list[str] = []
    if md.is_file():
        parts.append(md.read_text())
    if html.is_file():
        parts.append(f"HTML report: [{html}]({html.as_uri()})\n\n`{html}`")
    if not parts:
        _logger().warning("no report found at %s or %s", md, html)
        return None
    create_markdown_artifact(
        markdown="\n\n---\n\n".join(parts), key=REPORT_ARTIFACT_KEY, description=f"ERL report for {repo}"
    )
    return str(html if html.is_file() else md)


@flow(name="erl-train")
def erl_train(repo: str = ".", epochs: int | None = None, stage_timeout: float = STAGE_TIMEOUT) -> dict[str, Any]:
    """Run ``init``, then each epoch's stages in order, then ``report``; publish metrics and report.

    ``epochs`` defaults to ``train.epochs`` in ``<repo>/params.yaml``; with ``train.epochs_per_stage`` k >= 1
    the flow runs whole k-epoch stages, so it may stop after a multiple of k past ``epochs``. Returns a summary:
    ``{"repo", "epochs", "stages": {name: {"seconds", "skipped"}}, "metrics": {epoch: {...}},
    "final_metrics", "report"}``. A stage still running after ``stage_timeout`` seconds is killed with every
    process it started, and retried like any failure. One run per workspace, however started: the flow holds
    the workspace lock for its whole run.
    """
    root = Path(repo).resolve()
    with workspace_lock(root):
        return _train(root, epochs, stage_timeout)


def _train(root: Path, epochs: int | None, stage_timeout: float) -> dict[str, Any]:
    plan = training_plan(*_read_train(root), epochs)
    n_epochs = max([e for _, done in plan for e in done], default=0)
    stages: dict[str, dict[str, Any]] = {}
    metrics: dict[int, dict[str, Any]] = {}

    stage = run_stage.with_options(timeout_seconds=stage_timeout)

    def run(name: str) -> None:
        res = stage(name, str(root))
        stages[name] = {"seconds": res["seconds"], "skipped": res["skipped"]}

    run(stage_name("validate"))  # params checked before DVC touches any output
    run(stage_name("init"))
    run(stage_name("evaluate", 0))  # the untrained policy: the baseline row of every curve
    m0 = _read_metrics(root, 0)
    if m0 is not None:
        metrics[0] = m0
    for name, done in plan:
        run(name)
        for e in done:
            m = _read_metrics(root, e)
            if m is not None:
                metrics[e] = m
        if done and metrics:
            rows = [{"epoch": ep, **vals} for ep, vals in sorted(metrics.items())]
            create_table_artifact(
                table=rows, key=METRICS_ARTIFACT_KEY, description=f"ERL metrics per epoch, after epoch {done[-1]}"
            )
    run(stage_name("report"))
    report = _publish_report(root)
    final = metrics[max(metrics)] if metrics else {}
    return {
        "repo": str(root),
        "epochs": n_epochs,
        "stages": stages,
        "metrics": metrics,
        "final_metrics": final,
        "report": report,
    }


def build_deployment(
    repo: str = ".",
    cron: str = "0 3 * * *",
    name: str = "erl-nightly",
    epochs: int | None = None,
    timezone: str | None = None,
    collision_strategy: str = "ENQUEUE",
    stage_timeout: float = STAGE_TIMEOUT,
) -> RunnerDeployment:
    """A cron-scheduled deployment of :func:`erl_train` that allows ONE run at a time.

    The limit is Prefect's deployment concurrency limit (``concurrency_limit=ConcurrencyLimitConfig``),
    enforced by the server when a run goes to Pending: with ``ENQUEUE`` an extra run waits in
    ``Scheduled("AwaitingConcurrencySlot")``, with ``CANCEL_NEW`` it is cancelled. Two runs must never
    share one DVC workspace. Needs no server until it is applied or served.
    """
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.deployments.runner import EntrypointType
    from prefect.schedules import Cron

    params: dict[str, Any] = {"repo": str(Path(repo).resolve()), "stage_timeout": float(stage_timeout)}
    if epochs is not None:
        params["epochs"] = int(epochs)
    deployment = erl_train.to_deployment(
        name=name,
        schedule=Cron(cron, timezone=timezone),
        concurrency_limit=ConcurrencyLimitConfig(
            limit=1, collision_strategy=ConcurrencyLimitStrategy(collision_strategy.upper())
        ),
        parameters=params,
        description="Nightly ERL training: DVC stages epoch by epoch, one run at a time.",
        tags=["erl", "dvc"],
        entrypoint_type=EntrypointType.MODULE_PATH,
    )
    deployment.entrypoint = FLOW_ENTRYPOINT
    return deployment


def _port_taken(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _api_healthy(api_url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{api_url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def local_api(
    port: int = DEFAULT_PORT, start: bool = True, log_path: Path | None = None, own: bool = False
) -> Iterator[str | None]:
    """Yield the Prefect API URL that this process and its flow-run subprocesses share.

    PREFECT_API_URL set: that. Else a Prefect server already answering on 127.0.0.1:``port``: that. Else, with
    ``start``, a ``prefect server start`` child (stopped on exit); without, None (Prefect's temporary
    per-process server, fine for a flow called in this process). With ``own`` (a deployment that must outlive
    whoever started the server), a server already on the port is an error: it would go when its owner exits.
    Prefect freezes its settings at import, so
    the URL goes in through ``temporary_settings`` (copied into each flow-run subprocess's environment) and
    ``os.environ``."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if PREFECT_API_URL.value():
        yield PREFECT_API_URL.value()
        return
    url, proc = f"http://127.0.0.1:{port}/api", None
    if own and _port_taken(port):
        raise RuntimeError(
            f"port {port} is in use (another `erl deploy`, or a Prefect server someone else runs); give --port, "
            f"or to share a server that outlives this one set PREFECT_API_URL={url}"
        )
    if not _api_healthy(url):
        if not start:
            yield None
            return
        log = open(log_path, "ab") if log_path else subprocess.DEVNULL
        proc = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + SERVER_STARTUP_TIMEOUT
        while not _api_healthy(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                _kill_group(proc)
                raise RuntimeError(
                    f"no Prefect server on {url} (`prefect server start` exit {proc.returncode}; "
                    f"port {port} taken? pass --port)"
                )
            time.sleep(0.5)
    saved = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = url
    try:
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield url
    finally:
        if saved is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = saved
        if proc is not None:
            _kill_group(proc, grace=30)


def serve(
    repo: str = ".",
    cron: str = "0 3 * * *",
    name: str = "erl-nightly",
    epochs: int | None = None,
    port: int = DEFAULT_PORT,
    stage_timeout: float = STAGE_TIMEOUT,
) -> None:
    """Register the scheduled deployment and serve it (blocks; Ctrl-C/SIGTERM stops and pauses the schedule).

    Run it from the repository root (or with the project installed): each run is a subprocess that
    imports the flow from the module path ``tools.flows.erl_train`` and reports to the same server.
    """
    from prefect import serve as prefect_serve

    deployment = build_deployment(repo=repo, cron=cron, name=name, epochs=epochs, stage_timeout=stage_timeout)
    with local_api(port=port, own=True) as url:
        print(
            f"Prefect API {url} - UI {url.removesuffix('/api')}; trigger a run with:\n"
            f"  PREFECT_API_URL={url} prefect deployment run erl-train/{name}",
            flush=True,
        )
        # The deployment limit (server side) is the real guard; limit=1 also keeps this runner to one run.
        prefect_serve(deployment, limit=1)


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m tools.flows", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for cmd in ("run", "serve"):
        p = sub.add_parser(cmd)
        p.add_argument("--repo", default=".")
        p.add_argument("--epochs", type=int, default=None)
        p.add_argument("--port", type=int, default=DEFAULT_PORT, help="local Prefect server port")
        p.add_argument(
            "--stage-timeout",
            type=float,
            default=STAGE_TIMEOUT,
            help=f"seconds a stage may run before it is killed and retried (default {STAGE_TIMEOUT:.0f})",
        )
        if cmd == "serve":
            p.add_argument("--cron", default="0 3 * * *")
            p.add_argument("--name", default="erl-nightly")
    a = ap.parse_args(argv)
    if a.cmd == "run":
        with local_api(port=a.port, start=False):  # report to a running `erl deploy` server if there is one
            result = erl_train(repo=a.repo, epochs=a.epochs, stage_timeout=a.stage_timeout)
            print(json.dumps(result, indent=2, default=str))
    else:
        try:
            serve(repo=a.repo, cron=a.cron, name=a.name, epochs=a.epochs, port=a.port, stage_timeout=a.stage_timeout)
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
