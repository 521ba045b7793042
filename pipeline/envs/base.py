"""The contract every environment implements (:class:`Env`): task generation, a step function over the policy's
reply, the verifier (reward + feedback text) computed from a finished trace, and optional hooks with defaults.
No torch here."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field

from pipeline.paramtypes import Strict

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


class EnvParamsBase(Strict):
    """What every environment's params model has (its section of params.yaml, env.<name>): the turns or steps an
    episode may take."""

    budget: int = Field(8, ge=1, description="turns (steps) per episode")


class Env:
    """What an environment is to the pipeline: the class a built-in (pipeline/envs/frozenlake.py, sokoban.py, qa.py)
    or an outside package (docs/environments.md) subclasses. Its module owns everything about it: ``Params`` (its
    section of params.yaml, env.<name>), ``prompts`` (the prompt sets of policy.prompts: "tiny", "paper"), the
    rules below and the optional hooks, each with a default here, so the pipeline never asks whether a method is
    there. Built with its validated params and the artifact root (where files init built for it live)."""

    name: str = ""  # its name in params.yaml (env.name, and its section env.<name>)
    actions: tuple[str, ...] = ()  # the moves a reply may name, if it names one of a fixed set
    Params: type[EnvParamsBase] = EnvParamsBase
    prompts: dict = {}  # policy.prompts -> pipeline.prompts.PromptSet

    def __init__(self, params: EnvParamsBase | None = None, artifacts: Path | None = None) -> None:
        self.params = params if params is not None else self.Params()
        self.artifacts = artifacts

    @property
    def budget(self) -> int:
        return self.params.budget

    # ---- the rules (every environment defines these) ----------------------------------------------------------

    def generate(self, split: str, n: int, seed: int, exclude: set[str] | None = None) -> list[Task]:
        """``n`` distinct tasks of ``split``, deterministic in (seed, split), none whose map_key is in ``exclude``."""
        raise NotImplementedError

    def map_key(self, task: Task) -> str:
        """A canonical string of a task: equal tasks give equal keys (keeps train and test apart)."""
        raise NotImplementedError

    def reset(self, task: Task) -> Any:
        raise NotImplementedError

    def render(self, state: Any) -> str:
        raise NotImplementedError

    def message(self, state: Any, last_step: Step | None) -> str:
        """The user message of a turn: what the policy sees before it replies."""
        raise NotImplementedError

    def step(self, state: Any, reply: str) -> tuple[Any, Step]:
        raise NotImplementedError

    def reward(self, trace: Trace) -> float:
        raise NotImplementedError

    def feedback(self, trace: Trace) -> str:
        """What the environment says of a finished attempt (the reflector reads it)."""
        raise NotImplementedError

    def summary(self, trace: Trace, initial_observation: str, compact: bool = False, annotated: bool = False) -> str:
        """The attempt as the reflector reads it: ``compact`` for short prompts (the embedded default), ``annotated``
        with a comment per step (the paper prompts)."""
        raise NotImplementedError

    # ---- optional hooks -------------------------------------------------------------------------------------

    def step_many(self, states: list, replies: list[str]) -> list[tuple[Any, Step]]:
        """Step several episodes at once (a turn of a batch): an environment that calls a server may do it
        concurrently. Default: one by one."""
        return [self.step(s, r) for s, r in zip(states, replies)]

    def reflection_note(self, trace: Trace) -> str | None:
        """The fact of the feedback a reflection should carry to the next attempt (the embedded default's warm start
        teaches its reflector to copy it); None: none."""
        return None

    def random_reply(self, state: Any, rng: random.Random) -> str:
        """A well-formed reply with random content (the embedded default's warm start)."""
        return f"```{rng.choice(self.actions)}```" if self.actions else ""

    def vocabulary(self, tasks: list[Task]) -> list[str]:
        """Texts with every word the environment can show beyond what random play shows (the embedded default's
        word-level tokenizer is trained on them)."""
        return []

    def step_comment(self, step: Step, before: str) -> str:
        """One line on what a step did, for the paper prompts' annotated summary."""
        if step.action is None:
            return "Not a valid action."
        return "Did not move." if not step.moved else "Moved."

    def warmstart(self):
        """Board-reading exercises for the embedded default's warm start (a pipeline.tiny.warmstart.Exercises), or
        None: it then starts from the reply format and the reflection copy alone."""
        return None

    def prepare(self, seed: int) -> str | None:
        """Work init does for the environment after the task sets (e.g. build a search index under the artifact
        root); a line for the log, or None."""
        return None

    @classmethod
    def check(cls, params: EnvParamsBase, prompts: str) -> str | None:
        """What is wrong with these settings together with the prompt set ``prompts`` (policy.prompts), as
        "<key>: <why>" for the validate stage; None: nothing."""
        return None

    @classmethod
    def data_files(cls, params: EnvParamsBase) -> list[str]:
        """Files outside the artifacts the environment reads (init's dependencies in dvc.yaml)."""
        return []

    @classmethod
    def built_files(cls, params: EnvParamsBase, artifacts: Path) -> list[Path]:
        """Files init builds for the environment (its outputs) that the stages stepping it read."""
        return []

    def tools(self) -> list[dict] | None:
        """JSON schemas of the tools a chat template may offer natively (``tools=``); None: replies use text."""
        return None

    def role_of(self, step: Step) -> str:
        """The chat role of the message that follows ``step``: "user", or "tool" for a tool's result."""
        return "user"

    def tool_calls(self, step: Step) -> int:
        """Tool calls a step made (searches, ...), counted per episode in the tables."""
        return 0

    def close(self) -> None:
        """Release what the environment holds open (a database, a connection)."""
