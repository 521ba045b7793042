"""dvc.yaml, generated from params.yaml: DVC has no loops, so epochs are unrolled into per-epoch stages and
``train.epochs`` stays the single place the number of epochs is set. ``erl dvc-yaml --check`` (and a
test) fail when dvc.yaml is out of step with params.yaml.

Each stage depends on its own script, the pipeline/ package, the files it reads and the params sections
it reads (each stage module's KEYS), so `dvc repro` reruns exactly what a change affects. The graph depends
on ``train.epochs``; on ``train.epochs_per_stage`` (0: seven one-step stages per epoch; k: one stage per k
epochs, run by stages/epochs.py in one process, with the same artifacts); and, for environments with files
of their own, on ``env.name``: with ``qa`` init also writes the search index (and reads
``env.qa.hotpot_path`` when set), and the stages that step the environment depend on the index.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import yaml

from pipeline import dag
from pipeline.config import ParamsError, load_params

HEADER = "# Generated from params.yaml by `erl dvc-yaml`; do not edit by hand (a test checks it is current).\n"
REPORT_OUTS = ["reports/report.md", "reports/report.html", "reports/success.png", "reports/training.png"]


def _p(path: Path) -> str:
    return path.as_posix()


def _keys(stage: str) -> list[str]:
    return list(importlib.import_module(f"stages.{stage}").KEYS)


def _stage(stage: str, epoch: int | None, deps: list[Path], outs: list[Path], metrics: list[Path] = ()) -> dict:
    cmd = f"python -m stages.{stage}" + (f" --epoch {epoch}" if epoch is not None else "")
    spec = {
        "cmd": cmd,
        "deps": list(dict.fromkeys([f"stages/{stage}.py", "pipeline"] + [_p(d) for d in deps])),  # epoch 1: prev = init
        "params": _keys(stage),
        "outs": [_p(o) for o in outs],
    }
    if metrics:
        spec["metrics"] = [{_p(m): {"cache": False}} for m in metrics]
    return spec


def _tables(e: int) -> dict[str, Path]:
    d = dag.epoch_dir(e)
    return {n: d / f"{n}.parquet" for n in ("attempts", "feedback", "reflections", "retries", "samples", "memory",
                                           "updates", "steps", "eval")}


def _epoch_steps(e: int, tr: Path, te: Path, env_deps: list[Path]) -> dict:
    """The seven one-step stages of epoch ``e`` (``train.epochs_per_stage: 0``)."""
    stages = {}
    t = _tables(e)
    prev_pol, pol, prev_mem = dag.policy_dir(e - 1), dag.policy_dir(e), dag.epoch_dir(e - 1) / "memory.parquet"
    stages[dag.stage_name("sample", e)] = _stage("sample", e, [prev_pol, tr] + env_deps, [t["attempts"]])
    stages[dag.stage_name("feedback", e)] = _stage("feedback", e, [t["attempts"]], [t["feedback"]])
    stages[dag.stage_name("reflect", e)] = _stage("reflect", e, [prev_pol, t["feedback"], prev_mem], [t["reflections"]])
    stages[dag.stage_name("retry", e)] = _stage("retry", e, [prev_pol, tr, t["feedback"], t["reflections"]] + env_deps,
                                               [t["retries"]])
    stages[dag.stage_name("consolidate", e)] = _stage(
        "consolidate", e, [t["attempts"], t["feedback"], t["reflections"], t["retries"], prev_mem],
        [t["samples"], t["memory"]],
    )
    stages[dag.stage_name("update", e)] = _stage("update", e, [prev_pol, dag.policy_dir(0), tr, t["samples"]] + env_deps,
                                                [pol, t["updates"], t["steps"]])  # tasks, env files: the replay
    stages[dag.stage_name("evaluate", e)] = _stage(
        "evaluate", e,
        [pol, dag.policy_dir(0), te] + [t[n] for n in ("feedback", "reflections", "retries", "memory", "samples", "steps")]
        + env_deps,
        [t["eval"]], [dag.metrics_path(e)],
    )
    return stages


def _block(a: int, b: int, tr: Path, te: Path, env_deps: list[Path]) -> dict:
    """One stage running epochs ``a``..``b`` in one process (``train.epochs_per_stage`` >= 1): it reads what
    epoch ``a``'s steps read from outside the block and writes every artifact of its epochs."""
    outs: list[Path] = []
    for e in range(a, b + 1):
        t = _tables(e)
        outs += [t[n] for n in ("attempts", "feedback", "reflections", "retries", "samples", "memory", "updates",
                                "steps", "eval")] + [dag.policy_dir(e)]
    spec = {
        "cmd": f"python -m stages.epochs --first {a} --last {b}",
        "deps": list(dict.fromkeys(  # the first block's previous policy is the initial one: list it once
            ["stages/epochs.py"] + [f"stages/{s}.py" for s in dag.EPOCH_STAGES] + ["pipeline"]
            + [_p(d) for d in [dag.policy_dir(a - 1), dag.policy_dir(0), tr, te, dag.epoch_dir(a - 1) / "memory.parquet"]
               + env_deps])),
        "params": _keys("epochs"),
        "outs": [_p(o) for o in outs],
        "metrics": [{_p(dag.metrics_path(e)): {"cache": False}} for e in range(a, b + 1)],
    }
    return spec


