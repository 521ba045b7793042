"""The QA environment's search back ends (``env.qa.retriever``): the local index init builds (SQLite FTS5, bm25), or
a retrieval server over HTTP, as the paper's setup serves a dense index of 2018 Wikipedia.

Two wire protocols (``env.qa.server_protocol``):

  search-r1  POST /retrieve {"queries": [q, ...], "topk": k, "return_scores": true}
             -> {"result": [[{"document": {"id": ..., "contents": "\\"Title\\"\\ntext"}, "score": s}, ...], ...]}
             (Search-R1's server; a turn's searches go in one request)
  erl        POST {"query": q, "top_k": k} -> {"results": [{"id": ..., "content": {"id", "contents"}, "score"}]}
             (the ERL reference code's variant: one query a request; the turn's run concurrently)

A server that does not answer, answers with an error or with what is not the protocol is asked again
(``env.qa.server_retries`` times, waiting 0.5 s, 1 s, 2 s, ...); then the stage stops with one line naming the URL,
before it has written anything. Standard library only."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from pipeline.errors import InputError

Passages = list[tuple[str, str]]  # (title, text) per hit, best first


class RetrievalError(InputError):
    """A retrieval server that is down or does not speak its protocol; the message names the URL."""


def split_contents(contents: str) -> tuple[str, str]:
    """(title, text) of a wiki-18 ``contents``: the title (in quotes) on the first line, the text after it."""
    title, _, text = contents.partition("\n")
    title = title.strip().strip('"')
    return title, text.strip() or title


def contents_of(title: str, text: str) -> str:
    return f'"{title}"\n{text}'


class LocalRetriever:
    """The index init built, opened read-only."""

    def __init__(self, index) -> None:
        self.index = index

    def search_many(self, queries: list[str], k: int) -> list[Passages]:
        return [self.index.search(q, k) for q in queries]

    def close(self) -> None:
        self.index.close()


class ServerRetriever:
    """A retrieval server at ``url``, asked in ``protocol``."""

    def __init__(self, url: str, protocol: str = "search-r1", timeout: float = 30.0, retries: int = 3, workers=16):
        self.url, self.protocol, self.timeout, self.retries, self.workers = url, protocol, timeout, retries, workers
        self.requests = 0  # sent, retries included (tests and benchmarks read it)

    def _post(self, payload: dict) -> dict:
        data = json.dumps(payload).encode()
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(0.5 * 2 ** (attempt - 1))
            self.requests += 1
            req = urllib.request.Request(self.url, data=data, headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    body = json.loads(resp.read().decode("utf-8"))
                if isinstance(body, dict):
                    return body
                last = f"answered {type(body).__name__}, not a JSON object"
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}"
            except (urllib.error.URLError, OSError) as exc:
                last = str(getattr(exc, "reason", exc))
            except (ValueError, UnicodeDecodeError) as exc:
                last = f"answered what is not JSON ({str(exc)[:80]})"
        raise RetrievalError(f"env.qa.server_url: {self.url}: no usable answer after {self.retries + 1} tries ({last})")

    def _hits(self, items, key: str) -> Passages:
        out = []
        for item in items:
            doc = item.get(key) if isinstance(item, dict) else None
            contents = doc.get("contents") if isinstance(doc, dict) else None
            if not isinstance(contents, str):
                raise ValueError(f"a hit without {key}.contents")
            out.append(split_contents(contents))
        return out

    def _checked(self, ask, parse):
        """``parse(ask())``, asking again (within the retries) when the answer is not the protocol's shape."""
        last = None
        for _ in range(self.retries + 1):
            body = ask()
            try:
                return parse(body)
            except (ValueError, TypeError, AttributeError, KeyError) as exc:
                last = exc
        raise RetrievalError(
            f"env.qa.server_url: {self.url}: answered what is not the {self.protocol} protocol ({last})"
        )

    def search_many(self, queries: list[str], k: int) -> list[Passages]:
        if not queries:
            return []
        if self.protocol == "search-r1":

            def parse(body):
                result = body["result"]
                if not isinstance(result, list) or len(result) != len(queries):
                    raise ValueError(f"{len(queries)} queries, {len(result) if isinstance(result, list) else 0} lists")
                return [self._hits(hits, "document") for hits in result]

            return self._checked(lambda: self._post({"queries": queries, "topk": k, "return_scores": True}), parse)

        def one(q: str) -> Passages:
            def parse(body):
                results = body["results"]
                if not isinstance(results, list):
                    raise ValueError("'results' is not a list")
                return self._hits(results, "content")

            return self._checked(lambda: self._post({"query": q, "top_k": k}), parse)

        with ThreadPoolExecutor(max_workers=min(self.workers, len(queries))) as pool:
            return list(pool.map(one, queries))

    def close(self) -> None:
        pass
