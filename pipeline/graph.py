"""The DVC graph of a run, built from its params: DVC has no loops, so epochs are unrolled into per-epoch stages
and ``train.epochs`` stays the single place the number of epochs is set. `erl dvc-yaml` writes it to dvc.yaml;
the validate stage (and a test) refuse a dvc.yaml that is out of step with params.yaml.

Each stage depends on the source files it imports for the environment in use (pipeline/codedeps.py), the files
it reads and the params it reads (each stage module's KEYS, read from its source), so `dvc repro` reruns exactly what a change
affects; every stage also depends on the validate stage's output, so params are checked before DVC removes any
stage's outputs. The graph's shape depends on ``train.epochs``, ``train.epochs_per_stage`` (0: seven one-step
stages per epoch; k: one stage per k epochs, run by stages/epochs.py in one process, with the same artifacts)
and ``env.name`` (its code, and the files its class names: the data init reads and what it builds for the stages
that step the environment, such as the QA search index). No torch here."""

from __future__ import annotations

import ast
from pathlib import Path

import yaml

from pipeline import codedeps, layout
from pipeline.config import Params, union_keys

HEADER = "# Generated from params.yaml by `erl dvc-yaml` for {shape}; do not edit by hand.\n"
REPORT_OUTS = ["reports/report.md", "reports/report.html", "reports/success.png", "reports/training.png"]
VALIDATED = layout.ARTIFACTS / "validated.txt"


def shape(p: Params) -> str:
    """The params that decide which stages exist and what they read, as dvc.yaml's header names them."""
    parts = [
        f"train.epochs={p.train.epochs}",
        f"train.epochs_per_stage={p.train.epochs_per_stage}",
        f"env.name={p.env.name}",
    ]
    data, built, _ = _env_files(p)
    if data or built:
        parts.append(f"env files={','.join(map(_p, [*data, *built]))}")
    u, defaults = p.update, type(p.update)()
    for key in ("launcher", "accelerate_config", "keep_every", "carry_optimizer_state"):  # named when not default
        if getattr(u, key) != getattr(defaults, key):
            parts.append(f"update.{key}={getattr(u, key)}")
    if p.evaluate.every != type(p.evaluate)().every:
        parts.append(f"evaluate.every={p.evaluate.every}")
    if p.rollout.processes > 1:
        parts.append(f"rollout.processes={p.rollout.processes}")
    return ", ".join(parts)


def _p(path: Path) -> str:
    return path.as_posix()


def stage_keys(stage: str) -> tuple[str, ...]:
    """The params ``stages/<stage>.py`` reads: its ``KEYS`` literal, read from the source without importing the
    stage (so building the graph runs no stage code); the epochs stage reads what the steps it runs read."""
    if stage == "epochs":
        return union_keys(*(stage_keys(s) for s in layout.EPOCH_STAGES))
    path = codedeps.module_file(f"stages.{stage}")
    for node in ast.parse(path.read_text(), filename=str(path)).body:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "KEYS" for t in targets):
                return tuple(ast.literal_eval(node.value))
    raise ValueError(f"{path}: no KEYS = (...) literal naming the params the stage reads")


def _stage(script: str, cmd: str, env: str, deps: list[Path], outs: list[Path], metrics=()) -> dict:
    code = codedeps.stage_files(script, env)
    spec = {
        "cmd": cmd,
        "deps": list(dict.fromkeys(code + [_p(VALIDATED)] + [_p(d) for d in deps])),  # epoch 1: prev = init
        "params": list(stage_keys(script)),
        "outs": [_p(o) for o in outs],
    }
    if metrics:
        spec["metrics"] = [{_p(m): {"cache": False}} for m in metrics]
    return spec


GENERATING = ("sample", "reflect", "retry", "evaluate")


def launch(processes: int) -> str:
    """How a stage of ``processes`` processes starts: `accelerate launch` (gloo on CPUs, a GPU each on GPUs)."""
    if processes <= 1:
        return "python"
    return (
        f"accelerate launch --multi_gpu --num_processes {processes} --num_machines 1 --mixed_precision no "
        "--dynamo_backend no"
    )


def _step(
    stage: str, epoch: int | None, env: str, deps: list[Path], outs: list[Path], metrics=(), processes: int = 1
) -> dict:
    run = launch(processes if stage in GENERATING else 1)
    cmd = f"{run} -m stages.{stage}" + (f" --epoch {epoch}" if epoch is not None else "")
    return _stage(stage, cmd, env, deps, outs, metrics)


def _tables(e: int) -> dict[str, Path]:
    return {n: layout.table_path(n, e) for n in layout.TABLES}


