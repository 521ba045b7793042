"""End-to-end smoke runs: the real `dvc repro` in a temporary Git repository on tiny settings. Checks that
every table exists with its schema, the ids join across tables, lineage hashes hold, the checkpoint reloads
with AutoModelForCausalLM, and a second `dvc repro` does no work."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
from e2e_util import ROOT, dvc, make_project, run

from pipeline import layout
from pipeline.artifacts import read_lineage, read_table, sha256_dir, sha256_path, write_table

pytestmark = pytest.mark.slow
TABLES = ("attempts", "feedback", "reflections", "retries", "samples", "memory", "updates", "steps", "eval")


@pytest.fixture(scope="module")
def erl_run(tmp_path_factory):
    # a cosine lr over the two epochs: the steps table must show the scheduled lr of each epoch; two guided
    # retries per reflection, one plain control beside the first
    repo = make_project(
        tmp_path_factory.mktemp("erl"),
        {"update": {"lr_decay_epochs": 2, "lr_final": 0.5}, "retry": {"samples": 2}},
    )
    res = dvc(repo, "repro", check=False)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    return repo


def tables(repo, epoch):
    return {n: read_table(n, repo / layout.epoch_dir(epoch) / f"{n}.parquet").to_pandas() for n in TABLES}


def test_every_table_exists_and_ids_join(erl_run):
    repo = erl_run
    for e in (1, 2):
        t = tables(repo, e)
        att, fb, refl, ret, smp, upd = (
            t["attempts"],
            t["feedback"],
            t["reflections"],
            t["retries"],
            t["samples"],
            t["updates"],
        )
        assert len(att) == 6 * 4 and set(fb.rollout_id) == set(att.rollout_id)
        failed = set(fb.rollout_id[fb.reward < 1.0])
        assert set(refl.rollout_id) == failed, "one reflection per failed first attempt"
        assert set(ret.reflection_id) == set(refl.reflection_id)
        assert (ret.groupby("reflection_id").size() == 2).all() and ret.retry_id.is_unique
        first = ret.retry_id.str.endswith("-retry")
        assert ret.control_success[first].notna().all() and ret.control_success[~first].isna().all()
        assert set(ret.rollout_id) <= set(att.rollout_id)
        kinds = set(smp.kind)
        assert {"first", "reflection", "second"} <= kinds
        assert set(smp.rollout_id) <= set(att.rollout_id)
        assert set(smp.reflection_id.dropna()) <= set(refl.reflection_id)
        assert set(smp.retry_id.dropna()) <= set(ret.retry_id)
        assert set(upd.sample_id) == set(smp.sample_id), "every sample entered the update, once per ppo epoch"
        assert upd.loss.notna().all() and (upd.n_tokens > 0).all()
        # update -> checkpoint hashes
        assert set(upd.checkpoint_sha256) == {sha256_dir(repo / layout.policy_dir(e))}
        assert set(upd.parent_sha256) == {sha256_dir(repo / layout.policy_dir(e - 1))}
        mem = t["memory"]
        assert set(mem.reflection_id) <= set().union(
            *[set(tables(repo, k)["reflections"].reflection_id) for k in range(1, e + 1)]
        )
        # a reflection -> the update it fed, through SQL-like joins
        chain = refl.merge(smp, on="reflection_id", suffixes=("", "_s")).merge(upd, on="sample_id")
        assert len(chain) >= len(refl)
        assert len(t["eval"]) == 12


def test_lineage_footers_match_inputs(erl_run):
    repo = erl_run
    for e in (1, 2):
        for n in TABLES:
            meta = read_lineage(repo / layout.epoch_dir(e) / f"{n}.parquet")
            assert meta["epoch"] == e and meta["code"]["code_sha256"]
            assert {"python", "torch", "transformers"} <= set(meta["code"]["packages"])
            for path, digest in meta["inputs"].items():
                assert sha256_path(repo / path) == digest, f"{n}@{e}: {path} changed since it was read"
    assert read_lineage(repo / layout.epoch_dir(1) / "samples.parquet")["params"]["algorithm"] == "erl"


def test_checkpoint_reloads_and_policy_changed(erl_run):
    import torch
    from transformers import AutoModelForCausalLM

    repo = erl_run
    m0 = AutoModelForCausalLM.from_pretrained(repo / layout.policy_dir(0))
    m2 = AutoModelForCausalLM.from_pretrained(repo / layout.policy_dir(2))
    diff = sum(float((a - b).detach().abs().sum()) for a, b in zip(m0.parameters(), m2.parameters()))
    assert diff > 0
    assert not list((repo / layout.policy_dir(2)).glob("*.bin"))
    for e in (0, 1, 2):  # what vLLM globs in a policy directory: model weights only
        assert [p.name for p in (repo / layout.policy_dir(e)).glob("*.safetensors")] == ["model.safetensors"]
    assert (repo / layout.state_dir(2) / "optimizer.safetensors").is_file()
    m = json.loads((repo / layout.metrics_path(2)).read_text())
    assert m["update_kl"] is not None and m["update_kl"] >= 0 and m["reflections"] > 0
    assert torch.isfinite(torch.tensor(m["update_loss"]))


def test_update_follows_the_lr_schedule(erl_run):
    from pipeline.config import load_params

    u = load_params(erl_run / "params.yaml").update
    for e in (1, 2):
        lrs = set(tables(erl_run, e)["steps"]["lr"].round(12))
        assert lrs == {round(u.lr_at(e), 12)}, (e, lrs)
    assert u.lr_at(2) == pytest.approx(u.lr / 2)


def test_reports_and_metrics(erl_run):
    repo = erl_run
    hist = pd.read_csv(repo / "reports" / "history.csv")
    assert list(hist.epoch) == [0, 1, 2]
    for f in ("report.md", "report.html", "success.png", "training.png", "metrics.json"):
        assert (repo / "reports" / f).stat().st_size > 0
    shown = dvc(repo, "metrics", "show", "--json").stdout
    assert "eval_success" in shown


def test_reflection_probe_rebuilds_the_traces_the_feedback_came_from(erl_run, capsys):
    import importlib.util

    from pipeline.config import load_params
    from pipeline.envs import make_env

    spec = importlib.util.spec_from_file_location("reflection_probe", ROOT / "scripts" / "reflection_probe.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    env = make_env(load_params(erl_run / "params.yaml").env, erl_run / "artifacts")
    t = tables(erl_run, 1)
    feedback = dict(zip(t["feedback"].rollout_id, t["feedback"].feedback))
    notes = dict(zip(t["feedback"].rollout_id, t["feedback"].note))
    for row in t["attempts"].to_dict("records"):  # the probe's rebuilt trace gives the feedback stage's text back
        trace = probe.trace_from_row(row, 0)
        assert env.feedback(trace) == feedback[row["rollout_id"]]
        assert notes[row["rollout_id"]] == env.reflection_note(trace)
    m = json.loads((erl_run / "artifacts" / "epoch_001" / "metrics.json").read_text())
    with_note = sum(r.reflection.strip().endswith(notes[r.rollout_id]) for r in t["reflections"].itertuples())
    assert m["reflections_with_note"] == with_note
    rows = probe.epoch_rows(erl_run / "artifacts", 1, env)
    assert len(rows) == len(t["reflections"]) and {r["text"] for r in rows} == set(t["reflections"].reflection)
    assert probe.main(["--artifacts", str(erl_run / "artifacts"), "--params", str(erl_run / "params.yaml")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("epoch") and [line.split()[0] for line in out[1:]] == ["1", "2", "all"]


def test_second_repro_does_no_work(erl_run):
    res = dvc(erl_run, "repro")
    assert "Running stage" not in res.stdout
    assert "up to date" in res.stdout


def test_separate_step_processes_match_the_one_process_block(erl_run, tmp_path):
    """``train.epochs_per_stage`` changes only how many processes run an epoch's steps: both epochs run as seven
    separate stage processes each give the same tables, lineage and checkpoints as the two-epoch block did, where
    one engine served every step and took epoch 1's weights in place from the update (not from disk)."""
    repo = erl_run
    assert "python -m stages.epochs --first 1 --last 2" in (repo / "dvc.yaml").read_text()
    art = tmp_path / "artifacts"
    shutil.copytree(repo / layout.epoch_dir(0), art / "init")
    for e in (1, 2):
        for s in layout.EPOCH_STAGES:
            run(["python", "-m", f"stages.{s}", "--epoch", str(e), "--artifacts", str(art)], repo)
        for n in TABLES:
            block, step = repo / layout.epoch_dir(e) / f"{n}.parquet", layout.epoch_dir(e, art) / f"{n}.parquet"
            assert read_table(n, block).equals(read_table(n, step)), (e, n)
            lb, ls = read_lineage(block), read_lineage(step)
            # the same inputs by name; their digests differ only where an input's own footer names its path
            assert sorted(Path(p).name for p in lb.pop("inputs")) == sorted(Path(p).name for p in ls.pop("inputs"))
            assert lb == ls, (e, n)
        assert sha256_dir(repo / layout.policy_dir(e)) == sha256_dir(layout.policy_dir(e, art))
        assert json.loads((repo / layout.metrics_path(e)).read_text()) == json.loads(
            layout.metrics_path(e, art).read_text()
        )


