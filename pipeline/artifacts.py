"""Parquet tables with explicit schemas, written atomically, with the lineage of the file in its footer.
Every table carries the row ids that link a weight update back to its sources: task_id -> rollout_id ->
reflection_id -> retry_id -> sample_id -> update (checkpoint sha256 + parent sha256; docs/guide.md, Artifacts and
lineage). No torch here."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import hashcache
from pipeline.errors import InputError

LINEAGE_KEY = b"erl.lineage"

_ids = pa.list_(pa.list_(pa.int32()))
_str = pa.string()

# The episode columns shared by first attempts, second attempts and evaluation rollouts.
_EPISODE = [
    ("system_prompt", _str),
    ("initial_observation", _str),
    ("messages", pa.list_(_str)),  # the environment's message of each turn (a user or tool message)
    ("responses", pa.list_(_str)),
    ("actions", pa.list_(_str)),  # canonical action per turn, null when invalid
    ("moved", pa.list_(pa.bool_())),
    ("events", pa.list_(_str)),
    ("observations", pa.list_(_str)),  # the rendered state after each turn
    ("prompt_ids", _ids),  # exact token ids per turn
    ("response_ids", _ids),
    ("n_turns", pa.int32()),
    ("n_tool_calls", pa.int32()),  # tool calls of the episode (QA: searches); 0 for the grid games
    ("seed", pa.int64()),
]

SCHEMAS: dict[str, pa.Schema] = {
    "tasks": pa.schema(
        [
            ("task_id", _str),
            ("split", _str),
            ("env", _str),
            ("spec", _str),
            ("optimal_len", pa.int32()),
            ("map_key", _str),
        ]
    ),
    "attempts": pa.schema(
        [("rollout_id", _str), ("task_id", _str), ("epoch", pa.int32()), ("sample_idx", pa.int32())] + _EPISODE
    ),
    "feedback": pa.schema(
        [
            ("rollout_id", _str),
            ("task_id", _str),
            ("epoch", pa.int32()),
            ("reward", pa.float64()),
            ("success", pa.bool_()),
            ("outcome", _str),
            ("feedback", _str),
            ("summary", _str),
            ("note", _str),  # the fact a reflection should carry from this feedback (env.reflection_note); null = none
            ("group_size", pa.int32()),
            ("group_mean", pa.float64()),
            ("group_std", pa.float64()),
            ("advantage", pa.float64()),
        ]
    ),
    "reflections": pa.schema(
        [
            ("reflection_id", _str),
            ("rollout_id", _str),
            ("task_id", _str),
            ("epoch", pa.int32()),
            ("memory_version", pa.int32()),  # the memory version the reflector read; 0 = none
            ("memory_slot", pa.int32()),  # the memory slot it read, and that its successful retry overwrites
            ("memory_text", _str),
            ("prompt_ids", pa.list_(pa.int32())),
            ("response_ids", pa.list_(pa.int32())),
            ("raw_text", _str),
            ("reflection", _str),  # the parsed rulebook that becomes the retry's system prompt
            ("has_tag", pa.bool_()),
            ("truncated", pa.bool_()),
            ("seed", pa.int64()),
        ]
    ),
    "retries": pa.schema(
        [
            ("retry_id", _str),
            ("rollout_id", _str),
            ("reflection_id", _str),  # null in the no-reflection ablation
            ("task_id", _str),
            ("epoch", pa.int32()),
        ]
        + _EPISODE
        + [
            ("distill_prompt_ids", _ids),  # the same turns under s0, for the distilled sample
            ("reward", pa.float64()),
            ("success", pa.bool_()),
            ("outcome", _str),
            ("control_reward", pa.float64()),  # a plain second try under s0 (retry.control; null when off)
            ("control_success", pa.bool_()),
        ]
    ),
    "samples": pa.schema(
        [
            ("sample_id", _str),
            ("epoch", pa.int32()),
            ("kind", _str),  # first | reflection | second | distilled
            ("task_id", _str),
            ("rollout_id", _str),
            ("reflection_id", _str),
            ("retry_id", _str),
            ("reward", pa.float64()),
            ("advantage", pa.float64()),
            ("prompt_ids", _ids),
            ("response_ids", _ids),
            ("n_tokens", pa.int32()),  # trained (response) tokens
        ]
    ),
    "memory": pa.schema(
        [
            ("version", pa.int32()),
            ("parent_version", pa.int32()),  # the slot's newest version before this one; 0 = none
            ("epoch", pa.int32()),
            ("slot", pa.int32()),  # reflect.memory_slots: which memory this version belongs to
            ("reflection_id", _str),  # the reflection whose successful retry created this version
            ("retry_id", _str),
            ("text", _str),
        ]
    ),
    "updates": pa.schema(
        [
            ("update_id", _str),
            ("epoch", pa.int32()),
            ("sample_id", _str),
            ("kind", _str),
            ("ppo_epoch", pa.int32()),
            ("step", pa.int32()),
            ("advantage", pa.float64()),
            ("n_tokens", pa.int32()),
            ("loss", pa.float64()),  # this sample's summed token loss (its share of the step is loss / n)
            ("kl", pa.float64()),  # summed k3 KL to the epoch-0 policy over its tokens
            ("ratio_mean", pa.float64()),
            ("clip_frac", pa.float64()),
            ("checkpoint_sha256", _str),
            ("parent_sha256", _str),
        ]
    ),
    "steps": pa.schema(
        [
            ("update_id", _str),
            ("epoch", pa.int32()),
            ("step", pa.int32()),
            ("ppo_epoch", pa.int32()),
            ("n_samples", pa.int32()),
            ("n_tokens", pa.int32()),
            ("loss", pa.float64()),
            ("kl", pa.float64()),  # mean over tokens
            ("clip_frac", pa.float64()),
            ("grad_norm", pa.float64()),
            ("lr", pa.float64()),
            ("replay_loss", pa.float64()),  # teacher-forced loss on the replayed warm-start exercises; null = off
            ("checkpoint_sha256", _str),
            ("parent_sha256", _str),
        ]
    ),
    "eval_retries": pa.schema(
        [
            ("rollout_id", _str),  # the failed held-out first attempt
            ("task_id", _str),
            ("epoch", pa.int32()),
            ("memory_version", pa.int32()),  # the memory the reflection read; null without reflection
            ("reflection", _str),  # the policy's reflection on the failure; null for RLVR
            ("guided_reward", pa.float64()),  # the second attempt under the reflection; null without one
            ("guided_success", pa.bool_()),
            ("plain_reward", pa.float64()),  # a plain second try under s0 (RLVR's best of two)
            ("plain_success", pa.bool_()),
        ]
    ),
    "eval": pa.schema(
        [
            ("rollout_id", _str),
            ("task_id", _str),
            ("epoch", pa.int32()),
            ("sample_idx", pa.int32()),
            ("reward", pa.float64()),
            ("success", pa.bool_()),
            ("outcome", _str),
            ("n_turns", pa.int32()),
            ("n_tool_calls", pa.int32()),
            ("actions", pa.list_(_str)),
            ("responses", pa.list_(_str)),
        ]
    ),
}


class SchemaError(InputError):
    pass


def sha256_file(path: str | Path) -> str:
    """sha256 of a file, read once per change (pipeline/hashcache.py)."""
    return hashcache.sha256_file(path)


def sha256_dir(path: str | Path) -> str:
    """Hash of a directory: its files' relative paths and contents, in sorted order."""
    root = Path(path)
    return digest_of({f.relative_to(root).as_posix(): sha256_file(f) for f in root.rglob("*") if f.is_file()})


