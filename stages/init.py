"""init: generate the train and test task sets, build or import the initial policy (epoch 0), and write
the empty memory table.

  python -m stages.init                  # embedded default (policy.model: tiny), built offline
  python -m stages.init --params p.yaml  # policy.model: a local HF directory or hub id is copied in

Outputs: artifacts/init/{tasks_train,tasks_test,memory}.parquet, artifacts/init/policy/ (an HF model dir),
artifacts/init/init.json (warm-start loss curve and timings); with env.name: qa also the search index
artifacts/init/qa_index.sqlite, which later stages open read-only.
"""
from __future__ import annotations

import json
import logging
import time

from pipeline import dag, stagekit
from pipeline.artifacts import sha256_dir, write_json, write_table
from pipeline.envs import make_env
from pipeline.prompts import prompt_set

log = logging.getLogger("erl")
KEYS = ("seed", "env", "policy")


def make_tasks(params, artifacts=dag.ARTIFACTS):
    env = make_env(params.env, artifacts)
    train = env.generate("train", params.env.n_train, params.seed)
    keys = {env.map_key(t) for t in train}
    test = env.generate("test", params.env.n_test, params.seed, exclude=keys)
    return env, train, test


def task_rows(env, tasks):
    return [
        {
            "task_id": t.task_id,
            "split": t.split,
            "env": env.name,
            "spec": json.dumps(t.spec, sort_keys=True),
            "optimal_len": t.optimal_len,
            "map_key": env.map_key(t),
        }
        for t in tasks
    ]


def build_policy(params, env, train, out):
    """The tiny embedded default, or a copy of the named model as an HF directory."""
    import torch

    from pipeline import tiny, warmstart

    torch.manual_seed(params.seed)
    if params.policy.model != "tiny":
        from pipeline.engine import load_causal_lm

        model, tok = load_causal_lm(params.policy.model, params.policy.dtype, device="cpu")
        tiny.save_policy(model, tok, out)
        return {"model": params.policy.model, "warmstart": []}
    prompts = prompt_set(params.policy.prompts, params.env.name)
    tp = params.policy.tiny
    kinds = tuple(tp.warmstart_exercises)
    tok = tiny.build_tokenizer(warmstart.corpus_texts(env, prompts, train, params.seed, kinds=kinds))
    model = tiny.build_model(tok, tp, params.seed)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("tiny policy: %d tokens in vocabulary, %.2f M parameters", len(tok), n_params / 1e6)
    n_examples = max(2000, tp.warmstart_steps * 8)
    n_reading = int(round(n_examples * tp.warmstart_reading))
    examples = warmstart.format_examples(env, prompts, train, n_examples - n_reading, params.seed,
                                         tp.warmstart_reflect, tp.warmstart_memory)
    examples += warmstart.reading_examples(env, train, n_reading, params.seed, kinds)
    t0 = time.perf_counter()
    curve = tiny.warm_start(model, tok, examples, tp, params.seed)
    tiny.save_policy(model, tok, out)
    return {"model": "tiny", "vocab": len(tok), "parameters": n_params, "warmstart_seconds": time.perf_counter() - t0,
            "warmstart": curve}


def main(argv=None) -> None:
    ctx = stagekit.parse("init", __doc__, needs_epoch=False, argv=argv)
    with stagekit.stage_errors("init"):
        params = ctx.params
        env, train, test = make_tasks(params, ctx.root)
        log.info("tasks: %d train, %d test", len(train), len(test))
        if params.env.name == "qa":  # the search tool's index: the warm start below already searches
            log.info("search index: %d passages", env.build_index(params.seed))
        lineage = ctx.lineage([], KEYS)
        write_table("tasks", task_rows(env, train), ctx.tasks_train, lineage)
        write_table("tasks", task_rows(env, test), ctx.tasks_test, lineage)
        write_table("memory", [], ctx.path("memory", 0), lineage)
        info = build_policy(params, env, train, ctx.policy(0))
        info["policy_sha256"] = sha256_dir(ctx.policy(0))
        write_json(info, ctx.dir(0) / "init.json")


if __name__ == "__main__":
    main()