def test_a_block_builds_one_engine_and_generation_splits_over_processes(erl_run, tmp_path):
    """One engine per process: the two-epoch block (sample, reflect, retry and evaluate of both epochs) builds
    one. rollout.processes 2 (`accelerate launch`, gloo): the sample and evaluate tables are the one-process ones
    (the processes share out the very batches one process runs)."""
    import yaml

    repo = erl_run
    art = tmp_path / "block"
    shutil.copytree(repo / layout.epoch_dir(0), art / "init")
    res = run(["python", "-m", "stages.epochs", "--first", "1", "--last", "2", "--artifacts", str(art)], repo)
    assert "generation engines built: 1" in res.stderr
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["policy"]["batch_size"] = 4  # several batches per turn: both processes generate
    one, two = tmp_path / "one.yaml", tmp_path / "two.yaml"
    one.write_text(yaml.safe_dump(params))
    params["rollout"] = {"processes": 2}
    two.write_text(yaml.safe_dump(params))
    launch = "accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no --dynamo_backend no"
    for name, cmd in (("one", ["python"]), ("two", launch.split())):
        a = tmp_path / name
        shutil.copytree(repo / layout.epoch_dir(0), a / "init")
        shutil.copytree(repo / layout.epoch_dir(1), a / "epoch_001")
        for stage in ("sample", "evaluate"):
            res = run(
                cmd
                + ["-m", f"stages.{stage}", "--epoch", "1", "--params", str(tmp_path / f"{name}.yaml")]
                + ["--artifacts", str(a)],
                repo,
                check=False,
                timeout=600,
            )
            assert res.returncode == 0, res.stderr[-3000:]
    for t in ("attempts", "eval"):
        a, b = (layout.table_path(t, 1, tmp_path / n) for n in ("one", "two"))
        assert read_table(t, a).equals(read_table(t, b)), t


