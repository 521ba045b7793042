"""Generation over processes (`rollout.processes`): the same generating stage run as 1 and as 2 processes on the
same checkpoint and tasks, with its wall time and whether the two tables are the same.

  python scripts/bench_processes.py                       # the embedded default: evaluate e0, sample e1
  python scripts/bench_processes.py --params presets/smollm2.yaml --stages sample

It builds a throwaway copy of the project (as `erl bench` does), runs `init` once, then for each process count
runs each stage from a fresh copy of init's artifacts, with the command dvc.yaml gives it (`accelerate launch
--num_processes N` for N > 1; on a CPU the processes share the cores, so do not expect N times the speed).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline import graph  # noqa: E402
from pipeline.config import expand, merge  # noqa: E402
from pipeline.envs import with_defaults  # noqa: E402
from tools.bench import make_copy, sandbox_env  # noqa: E402
from tools.diffruns import diff  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--stages", nargs="+", default=["evaluate", "sample"], choices=["sample", "evaluate"])
    ap.add_argument("--processes", nargs="+", type=int, default=[1, 2])
    args = ap.parse_args(argv)
    base = with_defaults(expand(args.params))
    base = merge(base, {"train": {"epochs": 1, "epochs_per_stage": 0}})
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        proj = tmp / "proj"
        make_copy(proj, base)
        env = sandbox_env(proj)
        init_art = tmp / "init-artifacts"
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "stages.init", "--artifacts", init_art], cwd=proj, env=env, check=True)
        print(f"init: {time.perf_counter() - t0:.1f} s", flush=True)
        tables: dict[tuple[str, int], Path] = {}
        for n in args.processes:
            (proj / "params.yaml").write_text(
                yaml.safe_dump(merge(base, {"rollout": {"processes": n}}), sort_keys=False)
            )
            for stage in args.stages:
                epoch = 0 if stage == "evaluate" else 1
                art = tmp / f"{stage}-{n}"
                shutil.copytree(init_art, art)
                cmd = [sys.executable, "-m", "stages." + stage, "--epoch", str(epoch), "--artifacts", str(art)]
                if n > 1:  # dvc.yaml's command (graph.launch), with this interpreter's accelerate
                    launch = [sys.executable, "-m", "accelerate.commands.launch", *graph.launch(n).split()[2:]]
                    cmd = [*launch, "-m", "stages." + stage, "--epoch", str(epoch), "--artifacts", str(art)]
                t0 = time.perf_counter()
                res = subprocess.run(cmd, cwd=proj, env=env, capture_output=True, text=True)
                took = time.perf_counter() - t0
                if res.returncode:
                    print(res.stdout[-2000:] + res.stderr[-3000:])
                    return 1
                tables[(stage, n)] = art
                print(f"{stage} e{epoch}, {n} process{'es' if n > 1 else ''}: {took:.1f} s", flush=True)
        for stage in args.stages:
            one = tables[(stage, args.processes[0])]
            for n in args.processes[1:]:
                d = diff(one, tables[(stage, n)])
                verdict = "identical" if not d else f"differ: {d[:3]}"
                print(f"{stage}: {args.processes[0]} vs {n} processes: {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
