"""The memory planner's figures (pipeline/gpumem.py, what `erl memory` prints) for every preset on 1 x 80 GB,
8 x 80 GB and 1 x 141 GB, and its one calibration point: GiB per GPU at the update's peak (fragmentation
headroom included), whether it fits, and the CPU memory an offload needs. No GPU needed.

  python scripts/memory_plan.py
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline import gpumem  # noqa: E402
from pipeline.config import load_params  # noqa: E402

HARDWARE = [(1, 80.0), (8, 80.0), (1, 141.0)]


def main() -> int:
    shape = gpumem.Shape.from_config(gpumem.KNOWN["Qwen/Qwen3-4B-Instruct-2507"])
    est, measured = gpumem.calibration(shape)
    print(
        f"calibration: Qwen3-4B-shaped update on one H200, ddp, foreach AdamW, first step: planner {est:.1f} GiB, "
        f"measured {measured} GiB ({(est - measured) / measured:+.1%})\n"
    )
    head = "preset".ljust(15) + "".join(f"{g} x {gib:g} GB".rjust(20) for g, gib in HARDWARE)
    print(head + "\n" + "-" * len(head))
    for path in sorted((ROOT / "presets").glob("*.yaml")):
        p = load_params(path)
        try:
            sh = gpumem.Shape.from_config(gpumem.model_config(p))
        except Exception as exc:  # a preset whose model the planner cannot size
            print(f"{path.stem:<15}{exc}")
            continue
        cells = []
        for gpus, gib in HARDWARE:
            e = gpumem.estimate(sh, gpumem.Setup.of(p, gpus))
            ok = "fits" if gpumem.fits(e, gib * gpumem.GiB) else "no"
            host = f" +{e['host'] / gpumem.GiB:.0f} CPU" if e["host"] else ""
            cells.append(f"{e['peak'] / gpumem.GiB:.1f} {ok}{host}".rjust(20))
        print(f"{path.stem:<15}" + "".join(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