def test_update_under_accelerate_launch_with_two_processes(erl_run, tmp_path):
    """``accelerate launch`` with two processes on the CPU (DDP over gloo): shards of unequal size and micro-batches
    of a few segments each, so the processes need different numbers of forward passes and one of them runs out
    of samples first. The update must finish (not deadlock on a collective), train every sample once per PPO
    epoch, and write a checkpoint that reloads and differs from its parent."""
    import socket

    import yaml
    from transformers import AutoModelForCausalLM

    repo = erl_run
    art = tmp_path / "artifacts"
    shutil.copytree(repo / layout.epoch_dir(0), art / "init")
    layout.epoch_dir(1, art).mkdir(parents=True)
    src = repo / layout.epoch_dir(1) / "samples.parquet"
    samples = read_table("samples", src)
    n = samples.num_rows - (samples.num_rows + 1) % 2  # odd: rank 0 gets (n+1)/2 samples, rank 1 (n-1)/2
    assert n >= 3
    write_table("samples", samples.slice(0, n), layout.epoch_dir(1, art) / "samples.parquet", read_lineage(src))
    share = n // 2  # per-process minibatch: rank 1 is done after one step, rank 0 needs a second for its last sample
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["update"].update(minibatch_size=2 * share, micro_batch_tokens=64, ppo_epochs=2)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with socket.socket() as s_:
        s_.bind(("127.0.0.1", 0))
        port = s_.getsockname()[1]
    # --multi_gpu starts torchrun; without a GPU the processes form a gloo group (MULTI_CPU). --cpu would start one.
    res = run(
        [
            "python",
            "-m",
            "accelerate.commands.launch",
            "--multi_gpu",
            "--num_processes",
            "2",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "--main_process_port",
            str(port),
            "-m",
            "stages.update",
            "--epoch",
            "1",
            "--params",
            str(tmp_path / "params.yaml"),
            "--artifacts",
            str(art),
        ],
        repo,
        check=False,
        timeout=300,
    )  # a deadlocked collective would otherwise wait forever
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    upd = read_table("updates", layout.epoch_dir(1, art) / "updates.parquet").to_pandas()
    assert upd.groupby("sample_id").size().eq(2).all() and upd.sample_id.nunique() == n
    steps = read_table("steps", layout.epoch_dir(1, art) / "steps.parquet").to_pandas()
    assert len(steps) == 2 * math.ceil(math.ceil(n / 2) / share)  # per PPO epoch: rank 0's shard in steps of share
    assert steps.grad_norm.notna().all() and (steps.grad_norm > 0).any()
    # the optimizer state of a several-process update travels to the next epoch too
    assert (layout.state_dir(1, art) / "optimizer.safetensors").is_file()
    new = AutoModelForCausalLM.from_pretrained(layout.policy_dir(1, art))
    old = AutoModelForCausalLM.from_pretrained(layout.policy_dir(0, art))
    assert any(not (a == b).all() for a, b in zip(new.state_dict().values(), old.state_dict().values()))


