"""Multi-turn rollouts with a scripted engine (no model): turn protocol, history windows, token bookkeeping."""

from __future__ import annotations

from pipeline.config import Sampling
from pipeline.engine import Generation
from pipeline.envs.frozenlake import FrozenLake, solve_path
from pipeline.rollout import Episode, encode_chat, replay_prompts, run_episodes, turn_messages


class FakeTok:
    """Characters as token ids; a minimal chat template."""

    def apply_chat_template(self, msgs, add_generation_prompt, tokenize):
        text = "".join(f"<{m['role']}>{m['content']}" for m in msgs)
        return text + ("<assistant>" if add_generation_prompt else "")

    def encode(self, text, add_special_tokens=False):
        return [ord(c) for c in text]

    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(i) for i in ids)


class ScriptedEngine:
    """Replies with the next action of a fixed plan per episode, recognised from the prompt's seed tag."""

    def __init__(self, plans):
        self.plans = plans
        self.calls = []

    def generate(self, prompts, sampling, seeds):
        self.calls.append(len(prompts))
        out = []
        for p in prompts:
            text = "".join(chr(i) for i in p)
            key = text.split("<system>", 1)[1].split("<", 1)[0]
            action = self.plans[key].pop(0)
            out.append(Generation([ord(c) for c in f"```{action}```"], True))
        return out


def test_turn_messages_history_window():
    users, replies = ["u1", "u2", "u3"], ["r1", "r2"]
    assert turn_messages("s", users, replies, 1) == [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "u3"},
    ]
    two = turn_messages("s", users, replies, 2)
    assert [m["content"] for m in two] == ["s", "u2", "r2", "u3"]
    full = turn_messages("s", users, replies, 0)
    assert [m["content"] for m in full] == ["s", "u1", "r1", "u2", "r2", "u3"]


def test_encode_chat_drops_oldest_exchange_first():
    tok = FakeTok()
    msgs = turn_messages("sys", ["a" * 50, "b" * 50, "c"], ["x", "y"], 0)
    ids = encode_chat(tok, msgs, 80)
    text = "".join(chr(i) for i in ids)
    assert text.startswith("<system>sys") and "a" * 50 not in text and text.endswith("c<assistant>")


def test_run_episodes_batches_turns_and_records_tokens():
    env = FrozenLake(min_size=3, max_size=4)
    tasks = env.generate("train", 3, seed=1)
    plans = {f"t{i}": list(solve_path(t)) for i, t in enumerate(tasks)}
    plans["t2"] = ["left"] * 8  # may bump into the wall: must still end within the budget
    engine = ScriptedEngine({k: v[:] for k, v in plans.items()})
    eps = [Episode(f"r{i}", t, f"t{i}", seed=i) for i, t in enumerate(tasks)]
    run_episodes(engine, FakeTok(), env, eps, Sampling(), history=1, max_prompt_tokens=10_000, budget=8)
    for ep, t in zip(eps[:2], tasks[:2]):
        assert ep.steps[-1].event == "goal" and len(ep.steps) == t.optimal_len
        assert env.reward(ep.trace(8)) == 1.0
    assert len(eps[2].steps) <= 8 and eps[2].done
    # One generate call per turn, each with all still-active episodes.
    assert engine.calls[0] == 3 and engine.calls == sorted(engine.calls, reverse=True)
    for ep in eps:
        assert len(ep.prompt_ids) == len(ep.response_ids) == len(ep.responses) == len(ep.messages) == len(ep.steps)
        assert ep.initial_observation in ep.messages[0]
    # The distillation replay changes the system prompt and nothing else.
    replay = replay_prompts(FakeTok(), eps[0], "S0", 1, 10_000)
    for orig, new in zip(eps[0].prompt_ids, replay):
        o, n = "".join(map(chr, orig)), "".join(map(chr, new))
        assert n.startswith("<system>S0") and o.split("<user>", 1)[1] == n.split("<user>", 1)[1]
