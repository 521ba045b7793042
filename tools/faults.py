"""`erl faults`: kill the pipeline at random points, rerun it, and check that nothing was lost or half-written.

In a throwaway copy of the project on small settings (a few epochs of the tiny model, two per DVC stage), one
uninterrupted `dvc repro` gives the reference. Then each trial starts a fresh `dvc repro` and kills it one way:

  dvc         SIGKILL the `dvc repro` process while a stage runs (its stage must die with it)
  stage       SIGKILL the stage process itself
  write       the stage dies at the n-th table write, between the finished temporary file and its rename
  checkpoint  the stage dies while a checkpoint directory is being put in place
  block       SIGKILL a multi-epoch stage after it finished an epoch (it must resume there)

then checks that no stage process outlived its dvc (a second writer), reruns `dvc repro` to the end and
compares every table's contents and every checkpoint's bytes with the reference (`erl diff`), and counts the
temporary files left under artifacts/. With --loaded the trials run beside a CPU-bound process while the
reference ran without one: the bytes must not depend on the machine's load.

  erl faults --trials 30 --seed 0      # prints one line per trial and a summary by kind
  erl faults --trials 30 --loaded      # the same on a busy machine
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from tools.bench import make_copy, sandbox_env
from tools.diffruns import diff

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("dvc", "stage", "write", "checkpoint", "block")
SMALL = {  # a run of a few seconds per stage: the tiny model, small pools, two epochs per stage
    "env": {"n_train": 40, "n_test": 8},
    "policy": {
        "tiny": {
            "hidden_size": 32,
            "layers": 2,
            "heads": 2,
            "intermediate_size": 64,
            "warmstart_steps": 20,
            "warmstart_batch_size": 16,
            "warmstart_corpus": 1000,
        }
    },
    "sample": {"tasks_per_epoch": 6},
    "evaluate": {"samples_per_task": 1},
    "consolidate": {"skip_zero_advantage": False},
    "train": {"epochs": 4, "epochs_per_stage": 2},
}


def _deep_update(base: dict, over: dict) -> dict:
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _deep_update(base[k], v)
        else:
            base[k] = v
    return base


def _stage_pids(repo: Path) -> list[int]:
    """Processes running a stage of ``repo`` (by their working directory and command line)."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(d / "cwd")
        except OSError:
            continue
        if "-m stages." in cmd and Path(cwd) == repo:
            out.append(int(d.name))
    return out


def _temp_files(art: Path) -> list[Path]:
    return [p for p in art.rglob(".*") if p.name.endswith(".tmp") or ".old-" in p.name]


