"""Warm-start corpus for the embedded default: self-supervised exercises on boards from random play. It
teaches the reply format and how to read a board, never a solution: actions in the corpus are uniformly
random, and no text states what a symbol means or which tile is the goal. No torch here."""
from __future__ import annotations

import random
from dataclasses import dataclass

from pipeline.envs.base import Env, Task, Trace
from pipeline.prompts import PromptSet, reflector_messages, retry_system


@dataclass
class Example:
    messages: list[dict]
    answer: str
    kind: str


def random_play(env: Env, task: Task, rng: random.Random, max_moves: int):
    """States visited by uniformly random actions (stopping before the episode ends), with the trace."""
    state = env.reset(task)
    states, trace = [(state, None)], Trace(budget=max_moves)
    for _ in range(rng.randint(0, max_moves)):
        nxt, step = env.step(state, f"```{rng.choice(env.actions)}```")
        trace.steps.append(step)
        if step.done:
            break
        state = nxt
        states.append((state, step))
    return states, trace


def format_examples(env: Env, prompts: PromptSet, tasks: list[Task], n: int, seed: int) -> list[Example]:
    """Turn-format exercises: a board under s0 (or under a reflection-like prompt) answered with a random
    action, and a failed attempt's summary answered with a <prompt> block that restates s0."""
    rng = random.Random(f"{seed}:warmstart")
    out: list[Example] = []
    while len(out) < n:
        task = rng.choice(tasks)
        states, trace = random_play(env, task, rng, 6)
        roll = rng.random()
        if roll < 0.15 and trace.steps:
            summary = env.summary(trace, env.render(env.reset(task)), prompts.compact_summary)
            msgs = reflector_messages(prompts, summary, None)
            out.append(Example(msgs, f"<prompt> {prompts.system} </prompt>", "reflect-format"))
            continue
        state, last = rng.choice(states)
        system = prompts.system if roll < 0.75 else retry_system(prompts, prompts.system)
        msgs = [{"role": "system", "content": system}, {"role": "user", "content": env.message(state, last)}]
        out.append(Example(msgs, f"```{rng.choice(env.actions)}```", "format"))
    return out


def corpus_texts(env: Env, prompts: PromptSet, tasks: list[Task], seed: int, n_plays: int = 300) -> list[str]:
    """Text covering everything the embedded tokenizer must spell: prompts, boards, messages, feedback."""
    rng = random.Random(f"{seed}:vocab")
    texts = [v for v in vars(prompts).values() if isinstance(v, str)] + ["<prompt> </prompt> ``` " + " ".join(env.actions)]
    texts += [str(i) for i in range(100)]
    for _ in range(n_plays):
        task = rng.choice(tasks)
        states, trace = random_play(env, task, rng, 8)
        texts += [env.message(s, last) for s, last in states]
        if trace.steps:
            texts += [env.summary(trace, env.render(env.reset(task)), c) for c in (False, True)] + [env.feedback(trace)]
    return texts
