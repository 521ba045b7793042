"""The update loop: masks cover only response tokens, advantages move log-probs the right way, the audit
rows add up, and the optimizer state survives a safetensors round trip."""

from __future__ import annotations

import copy

import pytest
import torch
from accelerate import Accelerator

from pipeline.config import TinyParams, UpdateParams
from pipeline.logprobs import Segment, response_logprobs, segment_logprobs, segments_of, token_logprobs
from pipeline.logprobs import batch_of as _batch
from pipeline.logprobs import segment_batch_logprobs as _logprobs
from pipeline.tiny.model import build_model, build_tokenizer
from pipeline.trainer import train_epoch


@pytest.fixture(scope="module")
def tiny():
    tok = build_tokenizer(["a b c d e f ``` left down right up"])
    model = build_model(tok, TinyParams(hidden_size=32, layers=2, heads=2, intermediate_size=64), seed=0)
    return tok, model


def test_mask_covers_only_response_tokens():
    segs = [Segment(0, [10, 11, 12, 13, 14], start=3), Segment(1, [20, 21, 22], start=1)]
    ids, mask = _batch(segs, pad_id=0, device="cpu")
    # position t predicts token t+1: responses 13,14 are predicted from positions 2,3
    assert mask[0].tolist() == [0, 0, 1, 1]
    assert mask[1].tolist() == [1, 1, 0, 0]
    assert ids[1].tolist() == [20, 21, 22, 0, 0]


def test_right_padding_needs_no_attention_mask(tiny):
    """The mask-free batch gives a short sequence the same log-probs as running it alone."""
    tok, model = tiny
    short, long_ = [3, 4, 5], [3, 4, 5, 6, 7, 8, 9]
    ids, _ = _batch([Segment(0, long_, 1), Segment(1, short, 1)], pad_id=0, device="cpu")
    with torch.no_grad():
        batched = token_logprobs(model, ids)[1, : len(short) - 1]
        alone = token_logprobs(model, torch.tensor([short]))[0]
    assert torch.allclose(batched, alone, atol=1e-5)


@pytest.mark.parametrize("checkpointing", [False, True])
@pytest.mark.parametrize("chunk", [0, 3])
def test_response_logprobs_match_the_full_forward(checkpointing, chunk):
    """Shared prompts run once, the output layer only at response positions: the same log-probs and the same
    gradients as one forward of every whole sequence (groups of three rows per prompt, prompts and responses of
    different lengths, one prompt alone; with gradient checkpointing the prompts are not shared)."""
    import random

    tok = build_tokenizer(["a b c d e f g h i j k l m n o p ``` left down right up"])
    model = build_model(tok, TinyParams(hidden_size=32, layers=2, heads=4, intermediate_size=64), seed=1)
    rng = random.Random(0)
    words = list(range(3, len(tok)))
    prompts = [[rng.choice(words) for _ in range(n)] for n in (4, 9, 6)]
    segs = []
    for i in range(9):
        p = prompts[i % 3]
        segs.append(Segment(i, p + [rng.choice(words) for _ in range(rng.randrange(1, 6))], len(p)))
    segs.append(Segment(9, [5, 6, 7, 8, 9], 2))
    model.train()
    if checkpointing:
        model.gradient_checkpointing_enable()
    ids, mask = _batch(segs, tok.pad_token_id, "cpu")
    full = token_logprobs(model, ids) * mask
    full.sum().backward()
    want = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    got, got_mask = _logprobs(model, segs, tok.pad_token_id, "cpu", chunk)
    got.sum().backward()
    assert torch.equal(got_mask, mask)
    assert torch.allclose(got, full, atol=1e-5)
    for a, b in zip(want, [p.grad for p in model.parameters()]):
        assert torch.allclose(a, b, atol=1e-5)


def test_response_logprobs_decline_models_they_cannot_split(tiny):
    tok, model = tiny
    other = copy.deepcopy(model)
    other.config.model_type = "gemma2"  # soft-caps its logits after the output layer
    assert response_logprobs(other, [[3, 4]], [[5]], tok.pad_token_id) is None
    assert response_logprobs(model, [[3, 4]], [[5]], tok.pad_token_id) is not None


