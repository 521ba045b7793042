"""GPU-only paths: the vLLM engine and the update stage on CUDA. Skipped on CPU machines (CI never has a GPU)."""

from __future__ import annotations

import importlib.util

import pytest

torch = pytest.importorskip("torch")
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
needs_vllm = pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="needs the vllm extra")


@pytest.mark.gpu
@pytest.mark.vllm
@needs_gpu
@needs_vllm
def test_vllm_engine_matches_interface_and_is_seeded(tmp_path):
    from pipeline.checkpoint import save_policy
    from pipeline.config import Sampling, TinyParams
    from pipeline.tiny.model import build_model, build_tokenizer
    from pipeline.vllm_engine import VLLMEngine

    tok = build_tokenizer(["a b c ``` left down right up"])
    save_policy(
        build_model(tok, TinyParams(hidden_size=64, layers=2, heads=4, intermediate_size=128), 0), tok, tmp_path / "p"
    )
    eng = VLLMEngine(str(tmp_path / "p"), "float32", 0, 512, 0.3)
    prompts = [tok.encode("a b c", add_special_tokens=False)] * 3
    s = Sampling(temperature=1.0, max_new_tokens=5)
    a, b = eng.generate(prompts, s, [1, 2, 3]), eng.generate(prompts, s, [1, 2, 3])
    assert [g.token_ids for g in a] == [g.token_ids for g in b]
    assert all(1 <= len(g.token_ids) <= 5 for g in a)


@pytest.mark.gpu
@needs_gpu
def test_hf_engine_on_cuda():
    from pipeline.config import Sampling, TinyParams
    from pipeline.engine import HFEngine
    from pipeline.tiny.model import build_model, build_tokenizer

    tok = build_tokenizer(["a b c"])
    model = build_model(tok, TinyParams(hidden_size=32, layers=2, heads=2, intermediate_size=64), 0).cuda().eval()
    g = HFEngine(model, [tok.eos_token_id], tok.pad_token_id).generate([[3, 4]], Sampling(max_new_tokens=3), [0])
    assert len(g[0].token_ids) <= 3


@pytest.mark.gpu
@needs_gpu
def test_bf16_update_on_cuda_learns_from_fp32_master(tmp_path):
    """The CPU test of the master weights, where the update runs with bf16 autocast on the GPU."""
    import test_checkpoint

    from pipeline.config import TinyParams
    from pipeline.tiny.model import build_model, build_tokenizer

    tok = build_tokenizer(["a b c d e f g h ``` left down right up <prompt> </prompt>"])
    model = build_model(tok, TinyParams(hidden_size=32, layers=2, heads=2, intermediate_size=64), seed=0)
    test_checkpoint.test_a_bf16_model_learns_at_lr_1e6_from_its_fp32_master(tmp_path, (tok, model))