def digest_of(files: dict[str, str]) -> str:
    """:func:`sha256_dir` of a directory whose files (relative POSIX paths) have these sha256."""
    h = hashlib.sha256()
    for name in sorted(files, key=PurePosixPath):
        h.update(name.encode() + b"\0" + files[name].encode() + b"\n")
    return h.hexdigest()


def sha256_path(path: str | Path) -> str:
    return sha256_dir(path) if Path(path).is_dir() else sha256_file(path)


def _atomic(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o644)
    return Path(tmp)


def _commit(tmp: Path, path: Path) -> None:
    """Make the finished temporary file durable, then rename it over ``path`` (and make the rename durable): a
    crash leaves the old file or the new one, never a torn one."""
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    fault_point("write")
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fault_point(kind: str) -> None:
    """A place where the fault-injection harness (tools/faults.py) may kill this process: when ERL_FAULT is
    ``<kind>:<n>``, the n-th time the process passes this kind of point it dies with SIGKILL, as a power cut or
    an OOM kill would take it. Does nothing otherwise."""
    spec = os.environ.get("ERL_FAULT")
    if not spec or not spec.startswith(kind + ":"):
        return
    global _FAULT_COUNT
    _FAULT_COUNT += 1
    if _FAULT_COUNT == int(spec.split(":", 1)[1]):
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


