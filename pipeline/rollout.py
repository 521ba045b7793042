"""Multi-turn episodes: every active episode of a turn goes into one batched generation call, each reply steps
its environment (a turn's replies together: an environment that calls a server batches them), and the exact token
ids the policy saw and produced are kept for training (environment tokens are never trained on). The environment
decides the role of each message it sends (``user``, or ``tool`` for a tool's result) and which tools the chat
template offers."""

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
    messages: list[str] = field(default_factory=list)  # the environment's message of each turn
    roles: list[str] = field(default_factory=list)  # their chat roles ("user", or "tool" for a tool's result)
    prompt_ids: list[list[int]] = field(default_factory=list)
    response_ids: list[list[int]] = field(default_factory=list)
    responses: list[str] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    tool_calls: int = 0  # tool calls its steps made (searches, ...)
    state: Any = None

    def trace(self, budget: int) -> Trace:
        return Trace(steps=list(self.steps), budget=budget)

    @property
    def done(self) -> bool:
        return bool(self.steps) and self.steps[-1].done


def encode_chat(tok, messages: list[dict], max_tokens: int, tools: list[dict] | None = None) -> list[int]:
    """Chat-template a conversation that ends with a user (or tool) turn, offering ``tools`` (JSON schemas) when
    given; when too long, drop the oldest exchanges first, then cut from the left."""
    msgs = list(messages)
    extra = {"tools": tools} if tools else {}
    while True:
        text = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False, **extra)
        ids = tok.encode(text, add_special_tokens=False)
        if len(ids) <= max_tokens:
            return ids
        has_system = msgs[0]["role"] == "system"
        if len(msgs) > (3 if has_system else 2):  # drop one (user, assistant) pair after the system prompt
            del msgs[1 if has_system else 0 : 3 if has_system else 2]
            continue
        return ids[-max_tokens:]


def turn_messages(
    system: str, users: Sequence[str], replies: Sequence[str], history: int, roles: Sequence[str] | None = None
) -> list[dict]:
    """System prompt, the last ``history`` exchanges (0 = all), and the current message; ``roles``: the role of
    each of ``users`` (default: all "user")."""
    roles = list(roles) if roles else ["user"] * len(users)
    past = list(zip(users[:-1], roles[:-1], replies))
    if history > 0:
        past = past[-(history - 1) :] if history > 1 else []
    msgs = [{"role": "system", "content": system}]
    for u, role, r in past:
        msgs += [{"role": role, "content": u}, {"role": "assistant", "content": r}]
    msgs.append({"role": roles[-1], "content": users[-1]})
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
    tools = env.tools()
    for turn in range(budget):
        active = [ep for ep in episodes if not ep.done]
        if not active:
            break
        prompts = []
        for ep in active:
            last = ep.steps[-1] if ep.steps else None
            ep.messages.append(env.message(ep.state, last))
            ep.roles.append(env.role_of(last) if last else "user")
            msgs = turn_messages(ep.system, ep.messages, ep.responses, history, ep.roles)
            prompts.append(encode_chat(tok, msgs, max_prompt_tokens, tools))
        gens = engine.generate(prompts, sampling, [derive_seed(ep.seed, "turn", turn) for ep in active])
        texts = [tok.decode(g.token_ids, skip_special_tokens=True) for g in gens]
        stepped = env.step_many([ep.state for ep in active], texts)
        for ep, p, g, text, (state, step) in zip(active, prompts, gens, texts, stepped):
            ep.state = state
            ep.prompt_ids.append(p)
            ep.response_ids.append(g.token_ids)
            ep.responses.append(text)
            ep.steps.append(step)
            ep.tool_calls += env.tool_calls(step)
            if step.done:
                bar.update(1)
    bar.close()
    return episodes


def replay_prompts(
    tok, ep: Episode, system: str, history: int, max_prompt_tokens: int, tools: list[dict] | None = None
) -> list[list[int]]:
    """The prompt ids each turn of ``ep`` would have had under another system prompt: how a successful
    second attempt is put back under s0 for distillation."""
    return [
        encode_chat(
            tok,
            turn_messages(system, ep.messages[: t + 1], ep.responses[:t], history, ep.roles[: t + 1]),
            max_prompt_tokens,
            tools,
        )
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