def _checkpoint_outs(p: Params, e: int) -> list[Path]:
    """What an epoch's update writes: the manifest always; the weights and train state when they are retained
    (update.keep_every); a non-retained checkpoint is deleted two epochs later and only its manifest is tracked."""
    outs = [layout.checkpoint_path(e)]
    if p.retained(e):
        outs.append(layout.policy_dir(e))
        if p.update.carry_optimizer_state:
            outs.append(layout.state_dir(e))
    return outs


def _update_cmd(p: Params, e: int) -> str:
    if p.update.launcher == "python":
        return f"python -m stages.update --epoch {e}"
    config = f" --config_file {p.update.accelerate_config}" if p.update.accelerate_config else ""
    return f"accelerate launch{config} -m stages.update --epoch {e}"


def _evaluate_deps(p: Params, e: int, te: Path, env_deps: list[Path]) -> list[Path]:
    """Held-out evaluation reads the checkpoint, the initial one (the KL) and the test tasks only in the epochs it
    runs (evaluate.every); every epoch's metrics read its training tables."""
    held_out = [layout.checkpoint_path(e), layout.checkpoint_path(0), te] + env_deps if p.evaluated(e) else []
    t = _tables(e)
    return held_out + [t[n] for n in ("feedback", "reflections", "retries", "memory", "samples", "steps")]


def _epoch_steps(p: Params, e: int, env: str, tr: Path, te: Path, env_deps: list[Path]) -> dict:
    """The seven one-step stages of epoch ``e`` (``train.epochs_per_stage: 0``)."""
    t = _tables(e)
    prev, prev_mem = layout.checkpoint_path(e - 1), layout.epoch_dir(e - 1) / "memory.parquet"
    name, n = layout.stage_name, p.rollout.processes
    update = _stage(
        "update",
        _update_cmd(p, e),
        env,
        [prev, layout.checkpoint_path(0), tr, t["samples"]] + env_deps,  # tasks, environment files: the replay
        _checkpoint_outs(p, e) + [t["updates"], t["steps"]],
    )
    return {
        name("sample", e): _step("sample", e, env, [prev, tr] + env_deps, [t["attempts"]], processes=n),
        name("feedback", e): _step("feedback", e, env, [t["attempts"]], [t["feedback"]]),
        name("reflect", e): _step("reflect", e, env, [prev, t["feedback"], prev_mem], [t["reflections"]], processes=n),
        name("retry", e): _step(
            "retry", e, env, [prev, tr, t["feedback"], t["reflections"]] + env_deps, [t["retries"]], processes=n
        ),
        name("consolidate", e): _step(
            "consolidate",
            e,
            env,
            [t["attempts"], t["feedback"], t["reflections"], t["retries"], prev_mem],
            [t["samples"], t["memory"]],
        ),
        name("update", e): update,
        name("evaluate", e): _step(
            "evaluate",
            e,
            env,
            _evaluate_deps(p, e, te, env_deps),
            [t["eval"], t["eval_retries"]],
            [layout.metrics_path(e)],
            processes=n,
        ),
    }


def _block(p: Params, a: int, b: int, env: str, tr: Path, te: Path, env_deps: list[Path]) -> dict:
    """One stage running epochs ``a``..``b`` in one process (``train.epochs_per_stage`` >= 1): it reads what
    epoch ``a``'s steps read from outside the block and writes every artifact of its epochs."""
    outs: list[Path] = []
    for e in range(a, b + 1):
        outs += list(_tables(e).values()) + _checkpoint_outs(p, e)
    deps = [
        layout.checkpoint_path(a - 1),
        layout.checkpoint_path(0),
        tr,
        te,
        layout.epoch_dir(a - 1) / "memory.parquet",
    ]
    spec = _stage(
        "epochs",
        f"{launch(p.rollout.processes)} -m stages.epochs --first {a} --last {b}",
        env,
        deps + env_deps,
        outs,
        [layout.metrics_path(e) for e in range(a, b + 1)],
    )
    # DVC would delete a stage's outputs before running it; kept, they let a killed block resume at the epoch it
    # died in (stages/epochs.py checks each epoch's lineage and redoes what is not current).
    spec["outs"] = [{o: {"persist": True}} for o in spec["outs"]]
    spec["metrics"] = [{m: {"cache": False, "persist": True}} for entry in spec["metrics"] for m in entry]
    return spec


