"""The local search tool of the tool-use environment: a SQLite FTS5 index over passages, ranked by bm25.
FTS5 ships with Python's sqlite3, so retrieval is real and needs no server. The index is written once (by the
init stage) and opened read-only afterwards. Standard library only."""

from __future__ import annotations

import os
import re
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path

from pipeline.errors import InputError

# Words only: FTS5 query syntax (quotes, AND/OR/NOT/NEAR, column filters, *, ^, parentheses) never reaches the
# engine, so any user text is a valid query.
_WORD = re.compile(r"[^\W_]+")
MAX_QUERY_WORDS = 32


def fts_query(text: str) -> str | None:
    """A safe FTS5 query for free text: its words (lowercased, at most MAX_QUERY_WORDS), each a quoted
    string, joined with OR so a passage matching any of them is a candidate and bm25 ranks the ones matching
    more (and rarer) words first. None when the text has no word."""
    words = _WORD.findall(text.lower())[:MAX_QUERY_WORDS]
    if not words:
        return None
    return " OR ".join(f'"{w}"' for w in dict.fromkeys(words))  # dedup, keep order


def build_index(
    path: str | Path, passages: Iterable[tuple[str, str]], meta: dict[str, str] | None = None, batch: int = 10000
) -> int:
    """Write an FTS5 index of (title, text) passages to ``path`` atomically (temp file, then rename); the
    passage id is its position. ``passages`` is read lazily, ``batch`` at a time (a corpus of millions of lines
    never sits in memory). Returns the number of passages."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    con = sqlite3.connect(tmp)
    n = 0
    try:
        con.execute("CREATE VIRTUAL TABLE passages USING fts5(title, text, tokenize = 'unicode61')")
        con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        rows: list[tuple[int, str, str]] = []
        for title, text in passages:
            n += 1
            rows.append((n, title, text))
            if len(rows) == batch:
                con.executemany("INSERT INTO passages (rowid, title, text) VALUES (?, ?, ?)", rows)
                rows = []
        con.executemany("INSERT INTO passages (rowid, title, text) VALUES (?, ?, ?)", rows)
        con.executemany("INSERT INTO meta VALUES (?, ?)", sorted((meta or {}).items()))
        con.execute("INSERT INTO passages (passages) VALUES ('optimize')")
        con.commit()
    finally:
        con.close()
        if n == 0 or not tmp.exists():
            tmp.unlink(missing_ok=True)
    if n == 0:
        raise SearchIndexError(f"{path}: no passages to index")
    os.replace(tmp, path)
    return n


class SearchIndexError(InputError):
    """A search index that is empty, foreign or damaged; the message names the file."""


class SearchIndex:
    """Read-only access to an index written by ``build_index``; a connection per thread (a server answers requests
    on several), opened on first use."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._passages: int | None = None  # counted by the first connection's check (a full scan of the table)
        self._check_lock = threading.Lock()

    @property
    def _con(self) -> sqlite3.Connection | None:
        return getattr(self._local, "con", None)

    @_con.setter
    def _con(self, con: sqlite3.Connection | None) -> None:
        self._local.con = con

    def _connect(self) -> sqlite3.Connection:
        if self._con is None:
            if not self.path.is_file():
                raise FileNotFoundError(
                    f"search index {self.path} not found: the init stage builds it (env.name: qa); "
                    "after switching env.name run `erl dvc-yaml` and `dvc repro`"
                )
            con = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
            with self._check_lock:
                if self._passages is None:
                    self._passages = self._check(con)
            self._con = con
        return self._con

    def _check(self, con: sqlite3.Connection) -> int:
        """The passages in the index; an empty, foreign or damaged file would otherwise make every search silently
        find nothing."""
        try:
            n = con.execute("SELECT count(*) FROM passages").fetchone()[0]
            con.execute("SELECT key, value FROM meta LIMIT 1").fetchall()
        except sqlite3.DatabaseError as exc:
            con.close()
            raise SearchIndexError(f"{self.path}: not a search index built by init ({exc}); rerun init") from None
        if n == 0:
            con.close()
            raise SearchIndexError(f"{self.path}: the search index holds no passages; rerun init")
        return n

    def search(self, query: str, k: int) -> list[tuple[str, str]]:
        """Top-``k`` (title, text) passages for free text ``query`` by bm25 (ties by passage id); [] when the
        query has no word or nothing matches."""
        return [(title, text) for _, title, text, _ in self.search_scored(query, k)]

    def search_scored(self, query: str, k: int) -> list[tuple[int, str, str, float]]:
        """:meth:`search` with each passage's id and bm25 score (lower is better, as SQLite gives it)."""
        q = fts_query(query)
        if q is None or k < 1:
            return []
        con = self._connect()
        try:
            return con.execute(
                "SELECT rowid, title, text, bm25(passages) AS s FROM passages WHERE passages MATCH ? "
                "ORDER BY s, rowid LIMIT ?",
                (q, k),
            ).fetchall()
        except sqlite3.OperationalError:  # defensive: fts_query only emits quoted words
            return []

    def count(self) -> int:
        self._connect()
        return self._passages

    def passages(self) -> list[tuple[str, str]]:
        """Every (title, text) passage, in id order."""
        return self._connect().execute("SELECT title, text FROM passages ORDER BY rowid").fetchall()

    def meta(self) -> dict[str, str]:
        return dict(self._connect().execute("SELECT key, value FROM meta").fetchall())

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None
