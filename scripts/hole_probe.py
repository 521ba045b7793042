"""Does the FrozenLake policy read the holes next to it? A diagnostic for the plateaus of the embedded default.

Takes the states of one epoch's first attempts where exactly two moves bring A closer to B and exactly one of
them steps into a hole, and prints, for the policy after each given epoch, the probability of the hole move
and of the safe move (renormalized over the four actions, after the reply's opening ```). A policy that
ignores the holes splits its choice about evenly between the two; one that reads them puts its weight on the
safe move.

  python scripts/hole_probe.py --states-epoch 30 --epochs 0 10 20 30 40
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.envs.frozenlake import ACTIONS, FROZEN, GOAL, HOLE, MOVES  # noqa: E402


def fork_states(art: Path, epoch: int) -> list[tuple[list[int], str, str]]:
    """(prompt ids + the reply's first token, hole move, safe move) for every fork met in the epoch's attempts."""
    from pipeline import layout
    from pipeline.artifacts import read_rows

    specs = {
        t["task_id"]: json.loads(t["spec"])
        for t in read_rows("tasks", layout.epoch_dir(0, art) / "tasks_train.parquet")
    }
    out = []
    for a in read_rows("attempts", layout.epoch_dir(epoch, art) / "attempts.parquet"):
        s = specs[a["task_id"]]
        grid, n, pos, goal = s["grid"], s["size"], tuple(s["start"]), tuple(s["goal"])
        for turn, action in enumerate(a["actions"]):
            dist = abs(pos[0] - goal[0]) + abs(pos[1] - goal[1])
            closer = {
                m: grid[pos[0] + dr][pos[1] + dc]
                for m, (dr, dc) in MOVES.items()
                if 0 <= pos[0] + dr < n
                and 0 <= pos[1] + dc < n
                and abs(pos[0] + dr - goal[0]) + abs(pos[1] + dc - goal[1]) < dist
            }
            cells = sorted(closer.values())
            if len(cells) == 2 and cells[0] == HOLE and cells[1] in (GOAL, FROZEN) and a["response_ids"][turn]:
                hole = next(m for m, v in closer.items() if v == HOLE)
                safe = next(m for m, v in closer.items() if v != HOLE)
                out.append((list(a["prompt_ids"][turn]) + list(a["response_ids"][turn][:1]), hole, safe))
            if action not in MOVES:
                break
            nr, nc = pos[0] + MOVES[action][0], pos[1] + MOVES[action][1]
            if 0 <= nr < n and 0 <= nc < n:
                pos = (nr, nc)
                if grid[nr][nc] == HOLE or pos == goal:
                    break
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--artifacts", type=Path, default=ROOT / "artifacts")
    ap.add_argument("--states-epoch", type=int, required=True, help="the epoch whose first attempts give the states")
    ap.add_argument("--epochs", type=int, nargs="+", required=True, help="policies to probe (0 = the warm start)")
    ap.add_argument("--max-states", type=int, default=300)
    args = ap.parse_args(argv)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pipeline import layout

    for e in [args.states_epoch, *args.epochs]:
        if not layout.policy_dir(e, args.artifacts).is_dir():
            print(f"error: no policy for epoch {e} under {args.artifacts}", file=sys.stderr)
            return 2
    states = fork_states(args.artifacts, args.states_epoch)[: args.max_states]
    print(f"{len(states)} forks (one closer move safe, one into a hole) in epoch {args.states_epoch}'s first attempts")
    if not states:
        return 0
    tok = AutoTokenizer.from_pretrained(layout.policy_dir(0, args.artifacts))
    ids = [tok.convert_tokens_to_ids(m) for m in ACTIONS]
    names = list(ACTIONS)
    for e in args.epochs:
        model = AutoModelForCausalLM.from_pretrained(layout.policy_dir(e, args.artifacts)).eval()
        p_hole = p_safe = wins = 0.0
        with torch.no_grad():
            for prompt, hole, safe in states:
                p = torch.softmax(model(torch.tensor([prompt])).logits[0, -1], -1)[ids]
                p = p / p.sum()
                h, s = float(p[names.index(hole)]), float(p[names.index(safe)])
                p_hole, p_safe, wins = p_hole + h, p_safe + s, wins + (s > h)
        k = len(states)
        print(
            f"epoch {e:3d}: p(hole move) {p_hole / k:.3f}  p(safe move) {p_safe / k:.3f}  safe preferred {wins / k:.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