def test_segments_one_per_turn():
    samples = [{"prompt_ids": [[1, 2], [1, 2, 3]], "response_ids": [[4], [5, 6]]}]
    segs = segments_of(samples)
    assert [(s.ids, s.start) for s in segs] == [([1, 2, 4], 2), ([1, 2, 3, 5, 6], 3)]


def test_a_turn_that_continues_the_conversation_joins_its_sequence():
    """Whole conversation in context: turn 2's prompt is turn 1's prompt and response and the environment's reply,
    so both turns are one sequence with two response spans; a turn whose prompt does not continue it starts anew."""
    samples = [{"prompt_ids": [[1, 2], [1, 2, 4, 7], [9, 4]], "response_ids": [[4], [5, 6], [8]]}]
    segs = segments_of(samples)
    assert [(s.ids, s.spans) for s in segs] == [([1, 2, 4, 7, 5, 6], [(2, 3), (4, 6)]), ([9, 4, 8], [(2, 3)])]
    assert segs[0].positions() == [1, 3, 4]


@pytest.mark.parametrize("splittable", [True, False])
def test_joined_turns_get_the_log_probs_and_gradients_of_separate_ones(splittable):
    tok = build_tokenizer(["a b c d e f g h i j k l m n o p ``` left down right up"])
    model = build_model(tok, TinyParams(hidden_size=32, layers=2, heads=4, intermediate_size=64), seed=2)
    if not splittable:
        model.config.model_type = "gemma2"  # the full-forward path
    p1, r1, env, r2 = [3, 4, 5, 6], [7, 8], [9, 10, 11], [12, 13, 14]
    sample = {"prompt_ids": [p1, p1 + r1 + env], "response_ids": [r1, r2]}
    joined = segments_of([sample, sample])  # two rows with one prompt: shared in the update
    assert len(joined) == 2 and joined[0].spans == [(4, 6), (9, 12)]
    separate = [Segment(0, p1 + r1, 4), Segment(0, p1 + r1 + env + r2, 9)] * 2
    model.train()
    got, mask = _logprobs(model, joined, tok.pad_token_id, "cpu")
    (got * mask).sum().backward()
    g_joined = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    want, want_mask = _logprobs(model, separate, tok.pad_token_id, "cpu")
    (want * want_mask).sum().backward()
    assert torch.allclose(got[mask.bool()], want[want_mask.bool()], atol=1e-5)
    for a, b in zip(g_joined, [p.grad for p in model.parameters()]):
        assert torch.allclose(a, b, atol=1e-5)
    with torch.no_grad():
        lp = segment_logprobs(model, joined, tok.pad_token_id, "cpu", 10_000)
    assert lp[id(joined[0])].shape == (5,)


def _samples(tok):
    good = tok.encode("``` left ```", add_special_tokens=False)
    bad = tok.encode("``` up ```", add_special_tokens=False)
    prompt = tok.encode("a b c", add_special_tokens=False)
    return [
        {"sample_id": f"s{i}", "kind": "first", "advantage": adv, "prompt_ids": [prompt], "response_ids": [resp]}
        for i, (adv, resp) in enumerate([(1.0, good), (-1.0, bad)] * 4)
    ]


def test_update_moves_logprobs_with_advantage_and_logs_rows(tiny):
    tok, model0 = tiny
    model = copy.deepcopy(model0)
    ref = copy.deepcopy(model0).eval()
    samples = _samples(tok)
    segs = segments_of(samples)
    before = segment_logprobs(model, segs, tok.pad_token_id, "cpu", 10_000)
    u = UpdateParams(lr=5e-3, minibatch_size=4, ppo_epochs=3, kl_coef=0.001)
    acc = Accelerator(cpu=True)
    opt = torch.optim.AdamW(model.parameters(), lr=u.lr)
    rows, steps = train_epoch(acc, model, ref, opt, samples, u, tok.pad_token_id, seed=0)
    after = segment_logprobs(model, segs, tok.pad_token_id, "cpu", 10_000)
    good = [s for s in segs if samples[s.sample]["advantage"] > 0]
    bad = [s for s in segs if samples[s.sample]["advantage"] < 0]
    assert all(after[id(s)].sum() > before[id(s)].sum() for s in good)
    assert all(after[id(s)].sum() < before[id(s)].sum() for s in bad)
    assert len(steps) == 3 * 2 and len(rows) == 3 * len(samples)
    assert all(r["n_tokens"] == len(samples[0]["response_ids"][0]) for r in rows)
    assert all(torch.isfinite(torch.tensor(s["grad_norm"])) and s["grad_norm"] > 0 for s in steps)
    # the step loss is the mean over its samples of their summed token losses
    for st in steps:
        mine = [r["loss"] for r in rows if r["step"] == st["step"]]
        assert abs(sum(mine) / len(mine) - st["loss"]) < 1e-6
    # first step: ratios are exactly 1 (old log-probs recomputed just before the update)
    first = [r for r in rows if r["step"] == 0]
    assert all(abs(r["ratio_mean"] - 1.0) < 1e-5 for r in first)


