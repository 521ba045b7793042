"""What a set of prompts is (:class:`PromptSet`) and what the round does with one: each environment owns its sets
(its class's ``prompts``; ``prompt_set(policy.prompts, env.name)``). ``tiny`` is the short set the embedded
default is warm-started on; ``paper`` is for real instruction-tuned models. The prompts name only the reply
format, never the rules of the game."""

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


def braces(text: str) -> str:
    """``text`` as a literal inside a str.format template."""
    return text.replace("{", "{{").replace("}", "}}")


def prompt_set(name: str, env_name: str) -> PromptSet:
    """The prompt set ``name`` (policy.prompts) of environment ``env_name`` (env.name): each environment owns its
    prompts (its class's ``prompts``)."""
    from pipeline.envs import find

    sets = find(env_name).prompts
    if name not in sets:
        raise ValueError(f"policy.prompts: no prompt set {name!r} for environment {env_name!r} (it has {sorted(sets)})")
    return sets[name]


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