def _env_files(params) -> tuple[list[Path], list[Path], list[Path]]:
    """(extra init deps, extra init outs, extra deps of the stages that step the environment) of the
    environment ``params`` names; none for the grid games."""
    if params is None or params.env.name != "qa":
        return [], [], []
    index = dag.qa_index_path()
    data = [Path(params.env.qa.hotpot_path)] if params.env.qa.hotpot_path else []
    return data, [index], [index]


def build(epochs: int, params=None) -> dict:
    """The stages of ``epochs`` epochs; ``params`` (a config.Params) adds the files of its environment."""
    init = dag.epoch_dir(0)
    tr, te = init / "tasks_train.parquet", init / "tasks_test.parquet"
    init_deps, init_outs, env_deps = _env_files(params)
    stages = {
        "init": _stage("init", None, init_deps,
                       [tr, te, init / "memory.parquet", dag.policy_dir(0), init / "init.json"] + init_outs),
        dag.stage_name("evaluate", 0): _stage(
            "evaluate", 0, [dag.policy_dir(0), te] + env_deps, [init / "eval.parquet"], [dag.metrics_path(0)]
        ),
    }
    per_stage = params.train.epochs_per_stage if params is not None else 0
    if per_stage <= 0:
        for e in range(1, epochs + 1):
            stages.update(_epoch_steps(e, tr, te, env_deps))
    else:
        for a, b in dag.epoch_blocks(epochs, per_stage):
            stages[dag.block_name(a, b)] = _block(a, b, tr, te, env_deps)
    report = _stage(
        "report", None,
        [dag.metrics_path(e) for e in range(0, epochs + 1)]
        + [dag.epoch_dir(e) / f"{n}.parquet" for e in range(1, epochs + 1) for n in ("reflections", "samples")],
        [],
    )
    report["outs"] = [{o: {"cache": False}} for o in REPORT_OUTS]
    report["metrics"] = [{"reports/metrics.json": {"cache": False}}]
    report["plots"] = [{"reports/history.csv": {"cache": False}}]
    stages["report"] = report
    plots = [
        {"held-out and training success": {"x": "epoch", "y": {"reports/history.csv": [
            "eval_success", "train_pre_success", "train_post_success"]}, "y_label": "success rate"}},
        {"reflections and memory": {"x": "epoch", "y": {"reports/history.csv": [
            "reflections", "reflections_with_note", "memory_adopted"]}}},
        {"KL to the initial policy": {"x": "epoch", "y": {"reports/history.csv": ["eval_kl"]}}},
        {"update": {"x": "epoch", "y": {"reports/history.csv": ["update_loss"]}}},
    ]
    return {"stages": stages, "plots": plots}


def render(epochs: int, params=None) -> str:
    return HEADER + yaml.safe_dump(build(epochs, params), sort_keys=False, width=120)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="erl dvc-yaml", description="Write (or --check) dvc.yaml from params.yaml.")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", default="dvc.yaml")
    ap.add_argument("--check", action="store_true", help="exit 1 if the file differs from what params.yaml gives")
    args = ap.parse_args(argv)
    try:
        params = load_params(args.params)
    except ParamsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    epochs = params.train.epochs
    what = (f"train.epochs={epochs}, train.epochs_per_stage={params.train.epochs_per_stage}, "
            f"env.name={params.env.name}")
    text, out = render(epochs, params), Path(args.out)
    if args.check:
        if not out.exists() or out.read_text() != text:
            print(f"{out} is out of step with {args.params} ({what}); run `erl dvc-yaml`", file=sys.stderr)
            return 1
        print(f"{out} matches {args.params} ({what})")
        return 0
    out.write_text(text)
    print(f"wrote {out} for {what}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
