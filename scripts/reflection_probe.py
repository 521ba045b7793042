"""Does the reflection channel carry the fact the warm start taught the reflector to copy? A diagnostic for the
embedded default (FrozenLake or Sokoban with the tiny prompt set).

For every epoch of a run it rebuilds each failed attempt's trace from attempts.parquet, asks the environment
for the note its warm-start copying exercise copies (``env.reflection_note``: ``last 2 1``, or ``last right 2
0`` with ``env.frozenlake.feedback_from``), and prints:

- ``copied``: the share of reflections that end with that note, verbatim;
- the success of the retries those reflections guided against the plain retry under s0 on the same failed
  attempts (``retry.control``, paired), for reflections with the note and for the others;
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

from pipeline.episodes import trace_from_row  # noqa: E402


def epoch_rows(art: Path, epoch: int, env) -> list[dict]:
    """One row per reflection of the epoch: whether it ends with the note, its retry's and the control's reward.
    Each failed attempt's trace is rebuilt as the feedback stage rebuilds it."""
    from pipeline import dag
    from pipeline.artifacts import read_rows

    d = dag.epoch_dir(epoch, art)
    if not (d / "reflections.parquet").exists():
        return []
    attempts = {a["rollout_id"]: a for a in read_rows("attempts", d / "attempts.parquet")}
    retries = {r["reflection_id"]: r for r in read_rows("retries", d / "retries.parquet") if r["reflection_id"]}
    out = []
    for r in read_rows("reflections", d / "reflections.parquet"):
        note = env.reflection_note(trace_from_row(attempts[r["rollout_id"]], 0))  # the note needs no budget
        retry = retries.get(r["reflection_id"])
        if retry is None:
            continue
        out.append({"copied": bool(note) and r["reflection"].strip().endswith(note), "text": r["reflection"],
                    "retry": retry["reward"], "control": retry["control_reward"]})
    return out


def _pair(rows: list[dict]) -> str:
    if not rows:
        return "     -/-      n    0"
    ctl = [r["control"] for r in rows if r["control"] is not None]
    return (f"{statistics.fmean(r['retry'] for r in rows):.3f}/{statistics.fmean(ctl) if ctl else float('nan'):.3f}"
            f" n {len(rows):4d}")


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
    print("epoch  copied  retry/control with note   retry/control others   example")
    every = []
    for e in epochs:
        rows = epoch_rows(args.artifacts, e, env)
        if not rows:
            continue
        every += rows
        ok = [r for r in rows if r["copied"]]
        print(f"{e:5d}  {len(ok) / len(rows):6.2f}  {_pair(ok):>24s}  {_pair([r for r in rows if not r['copied']]):>21s}"
              f"   {rows[0]['text'][-40:]!r}")
    if not every:
        print(f"error: no reflections under {args.artifacts}", file=sys.stderr)
        return 1
    ok = [r for r in every if r["copied"]]
    print(f"all    {len(ok) / len(every):6.2f}  {_pair(ok):>24s}  {_pair([r for r in every if not r['copied']]):>21s}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
