"""pipeline/hashcache.py: a file is hashed once per change; a write (new time or size) hashes it again; a flipped
byte that keeps time and size is found only by a full read (ERL_VERIFY=full, `erl audit verify`)."""

from __future__ import annotations

import os

from pipeline import hashcache
from pipeline.artifacts import sha256_file


def test_a_file_is_read_once_until_it_changes(tmp_path):
    root = tmp_path / "artifacts"
    (root / "epoch_001").mkdir(parents=True)
    (root / hashcache.LOCK_FILE).write_text("")
    f = root / "epoch_001" / "w.bin"
    f.write_bytes(os.urandom(1 << 20))
    before = hashcache.HASHED[0]
    first = sha256_file(f)
    assert hashcache.HASHED[0] - before == 1 << 20
    hashcache._LOADED.clear()  # another process: the root's memory is on disk
    assert sha256_file(f) == first and hashcache.HASHED[0] - before == 1 << 20
    assert (root / hashcache.CACHE_FILE).is_file()
    with open(f, "r+b") as fh:  # an ordinary write changes the modification time
        fh.seek(10)
        fh.write(b"x")
    assert sha256_file(f) != first and hashcache.HASHED[0] - before == 2 << 20


def test_a_change_that_keeps_time_and_size_needs_a_full_read(tmp_path, monkeypatch):
    root = tmp_path / "artifacts"
    root.mkdir()
    (root / hashcache.LOCK_FILE).write_text("")
    f = root / "w.bin"
    f.write_bytes(b"a" * 4096)
    clean = sha256_file(f)
    st = os.stat(f)
    with open(f, "r+b") as fh:
        fh.write(b"b")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # the old time put back: invisible to the memory
    assert sha256_file(f) == clean
    monkeypatch.setenv("ERL_VERIFY", "full")
    assert sha256_file(f) != clean
