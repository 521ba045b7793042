"""Bad input, case by case (docs/bad-input.md lists every case id here): one line naming the file or key, a
non-zero exit, nothing written. Stages run in this process on a small artifact tree; model output is
exercised through the environments and the tables."""

from __future__ import annotations

import copy
import json
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from e2e_util import TINY, deep_update

from pipeline import guard, layout

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "bad-input.md"


def _params_file(tmp_path: Path, over: dict | None = None, name: str = "params.yaml") -> Path:
    raw = deep_update(yaml.safe_load((ROOT / "params.yaml").read_text()), copy.deepcopy(TINY))
    raw["train"].update(epochs=1, epochs_per_stage=0)
    deep_update(raw, over or {})
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    return path


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")}


def _fails(main, argv: list[str], capsys, code: int, *needles: str) -> str:
    """Run a stage's main; it must exit ``code`` with exactly one `error:` line holding every needle."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert exc.value.code == code, err
    assert len(lines) == 1 and "\n" not in lines[0], err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


# ---- params, through the validate stage (what `dvc repro` runs first) -------------------------------------

PARAMS_CASES = {
    "params-not-utf8": (b"seed: 1\n\xff\xfe\n", "not UTF-8"),
    "params-bad-yaml": ("update:\n\tlr: 1\n", "not valid YAML"),
    "params-duplicate-key": ("update:\n  lr: 0.1\n  lr: 0.2\n", "given twice"),
    "params-not-mapping": ("- 1\n- 2\n", "mapping"),
    "params-unknown-key": ({"update": {"bogus": 1}}, "update.bogus"),
    "params-wrong-type": ({"sample": {"sampling": {"temperature": "hot"}}}, "sample.sampling.temperature"),
    "params-nan": ({"update": {"lr": float("nan")}}, "update.lr"),
    "params-inf": ({"update": {"kl_coef": float("inf")}}, "update.kl_coef"),
    "params-null": ({"update": {"lr": None}}, "update.lr"),
    "params-out-of-range": ({"update": {"lr": -1}}, "update.lr"),
    "params-tau-range": ({"consolidate": {"tau": 5}}, "consolidate.tau"),
    "params-seed-huge": ({"seed": 2**64}, "seed"),
    "params-bool-for-int": ({"sample": {"tasks_per_epoch": True}}, "sample.tasks_per_epoch"),
    "params-cross-check": ({"env": {"n_train": 3}, "sample": {"tasks_per_epoch": 4}}, "tasks_per_epoch"),
    "params-launcher": ({"update": {"launcher": "accelerate"}, "train": {"epochs_per_stage": 2}}, "epochs_per_stage"),
    # a YAML alias bomb: a few hundred bytes that expand to billions of list items
    "params-alias-bomb": (
        "a: &a [x, x, x, x, x, x, x, x, x]\n"
        + "".join(
            f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
            for p, c in zip("abcdefgh", "bcdefghi")
        ),
        "alias",
    ),
    "params-too-long": ("seed: 0\n" + "# " + "x" * (1 << 20) + "\n", "at most"),
    "params-group-huge": (
        {"sample": {"rollouts_per_task": {"erl": 10**6}}},
        "sample.tasks_per_epoch x sample.rollouts",
    ),
    "params-pool-huge": ({"env": {"n_train": 10**9}}, "env.n_train"),
    "params-eval-huge": ({"evaluate": {"samples_per_task": 10**6}}, "evaluate.samples_per_task"),
    "env-unknown": ({"env": {"name": "codebraker"}}, "no environment 'codebraker'"),
    "env-not-an-env": ({"env": {"name": "pipeline.envs.base:Task"}}, "is not a subclass of"),
    "env-section-unclaimed": ({"env": {"frozenlak": {"budget": 3}}}, "env.frozenlak: no environment"),
    "env-prompts": ({"policy": {"prompts": "paper-text"}}, "policy.prompts: 'frozenlake' has no prompt set"),
    "qa-tool-calls": ({"env": {"name": "qa", "qa": {"tool_calls": "native"}}}, "env.qa.tool_calls: native goes"),
}


@pytest.mark.parametrize("case", sorted(PARAMS_CASES))
def test_bad_params_stop_validate_with_one_line(case, tmp_path, capsys):
    from stages import validate

    content, needle = PARAMS_CASES[case]
    path = tmp_path / "params.yaml"
    if isinstance(content, dict):
        _params_file(tmp_path, content)
    else:
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    art = tmp_path / "artifacts"
    _fails(validate.main, ["--params", str(path), "--artifacts", str(art)], capsys, 2, needle, str(path))
    assert not art.exists(), "nothing is written"


@pytest.mark.parametrize("case", ["params-dev-zero", "params-fifo"])
def test_params_that_are_not_a_file_stop_at_once(case, tmp_path, capsys):
    """/dev/zero would be read until memory runs out, a FIFO waited on forever: both are refused on sight."""
    import os

    from stages import validate

    path = tmp_path / "params.yaml"
    if case == "params-dev-zero":
        path.symlink_to("/dev/zero")
    else:
        os.mkfifo(path)
    art = tmp_path / "artifacts"
    _fails(validate.main, ["--params", str(path), "--artifacts", str(art)], capsys, 2, "not a regular file", str(path))
    assert not art.exists()


def test_a_params_yaml_that_extends_a_preset_is_refused(tmp_path, capsys):
    """DVC reads params.yaml as it is: values it inherits from a preset would change no stage."""
    from stages import validate

    path = tmp_path / "params.yaml"
    path.write_text(f"extends: {ROOT / 'presets' / 'hidden.yaml'}\n")
    art = tmp_path / "artifacts"
    _fails(validate.main, ["--params", str(path), "--artifacts", str(art)], capsys, 2, "erl preset", str(path))


def test_params_missing(tmp_path, capsys):
    from stages import validate

    _fails(validate.main, ["--params", str(tmp_path / "nope.yaml")], capsys, 2, "nope.yaml", "file not found")


def test_params_graph_changed(tmp_path, capsys, monkeypatch):
    """`dvc exp run -S train.epochs=2` on a dvc.yaml made for 1 epoch: validate says what to run instead."""
    from pipeline import graph
    from pipeline.config import load_params
    from stages import validate

    one = _params_file(tmp_path, name="one.yaml")
    (tmp_path / "dvc.yaml").write_text(graph.render(load_params(one)))
    two = _params_file(tmp_path, {"train": {"epochs": 2}})
    monkeypatch.chdir(tmp_path)
    _fails(
        validate.main,
        ["--params", str(two), "--artifacts", "artifacts"],
        capsys,
        2,
        "train.epochs=2",
        "erl exp run",
        "erl dvc-yaml",
    )
    assert not (tmp_path / "artifacts" / "validated.txt").exists()


# ---- HotpotQA files, through init ------------------------------------------------------------------------

GOOD = {
    "question": "where was zarvo born ?",
    "answer": "kelm",
    "context": [["zarvo", ["zarvo was born in kelm ."]]],
    "supporting_facts": [["zarvo", 0]],
}
HOTPOT_CASES = {
    "hotpot-missing-file": (None, "not found"),
    "hotpot-not-json": ("[{", "not valid JSON"),
    "hotpot-not-utf8": (b"[\xff]", "not UTF-8"),
    "hotpot-sentences-string": ([{**GOOD, "context": [["zarvo", "zarvo was born in kelm ."]]}], "context[0]"),
    "hotpot-answer-null": ([{**GOOD, "answer": None}], "'answer' must be a str"),
    "hotpot-no-question": ([{k: v for k, v in GOOD.items() if k != "question"}], "no 'question'"),
    "hotpot-context-shape": ([{**GOOD, "context": [["zarvo"]]}], "context[0]"),
    "hotpot-empty-list": ([], "non-empty list"),
}


@pytest.mark.parametrize("case", sorted(HOTPOT_CASES))
def test_bad_hotpot_files_stop_init(case, tmp_path, capsys):
    from stages import init

    content, needle = HOTPOT_CASES[case]
    data = tmp_path / "hotpot.json"
    if content is not None:
        raw = json.dumps(content * 3) if isinstance(content, list) else content
        data.write_bytes(raw if isinstance(raw, bytes) else raw.encode())
    params = _params_file(
        tmp_path,
        {
            "env": {"name": "qa", "n_train": 2, "n_test": 1, "qa": {"hotpot_path": str(data)}},
            "sample": {"tasks_per_epoch": 2},
        },
    )
    art = tmp_path / "artifacts"
    _fails(init.main, ["--params", str(params), "--artifacts", str(art)], capsys, 1, needle, str(data))
    assert _files(art) == set(), "nothing is written"


def test_an_exercise_the_environment_lacks_stops_init(tmp_path, capsys):
    """policy.tiny.warmstart_exercises names the environment's own kinds (FrozenLake's by default)."""
    from stages import init

    params = _params_file(tmp_path, {"policy": {"tiny": {"warmstart_exercises": ["where", "keep"]}}})
    art = tmp_path / "artifacts"
    needle = "policy.tiny.warmstart_exercises: frozenlake has no exercise 'keep' (it has ['around', 'at'"
    _fails(init.main, ["--params", str(params), "--artifacts", str(art)], capsys, 1, needle)
    assert _files(art) == set(), "nothing is written"


def _real_qa(tmp_path: Path, **qa) -> Path:
    """Params of the real HotpotQA setup: question files and a corpus (good ones unless ``qa`` says otherwise)."""
    train, test, corpus = tmp_path / "train.jsonl", tmp_path / "dev.jsonl", tmp_path / "wiki.jsonl"
    train.write_text("".join(json.dumps({"question": f"q{i} ?", "answer": f"a{i}"}) + "\n" for i in range(3)))
    test.write_text(json.dumps({"question": "t ?", "golden_answers": ["b"]}) + "\n")
    corpus.write_text(json.dumps({"id": "0", "contents": '"a0"\na0 is here'}) + "\n")
    files = {"train_path": str(train), "test_path": str(test), "corpus_path": str(corpus), **qa}
    return _params_file(
        tmp_path, {"env": {"name": "qa", "n_train": 2, "n_test": 1, "qa": files}, "sample": {"tasks_per_epoch": 2}}
    )


@pytest.mark.parametrize(
    "case, needle",
    [
        ("question-row", "line 4: no answer"),
        ("corpus-line", "line 2: no 'contents' string"),
        ("server-down", "no usable answer after 2 tries"),
    ],
)
def test_the_real_qa_setup_stops_init_naming_the_file_row_or_server(case, needle, tmp_path, capsys):
    from stages import init

    if case == "question-row":
        params = _real_qa(tmp_path)
        with open(tmp_path / "train.jsonl", "a") as f:
            f.write(json.dumps({"question": "no answer ?"}) + "\n")
        where = str(tmp_path / "train.jsonl")
    elif case == "corpus-line":
        params = _real_qa(tmp_path)
        with open(tmp_path / "wiki.jsonl", "a") as f:
            f.write(json.dumps({"id": "1", "text": "x"}) + "\n")
        where = str(tmp_path / "wiki.jsonl")
    else:
        import socket

        with socket.socket() as sock:  # a port nothing listens on
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        where = f"http://127.0.0.1:{port}/retrieve"
        params = _real_qa(tmp_path, retriever="server", server_url=where, server_retries=1, server_timeout=2.0)
    art = tmp_path / "artifacts"
    _fails(init.main, ["--params", str(params), "--artifacts", str(art)], capsys, 1, needle, where)
    assert _files(art) == set(), "nothing is written"


# ---- the search index ----------------------------------------------------------------------------------------


def _bad_index(case: str, path: Path) -> None:
    from pipeline.envs.search import build_index

    if case == "index-empty":  # build_index refuses to write one; an index emptied afterwards
        build_index(path, [("t", "alpha")])
        con = sqlite3.connect(path)
        con.execute("DELETE FROM passages")
        con.commit()
        con.close()
    elif case == "index-not-sqlite":
        path.write_bytes(b"\x00 not a database " * 64)
    elif case == "index-foreign-schema":
        con = sqlite3.connect(path)
        con.execute("CREATE TABLE other (x)")
        con.commit()
        con.close()


@pytest.mark.parametrize("case", ["index-missing", "index-empty", "index-not-sqlite", "index-foreign-schema"])
def test_a_bad_search_index_stops_the_first_search(case, tmp_path):
    from pipeline.envs.qa import QA
    from pipeline.errors import InputError

    path = tmp_path / "qa_index.sqlite"
    _bad_index(case, path)
    env = QA(index_path=path, kb_people=20, kb_cities=5, kb_companies=5)
    with pytest.raises((InputError, FileNotFoundError)) as exc:
        env.search("zarvo")
    assert str(path) in str(exc.value) and "\n" not in str(exc.value)


# ---- tables and checkpoints of a small run ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """init and epoch 1's first attempts of a tiny run, made once; tests damage copies of it."""
    from stages import init, sample

    tmp = tmp_path_factory.mktemp("tree")
    params = _params_file(tmp)
    art = tmp / "artifacts"
    init.main(["--params", str(params), "--artifacts", str(art)])
    sample.main(["--epoch", "1", "--params", str(params), "--artifacts", str(art)])
    guard.release_all()
    return params, art