def _repro(repo: Path, env: dict, log: Path) -> subprocess.Popen:
    """`dvc repro` in ``repo``, its output to ``log`` (not a pipe: a process that outlived dvc would hold a pipe
    open, and waiting for its end would hide it)."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "dvc", "repro"], cwd=repo, env=env, stdout=out, stderr=subprocess.STDOUT
        )


@contextlib.contextmanager
def busy(on: bool = True):
    """A CPU-bound process beside the block (a loaded machine): results must not depend on it."""
    if not on:
        yield
        return
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        hog.kill()
        hog.wait()


def trial(kind: str, rng: random.Random, template: Path, reference: Path, work: Path, loaded: bool = False) -> dict:
    """One kill of ``kind`` in a copy of ``template``, then a full rerun (with ``loaded``, both beside a CPU-bound
    process, while the reference ran without one); what it left."""
    with busy(loaded):
        return _trial(kind, rng, template, reference, work)


def _trial(kind: str, rng: random.Random, template: Path, reference: Path, work: Path) -> dict:
    repo = work / "repo"
    shutil.copytree(template, repo, symlinks=True)
    env = sandbox_env(repo)
    fault = {"write": f"write:{rng.randint(1, 24)}", "checkpoint": f"checkpoint:{rng.randint(1, 4)}"}.get(kind)
    first = _repro(repo, dict(env, ERL_FAULT=fault) if fault else env, work / "first.log")
    killed, when = None, 0.0
    t0 = time.monotonic()
    if kind in ("dvc", "stage", "block"):
        delay = rng.uniform(0.5, 8.0)
        while first.poll() is None:
            pids = _stage_pids(repo)
            ready = pids and time.monotonic() - t0 >= delay
            if kind == "block":  # a block stage with at least one of its epochs finished
                ready = pids and any((repo / "artifacts" / f"epoch_{e:03d}" / "metrics.json").exists() for e in (1, 3))
            if ready:
                target = first.pid if kind == "dvc" else pids[0]
                os.kill(target, signal.SIGKILL)
                killed, when = target, time.monotonic() - t0
                break
            time.sleep(0.05)
    first.wait()
    # The watch inside a stage notices a dead dvc within half a second of arming, and it arms first thing in the
    # stage's main: on a loaded machine a stage may still be importing, so give it time to get there.
    deadline = time.monotonic() + 10.0
    time.sleep(1.5)
    while _stage_pids(repo) and time.monotonic() < deadline:
        time.sleep(0.25)
    orphans = _stage_pids(repo)
    for pid in orphans:
        os.kill(pid, signal.SIGKILL)
    second = _repro(repo, env, work / "rerun.log")
    second.wait()
    out = (work / "rerun.log").read_text(errors="replace")
    art = repo / "artifacts"
    temps = _temp_files(art)
    diffs = diff(reference, art, ("warmstart_seconds",)) if second.returncode == 0 else [("dvc repro", "failed")]
    return {
        "kind": kind,
        "fault": fault or (f"pid {killed} after {when:.1f} s" if killed else "ran to the end"),
        "second_writers": len(orphans),
        "temp_files": len(temps),
        "identical": not diffs,
        "differs": diffs[:3],
        "rerun_rc": second.returncode,
        "rerun_tail": out[-1500:] if second.returncode else "",
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="erl faults", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--trials", type=int, default=30, help="kills to try (default 30), kinds in turn")
    ap.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    ap.add_argument("--seed", type=int, default=0, help="seeds the kill points")
    ap.add_argument("--keep", action="store_true", help="keep the throwaway copies and print where")
    ap.add_argument(
        "--loaded", action="store_true", help="run the trials beside a CPU-bound process (the reference runs idle)"
    )
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="erl-faults-"))
    try:
        params = _deep_update(yaml.safe_load((ROOT / "params.yaml").read_text()), SMALL)
        template = tmp / "template"
        make_copy(template, params)
        ref = tmp / "reference"
        shutil.copytree(template, ref, symlinks=True)
        t0 = time.monotonic()
        res = _repro(ref, sandbox_env(ref), tmp / "reference.log")
        res.wait()
        out = (tmp / "reference.log").read_text(errors="replace")
        if res.returncode != 0:
            print(out[-3000:], file=sys.stderr)
            print("error: the uninterrupted reference run failed", file=sys.stderr)
            return 1
        print(f"reference run: {time.monotonic() - t0:.0f} s", flush=True)
        results = []
        for i in range(args.trials):
            kind = args.kinds[i % len(args.kinds)]
            work = tmp / f"trial{i:02d}"
            work.mkdir()
            r = trial(kind, rng, template, ref / "artifacts", work, loaded=args.loaded)
            results.append(r)
            mark = "identical" if r["identical"] else f"DIFFERS {r['differs']}"
            print(
                f"{i + 1:3d} {kind:<10} {r['fault']:<28} second writers {r['second_writers']}, temp files "
                f"{r['temp_files']}, {mark}",
                flush=True,
            )
            if r["rerun_rc"]:
                print(r["rerun_tail"], file=sys.stderr)
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)
        print(f"\n{'kind':<12}{'kills':>6}{'identical':>11}{'temp files':>12}{'second writers':>16}")
        for kind in args.kinds + ["all"]:
            rs = [r for r in results if kind in ("all", r["kind"])]
            if rs:
                print(
                    f"{kind:<12}{len(rs):>6}{sum(r['identical'] for r in rs):>11}{sum(r['temp_files'] for r in rs):>12}"
                    f"{sum(r['second_writers'] for r in rs):>16}"
                )
        bad = [r for r in results if not r["identical"] or r["temp_files"] or r["second_writers"]]
        return 1 if bad else 0
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
