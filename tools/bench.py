"""`erl bench`: run every stage of a small pipeline one at a time through `dvc repro --single-item` in a
throwaway copy of this project, and print per-stage wall time split into DVC overhead, process start-up
(imports, params) and the stage's own work. Run it alone: two torch processes on 2 cores slow each other."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from pipeline import layout
from pipeline.config import load_params

ROOT = Path(__file__).resolve().parent.parent
TIMING = re.compile(r"timing: process ([\d.]+) s, work ([\d.]+) s")


def stage_order(epochs: int, per_stage: int = 0) -> list[str]:
    names = ["validate", "init", layout.stage_name("evaluate", 0)]
    names += [name for name, _ in layout.training_stages(epochs, per_stage)]
    return names + ["report"]


def make_copy(dst: Path, params: dict) -> None:
    for sub in ("pipeline", "stages", "tools"):
        shutil.copytree(ROOT / sub, dst / sub, ignore=shutil.ignore_patterns("__pycache__"))
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = sandbox_env(dst)
    subprocess.run([sys.executable, "-m", "tools.dvcgen"], cwd=dst, check=True, env=env, capture_output=True)
    for cmd in (
        ["git", "init", "-q"],
        [sys.executable, "-m", "dvc", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=bench", "-c", "user.email=b@b", "commit", "-qm", "bench"],
    ):
        subprocess.run(cmd, cwd=dst, check=True, env=env, capture_output=True)


def sandbox_env(root: Path) -> dict:
    """Environment for running stages in a sandbox copy: offline, its code first (then what PYTHONPATH already
    holds, such as an environment package), this interpreter's tools."""
    path = os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, HF_HUB_OFFLINE="1", DVC_NO_ANALYTICS="1", PYTHONPATH=path)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def repro_one(name: str, root: Path, env: dict) -> tuple[subprocess.CompletedProcess, float]:
    """`dvc repro --single-item <name>` in ``root``; the finished process and its wall seconds."""
    t0 = time.perf_counter()
    res = subprocess.run(
        [sys.executable, "-m", "dvc", "repro", "--single-item", name], cwd=root, env=env, capture_output=True, text=True
    )
    return res, time.perf_counter() - t0


