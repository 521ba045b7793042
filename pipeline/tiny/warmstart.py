"""The warm-start curriculum of the embedded default: self-supervised exercises on states from random play, in
place of pretraining. It teaches the reply format, how to read a board (an environment's reading exercises, its
``warmstart()`` hook: the built-in games' are in ``pipeline/tiny/<game>.py``) and how to copy a fact from the
feedback into a reflection (its ``reflection_note`` hook), never a solution: actions in the corpus are uniformly
random, and no text states what a symbol means or which tile is the goal. An environment with neither hook still
gets the reply format and its vocabulary. No torch here."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from pipeline.envs.base import Env, Task, Trace
from pipeline.errors import InputError
from pipeline.prompts import PromptSet, reflector_messages, retry_system

# Random play for the exercises stops after at most this many moves (the corpus's vocabulary: 8).
PLAY_MOVES = 6
VOCAB_PLAYS, VOCAB_MOVES = 300, 8


@dataclass
class Example:
    messages: list[dict]
    answer: str
    kind: str


def encode_example(tok, ex: Example) -> tuple[list[int], list[int]]:
    """Prompt ids (chat template, generation prompt) and answer ids ending with the stop token."""
    text = tok.apply_chat_template(ex.messages, add_generation_prompt=True, tokenize=False)
    prompt = tok.encode(text, add_special_tokens=False)
    answer = tok.encode(ex.answer, add_special_tokens=False) + [tok.eos_token_id]
    return prompt, answer


@dataclass(frozen=True)
class Exercises:
    """An environment's board-reading exercises (what its ``warmstart()`` hook returns).

    ``reading(env, state, kind, action, rng) -> (system, user, answer)``: one exercise of ``kind`` on ``state``
    (``action``: a random one of ``env.actions``, for exercises that ask what it would do; None when the
    environment has no fixed move set). ``prompts``: the system prompt of each
    kind (the kinds ``policy.tiny.warmstart_exercises`` may name). ``words``: answer words of a kind that no prompt,
    board or feedback contains (the tokenizer must know them). ``random_note(env, rng)``: a note of the form the
    reflection copies, on a random cell (default: ``last r c`` on a 5x5 board)."""

    reading: Callable
    prompts: dict[str, str]
    words: dict[str, str] = field(default_factory=dict)
    random_note: Callable | None = None


def random_play(env: Env, task: Task, rng: random.Random, max_moves: int):
    """States visited by uniformly random actions (stopping before the episode ends), with the trace."""
    state = env.reset(task)
    states, trace = [(state, None)], Trace(budget=max_moves)
    for _ in range(rng.randint(0, max_moves)):
        nxt, step = env.step(state, env.random_reply(state, rng))
        trace.steps.append(step)
        if step.done:
            break
        state = nxt
        states.append((state, step))
    return states, trace


def format_examples(
    env: Env,
    prompts: PromptSet,
    tasks: list[Task],
    n: int,
    seed: int,
    reflect_share: float = 0.15,
    memory_share: float = 0.0,
) -> list[Example]:
    """Turn-format exercises: a board under s0 (or under a reflection-like prompt) answered with a random
    action, and (``reflect_share`` of them) a failed attempt's summary answered with a <prompt> block that
    restates s0. The rest split 12:5 between s0 and retry prompts. ``memory_share`` of the reflection
    exercises show a memory (s0 with a random note, as an earlier reflection would be) that is not copied."""
    rng = random.Random(f"{seed}:warmstart")
    s0_until = reflect_share + (1.0 - reflect_share) * (0.6 / 0.85)  # 0.75 at the default share
    out: list[Example] = []
    while len(out) < n:
        task = rng.choice(tasks)
        states, trace = random_play(env, task, rng, PLAY_MOVES)
        roll = rng.random()
        if roll < reflect_share and trace.steps:
            out.append(reflection_example(env, prompts, task, trace, rng, memory_share))
            continue
        state, last = rng.choice(states)
        if roll < s0_until:
            system = prompts.system
        else:  # a retry's system prompt: a reflection (here s0, maybe with a note like a copied one) + format reminder
            note = random_note(env, rng, trace) if prompts.compact_summary and rng.random() < 0.5 else None
            cell = f" {note}" if note else ""
            system = retry_system(prompts, prompts.system + cell)
        msgs = [{"role": "system", "content": system}, {"role": "user", "content": env.message(state, last)}]
        out.append(Example(msgs, env.random_reply(state, rng), "format"))
    return out


def reflection_example(
    env: Env, prompts: PromptSet, task: Task, trace: Trace, rng: random.Random, memory_share: float
) -> Example:
    """The reflection-copy exercise on one failed random-play attempt: its summary (with, ``memory_share`` of
    the time, a distracting memory, half of those garbled) answered with a <prompt> block that restates s0 and copies a fact from the
    feedback (the environment's reflection_note: where the attempt ended, or its last move). It opens a channel
    from the feedback to the retry; what to do with it is left to RL."""
    summary = env.summary(trace, env.render(env.reset(task)), prompts.compact_summary)
    memory = None
    if memory_share > 0 and rng.random() < memory_share:
        note = random_note(env, rng, trace) if prompts.compact_summary else None
        memory = f"{prompts.system} {note}" if note else prompts.system
        if rng.random() < 0.5:
            memory = garbled(memory, rng)
    msgs = reflector_messages(prompts, summary, memory)
    note = env.reflection_note(trace) if prompts.compact_summary else None
    note = f" {note}" if note else ""
    return Example(msgs, f"<prompt> {prompts.system}{note} </prompt>", "reflect-format")


def garbled(text: str, rng: random.Random) -> str:
    """A reflection gone wrong, as memories come to hold when a garbled reflection's retry succeeds by luck: a
    prefix of ``text``'s words followed by 1-8 of its words at random. Half the distracting memories of the copy
    exercise are such, so that the reflector learns to copy from the feedback whatever the memory holds."""
    words = text.split()
    keep = words[: rng.randint(1, len(words))]
    return " ".join(keep + [rng.choice(words) for _ in range(rng.randint(1, 8))])


def replay_examples(
    env: Env,
    prompts: PromptSet,
    tasks: list[Task],
    n: int,
    seed: int,
    reading_share: float,
    kinds: tuple[str, ...],
    memory_share: float,
) -> list[Example]:
    """Warm-start exercises to replay during RL updates (``update.replay_coef``, like the pretraining mix of
    PPO-ptx): ``reading_share`` board-reading exercises of ``kinds`` (none for environments without them) and
    reflection-copy exercises, fresh ones per ``seed``. Never the warm start's random-action turns, which would
    pull the action policy back toward random play."""
    out = reading_examples(env, tasks, round(n * reading_share), seed, kinds)
    rng = random.Random(f"{seed}:replay")
    while len(out) < n:
        task = rng.choice(tasks)
        _, trace = random_play(env, task, rng, PLAY_MOVES)
        if trace.steps:
            out.append(reflection_example(env, prompts, task, trace, rng, memory_share))
    rng.shuffle(out)
    return out


def replay_encoded(
    p, epoch: int, env: Env, task_rows: list[dict], tok, n_steps: int
) -> list[tuple[list[int], list[int]]]:
    """The warm-start exercises one epoch's update replays (update.replay_coef), encoded for ``tok``:
    ``update.replay_batch`` for each of ``n_steps`` optimizer steps, fresh ones each epoch (seeded by (seed,
    epoch)), drawn on the training tasks."""
    from pipeline.episodes import task_from_row
    from pipeline.prompts import prompt_set
    from pipeline.seeding import derive_seed

    u, tp = p.update, p.policy.tiny
    tasks = [task_from_row(t) for t in task_rows]
    examples = replay_examples(
        env,
        prompt_set(p.policy.prompts, p.env.name),
        tasks,
        u.replay_batch * max(1, n_steps),
        derive_seed(p.seed, epoch, "replay"),
        u.replay_reading,
        tuple(tp.warmstart_exercises),
        tp.warmstart_memory,
    )
    return [encode_example(tok, ex) for ex in examples]


def random_note(env: Env, rng: random.Random, trace: Trace) -> str | None:
    """A note like a reflection's copied one: on a random cell, in the form of the environment's exercises; for an
    environment without exercises, its ``reflection_note`` of the random-play ``trace`` (None: no note)."""
    ex = env.warmstart()
    if ex is None:
        return env.reflection_note(trace) if trace.steps else None
    return ex.random_note(env, rng) if ex.random_note else random_cell_note(rng)


def check_kinds(env: Env, kinds: list[str]) -> None:
    """``kinds`` (policy.tiny.warmstart_exercises) must be exercises the environment's ``warmstart()`` hook has;
    without exercises they are not used."""
    ex = env.warmstart()
    if ex is None:
        return
    unknown = [k for k in kinds if k not in ex.prompts]
    if unknown:
        raise InputError(
            f"policy.tiny.warmstart_exercises: {env.name} has no exercise {unknown[0]!r} (it has {sorted(ex.prompts)})"
        )


def reading_examples(env: Env, tasks: list[Task], n: int, seed: int, kinds: tuple[str, ...]) -> list[Example]:
    """Board-reading exercises on states from random play (the environment's ``Exercises.reading``), their kinds
    drawn uniformly from ``kinds`` (repeat a kind to weight it); none for an environment without exercises."""
    ex = env.warmstart()
    if ex is None:
        return []
    rng = random.Random(f"{seed}:reading")
    out: list[Example] = []
    while len(out) < n:
        states, _ = random_play(env, rng.choice(tasks), rng, PLAY_MOVES)
        state, _ = rng.choice(states)
        kind = rng.choice(kinds)
        action = rng.choice(env.actions) if env.actions else None  # games without a fixed move set get None
        system, user, answer = ex.reading(env, state, kind, action, rng)
        out.append(Example([{"role": "system", "content": system}, {"role": "user", "content": user}], answer, kind))
    return out


def corpus_texts(env: Env, prompts: PromptSet, tasks: list[Task], seed: int, kinds: tuple[str, ...]) -> list[str]:
    """Text covering everything the embedded tokenizer must spell: prompts, boards, messages, feedback, and the
    reading exercises of ``kinds``."""
    rng = random.Random(f"{seed}:vocab")
    texts = [
        v.format(summary="") if k == "no_reflection_system" else v
        for k, v in vars(prompts).items()
        if isinstance(v, str)
    ]
    texts += ["<prompt> </prompt> ``` " + " ".join(env.actions)]
    texts += reading_vocabulary(env, kinds)
    texts += env.vocabulary(tasks)  # every word the environment can show (a knowledge base, questions, ...)
    texts += [str(i) for i in range(100)]
    for _ in range(VOCAB_PLAYS):
        task = rng.choice(tasks)
        states, trace = random_play(env, task, rng, VOCAB_MOVES)
        texts += [env.message(s, last) for s, last in states]
        if trace.steps:
            texts += [env.summary(trace, env.render(env.reset(task)), c) for c in (False, True)] + [env.feedback(trace)]
    return texts


def reading_vocabulary(env: Env, kinds: tuple[str, ...]) -> list[str]:
    """The words of the exercises in use (only those: an unused exercise must not change the tokenizer): their
    prompts, the answer words the environment declares for them (``Exercises.words``), and the words of the "next"
    exercise and of the reflection's copied note."""
    ex = env.warmstart()
    prompts, words = (ex.prompts, ex.words) if ex else ({}, {})
    extra = "".join(f" {words[k]}" for k in dict.fromkeys(kinds) if k in words)
    return [v for k, v in prompts.items() if k in kinds] + ["action : end yes no last" + extra]


def which_answer(seen: dict[str, str], symbols: tuple[str, ...]) -> str:
    """The "which" exercise's answer, the "around" answer inverted: for every symbol in ``symbols`` (all asked
    about alike) the moves that reach it, or ``none``, e.g. ``B none C right up D left down X none``."""
    return " ".join(f"{sym} {' '.join(a for a in seen if seen[a] == sym) or 'none'}" for sym in symbols)


def noted_cell(pos: tuple[int, int], side: int, rng) -> tuple[tuple[int, int], str]:
    """The "at" exercise's cell and answer: ``pos`` itself half of the time, else a random cell of a ``side`` x
    ``side`` board; "yes" when the cell is ``pos``."""
    cell = tuple(pos) if rng.random() < 0.5 else (rng.randrange(side), rng.randrange(side))
    return cell, "yes" if cell == tuple(pos) else "no"


def random_cell_note(rng, side: int = 5) -> str:
    """A note of the default form (``last r c``) on a random cell of a ``side`` x ``side`` board: what the warm
    start's retry-format turns show in place of a copied note."""
    return f"last {rng.randrange(side)} {rng.randrange(side)}"