def _copy(tree, tmp_path: Path) -> tuple[Path, Path]:
    params, art = tree
    dst = tmp_path / "artifacts"
    shutil.copytree(art, dst)
    return params, dst


def _damage_table(case: str, path: Path) -> None:
    data = bytearray(path.read_bytes())
    if case == "parquet-missing":
        path.unlink()
    elif case == "parquet-truncated":
        path.write_bytes(bytes(data[: len(data) // 2]))
    elif case == "parquet-corrupt":
        for i in range(len(data) // 3, len(data) // 3 + 64):
            data[i] ^= 0xFF
        path.write_bytes(bytes(data))
    elif case == "parquet-wrong-table":
        shutil.copy(path.parent.parent / "init" / "memory.parquet", path)


@pytest.mark.parametrize("case", ["parquet-missing", "parquet-truncated", "parquet-corrupt", "parquet-wrong-table"])
def test_a_damaged_table_stops_the_stage_reading_it(case, tree, tmp_path, capsys):
    from stages import feedback

    params, art = _copy(tree, tmp_path)
    attempts = layout.epoch_dir(1, art) / "attempts.parquet"
    _damage_table(case, attempts)
    _fails(feedback.main, ["--epoch", "1", "--params", str(params), "--artifacts", str(art)], capsys, 1, str(attempts))
    assert not (layout.epoch_dir(1, art) / "feedback.parquet").exists()


@pytest.mark.parametrize(
    "case,file",
    [
        ("checkpoint-flipped-byte", "model.safetensors"),
        ("checkpoint-missing-file", "tokenizer.json"),
        ("checkpoint-no-manifest", "checkpoint.json"),
        ("checkpoint-extra-file", "stray.safetensors"),
    ],
)
def test_a_damaged_checkpoint_is_named_when_loaded(case, file, tree, tmp_path, capsys):
    from stages import sample

    params, art = _copy(tree, tmp_path)
    policy = layout.policy_dir(0, art)
    victim = art / "init" / file if file == "checkpoint.json" else policy / file
    if case == "checkpoint-flipped-byte":
        data = bytearray(victim.read_bytes())
        data[len(data) // 2] ^= 0x01
        victim.write_bytes(bytes(data))
    elif case == "checkpoint-extra-file":
        victim.write_bytes(b"not weights")
    else:
        victim.unlink()
    attempts = layout.epoch_dir(1, art) / "attempts.parquet"
    attempts.unlink()
    _fails(sample.main, ["--epoch", "1", "--params", str(params), "--artifacts", str(art)], capsys, 1, str(victim))
    assert not attempts.exists()


def test_a_second_writer_is_refused_naming_the_holder(tree, tmp_path, capsys):
    from stages import feedback

    params, art = _copy(tree, tmp_path)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from pipeline import guard; "
            "guard.hold_lock(Path(sys.argv[1]), 'sample'); print('held', flush=True); time.sleep(60)",
            str(art),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        line = _fails(
            feedback.main,
            ["--epoch", "1", "--params", str(params), "--artifacts", str(art)],
            capsys,
            1,
            "in use by stage sample",
            f"pid {holder.pid}",
        )
        assert str(art) in line
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    assert not (layout.epoch_dir(1, art) / "feedback.parquet").exists()


# ---- model output: never an error ------------------------------------------------------------------------------


def test_reply_no_block():
    from pipeline.envs.frozenlake import FrozenLake

    env = FrozenLake()
    state = env.reset(env.generate("t", 1, 0)[0])
    _, step = env.step(state, "I would go right, I think.")
    assert step.action is None and not step.valid and not step.moved
    assert "no effect" in env.message(state, step)


def test_reply_huge():
    from pipeline.envs.frozenlake import FrozenLake

    env = FrozenLake()
    state = env.reset(env.generate("t", 1, 0)[0])
    _, step = env.step(state, "thinking " * 11_000 + "```left``` then ```down```")
    assert step.action == "down"


def test_reply_control_chars(tmp_path):
    from pipeline.artifacts import read_rows, write_table
    from pipeline.envs.frozenlake import FrozenLake

    reply = "```\x00left\x07```\x1b[31m \u202e"
    env = FrozenLake()
    _, step = env.step(env.reset(env.generate("t", 1, 0)[0]), reply)
    assert step.action is None
    row = {
        "rollout_id": "r",
        "task_id": "t",
        "epoch": 1,
        "sample_idx": 0,
        "reward": 0.0,
        "success": False,
        "outcome": "",
        "n_turns": 1,
        "n_tool_calls": 0,
        "actions": [None],
        "responses": [reply],
    }
    write_table("eval", [row], tmp_path / "eval.parquet", {})
    assert read_rows("eval", tmp_path / "eval.parquet")[0]["responses"] == [reply]


def test_reflection_nested_tags():
    from pipeline.prompts import parse_reflection

    assert parse_reflection("<prompt>a <prompt>b</prompt> c</prompt> <prompt>d") == ("d", True)
    assert parse_reflection("x </prompt> y") == ("x </prompt> y", False)


def test_qa_unclosed_boxed(tmp_path):
    from pipeline.envs.qa import QA

    env = QA(index_path=tmp_path / "none.sqlite", kb_people=20, kb_cities=5, kb_companies=5)
    task = env.generate("train", 1, 0)[0]
    state, step = env.step(env.reset(task), "\\boxed{kelm")
    assert not step.valid and not step.done
    assert "boxed" in env.message(state, step).lower()


# ---- the table in docs/bad-input.md is these tests ------------------------------------------------------------


def test_every_case_in_the_document_is_tested_here():
    doc = set(re.findall(r"^\| ([a-z0-9-]+) \|", DOC.read_text(), re.M)) - {"id"}
    here = (
        set(PARAMS_CASES)
        | set(HOTPOT_CASES)
        | {
            "params-missing",
            "params-graph-changed",
            "index-missing",
            "index-empty",
            "index-not-sqlite",
            "index-foreign-schema",
            "parquet-missing",
            "parquet-truncated",
            "parquet-corrupt",
            "parquet-wrong-table",
            "checkpoint-flipped-byte",
            "checkpoint-missing-file",
            "checkpoint-no-manifest",
            "checkpoint-extra-file",
            "second-writer",
            "reply-no-block",
            "reply-huge",
            "reply-control-chars",
            "reflection-nested-tags",
            "qa-unclosed-boxed",
            "params-dev-zero",
            "params-fifo",
            "params-extends",
            "manifest-files-empty",
            "manifest-no-train-state",
            "manifest-wrong-digest",
            "audit-pattern-root",
            "audit-empty-epoch",
            "audit-running",
            "deploy-port-taken",
            "sweep-foreign-files",
            "qa-question-row",  # the real QA setup: test_the_real_qa_setup_stops_init_naming_the_file_row_or_server
            "qa-corpus-line",
            "qa-server-down",
            "qa-server-garbage",  # tests/test_qa_real.py
            "serve-index-bad-request",  # tests/test_qa_real.py
            "env-section-value",  # tests/test_example_env.py: an outside environment's own key
            "env-exercise",  # test_an_exercise_the_environment_lacks_stops_init
        }
        | set(MODEL_CASES)
    )
    assert doc == here and len(doc) >= 30, (doc ^ here, len(doc))


# ---- checkpoints whose manifest lies, and model directories that would run code -------------------------------


def test_a_manifest_that_records_nothing_is_refused(tree, tmp_path, capsys):
    """checkpoint.json with {"files": {}} switched verification off: a flipped weight loaded silently."""
    from stages import sample

    params, art = _copy(tree, tmp_path)
    (art / "init" / "checkpoint.json").write_text('{"files": {}, "policy_sha256": null}')
    weights = layout.policy_dir(0, art) / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    attempts = layout.epoch_dir(1, art) / "attempts.parquet"
    attempts.unlink()
    _fails(
        sample.main,
        ["--epoch", "1", "--params", str(params), "--artifacts", str(art)],
        capsys,
        1,
        "not recorded",
        str(layout.policy_dir(0, art)),
    )
    assert not attempts.exists()


def test_a_manifest_that_leaves_out_the_train_state_is_refused(tree, tmp_path):
    """A train_state/ on disk that the manifest does not record (a flipped optimizer byte loaded silently)."""
    from pipeline import checkpoint

    _, art = _copy(tree, tmp_path)
    state = art / "init" / "train_state"
    state.mkdir()
    (state / "optimizer.safetensors").write_bytes(b"flipped")
    with pytest.raises(checkpoint.CheckpointError, match="train_state: on disk but not recorded"):
        checkpoint.verify(art / "init")


def test_a_manifest_whose_digest_does_not_match_its_files_is_refused(tree, tmp_path):
    from pipeline import checkpoint

    _, art = _copy(tree, tmp_path)
    manifest = art / "init" / "checkpoint.json"
    data = json.loads(manifest.read_text())
    data["policy_sha256"] = "0" * 64
    manifest.write_text(json.dumps(data))
    with pytest.raises(checkpoint.CheckpointError, match="policy_sha256 is not the digest"):
        checkpoint.verify(art / "init")


def _model_dir(tmp_path: Path) -> Path:
    """A real model directory (the embedded default's layout) to damage."""
    from pipeline.checkpoint import save_policy
    from pipeline.config import TinyParams
    from pipeline.tiny.model import build_model, build_tokenizer

    tok = build_tokenizer(["a b c ``` left down right up"])
    model = build_model(tok, TinyParams(hidden_size=16, layers=1, heads=2, intermediate_size=32), seed=0)
    out = tmp_path / "model"
    save_policy(model, tok, out)
    return out


MODEL_CASES = ["model-remote-code", "model-truncated-safetensors", "model-truncated-gguf", "model-nul-path"]


@pytest.mark.parametrize("case", MODEL_CASES)
def test_a_model_that_cannot_be_used_stops_init_before_it_writes(case, tmp_path, capsys):
    """One line naming the directory or file, exit 1, and no task table written: init checks the model first."""
    from stages import init

    if case == "model-remote-code":
        model = _model_dir(tmp_path)
        cfg = json.loads((model / "config.json").read_text())
        cfg["auto_map"] = {"AutoModelForCausalLM": "evil_model.EvilForCausalLM"}
        (model / "config.json").write_text(json.dumps(cfg))
        (model / "evil_model.py").write_text("raise SystemExit('this code ran')\n")
        spec, needles = str(model), [str(model), "evil_model.py", "custom code"]
    elif case == "model-truncated-safetensors":
        model = _model_dir(tmp_path)
        weights = model / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
        spec, needles = str(model), [str(weights), "not a whole safetensors file"]
    elif case == "model-truncated-gguf":
        pytest.importorskip("gguf")
        from pipeline.checkpoint import resolve_model

        where, name = resolve_model("smollm2")
        cut = tmp_path / "cut.gguf"
        with open(Path(where) / name, "rb") as f:
            cut.write_bytes(f.read(8 << 20))
        spec, needles = str(cut), [str(cut), "not a whole GGUF file"]
    else:
        spec, needles = "some\0model", ["NUL"]
    params = _params_file(tmp_path, {"policy": {"model": spec, "prompts": "paper"}, "update": {"replay_coef": 0.0}})
    art = tmp_path / "artifacts"
    _fails(init.main, ["--params", str(params), "--artifacts", str(art)], capsys, 1, *needles)
    assert _files(art) == set(), _files(art)
