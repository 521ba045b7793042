"""The transformers generation engine on a tiny random model: per-row determinism, stop tokens, filtering."""

from __future__ import annotations

import pytest
import torch

from pipeline.config import Sampling, TinyParams
from pipeline.engine import HFEngine, filter_logits
from pipeline.tiny.model import build_model, build_tokenizer


@pytest.fixture(scope="module")
def engine():
    tok = build_tokenizer(["a b c d e f g h ``` left down right up", "1 2 3 4 5"])
    model = build_model(tok, TinyParams(hidden_size=32, layers=2, heads=2, intermediate_size=64), seed=0).eval()
    return HFEngine(model, [tok.eos_token_id], tok.pad_token_id, batch_size=3), tok


def test_same_seed_same_sample_regardless_of_batch(engine):
    eng, tok = engine
    prompts = [tok.encode(t) for t in ["a b c", "d e", "f g h a b c d", "left", "up up"]]
    s = Sampling(temperature=1.0, max_new_tokens=6)
    full = eng.generate(prompts, s, [11, 12, 13, 14, 15])
    alone = eng.generate([prompts[2]], s, [13])
    assert full[2].token_ids == alone[0].token_ids
    again = eng.generate(prompts, s, [11, 12, 13, 14, 15])
    assert [g.token_ids for g in full] == [g.token_ids for g in again]
    other = eng.generate(prompts, s, [21, 22, 23, 24, 25])
    assert [g.token_ids for g in full] != [g.token_ids for g in other]


def test_rows_with_one_prompt_share_its_prefill(engine):
    """A task's group of rollouts: the prompt runs once for the group (the first forward has one row per distinct
    prompt), and each row samples what it samples alone."""
    eng, tok = engine
    p, q = tok.encode("a b c d"), tok.encode("up")
    prompts, seeds = [p, p, q, p, q], [1, 2, 3, 4, 5]
    sizes = []
    hook = eng.model.register_forward_pre_hook(lambda m, a, kw: sizes.append(kw["input_ids"].shape), with_kwargs=True)
    try:
        shared = eng.generate(prompts, Sampling(temperature=1.0, max_new_tokens=6), seeds)
    finally:
        hook.remove()
    assert sizes[0][0] == 2  # batch_size 3: rows p, p, q (sorted by length: q, q, p | p, p) -> 2 prompts
    for prompt, seed, g in zip(prompts, seeds, shared):
        alone = eng.generate([prompt], Sampling(temperature=1.0, max_new_tokens=6), [seed])[0]
        assert g.token_ids == alone.token_ids


def test_greedy_matches_argmax_and_stops_at_max_tokens(engine):
    eng, tok = engine
    p = tok.encode("a b c")
    g = eng.generate([p], Sampling(temperature=0.0, max_new_tokens=4), [0])[0]
    with torch.no_grad():
        logits = eng.model(input_ids=torch.tensor([p])).logits[0, -1]
    assert g.token_ids[0] == int(logits.argmax())
    assert len(g.token_ids) <= 4
    if not g.finished:
        assert len(g.token_ids) == 4


class CountingModel(torch.nn.Module):
    """Emits token 5, 6, then the stop token 2 for every row: a model whose output we know exactly."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.seen = 0

    def forward(self, input_ids, attention_mask, position_ids, past_key_values, use_cache):
        plan = [5, 6, 2]
        tok = plan[min(self.seen, 2)]
        self.seen += 1
        logits = torch.full((input_ids.shape[0], input_ids.shape[1], 10), -1e9)
        logits[:, -1, tok] = 0.0

        class Out:
            pass

        out = Out()
        out.logits = logits
        return out


def test_stop_token_ends_generation_and_is_kept():
    eng = HFEngine(CountingModel(), stop_ids=[2], pad_id=0)
    gens = eng.generate([[1, 3], [4]], Sampling(temperature=1.0, max_new_tokens=10), [1, 2])
    assert [g.token_ids for g in gens] == [[5, 6, 2], [5, 6, 2]]
    assert all(g.finished for g in gens)
    short = HFEngine(CountingModel(), stop_ids=[2], pad_id=0).generate([[1]], Sampling(max_new_tokens=2), [0])[0]
    assert short.token_ids == [5, 6] and not short.finished


def test_filter_logits_top_k_and_top_p():
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0]])
    k2 = filter_logits(logits, Sampling(temperature=1.0, top_k=2))
    assert torch.isfinite(k2).tolist() == [[True, True, False, False, False]]
    probs = torch.softmax(logits, -1)[0]  # ~0.64, 0.24, 0.09, ...
    p = filter_logits(logits, Sampling(temperature=1.0, top_p=0.7))
    assert torch.isfinite(p).tolist() == [[True, True, False, False, False]]
    assert probs[0] < 0.7 < probs[0] + probs[1]
    p_all = filter_logits(logits, Sampling(temperature=1.0, top_p=1.0))
    assert torch.isfinite(p_all).all()


def test_gumbel_sampling_draws_from_the_softmax():
    """Counter-based noise + Gumbel-max: over 60,000 rows the token frequencies match the softmax, and a row's
    token depends only on its key and step (not on the other rows)."""
    from pipeline.engine import sample

    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = torch.log(probs)[None, :].expand(20_000, 4)
    keys = torch.arange(20_000)
    counts = sum(torch.bincount(sample(logits, Sampling(temperature=1.0), keys, t), minlength=4) for t in range(3))
    assert torch.allclose(counts / counts.sum(), probs, atol=0.01)
    alone = sample(logits[:1], Sampling(temperature=1.0), keys[7:8], 2)
    assert alone.item() == sample(logits, Sampling(temperature=1.0), keys, 2)[7].item()
    assert sample(logits[:5], Sampling(temperature=0.0), keys[:5], 0).tolist() == [0] * 5


class ShrinkingModel(torch.nn.Module):
    """Row r emits its stop token (2) after r + 1 tokens; records the batch size of every forward."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.sizes, self.step = [], 0

    def forward(self, input_ids, attention_mask, position_ids, past_key_values, use_cache):
        self.sizes.append(input_ids.shape[0])
        if self.step == 0:
            self.rows = torch.arange(input_ids.shape[0])
        logits = torch.full((input_ids.shape[0], input_ids.shape[1], 10), -1e9)
        for i, r in enumerate(self.rows.tolist()):
            logits[i, -1, 2 if self.step >= r else 5] = 0.0
        self.step += 1
        self.rows = self.rows[[i for i, r in enumerate(self.rows.tolist()) if self.step - 1 < r]]

        class Out:
            pass

        out = Out()
        out.logits = logits
        return out


def test_finished_rows_leave_the_batch():
    model = ShrinkingModel()
    prompts = [[1], [3], [4], [6]]
    gens = HFEngine(model, stop_ids=[2], pad_id=0).generate(prompts, Sampling(max_new_tokens=10), [0, 1, 2, 3])
    assert [g.token_ids for g in gens] == [[2], [5, 2], [5, 5, 2], [5, 5, 5, 2]]
    assert model.sizes == [4, 3, 2, 1]  # each forward runs only the rows still generating