def engine_bench(params_path: str, policy: str | None, batch: int | None, repeats: int = 3) -> int:
    """The generation engine against the physical limit: tokens/s of HFEngine.generate on first-turn prompts of
    the params' environment, and of a raw loop of forward passes (prefill, then one step per token for every row,
    argmax, no bookkeeping) at the same batch and lengths. The engine samples every row and drops finished ones;
    the raw loop runs every row to the end."""
    import torch

    from pipeline.config import load_params
    from pipeline.engine import HFEngine, load_causal_lm, stop_ids_of
    from pipeline.envs import make_env
    from pipeline.erl import tasks
    from pipeline.prompts import prompt_set
    from pipeline.rollout import encode_chat, turn_messages
    from pipeline.torchsetup import configure_torch

    p = load_params(params_path)
    threads = configure_torch()
    with tempfile.TemporaryDirectory(prefix="erl-engine-bench-") as tmp:
        env = make_env(p.env, Path(tmp))
        train, _ = tasks.task_sets(p, env)
        if policy is None:  # the embedded default before its warm start: same shapes, random weights
            from pipeline.tiny import warmstart
            from pipeline.tiny.model import build_model, build_tokenizer

            prompts_set = prompt_set(p.policy.prompts, p.env.name)
            kinds = tuple(p.policy.tiny.warmstart_exercises)
            tok = build_tokenizer(warmstart.corpus_texts(env, prompts_set, train, p.seed, kinds=kinds))
            model = build_model(tok, p.policy.tiny, p.seed).eval()
        else:
            model, tok = load_causal_lm(policy, p.policy.dtype)
    s0 = prompt_set(p.policy.prompts, p.env.name).system
    n = batch or min(p.policy.batch_size, len(train))
    prompts = [
        encode_chat(
            tok, turn_messages(s0, [env.message(env.reset(t), None)], [], p.policy.history), p.policy.max_prompt_tokens
        )
        for t in train[:n]
    ]
    sampling = p.sample.sampling
    engine = HFEngine(model, stop_ids_of(tok), tok.pad_token_id or 0, p.policy.batch_size)
    engine.generate(prompts, sampling, list(range(n)))  # warm-up
    best_engine, made = float("inf"), 0
    for r in range(repeats):
        t0 = time.perf_counter()
        gens = engine.generate(prompts, sampling, [1000 * r + i for i in range(n)])
        best_engine = min(best_engine, time.perf_counter() - t0)
        made = sum(len(g.token_ids) for g in gens)
    width = max(len(x) for x in prompts)
    ids = torch.full((n, width), engine.pad_id, dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    for i, x in enumerate(prompts):
        ids[i, width - len(x) :] = torch.tensor(x)
        mask[i, width - len(x) :] = 1
    pos = (mask.cumsum(-1) - 1).clamp(min=0)

    @torch.inference_mode()
    def raw() -> None:
        from transformers import DynamicCache

        cache, step_ids, step_pos, m = DynamicCache(), ids, pos, mask
        for _ in range(sampling.max_new_tokens):
            nxt = (
                model(
                    input_ids=step_ids, attention_mask=m, position_ids=step_pos, past_key_values=cache, use_cache=True
                )
                .logits[:, -1, :]
                .argmax(-1)
            )
            step_ids, step_pos = nxt[:, None], step_pos[:, -1:] + 1
            m = torch.cat([m, torch.ones_like(m[:, :1])], dim=1)

    raw()
    best_raw = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        raw()
        best_raw = min(best_raw, time.perf_counter() - t0)
    raw_tokens = n * sampling.max_new_tokens
    print(
        f"batch {n}, prompts {min(map(len, prompts))}-{width} tokens, at most {sampling.max_new_tokens} new tokens, "
        f"{threads} threads, {'random weights' if policy is None else policy}"
    )
    print(
        f"engine: {made} tokens in {best_engine:.3f} s = {made / best_engine:,.0f} tokens/s "
        f"({n / best_engine:,.0f} completions/s)"
    )
    print(f"raw forward passes: {raw_tokens} tokens in {best_raw:.3f} s = {raw_tokens / best_raw:,.0f} tokens/s")
    print(
        f"engine / raw: {(made / best_engine) / (raw_tokens / best_raw):.2f} of the raw tokens/s, "
        f"{best_raw / best_engine:.2f} of its wall time for the same prompts"
    )
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="erl bench", description=__doc__)
    ap.add_argument("--params", default="params.yaml", help="parameters to run with (default: params.yaml)")
    ap.add_argument("--epochs", type=int, default=None, help="override train.epochs (default: as in --params)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary project and print its path")
    ap.add_argument(
        "--engine",
        action="store_true",
        help="instead: the generation engine's tokens/s against raw forward passes (see engine_bench)",
    )
    ap.add_argument("--policy", default=None, help="with --engine: a checkpoint directory (default: random weights)")
    ap.add_argument("--batch", type=int, default=None, help="with --engine: prompts per batch")
    args = ap.parse_args(argv)
    if args.engine:
        return engine_bench(args.params, args.policy, args.batch)
    params = yaml.safe_load(Path(args.params).read_text()) or {}
    if args.epochs is not None:
        params.setdefault("train", {})["epochs"] = args.epochs
    train = load_params(args.params).train
    epochs = train.epochs if args.epochs is None else args.epochs
    tmp = Path(tempfile.mkdtemp(prefix="erl-bench-"))
    env = sandbox_env(tmp)
    try:
        make_copy(tmp, params)
        rows = []
        print(f"{'stage':<16}{'wall s':>9}{'dvc s':>9}{'start-up s':>12}{'work s':>9}", flush=True)
        for name in stage_order(epochs, train.epochs_per_stage):
            res, wall = repro_one(name, tmp, env)
            if res.returncode != 0:
                print(res.stdout[-3000:], res.stderr[-3000:], file=sys.stderr)
                print(f"error: stage {name} failed", file=sys.stderr)
                return 1
            m = TIMING.search(res.stdout + res.stderr)
            proc, work = (float(m.group(1)), float(m.group(2))) if m else (wall, wall)
            rows.append((name, wall, wall - proc, proc - work, work))
            print(f"{name:<16}{wall:>9.1f}{wall - proc:>9.1f}{proc - work:>12.1f}{work:>9.1f}", flush=True)
        tot = [sum(r[i] for r in rows) for i in range(1, 5)]
        print(f"{'total':<16}{tot[0]:>9.1f}{tot[1]:>9.1f}{tot[2]:>12.1f}{tot[3]:>9.1f}")
        print(
            f"overhead share: DVC {tot[1] / tot[0]:.1%}, process start-up {tot[2] / tot[0]:.1%}, "
            f"work {tot[3] / tot[0]:.1%}"
        )
        t0 = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import torch, accelerate; from transformers import LlamaForCausalLM, AutoTokenizer, DynamicCache",
            ],
            env=env,
            check=True,
        )
        imp = time.perf_counter() - t0
        n_model = sum(1 for r in rows if not r[0].startswith(("feedback", "consolidate", "report")))
        print(
            f"importing torch + transformers + accelerate: {imp:.1f} s per model stage, counted in 'work' above; "
            f"x {n_model} model stages = {imp * n_model:.0f} s ({imp * n_model / tot[0]:.1%} of the total)"
        )
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=tmp, env=env, capture_output=True, check=True)
        print(f"no-op `dvc repro` of {len(rows)} stages: {time.perf_counter() - t0:.1f} s")
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
