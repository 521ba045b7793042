"""Can the warm start teach the tiny reflector to copy its note? A warm-start-only experiment (no RL).

Builds the embedded default's initial policy exactly as `init` does for the given params (tokenizer, model,
warm start), then lets it reflect, with the reflector's own sampling settings, on 200 failed random-play
attempts on held-out maps, and counts the reflections that end with the note the environment implies
(``env.reflection_note``), and each part of the note right.

``--boards yes|no`` overrides ``env.frozenlake.summary_boards`` (the reflector's input with the start and final
boards, about 180 tokens, or only the action list and the feedback, about 70), in the warm start and in the
test alike.

  python scripts/copy_probe.py --params P.yaml                 # as the params say
  python scripts/copy_probe.py --params P.yaml --boards yes    # the long input, with the boards
  python scripts/copy_probe.py --params P.yaml --policy DIR    # test an existing policy (no warm start)
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    ap.add_argument(
        "--boards",
        choices=["yes", "no"],
        help="override env.frozenlake.summary_boards: the reflector sees the boards, or only the action "
        "list and the feedback",
    )
    ap.add_argument("--policy", type=Path, help="test this policy directory instead of building one")
    ap.add_argument("--attempts", type=int, default=200)
    args = ap.parse_args(argv)
    from pipeline.config import load_or_exit

    p = load_or_exit(args.params)
    if p.policy.model != "tiny" or p.env.name != "frozenlake":
        print("error: the probe is for the embedded default (policy.model: tiny) on FrozenLake", file=sys.stderr)
        return 2
    if args.boards:
        fl = p.env.frozenlake.model_copy(update={"summary_boards": args.boards == "yes"})
        p = p.model_copy(update={"env": p.env.model_copy(update={"frozenlake": fl})})
    from pipeline.envs import make_env
    from pipeline.erl import tasks
    from pipeline.policy import Policy
    from pipeline.prompts import parse_reflection, prompt_set, reflector_messages
    from pipeline.rollout import encode_chat
    from pipeline.tiny.warmstart import random_play

    work = Path(tempfile.mkdtemp(prefix="copy-probe-"))
    env = make_env(p.env, work)
    train, test = tasks.task_sets(p, env)
    policy = args.policy
    if policy is None:
        t0 = time.perf_counter()
        policy = work / "policy"
        from stages.init import initial_policy

        initial_policy(p, env, train, policy)
        print(f"warm start: {p.policy.tiny.warmstart_steps} steps in {time.perf_counter() - t0:.0f} s")
    loaded = Policy(p, policy)
    engine, tok = loaded.engine, loaded.tokenizer
    prompts = prompt_set(p.policy.prompts, p.env.name)
    rng, failed = random.Random(7), []
    while len(failed) < args.attempts:
        task = rng.choice(test)
        _, trace = random_play(env, task, rng, p.env.frozenlake.budget)
        if trace.steps and env.reward(trace) < 1:
            failed.append((task, trace))
    ids = [
        encode_chat(
            tok,
            reflector_messages(prompts, env.summary(tr, env.render(env.reset(t)), True), None),
            p.policy.max_prompt_tokens,
        )
        for t, tr in failed
    ]
    gens = engine.generate(ids, p.reflect.sampling, list(range(len(ids))))
    copied, shaped, parts = 0, 0, None
    for (_, trace), g in zip(failed, gens):
        text, _ = parse_reflection(tok.decode(g.token_ids, skip_special_tokens=True))
        want = env.reflection_note(trace).split()[1:]
        copied += text.strip().endswith(" ".join(["last", *want]))
        got = text.split("last")[-1].split() if "last" in text else []
        if len(got) == len(want):
            shaped += 1
            parts = [a + (x == y) for a, x, y in zip(parts or [0] * len(want), got, want)]
    print(
        f"{'with' if p.env.frozenlake.summary_boards else 'without'} boards, {sum(map(len, ids)) / len(ids):.0f} prompt tokens on average: "
        f"{copied} of {len(failed)} reflections end with the note; {shaped} notes of the right shape, parts right "
        f"{parts} (chance about 1/4 each)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
