"""The `erl` command: one entry point for the stages, dvc.yaml generation, the Prefect flow and deployment,
and the benchmark. `erl <command> --help` explains each."""
from __future__ import annotations

import importlib
import signal
import sys

STAGES = ("init", "sample", "feedback", "reflect", "retry", "consolidate", "update", "evaluate", "report")

HELP = """\
commands:
  stage NAME [--epoch N]   run one pipeline stage (what dvc.yaml calls): init sample feedback reflect retry
                           consolidate update evaluate report
  dvc-yaml [--check]       write dvc.yaml from params.yaml (train.epochs), or check it is current
  run [--epochs N]         run the whole pipeline as a Prefect flow (one task per DVC stage and epoch)
  deploy [--cron CRON]     serve a scheduled Prefect deployment (concurrency limit: one run)
  audit {update,reflection,task,verify}
                           trace weight updates to reflections and back; verify artifact hashes
  compare [--seeds K]      ERL vs RLVR vs ablations, k seeds each -> reports/compare.{md,html,csv}
  bench                    time each stage of a small run: wall time, start-up and DVC overhead

The usual way to train is plain `dvc repro` (or `dvc exp run -S key=value`).
"""


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
    if cmd == "dvc-yaml":
        from pipeline.dvcgen import main as gen

        return gen(rest)
    if cmd in ("run", "deploy"):
        from pipeline.flows import main as flows_main

        flows_main(["run" if cmd == "run" else "serve", *rest])
        return 0
    if cmd == "audit":
        from pipeline.audit import main as audit

        return audit(rest)
    if cmd == "compare":
        from pipeline.compare import main as compare

        return compare(rest)
    if cmd == "bench":
        from pipeline.bench import main as bench

        return bench(rest)
    print(f"erl: unknown command {cmd!r}\n\n{HELP}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
