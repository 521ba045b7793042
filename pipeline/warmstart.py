"""Warm-start corpus for the embedded default: self-supervised exercises on boards from random play. It
teaches the reply format and how to read a board, never a solution: actions in the corpus are uniformly
random, and no text states what a symbol means or which tile is the goal. No torch here."""
from __future__ import annotations

import random
from dataclasses import dataclass

from pipeline.envs.base import Env, Task, Trace, random_cell_note
from pipeline.prompts import PromptSet, reflector_messages, retry_system


@dataclass
class Example:
    messages: list[dict]
    answer: str
    kind: str


READING_KINDS = ("where", "around", "next", "next")  # the default mix of board-reading exercises


def random_reply(env: Env, state, rng: random.Random) -> str:
    """A well-formed reply with a uniformly random action: the environment's own ``random_reply`` when it has
    one (tool-use environments), else one of ``env.actions`` in a ``` block."""
    if hasattr(env, "random_reply"):
        return env.random_reply(state, rng)
    return f"```{rng.choice(env.actions)}```"


def random_play(env: Env, task: Task, rng: random.Random, max_moves: int):
    """States visited by uniformly random actions (stopping before the episode ends), with the trace."""
    state = env.reset(task)
    states, trace = [(state, None)], Trace(budget=max_moves)
    for _ in range(rng.randint(0, max_moves)):
        nxt, step = env.step(state, random_reply(env, state, rng))
        trace.steps.append(step)
        if step.done:
            break
        state = nxt
        states.append((state, step))
    return states, trace


def format_examples(env: Env, prompts: PromptSet, tasks: list[Task], n: int, seed: int,
                    reflect_share: float = 0.15, memory_share: float = 0.0) -> list[Example]:
    """Turn-format exercises: a board under s0 (or under a reflection-like prompt) answered with a random
    action, and (``reflect_share`` of them) a failed attempt's summary answered with a <prompt> block that
    restates s0. The rest split 12:5 between s0 and retry prompts. ``memory_share`` of the reflection
    exercises show a memory (s0 with a random note, as an earlier reflection would be) that is not copied."""
    rng = random.Random(f"{seed}:warmstart")
    s0_until = reflect_share + (1.0 - reflect_share) * (0.6 / 0.85)  # 0.75 at the default share
    out: list[Example] = []
    while len(out) < n:
        task = rng.choice(tasks)
        states, trace = random_play(env, task, rng, 6)
        roll = rng.random()
        if roll < reflect_share and trace.steps:
            out.append(reflection_example(env, prompts, task, trace, rng, memory_share))
            continue
        state, last = rng.choice(states)
        if roll < s0_until:
            system = prompts.system
        else:  # a retry's system prompt: a reflection (here s0, maybe with a note like a copied one) + format reminder
            cell = f" {random_note(env, rng)}" if prompts.compact_summary and rng.random() < 0.5 else ""
            system = retry_system(prompts, prompts.system + cell)
        msgs = [{"role": "system", "content": system}, {"role": "user", "content": env.message(state, last)}]
        out.append(Example(msgs, random_reply(env, state, rng), "format"))
    return out


def reflection_example(env: Env, prompts: PromptSet, task: Task, trace: Trace, rng: random.Random,
                       memory_share: float) -> Example:
    """The reflection-copy exercise on one failed random-play attempt: its summary (with, ``memory_share`` of
    the time, a distracting memory, half of those garbled) answered with a <prompt> block that restates s0 and copies a fact from the
    feedback (the environment's reflection_note: where the attempt ended, or its last move). It opens a channel
    from the feedback to the retry; what to do with it is left to RL."""
    summary = env.summary(trace, env.render(env.reset(task)), prompts.compact_summary)
    memory = None
    if memory_share > 0 and rng.random() < memory_share:
        memory = f"{prompts.system} {random_note(env, rng)}" if prompts.compact_summary else prompts.system
        if rng.random() < 0.5:
            memory = garbled(memory, rng)
    msgs = reflector_messages(prompts, summary, memory)
    note = env.reflection_note(trace) if hasattr(env, "reflection_note") and prompts.compact_summary else None
    note = f" {note}" if note else ""
    return Example(msgs, f"<prompt> {prompts.system}{note} </prompt>", "reflect-format")


