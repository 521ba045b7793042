"""`erl serve-index`: serve a search index over HTTP in the protocols the QA environment speaks (pipeline/envs/
retrieval.py), so one index can be shared by several runs or machines, and the server path can be tested here.

  erl serve-index --corpus wiki18.jsonl --index /data/wiki18.sqlite --port 8000   # index once, then serve
  erl serve-index --index artifacts/init/qa_index.sqlite --port 8000              # serve what init built

  POST /retrieve  {"queries": [...], "topk": k, "return_scores": true}   Search-R1's protocol
  POST /retrieve  {"query": "...", "top_k": k}                          the ERL reference code's variant
  GET  /health    {"passages": n}

Requests are answered on a thread each (the official code's one user report is a HotpotQA run that did not learn
because its single-threaded server broke under concurrent requests); each thread opens the index read-only.
A request that is not one of the two shapes gets HTTP 400 with the reason."""

from __future__ import annotations

import argparse
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from pipeline.envs.retrieval import contents_of
from pipeline.envs.search import SearchIndex

MAX_BODY = 1 << 20  # a batch of queries is a few kB
MAX_TOPK = 100


def answer(index: SearchIndex, body: dict) -> dict:
    """The reply to one request body, in the protocol the body speaks; ValueError naming what is wrong."""
    if not isinstance(body, dict):
        raise ValueError("expected a JSON object")
    if "queries" in body:
        queries, k = body["queries"], body.get("topk", 3)
        if not isinstance(queries, list) or not all(isinstance(q, str) for q in queries):
            raise ValueError("'queries' must be a list of strings")
        if not isinstance(k, int) or not 1 <= k <= MAX_TOPK:
            raise ValueError(f"'topk' must be an integer in 1..{MAX_TOPK}")
        result = [_hits(index, q, k, "document") for q in queries]
        return {"result": result}
    if "query" in body:
        q, k = body["query"], body.get("top_k", 3)
        if not isinstance(q, str):
            raise ValueError("'query' must be a string")
        if not isinstance(k, int) or not 1 <= k <= MAX_TOPK:
            raise ValueError(f"'top_k' must be an integer in 1..{MAX_TOPK}")
        return {"results": _hits(index, q, k, "content")}
    raise ValueError("expected 'queries' (search-r1) or 'query' (erl)")


def _hits(index: SearchIndex, query: str, k: int, key: str) -> list[dict]:
    # SQLite's bm25 is lower for better matches; the score sent is its negation, higher is better, as peers send
    return [
        {key: {"id": str(pid), "contents": contents_of(title, text)}, "score": -score}
        for pid, title, text, score in index.search_scored(query, k)
    ]


def make_server(index_path: str | Path, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """A server over the index at ``index_path`` (port 0: any free port; ``server.server_address`` says which)."""
    index = SearchIndex(index_path)
    n = index.count()  # opens the index: a missing or damaged one stops here, not at the first request

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # one line per request would drown a training log
            pass

        def _send(self, code: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path.rstrip("/") == "/health":
                self._send(200, {"passages": n})
            else:
                self._send(404, {"error": "GET /health, or POST /retrieve"})

        def do_POST(self):
            if self.path.rstrip("/") not in ("/retrieve", ""):
                self._send(404, {"error": "POST /retrieve"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 < length <= MAX_BODY:
                self._send(400, {"error": f"a body of 1..{MAX_BODY} bytes"})
                return
            try:
                self._send(200, answer(index, json.loads(self.rfile.read(length))))
            except (ValueError, UnicodeDecodeError) as exc:
                self._send(400, {"error": str(exc)})

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="erl serve-index", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    ap.add_argument(
        "--index", required=True, type=Path, help="the SQLite FTS5 index to serve (built first with --corpus)"
    )
    ap.add_argument("--corpus", type=Path, help="a wiki-18 JSONL corpus to index into --index before serving")
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0: all)")
    ap.add_argument("--port", type=int, default=8000)
    args = ap.parse_args(argv)
    from pipeline.errors import InputError

    try:
        if args.corpus is not None:
            from pipeline.envs.kb import corpus_passages
            from pipeline.envs.search import build_index

            t0 = time.perf_counter()
            n = build_index(args.index, corpus_passages(args.corpus), {"source": "corpus", "path": str(args.corpus)})
            print(f"indexed {n} passages of {args.corpus} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        server = make_server(args.index, args.host, args.port)
    except (InputError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port} ({exc.strerror})", file=sys.stderr)
        return 2
    host, port = server.server_address[:2]
    print(f"serving {args.index} on http://{host}:{port}/retrieve (search-r1 and erl protocols)", file=sys.stderr)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
