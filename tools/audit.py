"""`erl audit`: answer "which reflections produced which weight updates?" from the Parquet artifacts alone
(DuckDB over the files, no server), and verify every artifact against the lineage recorded for it.

  erl audit update EPOCH         the weight update of an epoch, traced back to the reflections behind it
  erl audit reflection ID        a reflection, traced forward: retry, samples, update, memory, later readers
  erl audit task ID              every attempt on a task across epochs
  erl audit verify               recompute sha256/md5 of every artifact against Parquet footers and dvc.lock

Add --json for machine-readable output and --artifacts DIR to audit another run. No torch here.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
from pathlib import Path

from pipeline import checkpoint, layout
from pipeline.artifacts import read_lineage, sha256_dir, sha256_path


class AuditError(LookupError):
    """An unknown epoch or id, or a run with no artifacts: one line for the user, exit 2."""


def _db():
    import duckdb

    return duckdb.connect()


# Token id lists are never queried: leaving them unread keeps an audit of a long run quick.
HEAVY = {"prompt_ids", "response_ids", "distill_prompt_ids", "observations", "messages"}


def _epoch_dirs(root: Path) -> list[Path]:
    """The epoch folders of one run, listed by Python: the artifact root is a directory, never a pattern (DuckDB
    would expand '*', '?' and '[...]' in a path and silently read other runs)."""
    return sorted(p for p in root.iterdir() if p.is_dir() and re.fullmatch(r"epoch_\d{3}", p.name))


def _files(root: Path, table: str) -> list[Path]:
    return [f for d in _epoch_dirs(root) if (f := d / f"{table}.parquet").is_file()]


def _load(table: str, files: list[Path]):
    """The rows of ``files`` (``table`` tables) as one Arrow table, without the token id columns; an empty table
    of the schema when there are none yet (a run that has not written them)."""
    import pyarrow as pa

    from pipeline.artifacts import SCHEMAS, read_table

    schema = pa.schema([f for f in SCHEMAS[table] if f.name not in HEAVY])
    parts = []
    for f in files:
        try:
            parts.append(read_table(table, f).select(schema.names))
        except (OSError, ValueError) as exc:  # a file being replaced this instant, or damaged: said, not a traceback
            raise AuditError(f"{f}: cannot be read now ({exc}); a run in progress? try again") from None
    return pa.concat_tables(parts) if parts else schema.empty_table()


def _views(con, **tables) -> None:
    """Name each (table name, files) pair as a view over the Arrow rows read from those files: no path is ever
    given to DuckDB, so nothing in it is taken as a pattern or as SQL."""
    for name, (table, files) in tables.items():
        con.register(name, _load(table, files))


def _rows(con, sql: str, params: list | None = None) -> list[dict]:
    cur = con.execute(sql, params or [])
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def _epochs(root: Path) -> list[int]:
    return [int(p.name.split("_")[1]) for p in _epoch_dirs(root)]


def audit_update(root: Path, epoch: int) -> dict:
    d = layout.epoch_dir(epoch, root)
    if not (d / "updates.parquet").exists():
        known = _epochs(root)
        raise AuditError(f"no update for epoch {epoch} under {root} (epochs with artifacts: {known or 'none'})")
    con = _db()
    _views(
        con,
        **{
            n: (n, [d / f"{n}.parquet"] if (d / f"{n}.parquet").is_file() else [])
            for n in ("updates", "steps", "samples", "reflections", "retries", "feedback")
        },
    )
    head = _rows(
        con,
        """
        SELECT any_value(update_id) AS update_id, any_value(checkpoint_sha256) AS checkpoint_sha256,
               any_value(parent_sha256) AS parent_sha256, count(*) AS optimizer_steps,
               avg(grad_norm) AS mean_grad_norm, avg(loss) AS mean_loss
        FROM steps""",
    )[0]
    kinds = _rows(
        con,
        """SELECT kind, count(*) AS rows, sum(abs(loss)) AS total_abs_loss
                           FROM updates GROUP BY kind ORDER BY kind""",
    )
    refl = _rows(
        con,
        """
        WITH contrib AS (
            SELECT s.reflection_id, list(DISTINCT s.kind ORDER BY s.kind) AS kinds,
                   list(struct_pack(sample_id := u.sample_id, kind := s.kind, advantage := u.advantage,
                                    loss := u.loss, step := u.step) ORDER BY u.step, u.sample_id) AS samples,
                   sum(abs(u.loss)) AS contribution, sum(u.advantage) AS total_advantage
            FROM updates u JOIN samples s USING (sample_id)
            WHERE s.reflection_id IS NOT NULL GROUP BY s.reflection_id)
        SELECT c.reflection_id, r.task_id, r.rollout_id, fb.feedback AS first_attempt_feedback,
               fb.reward AS first_attempt_reward, r.reflection, r.memory_version, rt.retry_id,
               rt.reward AS second_attempt_reward, c.kinds, c.contribution, c.total_advantage, c.samples
        FROM contrib c JOIN reflections r USING (reflection_id)
        LEFT JOIN feedback fb ON fb.rollout_id = r.rollout_id
        LEFT JOIN retries rt ON rt.reflection_id = r.reflection_id
        ORDER BY c.contribution DESC, c.reflection_id""",
    )
    return {"epoch": epoch, **head, "by_kind": kinds, "reflections": refl}


def audit_reflection(root: Path, rid: str) -> dict:
    con = _db()
    _views(
        con, all_reflections=("reflections", _files(root, "reflections")), all_memory=("memory", _files(root, "memory"))
    )
    found = _rows(con, "SELECT * FROM all_reflections WHERE reflection_id = ?", [rid])
    if not found:
        raise AuditError(f"unknown reflection id {rid!r} under {root}")
    r = found[0]
    e = r["epoch"]
    d = layout.epoch_dir(e, root)
    _views(
        con,
        **{
            n: (n, [d / f"{n}.parquet"] if (d / f"{n}.parquet").is_file() else [])
            for n in ("retries", "samples", "updates")
        },
    )
    retry = _rows(
        con, "SELECT retry_id, reward, success, outcome, n_turns, actions FROM retries WHERE reflection_id = ?", [rid]
    )
    samples = _rows(
        con,
        """
        SELECT s.sample_id, s.kind, s.advantage, u.update_id, u.step, u.loss, u.checkpoint_sha256
        FROM samples s LEFT JOIN updates u USING (sample_id)
        WHERE s.reflection_id = ? ORDER BY s.kind, u.step""",
        [rid],
    )
    memory = _rows(con, "SELECT DISTINCT version, parent_version, epoch FROM all_memory WHERE reflection_id = ?", [rid])
    readers = []
    if memory:
        readers = _rows(
            con,
            """SELECT reflection_id, epoch, memory_version FROM all_reflections
               WHERE list_contains(?, memory_version) ORDER BY epoch, reflection_id""",
            [[int(m["version"]) for m in memory]],
        )
    return {
        "reflection": r,
        "retry": retry[0] if retry else None,
        "samples": samples,
        "became_memory": memory,
        "read_by": readers,
    }


def audit_task(root: Path, task_id: str) -> dict:
    con = _db()
    _views(
        con,
        attempts=("attempts", _files(root, "attempts")),
        feedback=("feedback", _files(root, "feedback")),
        retries=("retries", _files(root, "retries")),
    )
    first = _rows(
        con,
        """SELECT a.epoch, a.rollout_id, f.reward, f.outcome, a.actions
           FROM attempts a JOIN feedback f USING (rollout_id)
           WHERE a.task_id = ? ORDER BY a.epoch, a.rollout_id""",
        [task_id],
    )
    retries = _rows(
        con,
        """SELECT epoch, retry_id, reflection_id, reward, outcome, actions FROM retries
           WHERE task_id = ? ORDER BY epoch, retry_id""",
        [task_id],
    )
    evals = []
    if (layout.epoch_dir(0, root) / "eval.parquet").exists():
        _views(con, evals=("eval", [layout.epoch_dir(0, root) / "eval.parquet", *_files(root, "eval")]))
        evals = _rows(
            con,
            "SELECT epoch, rollout_id, reward, outcome, actions FROM evals WHERE task_id = ? ORDER BY epoch, rollout_id",
            [task_id],
        )
    if not (first or retries or evals):
        raise AuditError(f"unknown task id {task_id!r}: no attempt, retry or evaluation under {root}")
    return {"task_id": task_id, "first_attempts": first, "second_attempts": retries, "evaluations": evals}


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _declared_outs(dvc_yaml: Path) -> set[str] | None:
    import yaml

    if not dvc_yaml.exists():
        return None
    outs = set()
    for spec in ((yaml.safe_load(dvc_yaml.read_text()) or {}).get("stages") or {}).values():
        for o in spec.get("outs", []):
            outs.add(o if isinstance(o, str) else next(iter(o)))
    return outs


def _retired(path: Path, digest: str) -> bool:
    """Whether ``path`` is a policy directory that checkpoint retention removed, recorded with this sha256."""
    manifest = path.parent / checkpoint.MANIFEST
    if path.name != checkpoint.POLICY or not manifest.is_file():
        return False
    try:
        return json.loads(manifest.read_text()).get("policy_sha256") == digest
    except ValueError:
        return False


def verify(root: Path, lock: Path | None) -> list[dict]:
    """Every mismatch between an artifact on disk and what was recorded about it. Empty list = all good. Every
    file is hashed from its bytes (no hash is taken from pipeline/hashcache.py's memory of it)."""
    before = os.environ.get("ERL_VERIFY")
    os.environ["ERL_VERIFY"] = "full"
    try:
        return _verify(root, lock)
    finally:
        if before is None:
            os.environ.pop("ERL_VERIFY", None)
        else:
            os.environ["ERL_VERIFY"] = before


def _verify(root: Path, lock: Path | None) -> list[dict]:
    problems: list[dict] = []
    base = root.parent
    declared = _declared_outs(lock.parent / "dvc.yaml") if lock is not None else None
    for f in sorted(root.rglob("*.parquet")):
        if declared is not None and f.relative_to(base).as_posix() not in declared:
            continue  # left over from stages no longer in dvc.yaml (e.g. a run with more epochs): not checked
        try:
            meta = read_lineage(f)
        except Exception as exc:  # unreadable footer = tampered or truncated file
            problems.append({"file": str(f), "problem": f"unreadable Parquet footer: {exc}"})
            continue
        for path, digest in meta.get("inputs", {}).items():
            p = base / path
            if not p.exists() and _retired(p, digest):
                continue  # a checkpoint deleted by retention (update.keep_every): its manifest vouches for it
            if not p.exists():
                problems.append({"file": path, "problem": f"missing (an input of {f})"})
            elif sha256_path(p) != digest:
                problems.append({"file": path, "problem": f"sha256 differs from the lineage of {f}"})
        if meta.get("table") in ("updates", "steps") and meta.get("checkpoint_sha256"):
            ck = layout.policy_dir(meta["epoch"], root)
            if ck.exists() and sha256_dir(ck) != meta["checkpoint_sha256"]:
                problems.append({"file": str(ck), "problem": f"checkpoint sha256 differs from {f}"})
    for manifest in sorted(root.glob("*/" + checkpoint.MANIFEST)):
        try:
            checkpoint.verify(manifest.parent)
        except checkpoint.CheckpointError as exc:
            if "deleted by checkpoint retention" not in str(exc):
                problems.append({"file": str(manifest.parent), "problem": str(exc)})
    data = _lock_stages(lock) if lock is not None and lock.exists() else {}
    if data:
        import yaml

        cache = lock.parent / ".dvc" / "cache" / "files" / "md5"
        dvc_yaml = lock.parent / "dvc.yaml"
        # DVC keeps lock entries of stages that left dvc.yaml (fewer epochs): only current stages count.
        current = set((yaml.safe_load(dvc_yaml.read_text()) or {}).get("stages", {})) if dvc_yaml.exists() else None
        for stage, spec in data.items():
            if current is not None and stage not in current or not isinstance(spec, dict):
                continue
            for out in spec.get("outs", []) + spec.get("deps", []):
                p, md5 = lock.parent / out["path"], out.get("md5")
                if md5 is None or out["path"] in ("pipeline",) or out["path"].startswith(("stages/", "pipeline/")):
                    continue
                if not p.exists():
                    problems.append({"file": out["path"], "problem": f"missing (recorded in dvc.lock by {stage})"})
                elif md5.endswith(".dir"):
                    manifest = cache / md5[:2] / md5[2:]
                    if manifest.exists():
                        for entry in json.loads(manifest.read_text()):
                            fp = p / entry["relpath"]
                            if not fp.exists() or _md5(fp) != entry["md5"]:
                                problems.append(
                                    {
                                        "file": f"{out['path']}/{entry['relpath']}",
                                        "problem": f"md5 differs from dvc.lock ({stage})",
                                    }
                                )
                elif p.is_file() and _md5(p) != md5:
                    problems.append({"file": out["path"], "problem": f"md5 differs from dvc.lock ({stage})"})
    from pipeline.lineage import package_drift

    for f in sorted(root.glob("*/*.parquet"))[:1] + sorted(root.glob("epoch_*/steps.parquet"))[-1:]:
        try:
            drift = package_drift(read_lineage(f).get("code", {}).get("packages", {}))
        except Exception:  # an unreadable footer is reported above
            continue
        if drift:
            print(f"warning: installed packages differ from those that made {f}: {'; '.join(drift)}", file=sys.stderr)
    # one report per file is enough
    seen, unique = set(), []
    for pb in problems:
        key = (pb["file"], pb["problem"].split(" (")[0])
        if key not in seen:
            seen.add(key)
            unique.append(pb)
    return unique


def _lock_stages(lock: Path) -> dict:
    """dvc.lock's stages; {} with a warning when it cannot be read as one (DVC writing it this instant)."""
    import yaml

    try:
        data = yaml.safe_load(lock.read_text()) or {}
        stages = data.get("stages") or {}
        if not isinstance(stages, dict):
            raise ValueError("no stages mapping")
        return stages
    except (OSError, ValueError, AttributeError, yaml.YAMLError) as exc:
        print(
            f"warning: {lock}: not readable now ({exc}; a run writing it?): its md5s were not checked", file=sys.stderr
        )
        return {}


def _short(v, width=90):
    if isinstance(v, float):
        return f"{v:.4g}"
    s = json.dumps(v, default=str) if isinstance(v, (list, dict)) else str(v)
    s = s.replace("\n", " ")
    return s if len(s) <= width else s[: width - 1] + "…"


def _table(rows: list[dict], cols: list[str] | None = None) -> str:
    if not rows:
        return "  (none)"
    cols = cols or list(rows[0])
    cells = [[_short(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    line = lambda vals: "  " + "  ".join(v.ljust(w) for v, w in zip(vals, widths))  # noqa: E731
    return "\n".join([line(cols), line(["-" * w for w in widths])] + [line(r) for r in cells])


def _print_update(res: dict) -> None:
    if not res["optimizer_steps"]:
        print(f"update of epoch {res['epoch']}: no optimizer step (no training samples this epoch)")
        return
    print(
        f"update {res['update_id']} (epoch {res['epoch']}): {res['optimizer_steps']} optimizer steps, "
        f"mean loss {res['mean_loss']:.4f}, mean grad norm {res['mean_grad_norm']:.4f}"
    )
    print(f"  checkpoint {res['checkpoint_sha256']}\n  parent     {res['parent_sha256']}\n\nsamples by kind:")
    print(_table(res["by_kind"]))
    print(f"\nreflections behind this update ({len(res['reflections'])}), by contribution (sum of |sample loss|):")
    print(
        _table(
            res["reflections"],
            [
                "reflection_id",
                "task_id",
                "second_attempt_reward",
                "memory_version",
                "kinds",
                "contribution",
                "total_advantage",
                "reflection",
                "first_attempt_feedback",
            ],
        )
    )


def main(argv=None) -> int:
    # The common options are accepted before and after the subcommand (`erl audit update 3 --json`, as git and
    # dvc take them): SUPPRESS keeps a subparser's unset default from overwriting a value given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--artifacts", default=argparse.SUPPRESS, help="artifact root (default: artifacts)")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    ap = argparse.ArgumentParser(
        prog="erl audit", description=__doc__, parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser(
        "update", parents=[common], help="trace an epoch's weight update back to its reflections"
    ).add_argument("epoch", type=int)
    sub.add_parser("reflection", parents=[common], help="trace a reflection forward").add_argument("id")
    sub.add_parser("task", parents=[common], help="every attempt on a task").add_argument("id")
    v = sub.add_parser("verify", parents=[common], help="recompute artifact hashes against footers and dvc.lock")
    v.add_argument("--lock", default="dvc.lock", help="DVC lock file to check too (default: dvc.lock)")
    args = ap.parse_args(argv)
    args.json = getattr(args, "json", False)
    root = Path(getattr(args, "artifacts", layout.ARTIFACTS))
    if not root.is_dir():
        what = (
            "not a directory (the artifact root of one run; patterns are not expanded)"
            if root.exists()
            else (
                "no artifacts here (run `dvc repro` or `dvc pull` first; --artifacts takes one run's directory, "
                "not a pattern)"
            )
        )
        print(f"error: {root}: {what}", file=sys.stderr)
        return 2
    try:
        if args.cmd == "update":
            res = audit_update(root, args.epoch)
        elif args.cmd == "reflection":
            res = audit_reflection(root, args.id)
        elif args.cmd == "task":
            res = audit_task(root, args.id)
        else:
            res = verify(root, Path(args.lock))
    except AuditError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(res, indent=2, default=str))
    elif args.cmd == "update":
        _print_update(res)
    elif args.cmd == "reflection":
        r = res["reflection"]
        print(
            f"reflection {r['reflection_id']} (epoch {r['epoch']}, task {r['task_id']}, read memory v{r['memory_version']})"
        )
        print(f"  text: {r['reflection']}\n\nretry it guided:")
        print(_table([res["retry"]] if res["retry"] else []))
        print("\nsamples and the update they entered:")
        print(_table(res["samples"]))
        print("\nbecame memory:" if res["became_memory"] else "\nbecame memory: no")
        if res["became_memory"]:
            print(_table(res["became_memory"]))
            print("\nlater reflections that read it:")
            print(_table(res["read_by"]))
    elif args.cmd == "task":
        for key in ("first_attempts", "second_attempts", "evaluations"):
            print(f"{key.replace('_', ' ')}:")
            print(_table(res[key]))
            print()
    else:
        if res:
            print(f"{len(res)} mismatch(es):")
            print(_table(res, ["file", "problem"]))
        else:
            print(f"verified: every artifact under {root} matches its recorded lineage")
    if args.cmd == "verify" and res:
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