def garbled(text: str, rng: random.Random) -> str:
    """A reflection gone wrong, as memories come to hold when a garbled reflection's retry succeeds by luck: a
    prefix of ``text``'s words followed by 1-8 of its words at random. Half the distracting memories of the copy
    exercise are such, so that the reflector learns to copy from the feedback whatever the memory holds."""
    words = text.split()
    keep = words[: rng.randint(1, len(words))]
    return " ".join(keep + [rng.choice(words) for _ in range(rng.randint(1, 8))])


def replay_examples(env: Env, prompts: PromptSet, tasks: list[Task], n: int, seed: int, reading_share: float,
                    kinds: tuple[str, ...] = READING_KINDS, memory_share: float = 0.0) -> list[Example]:
    """Warm-start exercises to replay during RL updates (``update.replay_coef``, like the pretraining mix of
    PPO-ptx): ``reading_share`` board-reading exercises of ``kinds`` (none for environments without them) and
    reflection-copy exercises, fresh ones per ``seed``. Never the warm start's random-action turns, which would
    pull the action policy back toward random play."""
    out = reading_examples(env, tasks, round(n * reading_share), seed, kinds)
    rng = random.Random(f"{seed}:replay")
    while len(out) < n:
        task = rng.choice(tasks)
        _, trace = random_play(env, task, rng, 6)
        if trace.steps:
            out.append(reflection_example(env, prompts, task, trace, rng, memory_share))
    rng.shuffle(out)
    return out


def random_note(env: Env, rng: random.Random) -> str:
    """A note like a reflection's copied one, on a random cell: the environment's ``random_note`` when it has
    one, else ``last r c`` on a 5x5 board."""
    return env.random_note(rng) if hasattr(env, "random_note") else random_cell_note(rng)


def reading_examples(env: Env, tasks: list[Task], n: int, seed: int,
                     kinds: tuple[str, ...] = READING_KINDS) -> list[Example]:
    """Board-reading exercises on states from random play (see FrozenLake.reading_exercise), their kinds drawn
    uniformly from ``kinds`` (repeat a kind to weight it); environments without exercises give none."""
    exercise = getattr(__import__(type(env).__module__, fromlist=["reading_exercise"]), "reading_exercise", None)
    if exercise is None:
        return []
    rng = random.Random(f"{seed}:reading")
    out: list[Example] = []
    while len(out) < n:
        states, _ = random_play(env, rng.choice(tasks), rng, 6)
        state, _ = rng.choice(states)
        kind = rng.choice(kinds)
        system, user, answer = exercise(env, state, kind, rng.choice(env.actions), rng)
        out.append(Example([{"role": "system", "content": system}, {"role": "user", "content": user}], answer, kind))
    return out


def corpus_texts(env: Env, prompts: PromptSet, tasks: list[Task], seed: int, n_plays: int = 300,
                 kinds: tuple[str, ...] = READING_KINDS) -> list[str]:
    """Text covering everything the embedded tokenizer must spell: prompts, boards, messages, feedback, and the
    reading exercises of ``kinds``."""
    rng = random.Random(f"{seed}:vocab")
    texts = [v.format(summary="") if k == "no_reflection_system" else v
             for k, v in vars(prompts).items() if isinstance(v, str)]
    texts += ["<prompt> </prompt> ``` " + " ".join(getattr(env, "actions", ()))]
    texts += reading_vocabulary(env, kinds)
    if hasattr(env, "vocabulary"):  # every word the environment can show (a knowledge base, questions, ...)
        texts += env.vocabulary(tasks)
    texts += [str(i) for i in range(100)]
    for _ in range(n_plays):
        task = rng.choice(tasks)
        states, trace = random_play(env, task, rng, 8)
        texts += [env.message(s, last) for s, last in states]
        if trace.steps:
            texts += [env.summary(trace, env.render(env.reset(task)), c) for c in (False, True)] + [env.feedback(trace)]
    return texts


def reading_vocabulary(env: Env, kinds: tuple[str, ...] = READING_KINDS) -> list[str]:
    """The words of the exercises in use (only those: an unused exercise must not change the tokenizer): their
    prompts, the answer words the environment declares for them (EXERCISE_WORDS), and the words of the "next"
    exercise and of the reflection's copied note."""
    mod = __import__(type(env).__module__, fromlist=["EXERCISE_PROMPTS"])
    prompts, words = getattr(mod, "EXERCISE_PROMPTS", {}), getattr(mod, "EXERCISE_WORDS", {})
    extra = "".join(f" {words[k]}" for k in dict.fromkeys(kinds) if k in words)
    return [v for k, v in prompts.items() if k in kinds] + ["action : end yes no last" + extra]
