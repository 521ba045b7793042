"""Does the reflection channel carry the fact the warm start taught the reflector to copy? A diagnostic for the
embedded default (FrozenLake or Sokoban with the tiny prompt set).

For every epoch of a run it rebuilds each failed attempt's trace from attempts.parquet, asks the environment
for the note its warm-start copying exercise copies (``env.reflection_note``: ``last 2 1``, or ``last right 2
0`` with ``env.frozenlake.feedback_from``), and prints:

- ``copied``: the share of reflections that end with that note, verbatim;
- the success of the retries those reflections guided against the plain retry under s0 on the same failed
  attempts (``retry.control``, paired), for reflections with the note and for the others;
- ``repeat``: for attempts that ended in a hole, of the retries guided by a reflection with the note that come
  to stand on the noted cell, the share that take the noted (fatal) move there again, against the same share over the other first attempts of the same
  tasks (under s0) that stand there (needs ``env.frozenlake.feedback_from``, whose note names the move);
- one reflection as an example.

  python scripts/reflection_probe.py                           # the main job's run (artifacts/, params.yaml)
  python scripts/reflection_probe.py --artifacts A --params P  # another run
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.episodes import is_first_retry, trace_from_row  # noqa: E402


def epoch_rows(art: Path, epoch: int, env) -> list[dict]:
    """One row per reflection of the epoch: whether it ends with the note, its retry's and the control's reward.
    Each failed attempt's trace is rebuilt as the feedback stage rebuilds it."""
    from pipeline import layout
    from pipeline.artifacts import read_rows

    d = layout.epoch_dir(epoch, art)
    if not (d / "reflections.parquet").exists():
        return []
    attempts = {a["rollout_id"]: a for a in read_rows("attempts", d / "attempts.parquet")}
    retries = {  # the first guided retry of each reflection (retry.samples may add more)
        r["reflection_id"]: r
        for r in read_rows("retries", d / "retries.parquet")
        if r["reflection_id"] and is_first_retry(r["retry_id"])
    }
    by_task: dict[str, list[dict]] = {}
    for a in attempts.values():
        by_task.setdefault(a["task_id"], []).append(a)
    out = []
    for r in read_rows("reflections", d / "reflections.parquet"):
        failed = attempts[r["rollout_id"]]
        trace = trace_from_row(failed, 0)  # the note and the last move need no budget
        note = env.reflection_note(trace)
        retry = retries.get(r["reflection_id"])
        if retry is None:
            continue
        row = {
            "copied": bool(note) and r["reflection"].strip().endswith(note),
            "text": r["reflection"],
            "retry": retry["reward"],
            "control": retry["control_reward"],
            "repeat": None,
            "siblings": [],
        }
        move = env.last_move(trace) if getattr(env, "feedback_from", False) else None
        if move is not None and failed["events"][-1] == "hole":  # the fatal move and the cell it was taken from
            row["repeat"] = took_at(env, retry, *move)
            row["siblings"] = [
                t
                for a in by_task[failed["task_id"]]
                if a["rollout_id"] != failed["rollout_id"]
                if (t := took_at(env, a, *move)) is not None
            ]
        out.append(row)
    return out


def took_at(env, row: dict, action: str, cell: tuple[int, int]) -> bool | None:
    """Whether an episode (attempts or retries row), the first time its agent stood on ``cell``, took
    ``action`` there; None when it never stood there."""
    where = [env._agent_cell(row["initial_observation"])] + [env._agent_cell(o) for o in row["observations"]]
    for pos, act in zip(where, row["actions"]):
        if pos == tuple(cell):
            return act == action
    return None


def _repeat(rows: list[dict]) -> str:
    """Of the guided retries with a copied note that reach the noted cell, the share that take the noted move
    again there, against the same share over the other first attempts (under s0) of the same tasks."""
    mine = [r["repeat"] for r in rows if r["copied"] and r["repeat"] is not None]
    sib = [x for r in rows if r["copied"] for x in r["siblings"]]
    if not mine or not sib:
        return "     -/-      n    0/   0"
    return f"{statistics.fmean(mine):.3f}/{statistics.fmean(sib):.3f} n {len(mine):4d}/{len(sib):4d}"


def _pair(rows: list[dict]) -> str:
    if not rows:
        return "     -/-      n    0"
    ctl = [r["control"] for r in rows if r["control"] is not None]
    return (
        f"{statistics.fmean(r['retry'] for r in rows):.3f}/{statistics.fmean(ctl) if ctl else float('nan'):.3f}"
        f" n {len(rows):4d}"
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--artifacts", type=Path, default=ROOT / "artifacts")
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    args = ap.parse_args(argv)
    from pipeline.config import load_or_exit
    from pipeline.envs import make_env

    params = load_or_exit(args.params)
    env = make_env(params.env, args.artifacts)
    if not hasattr(env, "reflection_note"):
        print(f"error: environment {params.env.name!r} has no reflection note to look for", file=sys.stderr)
        return 2
    epochs = sorted(int(p.name.split("_")[1]) for p in args.artifacts.glob("epoch_*") if p.name[6:].isdigit())
    print("epoch  copied  retry/control with note   retry/control others   repeat: retry/first attempts   example")
    every = []
    for e in epochs:
        rows = epoch_rows(args.artifacts, e, env)
        if not rows:
            continue
        every += rows
        ok = [r for r in rows if r["copied"]]
        print(
            f"{e:5d}  {len(ok) / len(rows):6.2f}  {_pair(ok):>24s}  {_pair([r for r in rows if not r['copied']]):>21s}"
            f"  {_repeat(rows):>29s}   {rows[0]['text'][-40:]!r}"
        )
    if not every:
        print(f"error: no reflections under {args.artifacts}", file=sys.stderr)
        return 1
    ok = [r for r in every if r["copied"]]
    print(
        f"all    {len(ok) / len(every):6.2f}  {_pair(ok):>24s}  {_pair([r for r in every if not r['copied']]):>21s}"
        f"  {_repeat(every):>29s}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