def _env_files(p: Params) -> tuple[list[Path], list[Path], list[Path]]:
    """(extra init deps, extra init outs, extra deps of the stages that step the environment): the data files the
    environment's class names for its settings, and the files init builds for it (under the artifact root)."""
    from pipeline.envs import find, params_of

    cls = find(p.env.name)
    settings = params_of(p.env, cls)
    built = [Path(f) for f in cls.built_files(settings, layout.ARTIFACTS)]
    return [Path(f) for f in cls.data_files(settings)], built, built


def build(p: Params) -> dict:
    """The stages and plots of dvc.yaml for params ``p``."""
    env, epochs = p.env.name, p.train.epochs
    init = layout.epoch_dir(0)
    tr, te = init / "tasks_train.parquet", init / "tasks_test.parquet"
    init_deps, init_outs, env_deps = _env_files(p)
    validate = _step("validate", None, env, [], [VALIDATED])
    # What validate compares dvc.yaml with also depends on the KEYS the stage scripts declare (read as text above),
    # so a change of them reruns it. An import added to a library file without `erl dvc-yaml` is caught where it
    # matters instead: the stage that runs the file exits naming it (stagekit.script).
    scripts = [f"stages/{s}.py" for s in layout.STAGES]
    validate["deps"] = list(dict.fromkeys([d for d in validate["deps"] if d != _p(VALIDATED)] + scripts)) + [
        "params.yaml"
    ]
    stages = {
        "validate": validate,
        "init": _step(
            "init",
            None,
            env,
            init_deps,
            [tr, te, init / "memory.parquet", layout.policy_dir(0), layout.checkpoint_path(0), init / "init.json"]
            + init_outs,
        ),
        layout.stage_name("evaluate", 0): _step(
            "evaluate",
            0,
            env,
            [layout.checkpoint_path(0), te] + env_deps,
            [init / "eval.parquet"],
            [layout.metrics_path(0)],
            processes=p.rollout.processes,
        ),
    }
    per_stage = p.train.epochs_per_stage
    if per_stage <= 0:
        for e in range(1, epochs + 1):
            stages.update(_epoch_steps(p, e, env, tr, te, env_deps))
    else:
        for a, b in layout.epoch_blocks(epochs, per_stage):
            stages[layout.block_name(a, b)] = _block(p, a, b, env, tr, te, env_deps)
    report = _step(
        "report",
        None,
        env,
        [layout.metrics_path(e) for e in range(0, epochs + 1)]
        + [layout.epoch_dir(e) / f"{n}.parquet" for e in range(1, epochs + 1) for n in ("reflections", "samples")],
        [],
    )
    report["outs"] = [{o: {"cache": False}} for o in REPORT_OUTS]
    report["metrics"] = [{"reports/metrics.json": {"cache": False}}]
    report["plots"] = [{"reports/history.csv": {"cache": False}}]
    stages["report"] = report
    plots = [
        {
            "held-out and training success": {
                "x": "epoch",
                "y": {"reports/history.csv": ["eval_success", "train_pre_success", "train_post_success"]},
                "y_label": "success rate",
            }
        },
        {
            "reflections and memory": {
                "x": "epoch",
                "y": {"reports/history.csv": ["reflections", "reflections_with_note", "memory_adopted"]},
            }
        },
        {"KL to the initial policy": {"x": "epoch", "y": {"reports/history.csv": ["eval_kl"]}}},
        {"update": {"x": "epoch", "y": {"reports/history.csv": ["update_loss"]}}},
    ]
    out = {"stages": stages, "plots": plots}
    if "dvclive" in p.train.trackers:  # live metrics of the running experiment (pipeline/live.py)
        live_metrics, live_plots = live_entries()
        out = {"metrics": live_metrics, **out, "plots": plots + live_plots}
    return out


def live_entries() -> tuple[list, list]:
    """Top-level metrics and plots of dvc.yaml for the DVCLive folders pipeline/live.py writes."""
    from pipeline.live import LIVE_DIR, STREAMS

    return (
        [(LIVE_DIR / s / "metrics.json").as_posix() for s in STREAMS],
        [{(LIVE_DIR / s / "plots" / "metrics").as_posix(): {"x": "step"}} for s in STREAMS],
    )


def render(p: Params) -> str:
    """dvc.yaml's text for params ``p``."""
    return HEADER.format(shape=shape(p)) + yaml.safe_dump(build(p), sort_keys=False, width=120)


def generated_for(text: str) -> str | None:
    """The params shape a dvc.yaml's header names (None when it has no such header)."""
    first = text.split("\n", 1)[0]
    head, _, rest = first.partition(" for ")
    return rest.rsplit("; do not edit", 1)[0] if rest and head.startswith("# Generated") else None