def test_rlvr_writes_empty_reflection_tables_with_same_schema(tmp_path):
    # one DVC stage per step here (the block layout is what erl_run uses)
    repo = make_project(tmp_path, {"algorithm": "rlvr", "train": {"epochs": 1, "epochs_per_stage": 0}})
    res = dvc(repo, "repro", "evaluate_e1", check=False)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    t = tables(repo, 1)
    assert len(t["reflections"]) == 0 and len(t["retries"]) == 0
    assert set(t["samples"].kind) == {"first"}
    assert len(t["attempts"]) == 6 * 8  # rollouts_per_task.rlvr
    # stages that need no model never import torch
    out = run(["python", "-X", "importtime", "-m", "stages.feedback", "--epoch", "1"], repo).stderr
    assert " torch" not in out.replace("torch_", "")


def audit(repo, *args):
    return run(["python", "-m", "tools.audit", *args], repo, check=False)


def test_audit_update_traces_reflections(erl_run):
    res = audit(erl_run, "--json", "update", "2")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["checkpoint_sha256"] == sha256_dir(erl_run / layout.policy_dir(2))
    assert out["parent_sha256"] == sha256_dir(erl_run / layout.policy_dir(1))
    refl = read_table("reflections", erl_run / layout.epoch_dir(2) / "reflections.parquet").to_pandas()
    assert {r["reflection_id"] for r in out["reflections"]} == set(refl.reflection_id)
    contrib = [r["contribution"] for r in out["reflections"]]
    assert contrib == sorted(contrib, reverse=True)
    first = out["reflections"][0]
    assert first["first_attempt_feedback"] and first["samples"] and first["second_attempt_reward"] is not None
    text = audit(erl_run, "update", "2").stdout
    assert "reflections behind this update" in text and first["reflection_id"] in text