def test_reflection_kl_coefficient_applies_to_reflection_samples_only(tiny):
    """kl_coef_reflection weighs the KL of reflection samples alone: with kl_coef 0 and zero advantages only
    they carry a loss, and the update pulls them back toward the reference policy."""
    tok, model0 = tiny
    ref = copy.deepcopy(model0).eval()
    model = copy.deepcopy(model0)
    with torch.no_grad():  # a policy that has drifted from the reference
        for q in model.parameters():
            q.add_(0.05 * torch.randn_like(q, generator=torch.Generator().manual_seed(q.numel())))
    samples = [dict(s, advantage=0.0, kind=("reflection" if i % 2 else "first")) for i, s in enumerate(_samples(tok))]
    u = UpdateParams(lr=1e-3, minibatch_size=4, ppo_epochs=2, kl_coef=0.0, kl_coef_reflection=1.0)
    assert u.kl_of("reflection") == 1.0 and u.kl_of("first") == 0.0 == u.kl_of("second")
    assert UpdateParams(kl_coef=0.02).kl_of("reflection") == 0.02  # null: the common coefficient
    segs = [s for s in segments_of(samples) if samples[s.sample]["kind"] == "reflection"]
    kl_before = _k3(model, ref, segs, tok)
    opt = torch.optim.AdamW(model.parameters(), lr=u.lr)
    rows, _ = train_epoch(Accelerator(cpu=True), model, ref, opt, samples, u, tok.pad_token_id, seed=0)
    assert all(r["loss"] == 0.0 for r in rows if r["kind"] == "first")
    assert all(r["loss"] > 0.0 and r["kl"] > 0.0 for r in rows if r["kind"] == "reflection")
    assert _k3(model, ref, segs, tok) < kl_before


def _k3(model, ref, segs, tok) -> float:
    from pipeline.losses import k3_kl

    lp = segment_logprobs(model, segs, tok.pad_token_id, "cpu", 10_000)
    lq = segment_logprobs(ref, segs, tok.pad_token_id, "cpu", 10_000)
    return float(sum(k3_kl(lp[id(s)], lq[id(s)]).sum() for s in segs))


def test_replay_adds_the_teacher_forced_loss_of_the_exercises(tiny):
    """With replay on, every step logs the exercises' loss, and the update lowers it even when the RL samples
    carry no signal (zero advantages, no KL)."""
    tok, model0 = tiny
    model = copy.deepcopy(model0)
    ref = copy.deepcopy(model0).eval()
    samples = [dict(s, advantage=0.0) for s in _samples(tok)]
    prompt, answer = tok.encode("a b", add_special_tokens=False), tok.encode("c d e f", add_special_tokens=False)
    replay = [(prompt, answer)] * 3
    u = UpdateParams(lr=5e-3, minibatch_size=4, ppo_epochs=3, kl_coef=0.0, replay_coef=1.0, replay_batch=2)
    opt = torch.optim.AdamW(model.parameters(), lr=u.lr)
    _, steps = train_epoch(Accelerator(cpu=True), model, ref, opt, samples, u, tok.pad_token_id, 0, replay)
    losses = [s["replay_loss"] for s in steps]
    assert len(losses) == 6 and all(x is not None for x in losses) and losses[-1] < losses[0]
    plain = copy.deepcopy(model0)
    _, off = train_epoch(
        Accelerator(cpu=True),
        plain,
        ref,
        torch.optim.AdamW(plain.parameters()),
        samples,
        UpdateParams(minibatch_size=4, kl_coef=0.0, replay_coef=0.0),
        tok.pad_token_id,
        0,
        replay,
    )
    assert all(s["replay_loss"] is None for s in off)  # replay_coef 0: off, whatever is passed


