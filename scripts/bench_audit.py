"""Time `erl audit` on a long run without training one: replicate the epochs of an existing run (ids and
epoch numbers rewritten, so every epoch is distinct) up to N epochs in a temporary folder, then time each
audit command as a fresh process, the way a user runs it.

  python scripts/bench_audit.py --artifacts artifacts --epochs 20
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ID_COLUMNS = ("rollout_id", "reflection_id", "retry_id", "sample_id", "update_id")


def rewrite(table: pa.Table, src_epoch: int, dst_epoch: int) -> pa.Table:
    for i, name in enumerate(table.column_names):
        col = table.column(name)
        if name in ID_COLUMNS:
            col = pc.replace_substring_regex(col, f"^e{src_epoch}", f"e{dst_epoch}")
        elif name == "epoch":
            col = pc.add(pc.subtract(col, src_epoch), dst_epoch).cast(col.type)
        table = table.set_column(i, name, col)
    return table


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--artifacts", default="artifacts")
    ap.add_argument("--epochs", type=int, default=20)
    args = ap.parse_args()
    src = Path(args.artifacts)
    have = sorted(int(p.name.split("_")[1]) for p in src.glob("epoch_*"))
    if not have:
        print(f"error: no epochs under {src}", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="erl-audit-bench-")) / "artifacts"
    shutil.copytree(src / "init", tmp / "init", ignore=shutil.ignore_patterns("policy"))
    rows = 0
    for e in range(1, args.epochs + 1):
        s = have[(e - 1) % len(have)]
        d = tmp / f"epoch_{e:03d}"
        d.mkdir(parents=True)
        for f in (src / f"epoch_{s:03d}").glob("*.parquet"):
            t = rewrite(pq.read_table(f), s, e)
            rows += t.num_rows
            pq.write_table(t, d / f.name)
    print(f"{args.epochs} epochs, {rows:,} rows in {tmp}")
    refl = pq.read_table(tmp / f"epoch_{args.epochs // 2:03d}" / "reflections.parquet").column("reflection_id")
    task = pq.read_table(tmp / "epoch_001" / "attempts.parquet").column("task_id")[0].as_py()
    cmds = [["update", str(args.epochs)], ["update", "1"], ["task", task]]
    if len(refl):
        cmds.insert(1, ["reflection", refl[0].as_py()])
    for cmd in cmds:
        t0 = time.perf_counter()
        res = subprocess.run(
            [sys.executable, "-m", "tools.audit", "--artifacts", str(tmp), "--json", *cmd],
            capture_output=True,
            text=True,
        )
        print(f"erl audit {' '.join(cmd):<45} {time.perf_counter() - t0:6.2f} s  (exit {res.returncode})")
    shutil.rmtree(tmp.parent, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
