"""The contract every environment implements: task generation, a step function over the policy's reply,
and the verifier (reward + feedback text) computed from a finished trace. No torch here."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Protocol

# The action is the content of the LAST ```...``` block of a reply (docs/method.md, section 3).
_BLOCK = re.compile(r"```(.*?)```", re.DOTALL)


def last_code_block(reply: str) -> str | None:
    """Content of the last ```...``` block of ``reply``, stripped; None when there is none."""
    blocks = _BLOCK.findall(reply)
    if not blocks:
        return None
    return blocks[-1].strip()


@dataclass
class Task:
    """One task instance. ``spec`` is a JSON-serialisable dict the environment can rebuild the task from."""

    task_id: str
    split: str
    spec: dict[str, Any]
    optimal_len: int


@dataclass
class Step:
    """What one reply did to the environment."""

    action: str | None  # canonical action name, None when the reply had no valid action
    valid: bool  # the reply named a valid action
    moved: bool  # the action changed the state
    event: str  # "" | "goal" | "hole" | env-specific terminal event
    done: bool  # the episode is over (terminal event or budget used up)
    observation: str  # the rendered state after the step


@dataclass
class Trace:
    """Everything that happened in one episode, enough to recompute reward and feedback."""

    steps: list[Step] = field(default_factory=list)
    budget: int = 0


class Env(Protocol):
    name: str
    actions: tuple[str, ...]

    def generate(self, split: str, n: int, seed: int, exclude: set[str] | None = None) -> list[Task]: ...

    def reset(self, task: Task) -> Any: ...

    def render(self, state: Any) -> str: ...

    def step(self, state: Any, reply: str) -> tuple[Any, Step]: ...

    def reward(self, trace: Trace) -> float: ...

    def feedback(self, trace: Trace) -> str: ...

    def summary(
        self, trace: Trace, initial_observation: str, compact: bool = False, annotated: bool = False
    ) -> str: ...

    def message(self, state: Any, last_step: Step | None) -> str: ...

    def map_key(self, task: Task) -> str: ...