def test_an_on_policy_single_step_needs_no_old_log_prob_pass(tiny, monkeypatch):
    """One pass, one minibatch: the step trains on the very policy that sampled, so the old log-probs are the
    trained ones (ratio 1) and no separate forward pass computes them; with two passes it is computed."""
    import pipeline.trainer as trainer

    tok, model0 = tiny
    calls = []
    real = trainer.segment_logprobs
    monkeypatch.setattr(trainer, "segment_logprobs", lambda m, segs, *a: calls.append(len(segs)) or real(m, segs, *a))
    samples = _samples(tok)
    for ppo_epochs, expect in ((1, 0), (2, len(segments_of(samples)))):
        calls.clear()
        model = copy.deepcopy(model0)
        u = UpdateParams(lr=1e-3, minibatch_size=len(samples), ppo_epochs=ppo_epochs, kl_coef=0.0, replay_coef=0.0)
        rows, _ = train_epoch(
            Accelerator(cpu=True), model, model0, torch.optim.AdamW(model.parameters()), samples, u, tok.pad_token_id, 0
        )
        assert calls == [expect]
        assert all(abs(r["ratio_mean"] - 1.0) < 1e-6 for r in rows if r["step"] == 0)


@pytest.mark.parametrize("k", [0, 1, 3])
def test_eval_kl_reads_the_first_k_replies_of_each_task(monkeypatch, tmp_path, k):
    """evaluate.kl_samples: eval_kl is measured on the first k of each task's held-out samples (the episodes
    come k per task in a row), and not at all with 0."""
    from types import SimpleNamespace

    import pipeline.engine
    import pipeline.logprobs
    from pipeline.config import Params
    from pipeline.erl import evaluate as erl

    p = Params.model_validate({"evaluate": {"samples_per_task": 4, "kl_samples": k}})
    episodes = [SimpleNamespace(prompt_ids=[[t]], response_ids=[[i]]) for t in range(3) for i in range(4)]
    seen = []
    monkeypatch.setattr(pipeline.engine, "load_causal_lm", lambda *a, **kw: (None, None))
    monkeypatch.setattr(pipeline.logprobs, "mean_token_kl", lambda m, r, replies, *a: seen.extend(replies) or 0.5)
    policy = SimpleNamespace(engine=SimpleNamespace(model=object(), device="cpu", pad_id=0))
    got = erl.kl_to_initial(p, policy, tmp_path, episodes)
    assert got == (None if k == 0 else 0.5)
    assert [(r["prompt_ids"][0][0], r["response_ids"][0][0]) for r in seen] == [
        (t, i) for t in range(3) for i in range(k)
    ]


def test_log_prob_passes_run_under_the_accelerators_autocast(tiny):
    """accelerate puts bf16 autocast around the prepared model's forward; the update's log-prob passes call the
    backbone and output layer themselves, so they must run under the same autocast (on GPUs the fp32 master
    weights would otherwise be multiplied in fp32, with twice the activation memory)."""
    from accelerate.state import AcceleratorState

    tok, model0 = tiny
    model = copy.deepcopy(model0)
    seen = []
    hook = model.model.layers[0].mlp.down_proj.register_forward_hook(lambda m, a, out: seen.append(out.dtype))
    AcceleratorState._reset_state(True)
    try:
        acc = Accelerator(cpu=True, mixed_precision="bf16")
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        model, opt = acc.prepare(model, opt)
        u = UpdateParams(lr=1e-4, minibatch_size=4, ppo_epochs=2, kl_coef=0.0)
        train_epoch(acc, model, None, opt, _samples(tok), u, tok.pad_token_id, seed=0)
    finally:
        hook.remove()
        AcceleratorState._reset_state(True)
    assert seen and set(seen) == {torch.bfloat16}
