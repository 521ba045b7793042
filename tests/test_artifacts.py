"""pipeline/artifacts.py: schema'd Parquet round trips, lineage in the footer, schema errors, atomic writes,
directory hashes."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import artifacts
from pipeline.artifacts import SCHEMAS, SchemaError, read_lineage, read_rows, read_table, sha256_dir, write_table

LINEAGE = {"stage": "test", "epoch": 1, "inputs": {"a.parquet": "0" * 64}, "params": {"seed": 0}}


def _episode(seed: int) -> dict:
    return {
        "system_prompt": "play the game .",
        "initial_observation": "S F\nH G",
        "messages": ["board 1", "board 2"],
        "responses": ["```right```", "```oops```"],
        "actions": ["right", None],
        "moved": [True, False],
        "events": ["moved", "invalid"],
        "observations": ["S F\nH G", "S F\nH G"],
        "prompt_ids": [[1, 2, 3], [4, 5]],
        "response_ids": [[6, 7], [8]],
        "n_turns": 2,
        "n_tool_calls": 0,
        "seed": seed,
    }


def attempts_rows() -> list[dict]:
    return [
        {"rollout_id": f"e1/t{t}/r{i}", "task_id": f"t{t}", "epoch": 1, "sample_idx": i, **_episode(2**40 + i)}
        for t in range(2)
        for i in range(2)
    ]


def samples_rows() -> list[dict]:
    return [
        {
            "sample_id": "e1/t0/r0/first",
            "epoch": 1,
            "kind": "first",
            "task_id": "t0",
            "rollout_id": "e1/t0/r0",
            "reflection_id": None,
            "retry_id": None,
            "reward": 0.0,
            "advantage": -0.5,
            "prompt_ids": [[1, 2], [3]],
            "response_ids": [[4], [5, 6]],
            "n_tokens": 3,
        },
        {
            "sample_id": "e1/t0/r0/f/distilled",
            "epoch": 1,
            "kind": "distilled",
            "task_id": "t0",
            "rollout_id": "e1/t0/r0",
            "reflection_id": "e1/t0/r0/f",
            "retry_id": "e1/t0/r0/y",
            "reward": 1.0,
            "advantage": 1.0,
            "prompt_ids": [[9]],
            "response_ids": [[4]],
            "n_tokens": 1,
        },
    ]


def memory_rows() -> list[dict]:
    return [
        {
            "version": 1,
            "parent_version": 0,
            "epoch": 1,
            "slot": 0,
            "reflection_id": "f1",
            "retry_id": "y1",
            "text": "avoid H",
        },
        {
            "version": 2,
            "parent_version": 1,
            "epoch": 2,
            "slot": 0,
            "reflection_id": "f2",
            "retry_id": "y2",
            "text": "go ↓ then →",
        },
    ]


def _value(t: pa.DataType, i: int):
    if pa.types.is_string(t):
        return f"s{i}"
    if pa.types.is_boolean(t):
        return bool(i % 2)
    if pa.types.is_integer(t):
        return i
    if pa.types.is_floating(t):
        return i + 0.25
    if pa.types.is_list(t):
        return [_value(t.value_type, i), _value(t.value_type, i + 1)]
    raise AssertionError(f"no fake value for {t}")


def generic_rows(name: str, n: int = 3) -> list[dict]:
    return [{f.name: _value(f.type, i) for f in SCHEMAS[name]} for i in range(n)]


@pytest.mark.parametrize(
    "name, rows", [("attempts", attempts_rows()), ("samples", samples_rows()), ("memory", memory_rows())]
)
def test_round_trip_explicit(tmp_path, name, rows):
    path = write_table(name, rows, tmp_path / f"{name}.parquet", LINEAGE)
    assert read_rows(name, path) == rows


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_round_trip_every_schema(tmp_path, name):
    rows = generic_rows(name)
    path = write_table(name, rows, tmp_path / f"{name}.parquet", LINEAGE)
    table = read_table(name, path)
    assert table.schema.remove_metadata().equals(SCHEMAS[name])
    assert table.to_pylist() == rows


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_empty_table_round_trip(tmp_path, name):
    path = write_table(name, [], tmp_path / "empty.parquet", LINEAGE)
    assert read_rows(name, path) == []


def test_lineage_round_trip(tmp_path):
    path = write_table("memory", memory_rows(), tmp_path / "m.parquet", LINEAGE)
    assert read_lineage(path) == {"table": "memory", **LINEAGE}


def test_no_lineage_is_an_error(tmp_path):
    path = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"x": [1]}), path)
    with pytest.raises(SchemaError, match="lineage"):
        read_lineage(path)


def test_extra_column_names_table(tmp_path):
    rows = memory_rows()
    rows[1]["surprise"] = 1
    with pytest.raises(SchemaError, match=r"^memory: .*extra \['surprise'\]"):
        write_table("memory", rows, tmp_path / "m.parquet", LINEAGE)
    assert not (tmp_path / "m.parquet").exists()


def test_missing_column_names_table(tmp_path):
    rows = samples_rows()
    del rows[0]["n_tokens"]
    with pytest.raises(SchemaError, match=r"^samples: .*missing \['n_tokens'\]"):
        write_table("samples", rows, tmp_path / "s.parquet", LINEAGE)
    assert list(tmp_path.iterdir()) == []


def test_read_other_schema_names_path(tmp_path):
    path = write_table("memory", memory_rows(), tmp_path / "m.parquet", LINEAGE)
    with pytest.raises(SchemaError) as info:
        read_table("samples", path)
    assert str(path) in str(info.value) and "'samples'" in str(info.value)


def test_read_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="memory"):
        read_rows("memory", tmp_path / "absent.parquet")


def test_atomic_write_leaves_no_temp_files(tmp_path):
    write_table("memory", memory_rows(), tmp_path / "sub" / "m.parquet", LINEAGE)
    write_table("memory", memory_rows()[:1], tmp_path / "sub" / "m.parquet", LINEAGE)  # overwrite
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["m.parquet"]
    assert len(read_rows("memory", tmp_path / "sub" / "m.parquet")) == 1


def test_failed_write_wrong_type_leaves_nothing(tmp_path):
    rows = memory_rows()
    rows[0]["version"] = "not an int"
    with pytest.raises((pa.ArrowInvalid, pa.ArrowTypeError)):
        write_table("memory", rows, tmp_path / "m.parquet", LINEAGE)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_previous_file(tmp_path, monkeypatch):
    path = write_table("memory", memory_rows(), tmp_path / "m.parquet", LINEAGE)
    before = path.read_bytes()

    def broken_write(table, where, **kw):  # writes part of a file, then fails
        with open(where, "wb") as f:
            f.write(b"PAR1 partial")
        raise OSError("disk full")

    monkeypatch.setattr(artifacts.pq, "write_table", broken_write)
    with pytest.raises(OSError, match="disk full"):
        write_table("memory", memory_rows()[:1], path, LINEAGE)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.parquet"]


def test_write_json_atomic(tmp_path):
    artifacts.write_json({"b": 1, "a": [1, 2]}, tmp_path / "x.json")
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]
    assert (tmp_path / "x.json").read_text().startswith('{\n  "a"')


def _tree(root, files: dict[str, bytes]):
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def test_sha256_dir(tmp_path):
    files = {"a.bin": b"alpha", "sub/b.json": b"{}", "sub/deeper/c.txt": b"gamma"}
    one = _tree(tmp_path / "one", files)
    two = _tree(tmp_path / "two", dict(reversed(list(files.items()))))  # created in the other order
    h = sha256_dir(one)
    assert h == sha256_dir(two)
    assert len(h) == 64
    (one / "sub" / "b.json").write_bytes(b'{"x": 1}')
    assert sha256_dir(one) != h
    (one / "sub" / "b.json").write_bytes(b"{}")
    assert sha256_dir(one) == h
    (two / "sub" / "b.json").rename(two / "sub" / "renamed.json")  # same content, other name
    assert sha256_dir(two) != h
    assert artifacts.sha256_path(one) == h
    assert artifacts.sha256_path(one / "a.bin") == artifacts.sha256_file(one / "a.bin")
