"""The `erl` command: one entry point for the stages, dvc.yaml generation and experiments, the Prefect flow and
deployment, the audit, comparisons and benchmarks. `erl <command> --help` explains each; options go before or
after a subcommand's arguments, as with git and dvc."""

from __future__ import annotations

import importlib
import signal
import sys

from pipeline.layout import STAGES

HELP = """\
commands:
  stage NAME [--epoch N]   run one pipeline stage by hand (what dvc.yaml calls): validate init sample feedback
                           reflect retry consolidate update evaluate epochs report
  preset NAME [--list]     write params.yaml (and dvc.yaml) for a preset of presets/: hidden, paper, ...
  dvc-yaml [--check]       write dvc.yaml from params.yaml, or check that it is current
  memory [--gpus N]        will the update fit N GPUs? per-GPU memory term by term, and settings that fit
  exp run [-S KEY=VALUE]   a DVC experiment whose overrides may change the graph (train.epochs, env.name, ...):
                           regenerates dvc.yaml, then runs `dvc exp run`
  run [--epochs N]         run the whole pipeline as a Prefect flow (one task per DVC stage)
  deploy [--cron CRON]     serve a scheduled Prefect deployment (concurrency limit: one run)
  audit {update,reflection,task,verify}
                           trace weight updates to reflections and back; verify artifact hashes
  diff RUN_A RUN_B         compare two runs' artifacts: table contents, checkpoint bytes, metrics
  compare [--seeds K]      ERL vs RLVR vs ablations, k seeds each -> reports/compare.{md,html,csv}
  bench                    time each stage of a small run: wall time, start-up and DVC overhead
  faults [--trials N]      kill the pipeline at random points, rerun it, compare with an uninterrupted run
  serve-index --index F    serve a search index over HTTP (Search-R1's protocol and the ERL code's) for QA

The usual way to train is plain `dvc repro` (or `dvc exp run -S key=value`).
"""

TOOLS = {  # command -> (module, function)
    "dvc-yaml": ("tools.dvcgen", "main"),
    "preset": ("tools.presets", "main"),
    "memory": ("tools.memory", "main"),
    "audit": ("tools.audit", "main"),
    "diff": ("tools.diffruns", "main"),
    "compare": ("tools.compare", "main"),
    "bench": ("tools.bench", "main"),
    "faults": ("tools.faults", "main"),
    "serve-index": ("tools.retrieval", "main"),
}


def main(argv: list[str] | None = None) -> int:
    if hasattr(signal, "SIGPIPE"):  # `erl audit ... | head` ends quietly, like any Unix tool
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: erl <command> [options]\n\n" + HELP)
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "stage":
        if not rest or rest[0] not in STAGES:
            print(f"usage: erl stage {{{','.join(STAGES)}}} [--epoch N] [--params FILE]", file=sys.stderr)
            return 2
        importlib.import_module(f"stages.{rest[0]}").main(rest[1:])
        return 0
    if cmd == "exp":
        if not rest or rest[0] != "run":
            print("usage: erl exp run [-S KEY=VALUE ...] [dvc exp run options]", file=sys.stderr)
            return 2
        from tools.dvcgen import exp_run

        return exp_run(rest[1:])
    if cmd in ("run", "deploy"):
        from tools.flows import main as flows_main

        return flows_main(["run" if cmd == "run" else "serve", *rest]) or 0
    if cmd in TOOLS:
        module, func = TOOLS[cmd]
        return getattr(importlib.import_module(module), func)(rest)
    print(f"erl: unknown command {cmd!r}\n\n{HELP}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