def test_audit_reflection_and_task_forward_traces(erl_run):
    refl = read_table("reflections", erl_run / layout.epoch_dir(1) / "reflections.parquet").to_pandas()
    rid = refl.reflection_id.iloc[0]
    out = json.loads(audit(erl_run, "--json", "reflection", rid).stdout)
    assert out["reflection"]["reflection_id"] == rid and out["retry"]["retry_id"].startswith(refl.rollout_id.iloc[0])
    assert {s["kind"] for s in out["samples"]} >= {"reflection", "second"}
    assert all(s["update_id"] == "e1" for s in out["samples"])
    task = json.loads(audit(erl_run, "--json", "task", refl.task_id.iloc[0]).stdout)
    assert len(task["first_attempts"]) >= 4 and task["second_attempts"]


def test_audit_unknown_ids_fail_clearly(erl_run):
    for args, needle in [(("update", "99"), "epoch 99"), (("reflection", "nope"), "nope"), (("task", "nope"), "nope")]:
        res = audit(erl_run, *args)
        assert res.returncode == 2 and needle in res.stderr


def test_audit_takes_one_run_directory_not_a_pattern(erl_run, tmp_path):
    """bad input audit-pattern-root: a folder literally named 'run*' beside run1 and run2 is audited alone (its own
    optimizer steps, not the three runs' together); a pattern that names no folder is refused."""
    for name in ("run1", "run2", "run*"):
        shutil.copytree(erl_run / "artifacts", tmp_path / name)
    steps = read_table("steps", erl_run / layout.epoch_dir(1) / "steps.parquet").num_rows
    res = audit(erl_run, "--json", "update", "1", "--artifacts", str(tmp_path / "run*"))
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["optimizer_steps"] == steps
    res = audit(erl_run, "update", "1", "--artifacts", str(tmp_path / "r?n1x"))
    assert res.returncode == 2 and "not a pattern" in res.stderr


