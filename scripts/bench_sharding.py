"""The update sharded over 1, 2 and 3 processes on CPU (gloo), on the same samples: seconds per optimizer step
and peak resident memory per process. On 2 cores more processes are slower (they share the cores); the point is
that every world size finishes and computes the same update (tests/test_sharding.py checks the values).

  python scripts/bench_sharding.py [--samples 24] [--size bench]

Runs tests/sharding_worker.py once per rank, as `accelerate launch` would, with one thread each.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=24)
    ap.add_argument("--size", choices=["small", "bench"], default="bench")
    ap.add_argument("--worlds", default="1,2,3")
    args = ap.parse_args(argv)
    from test_sharding import launch

    update = {"lr": 1e-4, "minibatch_size": 24, "ppo_epochs": 2, "micro_batch_tokens": 256, "kl_coef": 0.02}
    print("processes  strategy  s/step  peak RSS per process (MiB)")
    with tempfile.TemporaryDirectory() as tmp:
        for world in [int(w) for w in args.worlds.split(",")]:
            timing = Path(tmp) / f"w{world}"
            spec = {
                "mode": "step",
                "arch": "qwen3",
                "size": args.size,
                "strategy": "fsdp2",
                "samples": args.samples,
                "update": update,
                "out": str(Path(tmp) / f"w{world}.safetensors"),
                "timing": str(timing),
            }
            launch(spec, Path(tmp), world, timeout=1800)
            ranks = [json.loads(Path(f"{timing}.rank{r}.json").read_text()) for r in range(world)]
            per_step = max(r["seconds"] / r["steps"] for r in ranks)
            rss = ", ".join(f"{r['peak_rss_mib']:.0f}" for r in ranks)
            print(f"{world:>9}  fsdp2     {per_step:6.2f}  {rss}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
