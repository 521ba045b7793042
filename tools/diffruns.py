"""`erl diff RUN_A RUN_B`: are two runs' results the same? Compares every Parquet table's contents (rows and
columns, not the lineage footer, which names the code and the time), every checkpoint file byte for byte, every
metrics.json and, with --reports, the report files. Exit 1 when anything differs. A change that should not alter
results (a refactor, a faster kernel) is checked this way against the main job's outputs.

  erl diff /path/to/other/artifacts artifacts
  erl diff A/artifacts B/artifacts --reports A/reports B/reports
"""

from __future__ import annotations

import argparse
import filecmp
import json
import sys
from pathlib import Path


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")}


def _same_table(a: Path, b: Path, ignore: tuple[str, ...] = ()) -> str | None:
    import pyarrow.parquet as pq

    ta, tb = pq.read_table(a), pq.read_table(b)
    ta, tb = (t.drop([c for c in ignore if c in t.column_names]) for t in (ta, tb))
    if ta.schema.remove_metadata() != tb.schema.remove_metadata():
        return "schemas differ"
    if ta.num_rows != tb.num_rows:
        return f"{ta.num_rows} rows against {tb.num_rows}"
    for name in ta.column_names:
        if not ta.column(name).equals(tb.column(name)):
            return f"column {name} differs"
    return None


def _same_json(a: Path, b: Path, ignore: tuple[str, ...]) -> str | None:
    ja, jb = json.loads(a.read_text()), json.loads(b.read_text())
    if isinstance(ja, dict) and isinstance(jb, dict):
        ja = {k: v for k, v in ja.items() if k not in ignore}
        jb = {k: v for k, v in jb.items() if k not in ignore}
    return None if ja == jb else "values differ"


def diff(
    a: Path, b: Path, ignore_json: tuple[str, ...] = (), ignore_columns: tuple[str, ...] = ()
) -> list[tuple[str, str]]:
    """(relative path, what differs) for every file that is not the same in both trees."""
    fa, fb = _files(a), _files(b)
    out = [(f, f"only in {a}") for f in sorted(fa - fb)] + [(f, f"only in {b}") for f in sorted(fb - fa)]
    for f in sorted(fa & fb):
        pa, pb = a / f, b / f
        if f.endswith(".parquet"):
            why = _same_table(pa, pb, ignore_columns)
        elif f.endswith(".json"):
            why = _same_json(pa, pb, ignore_json)
        else:
            why = None if filecmp.cmp(pa, pb, shallow=False) else "bytes differ"
        if why:
            out.append((f, why))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="erl diff", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("run_a", type=Path, help="an artifact root (e.g. artifacts/ of one checkout)")
    ap.add_argument("run_b", type=Path, help="the artifact root to compare it with")
    ap.add_argument(
        "--reports",
        nargs=2,
        type=Path,
        metavar=("REPORTS_A", "REPORTS_B"),
        help="also compare two reports/ folders (history, metrics, plots, report pages)",
    )
    ap.add_argument(
        "--ignore",
        nargs="*",
        default=["warmstart_seconds"],
        help="JSON keys to leave out (default: the warm start's seconds)",
    )
    ap.add_argument(
        "--ignore-columns",
        nargs="*",
        default=[],
        metavar="COLUMN",
        help="table columns to leave out (e.g. checkpoint_sha256 parent_sha256 when only the checkpoint "
        "layout changed)",
    )
    args = ap.parse_args(argv)
    for root in (args.run_a, args.run_b, *(args.reports or ())):
        if not root.is_dir():
            print(f"error: {root}: not a directory", file=sys.stderr)
            return 2
    diffs = diff(args.run_a, args.run_b, tuple(args.ignore), tuple(args.ignore_columns))
    n = len(_files(args.run_a) | _files(args.run_b))
    if args.reports:
        ra, rb = args.reports
        diffs += [(f"reports: {f}", why) for f, why in diff(ra, rb, tuple(args.ignore), tuple(args.ignore_columns))]
        n += len(_files(ra) | _files(rb))
    for f, why in diffs:
        print(f"differs: {f}: {why}")
    print(f"{n} files compared, {len(diffs)} differ" if diffs else f"{n} files compared: identical contents")
    return 1 if diffs else 0


if __name__ == "__main__":
    raise SystemExit(main())