def test_audit_answers_on_an_epoch_without_samples_and_a_run_in_progress(erl_run, tmp_path):
    """bad input audit-empty-epoch and audit-running: an epoch whose update trained nothing, a later epoch with
    its first table only, and a dvc.lock cut in the middle."""
    art = tmp_path / "artifacts"
    shutil.copytree(erl_run / "artifacts", art)
    for name in ("updates", "steps", "samples"):
        path = layout.epoch_dir(1, art) / f"{name}.parquet"
        write_table(name, [], path, read_lineage(path))
    res = audit(erl_run, "update", "1", "--artifacts", str(art))
    assert res.returncode == 0 and "no optimizer step" in res.stdout, res.stdout + res.stderr
    third = layout.epoch_dir(3, art)
    third.mkdir()
    shutil.copy(layout.epoch_dir(2, art) / "attempts.parquet", third / "attempts.parquet")
    task = read_table("attempts", third / "attempts.parquet").column("task_id")[0].as_py()
    res = audit(erl_run, "--json", "task", task, "--artifacts", str(art))
    assert res.returncode == 0, res.stderr
    lock = tmp_path / "dvc.lock"
    text = (erl_run / "dvc.lock").read_text()
    lock.write_text(text[: len(text) // 2] + "\n  - path: [")
    res = audit(erl_run, "verify", "--artifacts", str(art), "--lock", str(lock))
    assert "Traceback" not in res.stderr and "not readable now" in res.stderr, res.stderr[-2000:]


def test_audit_verify_passes_then_catches_tampering(erl_run, tmp_path):
    import shutil

    res = audit(erl_run, "verify")
    assert res.returncode == 0, res.stdout + res.stderr
    copy = tmp_path / "copy"
    shutil.copytree(erl_run, copy)
    victim = copy / layout.epoch_dir(1) / "feedback.parquet"
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    res = audit(copy, "verify")
    assert res.returncode == 1
    assert "artifacts/epoch_001/feedback.parquet" in res.stdout


def test_audit_options_after_the_subcommand(erl_run):
    res = audit(erl_run, "update", "2", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["checkpoint_sha256"] == sha256_dir(erl_run / layout.policy_dir(2))
    assert audit(erl_run, "--json", "update", "2").stdout == res.stdout


def test_editing_a_tool_or_an_unused_environment_leaves_the_run_clean(erl_run, tmp_path):
    """Code dependencies are the files a stage imports: editing any tool changes no stage; editing an environment
    the run does not use reruns validate alone (it checks every environment's section), whose output does not
    change, so nothing after it reruns; editing the method reruns the stages that import it."""
    copy = tmp_path / "copy"
    shutil.copytree(erl_run, copy)

    def edit(*rels):
        for rel in rels:
            (copy / rel).write_text((copy / rel).read_text() + "\n# edited\n")

    edit(*sorted(p.relative_to(copy).as_posix() for p in (copy / "tools").glob("*.py")))
    status = dvc(copy, "status").stdout
    assert "up to date" in status, status
    edit("pipeline/envs/sokoban.py", "pipeline/tiny/sokoban.py", "pipeline/envs/qa.py")
    stale = [line[:-1] for line in dvc(copy, "status").stdout.splitlines() if line and not line[0].isspace()]
    assert stale == ["validate"], stale
    ran = [line for line in dvc(copy, "repro").stdout.splitlines() if line.startswith("Running stage")]
    assert ran == ["Running stage 'validate':"], ran
    (copy / "pipeline/erl/retry.py").write_text((copy / "pipeline/erl/retry.py").read_text() + "\n# edited\n")
    status = dvc(copy, "status").stdout
    assert "changed deps" in status and "pipeline/erl/retry.py" in status and "epochs_e1-e2" in status
    assert "validate:" not in status and "init:" not in status  # neither runs the retry step's code


def test_an_experiment_that_changes_the_graph(erl_run, tmp_path):
    """`dvc exp run -S train.epochs=1` needs another dvc.yaml: it stops in the validate stage, before DVC has
    removed any output, and says what to do; `erl exp run` regenerates dvc.yaml and runs the experiment."""
    copy = tmp_path / "copy"
    shutil.copytree(erl_run, copy)
    before = {p: p.stat().st_mtime_ns for p in (copy / "artifacts").rglob("*.parquet")}
    res = dvc(copy, "exp", "run", "-S", "train.epochs=1", check=False)
    assert res.returncode != 0
    assert "erl exp run" in res.stderr + res.stdout and "train.epochs=1" in res.stderr + res.stdout
    assert {p: p.stat().st_mtime_ns for p in (copy / "artifacts").rglob("*.parquet")} == before
    run(["git", "checkout", "--", "params.yaml"], copy)
    res = run(["python", "-m", "tools.cli", "exp", "run", "-S", "train.epochs=1"], copy, check=False, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "python -m stages.epochs --first 1 --last 1" in (copy / "dvc.yaml").read_text()
    assert json.loads((copy / "reports" / "metrics.json").read_text())["epoch"] == 1


def test_checkpoint_retention_keeps_every_kth_and_repro_stays_a_no_op(tmp_path):
    """update.keep_every 2 over 4 epochs (2 per stage, evaluation every 2): the checkpoints of epochs 2 and 4 are
    DVC outputs, epoch 1's is deleted once epoch 3 is saved, its sha256 kept in its manifest and the lineage; a
    second `dvc repro` does nothing and `erl audit verify` passes."""
    repo = make_project(
        tmp_path,
        {"train": {"epochs": 4, "epochs_per_stage": 2}, "update": {"keep_every": 2}, "evaluate": {"every": 2}},
    )
    res = dvc(repo, "repro", check=False)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert not (repo / layout.policy_dir(1)).exists() and not (repo / layout.state_dir(1)).exists()
    for e in (2, 4):
        assert (repo / layout.policy_dir(e) / "model.safetensors").is_file()
    manifest = json.loads((repo / layout.checkpoint_path(1)).read_text())
    steps = read_table("steps", repo / layout.epoch_dir(1) / "steps.parquet").to_pandas()
    assert set(steps.checkpoint_sha256) == {manifest["policy_sha256"]}
    assert json.loads((repo / layout.metrics_path(1)).read_text())["eval_success"] is None  # not evaluated
    assert json.loads((repo / layout.metrics_path(2)).read_text())["eval_success"] is not None
    again = dvc(repo, "repro")
    assert "Running stage" not in again.stdout
    res = audit(repo, "verify")
    assert res.returncode == 0, res.stdout + res.stderr
