"""Multi-turn episodes: every active episode of a turn goes into one batched generation call, the last
```...``` block of each reply steps its environment, and the exact token ids the policy saw and produced
are kept for training (environment tokens are never trained on)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.config import Params, Sampling
from pipeline.envs import budget_of
from pipeline.envs.base import Env, Step, Task, Trace
from pipeline.progress import Progress
from pipeline.seeding import derive_seed


@dataclass
class Episode:
    rollout_id: str
    task: Task
    system: str
    seed: int
    initial_observation: str = ""
    messages: list[str] = field(default_factory=list)  # user message of each turn
    prompt_ids: list[list[int]] = field(default_factory=list)
    response_ids: list[list[int]] = field(default_factory=list)
    responses: list[str] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    state: Any = None

    def trace(self, budget: int) -> Trace:
        return Trace(steps=list(self.steps), budget=budget)

    @property
    def done(self) -> bool:
        return bool(self.steps) and self.steps[-1].done


def encode_chat(tok, messages: list[dict], max_tokens: int) -> list[int]:
    """Chat-template a conversation that ends with a user turn; when too long, drop the oldest exchanges
    first, then cut from the left."""
    msgs = list(messages)
    while True:
        text = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        ids = tok.encode(text, add_special_tokens=False)
        if len(ids) <= max_tokens:
            return ids
        has_system = msgs[0]["role"] == "system"
        if len(msgs) > (3 if has_system else 2):  # drop one (user, assistant) pair after the system prompt
            del msgs[1 if has_system else 0 : 3 if has_system else 2]
            continue
        return ids[-max_tokens:]


def turn_messages(system: str, users: Sequence[str], replies: Sequence[str], history: int) -> list[dict]:
    """System prompt, the last ``history`` exchanges (0 = all), and the current user message."""
    past = list(zip(users[:-1], replies))
    if history > 0:
        past = past[-(history - 1) :] if history > 1 else []
    msgs = [{"role": "system", "content": system}]
    for u, r in past:
        msgs += [{"role": "user", "content": u}, {"role": "assistant", "content": r}]
    msgs.append({"role": "user", "content": users[-1]})
    return msgs


def run_episodes(
    engine,
    tok,
    env: Env,
    episodes: list[Episode],
    sampling: Sampling,
    history: int,
    max_prompt_tokens: int,
    budget: int,
    desc: str = "rollouts",
) -> list[Episode]:
    """Play every episode to its end, one batched generation per turn."""
    for ep in episodes:
        ep.state = env.reset(ep.task)
        ep.initial_observation = env.render(ep.state)
    bar = Progress(len(episodes), desc)
    for turn in range(budget):
        active = [ep for ep in episodes if not ep.done]
        if not active:
            break
        prompts = []
        for ep in active:
            ep.messages.append(env.message(ep.state, ep.steps[-1] if ep.steps else None))
            msgs = turn_messages(ep.system, ep.messages, ep.responses, history)
            prompts.append(encode_chat(tok, msgs, max_prompt_tokens))
        gens = engine.generate(prompts, sampling, [derive_seed(ep.seed, "turn", turn) for ep in active])
        for ep, p, g in zip(active, prompts, gens):
            text = tok.decode(g.token_ids, skip_special_tokens=True)
            ep.state, step = env.step(ep.state, text)
            ep.prompt_ids.append(p)
            ep.response_ids.append(g.token_ids)
            ep.responses.append(text)
            ep.steps.append(step)
            if step.done:
                bar.update(1)
    bar.close()
    return episodes


def replay_prompts(tok, ep: Episode, system: str, history: int, max_prompt_tokens: int) -> list[list[int]]:
    """The prompt ids each turn of ``ep`` would have had under another system prompt: how a successful
    second attempt is put back under s0 for distillation."""
    return [
        encode_chat(tok, turn_messages(system, ep.messages[: t + 1], ep.responses[:t], history), max_prompt_tokens)
        for t in range(len(ep.responses))
    ]


def play(p: Params, policy, env: Env, episodes: list[Episode], sampling: Sampling, desc: str) -> list[Episode]:
    """:func:`run_episodes` with the run's settings: ``policy``'s engine and tokenizer, ``policy.history``,
    ``policy.max_prompt_tokens`` and the environment's step budget."""
    return run_episodes(
        policy.engine,
        policy.tokenizer,
        env,
        episodes,
        sampling,
        p.policy.history,
        p.policy.max_prompt_tokens,
        budget_of(p.env),
        desc=desc,
    )
