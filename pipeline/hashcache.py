"""sha256 of files, each file read once per change: a hash is remembered with the file's size, modification time
(ns) and inode, and given again while those are unchanged, as DVC's own state database does for its hashes.
So a checkpoint is hashed once, when its manifest is written, and every later load, lineage footer and resume
check of it costs a stat() per file. The memory is per artifact root, in ``<root>/.erl-hashes.json`` (the root:
the nearest folder up that holds the pipeline's lock file); a file outside any root is remembered by this
process only.

What it cannot see: a byte changed without any write through the file system (bit rot), or a writer that puts
the old modification time back. `erl audit verify` rehashes every file from its bytes, and ``ERL_VERIFY=full``
makes every stage do so. Any ordinary write (an editor, cp, a truncation, a DVC checkout) changes the time or the
size, and the file is hashed again. Standard library only."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

CACHE_FILE = ".erl-hashes.json"
LOCK_FILE = ".erl.lock"  # pipeline/guard.py's lock: it marks an artifact root
_MEMORY: dict[str, list] = {}  # realpath -> [size, mtime_ns, inode, sha256]
_LOADED: dict[str, dict] = {}  # cache file -> its entries, as read by this process
HASHED = [0]  # bytes this process has hashed (benchmarks read it)


def digest(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes, always read."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
            HASHED[0] += len(block)
    return h.hexdigest()


def _root(path: Path) -> Path | None:
    for d in path.parents:
        if (d / LOCK_FILE).exists():
            return d
    return None


def _entries(cache: Path) -> dict:
    if str(cache) not in _LOADED:
        try:
            data = json.loads(cache.read_text())
            _LOADED[str(cache)] = data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            _LOADED[str(cache)] = {}
    return _LOADED[str(cache)]


def _save(cache: Path) -> None:
    """Write the root's memory atomically; a race with another process loses at most some entries."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{cache.name}.", suffix=".tmp", dir=cache.parent)
        with os.fdopen(fd, "w") as f:
            json.dump(_LOADED[str(cache)], f)
        os.replace(tmp, cache)
    except OSError:
        pass


def sha256_file(path: str | Path) -> str:
    """sha256 of a file, from memory while its size, modification time and inode are those it had when hashed."""
    path = Path(path)
    real = os.path.realpath(path)
    st = os.stat(real)
    sig = [st.st_size, st.st_mtime_ns, st.st_ino]
    full = os.environ.get("ERL_VERIFY") == "full"
    root = None if full else _root(Path(real))
    entries = _entries(root / CACHE_FILE) if root is not None else _MEMORY
    hit = entries.get(real)
    if not full and hit is not None and hit[:3] == sig:
        return hit[3]
    sha = digest(real)
    entries[real] = sig + [sha]
    if root is not None:
        _save(root / CACHE_FILE)
    return sha
