"""`erl bench`: run every stage of a small pipeline one at a time through `dvc repro --single-item` in a
throwaway copy of this project, and print per-stage wall time split into DVC overhead, process start-up
(imports, params) and the stage's own work. Run it alone: two torch processes on 2 cores slow each other."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from pipeline import layout
from pipeline.config import load_params

ROOT = Path(__file__).resolve().parent.parent
TIMING = re.compile(r"timing: process ([\d.]+) s, work ([\d.]+) s")


def stage_order(epochs: int, per_stage: int = 0) -> list[str]:
    names = ["validate", "init", layout.stage_name("evaluate", 0)]
    names += [name for name, _ in layout.training_stages(epochs, per_stage)]
    return names + ["report"]


def make_copy(dst: Path, params: dict) -> None:
    for sub in ("pipeline", "stages", "tools"):
        shutil.copytree(ROOT / sub, dst / sub, ignore=shutil.ignore_patterns("__pycache__"))
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = dict(os.environ, PYTHONPATH=str(dst))
    subprocess.run([sys.executable, "-m", "tools.dvcgen"], cwd=dst, check=True, env=env, capture_output=True)
    for cmd in (
        ["git", "init", "-q"],
        [sys.executable, "-m", "dvc", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=bench", "-c", "user.email=b@b", "commit", "-qm", "bench"],
    ):
        subprocess.run(cmd, cwd=dst, check=True, env=env, capture_output=True)


def sandbox_env(root: Path) -> dict:
    """Environment for running stages in a sandbox copy: offline, its code first, this interpreter's tools."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", DVC_NO_ANALYTICS="1", PYTHONPATH=str(root))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def repro_one(name: str, root: Path, env: dict) -> tuple[subprocess.CompletedProcess, float]:
    """`dvc repro --single-item <name>` in ``root``; the finished process and its wall seconds."""
    t0 = time.perf_counter()
    res = subprocess.run(
        [sys.executable, "-m", "dvc", "repro", "--single-item", name], cwd=root, env=env, capture_output=True, text=True
    )
    return res, time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="erl bench", description=__doc__)
    ap.add_argument("--params", default="params.yaml", help="parameters to run with (default: params.yaml)")
    ap.add_argument("--epochs", type=int, default=None, help="override train.epochs (default: as in --params)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary project and print its path")
    args = ap.parse_args(argv)
    params = yaml.safe_load(Path(args.params).read_text()) or {}
    if args.epochs is not None:
        params.setdefault("train", {})["epochs"] = args.epochs
    train = load_params(args.params).train
    epochs = train.epochs if args.epochs is None else args.epochs
    tmp = Path(tempfile.mkdtemp(prefix="erl-bench-"))
    env = sandbox_env(tmp)
    try:
        make_copy(tmp, params)
        rows = []
        print(f"{'stage':<16}{'wall s':>9}{'dvc s':>9}{'start-up s':>12}{'work s':>9}", flush=True)
        for name in stage_order(epochs, train.epochs_per_stage):
            res, wall = repro_one(name, tmp, env)
            if res.returncode != 0:
                print(res.stdout[-3000:], res.stderr[-3000:], file=sys.stderr)
                print(f"error: stage {name} failed", file=sys.stderr)
                return 1
            m = TIMING.search(res.stdout + res.stderr)
            proc, work = (float(m.group(1)), float(m.group(2))) if m else (wall, wall)
            rows.append((name, wall, wall - proc, proc - work, work))
            print(f"{name:<16}{wall:>9.1f}{wall - proc:>9.1f}{proc - work:>12.1f}{work:>9.1f}", flush=True)
        tot = [sum(r[i] for r in rows) for i in range(1, 5)]
        print(f"{'total':<16}{tot[0]:>9.1f}{tot[1]:>9.1f}{tot[2]:>12.1f}{tot[3]:>9.1f}")
        print(
            f"overhead share: DVC {tot[1] / tot[0]:.1%}, process start-up {tot[2] / tot[0]:.1%}, "
            f"work {tot[3] / tot[0]:.1%}"
        )
        t0 = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import torch, accelerate; from transformers import LlamaForCausalLM, AutoTokenizer, DynamicCache",
            ],
            env=env,
            check=True,
        )
        imp = time.perf_counter() - t0
        n_model = sum(1 for r in rows if not r[0].startswith(("feedback", "consolidate", "report")))
        print(
            f"importing torch + transformers + accelerate: {imp:.1f} s per model stage, counted in 'work' above; "
            f"x {n_model} model stages = {imp * n_model:.0f} s ({imp * n_model / tot[0]:.1%} of the total)"
        )
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=tmp, env=env, capture_output=True, check=True)
        print(f"no-op `dvc repro` of {len(rows)} stages: {time.perf_counter() - t0:.1f} s")
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