_FAULT_COUNT = 0


def write_table(name: str, rows: Iterable[dict[str, Any]] | pa.Table, path: str | Path, lineage: dict) -> Path:
    """Write rows under the named schema (unknown or missing columns are an error), atomically."""
    schema = SCHEMAS[name]
    if isinstance(rows, pa.Table):
        if set(rows.column_names) != set(schema.names):
            extra, missing = set(rows.column_names) - set(schema.names), set(schema.names) - set(rows.column_names)
            raise SchemaError(
                f"{name}: table columns differ from the schema (extra {sorted(extra)}, missing {sorted(missing)})"
            )
        table = rows.select(schema.names).cast(schema)
    else:
        rows = list(rows)
        for r in rows:
            if set(r) != set(schema.names):
                extra, missing = set(r) - set(schema.names), set(schema.names) - set(r)
                raise SchemaError(
                    f"{name}: row columns differ from the schema (extra {sorted(extra)}, missing {sorted(missing)})"
                )
        table = pa.Table.from_pylist(rows, schema=schema)
    meta = {LINEAGE_KEY: json.dumps({"table": name, **lineage}, sort_keys=True).encode()}
    table = table.replace_schema_metadata(meta)
    path = Path(path)
    tmp = _atomic(path)
    try:
        pq.write_table(table, tmp, compression="zstd")
        _commit(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text(text: str, path: str | Path) -> Path:
    path = Path(path)
    tmp = _atomic(path)
    try:
        tmp.write_text(text)
        _commit(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_json(obj: Any, path: str | Path) -> Path:
    return write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", path)


def read_table(name: str, path: str | Path) -> pa.Table:
    """Read a table and check it has exactly the named schema."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing (expected the '{name}' table)")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:  # truncated, corrupt, or not Parquet at all
        raise SchemaError(f"{path}: not a readable Parquet file ({' '.join(str(exc).split())[:160]})") from None
    expected = SCHEMAS[name]
    if not table.schema.remove_metadata().equals(expected):
        got, want = table.schema.remove_metadata(), expected
        differ = [f.name for f in want if f.name not in got.names or got.field(f.name).type != f.type]
        extra = [n for n in got.names if n not in want.names]
        raise SchemaError(
            f"{path}: not a '{name}' table (columns missing or of another type: {differ or 'none'}; extra: "
            f"{extra or 'none'})"
        )
    return table


def read_rows(name: str, path: str | Path) -> list[dict[str, Any]]:
    return read_table(name, path).to_pylist()


def read_lineage(path: str | Path) -> dict:
    try:
        meta = pq.read_schema(path).metadata or {}
    except (pa.ArrowException, OSError) as exc:
        raise SchemaError(f"{path}: not a readable Parquet file ({' '.join(str(exc).split())[:160]})") from None
    if LINEAGE_KEY not in meta:
        raise SchemaError(f"{path}: no lineage metadata in the Parquet footer")
    return json.loads(meta[LINEAGE_KEY])
