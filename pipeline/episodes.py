"""Episodes as table rows and back: the columns shared by attempts, retries and evaluation rollouts, and
the Trace a verifier needs, rebuilt from a row. No torch here."""

from __future__ import annotations

import json

from pipeline.envs.base import Step, Task, Trace


def task_from_row(row: dict) -> Task:
    return Task(
        task_id=row["task_id"], split=row["split"], spec=json.loads(row["spec"]), optimal_len=row["optimal_len"]
    )


def episode_columns(ep) -> dict:
    """The shared episode columns of a finished rollout.Episode."""
    return {
        "system_prompt": ep.system,
        "initial_observation": ep.initial_observation,
        "messages": ep.messages,
        "responses": ep.responses,
        "actions": [s.action for s in ep.steps],
        "moved": [s.moved for s in ep.steps],
        "events": [s.event for s in ep.steps],
        "observations": [s.observation for s in ep.steps],
        "prompt_ids": ep.prompt_ids,
        "response_ids": ep.response_ids,
        "n_turns": len(ep.steps),
        "n_tool_calls": ep.tool_calls,
        "seed": ep.seed,
    }


def retry_id(rollout_id: str, j: int) -> str:
    """The id of the j-th guided retry of a failed rollout: "<rollout>-retry", then "<rollout>-retry1", ..."""
    return f"{rollout_id}-retry{j or ''}"


def is_first_retry(rid: str) -> bool:
    """Whether a retry id is a rollout's first guided retry (the one compared with the plain retry)."""
    return rid.endswith("-retry")


def trace_from_row(row: dict, budget: int) -> Trace:
    n = len(row["actions"])
    steps = [
        Step(
            action=row["actions"][i],
            valid=row["actions"][i] is not None,
            moved=row["moved"][i],
            event=row["events"][i],
            done=i == n - 1,
            observation=row["observations"][i],
        )
        for i in range(n)
    ]
    return Trace(steps=steps, budget=budget)


def outcome(trace: Trace) -> str:
    return trace.steps[-1].event or "unfinished" if trace.steps else "empty"
