"""pipeline/gpumem.py, `erl memory` and init's memory check: the estimate of one update per GPU, term by term, the
calibration against the one H200 measurement, which presets fit which GPUs, and a refusal that names settings
that fit (a GPU is faked here; scripts/gpu_update_check.py measures a real one)."""

from __future__ import annotations

import types
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline import gpumem
from pipeline.config import load_params

ROOT = Path(__file__).resolve().parent.parent
QWEN3_4B = gpumem.KNOWN["Qwen/Qwen3-4B-Instruct-2507"]
OLMO3_7B = gpumem.KNOWN["allenai/Olmo-3-7B-Instruct"]


def test_parameter_counts_and_the_calibration():
    shape = gpumem.Shape.from_config(QWEN3_4B)
    assert shape.parameters() == 4_022_468_096  # Qwen3-4B's own count
    assert shape.layer_saved_per_token() == 170_792
    assert 7.2e9 < gpumem.Shape.from_config(OLMO3_7B).parameters() < 7.4e9
    est, measured = gpumem.calibration(shape)
    assert abs(est - measured) / measured < 0.05  # 82.4 against 82.9 GiB


def test_sharding_divides_the_static_memory_and_ddp_does_not():
    shape = gpumem.Shape.from_config(QWEN3_4B)
    p = load_params(ROOT / "presets/paper.yaml")
    one = gpumem.estimate(shape, replace(gpumem.Setup.of(p, 1), strategy="ddp"))
    ddp8 = gpumem.estimate(shape, replace(gpumem.Setup.of(p, 8), strategy="ddp"))
    fsdp8 = gpumem.estimate(shape, gpumem.Setup.of(p, 8))
    term = "master weights (fp32)"
    assert ddp8["forward/backward"][term] == one["forward/backward"][term]
    assert fsdp8["forward/backward"][term] == pytest.approx(one["forward/backward"][term] / 8)
    assert ddp8["peak"] > one["peak"] > fsdp8["peak"]  # DDP's gradient buckets come on top of a whole replica
    foreach = gpumem.estimate(shape, replace(gpumem.Setup.of(p, 1), strategy="ddp", adamw="foreach"))
    assert foreach["optimizer step"]["AdamW temporaries (foreach)"] == pytest.approx(4 * shape.parameters())


@pytest.mark.parametrize(
    "preset, gpus, gib, fits",
    [
        ("paper", 8, 80, True),
        ("paper-sokoban", 8, 80, True),
        ("paper-qa", 8, 80, True),
        ("paper-olmo", 8, 80, True),
        ("paper-1gpu", 1, 80, True),
        ("paper", 1, 80, False),  # a whole Qwen3-4B update does not fit one 80 GB GPU without offload
        ("paper-olmo", 1, 141, False),  # nor Olmo-3-7B one H200
    ],
)
def test_the_presets_fit_the_hardware_they_are_for(preset, gpus, gib, fits, capsys):
    from tools.memory import main

    rc = main(["--params", str(ROOT / f"presets/{preset}.yaml"), "--gpus", str(gpus), "--gpu-gib", str(gib)])
    out = capsys.readouterr().out
    assert rc == (0 if fits else 1), out
    assert "forward/backward" in out and "optimizer step" in out
    if not fits:
        assert "settings that would fit" in out or "no single setting" in out


def test_memory_command_names_a_model_it_cannot_size(tmp_path, capsys):
    from tools.memory import main

    params = tmp_path / "p.yaml"
    params.write_text("policy: {model: some/unknown-model, prompts: paper}\nupdate: {replay_coef: 0.0}\n")
    assert main(["--params", str(params)]) == 2
    assert "some/unknown-model" in capsys.readouterr().err


def _fake_gpu(monkeypatch, gib: float, count: int = 1):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(total_memory=gib * 2**30))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: "a fake GPU")


def test_init_refuses_an_update_that_cannot_fit_naming_settings_that_do(monkeypatch):
    from stages.init import check_update_memory

    p = load_params(ROOT / "presets/paper.yaml")
    _fake_gpu(monkeypatch, 80, count=1)
    with pytest.raises(gpumem.DoesNotFit) as exc:
        check_update_memory(p, QWEN3_4B)
    msg = str(exc.value)
    assert "GiB per GPU" in msg and "1 x 80 GiB (a fake GPU)" in msg and "update.offload" in msg
    _fake_gpu(monkeypatch, 80, count=8)
    check_update_memory(p, QWEN3_4B)  # fits a node of 8 x 80 GB
