"""Codebreaker: find a hidden code of ``length`` digits (1..``symbols``, repeats allowed) in ``budget`` guesses.
Each guess is marked per position: ``+`` the digit is right there, ``-`` it is not. A policy that keeps the
``+`` digits and changes the others always wins within ``symbols`` guesses; a random one rarely does. Reward: 1
for the code, else half the share of right digits in the last guess (scored feedback, as in Mastermind).

The feedback carries what the next attempt needs: a second attempt at the same code that knows the best guess so
far and its marks starts with those digits in place (the reflection note, which the embedded default's warm start
teaches its reflector to copy; its reading exercises teach it to read marks, on the board and in a note).

A reply is a ``` block with the digits, e.g. ```3 1 4```; anything else is an invalid guess that uses a turn."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from pydantic import Field

from pipeline.envs.base import Env, EnvParamsBase, Step, Task, Trace, last_code_block
from pipeline.prompts import PromptSet, braces
from pipeline.tiny.warmstart import Exercises


class Params(EnvParamsBase):
    """env.codebreaker in params.yaml."""

    budget: int = Field(5, ge=1, le=20, description="guesses per episode")
    length: int = Field(3, ge=1, le=6, description="digits in the code")
    symbols: int = Field(4, ge=2, le=9, description="digits are 1..symbols")


_TINY = "guess the code . answer with the digits in ``` ``` : 1 2 3 4 ."
_PAPER = (
    "Find the hidden code. Each guess is marked per position: + the digit is right there, - it is not. "
    "Answer with your guess as digits separated by spaces inside ``` ```, for example ```1 2 3```."
)
PROMPTS = {
    "tiny": PromptSet(
        system=_TINY,
        format_reminder=_TINY,
        reflector_system="the attempt failed . write a better prompt in <prompt> </prompt> .",
        reflector_user="{summary}\nmemory : {memory}",
        no_memory="none",
        no_reflection_system=braces(_TINY) + " use your past attempt .\n{summary}",
        compact_summary=True,
    ),
    "paper": PromptSet(
        system=_PAPER,
        format_reminder="Answer with your guess as digits inside ``` ```.",
        reflector_system=(
            "You improve the instructions of an agent that breaks hidden codes. Read its attempt and write "
            "instructions that would have found the code. Output only <prompt>...</prompt>."
        ),
        reflector_user="Current instructions:\n{memory}\n\n{batch}\n\nThe attempt:\n{summary}",
        no_memory=_PAPER,
        no_reflection_system=braces(_PAPER) + "\nUse your past attempt below.\n{context}",
    ),
}


@dataclass(frozen=True)
class State:
    code: tuple[int, ...]
    guesses: tuple[tuple[tuple[int, ...], str], ...] = ()  # (guess, marks) so far
    turns: int = 0


class Codebreaker(Env):
    name = "codebreaker"
    Params = Params
    prompts = PROMPTS

    def __init__(self, params: Params | None = None, artifacts=None) -> None:
        super().__init__(params, artifacts)
        self.digits = re.compile(rf"^[1-{self.params.symbols}](?:\s*[1-{self.params.symbols}])*$")

    # ---- tasks ------------------------------------------------------------------------------------------------

    def generate(self, split, n, seed, exclude=None):
        p, exclude = self.params, exclude or set()
        space = p.symbols**p.length
        order = random.Random(f"{seed}:{split}:codebreaker").sample(range(space), space)
        tasks = []
        for k in order:
            code = [1 + (k // p.symbols**i) % p.symbols for i in range(p.length)]
            task = Task(f"cb-{split}-{len(tasks):05d}", split, {"code": code}, optimal_len=1)
            if self.map_key(task) not in exclude:
                tasks.append(task)
            if len(tasks) == n:
                return tasks
        raise RuntimeError(f"codebreaker: only {len(tasks)} codes of {p.length} digits 1..{p.symbols} for {n} tasks")

    def map_key(self, task):
        return "".join(map(str, task.spec["code"]))

    # ---- an episode -------------------------------------------------------------------------------------------

    def reset(self, task):
        return State(tuple(task.spec["code"]))

    def render(self, state):
        lines = [f"{' '.join(map(str, g))} : {m}" for g, m in state.guesses] or ["no guesses yet"]
        return "\n".join(lines)

    def message(self, state, last_step):
        note = "" if last_step is None or last_step.valid else "invalid guess .\n"
        return f"{note}{self.render(state)}\nguesses left : {self.budget - state.turns}"

    def step(self, state, reply):
        block = last_code_block(reply)
        guess = tuple(int(c) for c in re.findall(r"\d", block)) if block and self.digits.match(block) else None
        valid = guess is not None and len(guess) == self.params.length
        if valid:
            marks = " ".join("+" if g == c else "-" for g, c in zip(guess, state.code))
            state = State(state.code, state.guesses + ((guess, marks),), state.turns + 1)
        else:
            state = State(state.code, state.guesses, state.turns + 1)
        solved = valid and guess == state.code
        done = solved or state.turns >= self.budget
        event = "solved" if solved else ("limit" if done else "")
        action = " ".join(map(str, guess)) if valid else None
        return state, Step(action, valid, valid, event, done, self.render(state))

    # ---- the verifier -----------------------------------------------------------------------------------------

    def reward(self, trace):
        """1 when solved; else half the share of right digits in the last guess (a success needs the whole code)."""
        if not trace.steps:
            return 0.0
        if trace.steps[-1].event == "solved":
            return 1.0
        marks = trace.steps[-1].observation.splitlines()[-1].partition(" : ")[2].split()
        return round(0.5 * marks.count("+") / self.params.length, 4)

    def feedback(self, trace):
        outcome = "Solved." if self.reward(trace) else "Not solved."
        last = trace.steps[-1].observation.splitlines()[-1] if trace.steps else "none"
        invalid = sum(not s.valid for s in trace.steps)
        return f"{outcome} Last guess : {last} . Invalid guesses: {invalid}. Reward={self.reward(trace)}, steps={len(trace.steps)}"

    def summary(self, trace, initial_observation, compact=False, annotated=False):
        guesses = " ; ".join(s.action or "invalid" for s in trace.steps)
        if compact:
            return f"Actions: {guesses}\nFeedback: {self.feedback(trace)}"
        steps = "\n".join(f"Step {i}: {s.action or 'invalid'}\n{s.observation}" for i, s in enumerate(trace.steps, 1))
        return f"{steps}\nFeedback: {self.feedback(trace)}"

    # ---- hooks (pipeline/envs/base.py has the defaults) ------------------------------------------------------

    def reflection_note(self, trace: Trace) -> str | None:
        """The guess with the most right digits (the latest of equals) and its marks: which digits to keep."""
        guesses = [line.partition(" : ") for line in trace.steps[-1].observation.splitlines()] if trace.steps else []
        marked = [(marks.count("+"), i, guess, marks) for i, (guess, _, marks) in enumerate(guesses) if marks]
        if not marked:
            return None
        _, _, guess, marks = max(marked)
        return f"best {guess} {marks}"

    def random_reply(self, state, rng):
        return "```" + " ".join(str(rng.randint(1, self.params.symbols)) for _ in range(self.params.length)) + "```"

    def vocabulary(self, tasks):
        return ["no guesses yet invalid guess . guesses left : + - best", *map(str, range(10))]

    def warmstart(self):
        """Reading exercises for the embedded default: the digits the marks have fixed, read off the board ("keep")
        or off a note of the reflection's form in the system prompt ("note"). Never what to guess."""
        return Exercises(read_marks, EXERCISES, random_note=lambda env, rng: " ".join(["best", *env.note_words(rng)]))

    def note_words(self, rng):
        """A random guess and random marks, the words of a note like ``best 3 1 2 + - +``."""
        n = self.params.length
        return [str(rng.randint(1, self.params.symbols)) for _ in range(n)] + [rng.choice("+-") for _ in range(n)]


EXERCISES = {"keep": "which digits are marked + ?", "note": "read the note . note :"}


def fixed(guesses, marks) -> str:
    """Per position the digit a ``+`` has fixed there, else ``-`` (``3 - 1``); ``guesses``/``marks``: word lists."""
    out = ["-"] * len(marks[0]) if marks else []
    for guess, mark in zip(guesses, marks):
        out = [d if m == "+" else o for d, m, o in zip(guess, mark, out)]
    return " ".join(out)


def read_marks(env, state, kind, action, rng):
    """(system, user, answer) of one exercise on ``state``."""
    n, user = env.params.length, env.message(state, None)
    if kind == "keep":
        guesses = [[str(d) for d in g] for g, _ in state.guesses]
        return EXERCISES[kind], user, fixed(guesses, [m.split() for _, m in state.guesses]) or " ".join("-" * n)
    note = env.note_words(rng)
    return f"{EXERCISES[kind]} best {' '.join(note)}", user, fixed([note[:n]], [note[n:]])
