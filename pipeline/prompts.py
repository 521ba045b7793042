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
    reflector_user: str  # {summary}, {memory}
    no_memory: str  # what {memory} becomes when there is none
    no_reflection_system: str  # ablation: s0 + generic instruction + raw summary; {summary}
    compact_summary: bool = False  # the reflector sees the action list and final board, not every board


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
    "paper": PromptSet(
        system=(
            "You are playing a grid game. Each turn you see the board and the steps you have left. "
            "Reply with exactly one action inside a ``` ``` block, for example ```Left```. "
            "Valid actions: Left, Down, Right, Up."
        ),
        format_reminder="Reply with exactly one action inside a ``` ``` block. Valid actions: Left, Down, Right, Up.",
        reflector_system=(
            "You are improving the instructions of an agent that failed a grid game. Read the attempt and its "
            "feedback, infer the rules of the game, and write a revised rulebook for the agent as a system "
            "prompt inside <prompt>...</prompt> tags. Start from the previous rulebook if one is given."
        ),
        reflector_user="Attempt:\n{summary}\n\nPrevious rulebook:\n{memory}",
        no_memory="(none)",
        no_reflection_system=(
            "You are playing a grid game. Reply with exactly one action inside a ``` ``` block. Valid actions: "
            "Left, Down, Right, Up. Use your past attempt below to do better this time.\n\nPast attempt:\n{summary}"
        ),
    ),
}

# Sokoban: the same actions and reply format as FrozenLake; the rules stay hidden just the same.
_GRID_TINY = PROMPTS["tiny"]
SOKOBAN_PROMPTS: dict[str, PromptSet] = {
    "tiny": _GRID_TINY,
    "paper": PromptSet(
        system=(
            "You are playing a grid puzzle game. Each turn you see the board and the steps you have left. "
            "Reply with exactly one action inside a ``` ``` block, for example ```Left```. "
            "Valid actions: Left, Down, Right, Up."
        ),
        format_reminder="Reply with exactly one action inside a ``` ``` block. Valid actions: Left, Down, Right, Up.",
        reflector_system=(
            "You are improving the instructions of an agent that failed a grid puzzle game. Read the attempt and "
            "its feedback, infer the rules of the game, and write a revised rulebook for the agent as a system "
            "prompt inside <prompt>...</prompt> tags. Start from the previous rulebook if one is given."
        ),
        reflector_user="Attempt:\n{summary}\n\nPrevious rulebook:\n{memory}",
        no_memory="(none)",
        no_reflection_system=(
            "You are playing a grid puzzle game. Reply with exactly one action inside a ``` ``` block. Valid "
            "actions: Left, Down, Right, Up. Use your past attempt below to do better this time.\n\n"
            "Past attempt:\n{summary}"
        ),
    ),
}

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
            "You answer multi-hop questions with a search tool. Each turn you see the question, the result of "
            "your latest search and the turns you have left. " + _QA_PAPER_FORMAT
        ),
        format_reminder=_QA_PAPER_FORMAT,
        reflector_system=(
            "You are improving the instructions of an agent that failed to answer a multi-hop question with a "
            "search tool. Read the attempt and its feedback, work out what went wrong (the searches, the reading "
            "of the passages, the answer format), and write a revised strategy for the agent as a system prompt "
            "inside <prompt>...</prompt> tags. Start from the previous strategy if one is given."
        ),
        reflector_user="Attempt:\n{summary}\n\nPrevious strategy:\n{memory}",
        no_memory="(none)",
        no_reflection_system=(
            "You answer multi-hop questions with a search tool. "
            + _QA_PAPER_FORMAT.replace("{", "{{").replace("}", "}}")
            + " Use your past attempt below to do better this time.\n\nPast attempt:\n{summary}"
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


def reflector_messages(prompts: PromptSet, summary: str, memory: str | None) -> list[dict]:
    user = prompts.reflector_user.format(summary=summary, memory=memory or prompts.no_memory)
    return [{"role": "system", "content": prompts.reflector_system}, {"role": "user", "content": user}]
