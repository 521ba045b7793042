"""Every prompt template in one place, per environment (``prompt_set(policy.prompts, env.name)``). ``tiny`` is
the short set the embedded default is warm-started on; ``paper`` is for real instruction-tuned models. The
prompts name only the reply format, never the rules of the game."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class PromptSet:
    system: str  # s0: the first attempt's system prompt (names only the valid actions)
    format_reminder: str  # re-appended after a reflection that replaces s0
    reflector_system: str  # u: the reflector's system prompt
    reflector_user: str  # {summary}, {memory}; may use {batch} (the epoch's first-attempt statistics)
    no_memory: str  # what {memory} becomes when there is none
    no_reflection_system: str  # ablation: s0 + generic instruction + the attempt; {summary} or {context}
    compact_summary: bool = False  # the reflector sees the action list and final board, not every board
    annotated_summary: bool = False  # every step: the board before it, the action, its effect and a comment


PROMPTS: dict[str, PromptSet] = {
    "tiny": PromptSet(
        system="play the game . answer with one action in ``` ``` : left down right up .",
        format_reminder="answer with one action in ``` ``` : left down right up .",
        reflector_system="the attempt failed . write a better prompt in <prompt> </prompt> .",
        reflector_user="{summary}\nmemory : {memory}",
        no_memory="none",
        no_reflection_system=(
            "play the game . answer with one action in ``` ``` : left down right up . "
            "use your past attempt .\n{summary}"
        ),
        compact_summary=True,
    ),
}

# What the reference prompts carry (docs/method.md, section 6), in this project's words. The solver reasons before
# it acts and ends with the action alone; it is told the valid actions and nothing of the rules.
_GRID_SOLVER = (
    "You are a reasoning engine playing a grid game. What you know of its rules and strategy may be incomplete or "
    "wrong; your only way to act is to choose the next action. Each turn: analyse the board, judge the long-term "
    "value of the position (High, Medium or Low), and for your two best candidate actions predict what each would "
    "do right now, in the form 'result, because ...'. Then choose one.\n"
    "Write your reasoning first (state analysis; value; the two candidates and their consequences), then end your "
    "reply with the chosen action alone in a final ``` block, for example:\n```Left```"
)
_GRID_REMINDER = (
    "Valid actions: Up, Down, Left, Right. The last line of your reply is the action alone, in a ``` block."
)
_SOKOBAN_REMINDER = _GRID_REMINDER + " A box moves only when the cell behind it is free."
_GRID_REFLECTOR = (
    "You are a strategist who writes the master rulebook of a grid game from attempts that succeeded and attempts "
    "that failed. Think about the long term, learn from the contrast between what worked and what did not, and "
    "merge everything into one consistent theory. Be concise and authoritative.\n"
    "Write exactly one <prompt>...</prompt> block containing two sections:\n"
    "Rules: what each symbol means and which one is you, how to read the board, what each action does, the "
    "objective and what ends an episode.\n"
    "Strategy: the core strategies and tactical tips that win."
)
_GRID_CONTEXT = (
    "Inferred information from past attempts (may be inaccurate):\n{memory}\n\n"
    "{batch}\n\n"
    "The attempt:\n{summary}\n\n"
    "Think step by step and give an improved instruction for the game GAME inside <prompt></prompt> tags."
)


def _braces(text: str) -> str:
    """``text`` as a literal inside a str.format template."""
    return text.replace("{", "{{").replace("}", "}}")


def _grid_paper(game: str, reminder: str) -> PromptSet:
    solver = f"{_GRID_SOLVER}\n{reminder}"
    return PromptSet(
        system=solver,
        format_reminder=reminder,
        reflector_system=_GRID_REFLECTOR,
        reflector_user=_GRID_CONTEXT.replace("GAME", game),
        no_memory=solver,  # with no memory yet, the reflector starts from s0
        no_reflection_system=(
            _braces(solver)
            + "\nUse the data of your past attempt below to decide better this time.\n{context}\n"
            + _braces(reminder)
        ),
        annotated_summary=True,
    )


PROMPTS["paper"] = _grid_paper("FrozenLake", _GRID_REMINDER)

# Sokoban: the same actions and reply format as FrozenLake; the rules stay hidden just the same.
SOKOBAN_PROMPTS: dict[str, PromptSet] = {"tiny": PROMPTS["tiny"], "paper": _grid_paper("Sokoban", _SOKOBAN_REMINDER)}

# Tool-use QA (pipeline/envs/qa.py): a search is a ``` block "search : <query>", the answer is \boxed{...}.
# Templates that go through str.format (reflector_user, no_reflection_system) double their literal braces.
_QA_TINY_FORMAT = "answer the question . search with ``` search : words ``` or answer with \\boxed{ answer } ."
_QA_PAPER_FORMAT = (
    "Each reply must do exactly one of two things: search, by writing a ``` block that contains "
    "`search: <query>` (the tool returns the top passages of a local corpus), or answer, by writing the final "
    "answer as \\boxed{<answer>}. A reply with both, or with neither, is invalid and wastes a turn."
)
QA_PROMPTS: dict[str, PromptSet] = {
    "tiny": PromptSet(
        system=_QA_TINY_FORMAT,
        format_reminder=_QA_TINY_FORMAT,
        reflector_system="the attempt failed . write a better prompt in <prompt> </prompt> .",
        reflector_user="{summary}\nmemory : {memory}",
        no_memory="none",
        no_reflection_system=(
            _QA_TINY_FORMAT.replace("{", "{{").replace("}", "}}") + " use your past attempt .\n{summary}"
        ),
        compact_summary=True,
    ),
    "paper": PromptSet(
        system=(
            "Answer the question directly and efficiently. Use the search tool when you need facts; never invent "
            "them. " + _QA_PAPER_FORMAT
        ),
        format_reminder=_QA_PAPER_FORMAT,
        reflector_system=(
            "You are an expert at updating the instructions of a question-answering agent that uses a search tool. "
            "Read its trajectories, tool calls and rewards, and add rules that prevent the failures you see (a "
            "missing search, an invented fact, an answer outside \\boxed{}). Keep the prompt short. Output only "
            "<prompt>...</prompt>."
        ),
        reflector_user=(
            "Current instructions (may be inaccurate):\n{memory}\n\n{batch}\n\nThe attempt:\n{summary}\n\n"
            "Think step by step and give improved instructions inside <prompt></prompt> tags."
        ),
        no_memory="(none yet)",
        no_reflection_system=(
            "Answer the question directly and efficiently. "
            + _braces(_QA_PAPER_FORMAT)
            + " Use the data of your past attempt below to answer better this time.\n{context}"
        ),
    ),
}

ENV_PROMPTS: dict[str, dict[str, PromptSet]] = {"frozenlake": PROMPTS, "sokoban": SOKOBAN_PROMPTS, "qa": QA_PROMPTS}


def prompt_set(name: str, env_name: str) -> PromptSet:
    """The prompt set ``name`` (policy.prompts) of environment ``env_name`` (env.name)."""
    try:
        return ENV_PROMPTS[env_name][name]
    except KeyError:
        raise ValueError(f"no prompt set {name!r} for environment {env_name!r}") from None


_TAG = re.compile(r"<prompt>(.*?)(?:</prompt>|$)", re.DOTALL)


def parse_reflection(text: str) -> tuple[str, bool]:
    """The rulebook inside the last <prompt> block (an unclosed block runs to the end), and whether a tag was
    found. Without a tag the whole text is the reflection: silently reusing the old prompt (as the
    reference code does) would hide that the reflector ignored the format."""
    blocks = _TAG.findall(text)
    if blocks:
        return blocks[-1].strip(), True
    return text.strip(), False


def retry_system(prompts: PromptSet, reflection: str) -> str:
    """The second attempt's system prompt: the reflection replaces s0; the format reminder is re-appended."""
    return f"{reflection}\n{prompts.format_reminder}".strip()


def batch_line(feedback_rows: list[dict]) -> str:
    """The epoch's first-attempt statistics, as the reflection context states them."""
    n = len(feedback_rows)
    mean = sum(f["reward"] for f in feedback_rows) / n if n else 0.0
    ok = sum(bool(f["success"]) for f in feedback_rows) / n if n else 0.0
    return f"This batch: mean first-attempt reward {mean:.2f}, success rate {ok:.2f}, {n} attempts."


def no_reflection_prompt(prompts: PromptSet, summary: str, batch: str) -> str:
    """The no-reflection ablation's second-attempt system prompt: s0, a generic instruction to use the past
    attempt, and the whole reflection context of the failed attempt (without memory) in place of a reflection
    (the paper prompts; the tiny ones use the bare summary)."""
    context = prompts.reflector_user.format(summary=summary, memory=prompts.no_memory, batch=batch)
    return prompts.no_reflection_system.format(summary=summary, context=context)


def reflector_messages(prompts: PromptSet, summary: str, memory: str | None, batch: str = "") -> list[dict]:
    user = prompts.reflector_user.format(summary=summary, memory=memory or prompts.no_memory, batch=batch)
    return [{"role": "system", "content": prompts.reflector_system}, {"role": "user", "content": user}]
