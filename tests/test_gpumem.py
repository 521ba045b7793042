"""pipeline/gpumem.py and init's memory check: the estimate of one update micro-batch, and a refusal with the
numbers when it cannot fit the GPU (a GPU is faked here; scripts/gpu_update_check.py measures a real one)."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

from pipeline import gpumem
from pipeline.config import load_params

ROOT = Path(__file__).resolve().parent.parent

QWEN3_4B = {
    "hidden_size": 2560,
    "num_hidden_layers": 36,
    "intermediate_size": 9728,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "vocab_size": 151936,
    "tie_word_embeddings": True,
}


def test_parameter_count_and_the_paper_presets_estimate():
    shape = gpumem.Shape.from_config(QWEN3_4B)
    assert shape.parameters() == 4_022_468_096  # Qwen3-4B's own count
    assert shape.layer_saved_per_token() == 170_792  # measured tensor by tensor on one of its layers
    p = load_params(ROOT / "presets/paper.yaml")
    est = gpumem.for_params(p, QWEN3_4B)
    # measured on an H200: 82.9 GiB peak for this update; the estimate must not be below it
    assert 82.9 <= est["total"] / gpumem.GiB <= 120
    plain = gpumem.estimate(shape, 32768, 0, gradient_checkpointing=False)
    assert plain["total"] > 3 * est["total"]  # without checkpointing and chunking it cannot fit any GPU


def _fake_gpu(monkeypatch, gib: float):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(total_memory=gib * 2**30))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: "a fake GPU")


def test_init_refuses_an_update_that_cannot_fit_naming_the_numbers(monkeypatch):
    from stages.init import check_update_memory

    p = load_params(ROOT / "presets/paper.yaml")
    _fake_gpu(monkeypatch, 80)
    with pytest.raises(gpumem.DoesNotFit) as exc:
        check_update_memory(p, QWEN3_4B)
    msg = str(exc.value)
    assert "GiB per GPU" in msg and "80 GiB of a fake GPU" in msg and "update.micro_batch_tokens" in msg
    _fake_gpu(monkeypatch, 141)
    check_update_memory(p, QWEN3_4B)  # fits an H200
