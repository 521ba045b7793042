"""`erl dvc-yaml`: write dvc.yaml from params.yaml (pipeline/graph.py builds it), or --check that it is current.
`erl exp run -S key=value ...`: the same for an experiment, then `dvc exp run` (a change of train.epochs,
train.epochs_per_stage or env.name changes the graph, which plain `dvc exp run -S` cannot do)."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from pipeline import graph
from pipeline.config import ParamsError, check_expanded, load_params


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="erl dvc-yaml", description="Write (or --check) dvc.yaml from params.yaml.")
    ap.add_argument("--params", default="params.yaml", help="parameter file (default: params.yaml)")
    ap.add_argument("--out", default="dvc.yaml", help="where to write (default: dvc.yaml)")
    ap.add_argument("--check", action="store_true", help="exit 1 if the file differs from what params.yaml gives")
    args = ap.parse_args(argv)
    try:
        check_expanded(args.params)
        params = load_params(args.params)
    except ParamsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    what = graph.shape(params)
    text, out = graph.render(params), Path(args.out)
    if args.check:
        if not out.exists() or out.read_text() != text:
            print(f"{out} is out of step with {args.params} ({what}); run `erl dvc-yaml`", file=sys.stderr)
            return 1
        print(f"{out} matches {args.params} ({what})")
        return 0
    out.write_text(text)
    print(f"wrote {out} for {what}")
    return 0


def exp_run(argv=None) -> int:
    """`erl exp run [-S key=value ...] [dvc exp run options]`: regenerate dvc.yaml for params.yaml with the -S
    overrides applied, then hand every argument to `dvc exp run`, which applies the overrides itself."""
    ap = argparse.ArgumentParser(
        prog="erl exp run",
        description="Run a DVC experiment whose overrides may change the graph (train.epochs, "
        "train.epochs_per_stage, env.name): dvc.yaml is regenerated for the overridden params first, then every "
        "argument goes to `dvc exp run`.",
    )
    ap.add_argument(
        "-S",
        "--set-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a params.yaml override, as for `dvc exp run -S` (repeatable)",
    )
    args, rest = ap.parse_known_args(argv)
    from dvc.utils.hydra import apply_overrides

    with tempfile.TemporaryDirectory() as tmp:
        trial = Path(tmp) / "params.yaml"
        shutil.copy("params.yaml", trial)
        try:
            apply_overrides(
                str(trial), [s.split(":", 1)[1] if s.startswith("params.yaml:") else s for s in args.set_param]
            )
        except Exception as exc:  # DVC's own parser: a malformed override names itself
            print(f"error: -S: {exc}", file=sys.stderr)
            return 2
        try:
            params = load_params(trial)
        except ParamsError as exc:
            print(f"error: {str(exc).replace(str(trial), 'params.yaml with the overrides')}", file=sys.stderr)
            return 2
    Path("dvc.yaml").write_text(graph.render(params))
    print(f"wrote dvc.yaml for {graph.shape(params)}", flush=True)
    cmd = [sys.executable, "-m", "dvc", "exp", "run"] + [x for s in args.set_param for x in ("-S", s)] + rest
    return subprocess.run(cmd, env=dict(os.environ, DVC_NO_ANALYTICS="1")).returncode


if __name__ == "__main__":
    raise SystemExit(main())
