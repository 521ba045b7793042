"""The QA search path at corpus scale: indexing speed of a wiki-18-layout JSONL corpus (passages per second, as
`init` and `erl serve-index --corpus` index it) and search latency through the retrieval server at 1 and 16
concurrent clients, in both protocols, against the local index searched in-process.

The corpus is generated: ``--passages`` passages of 60-140 words drawn from a Zipf-like vocabulary of 50,000
made-up words, each titled with two of them (wiki-18's passages are 100 words). Queries are 3-6 words of a
random passage, so every query has matches, as a policy's searches mostly do.

  python scripts/bench_retrieval.py                   # 100k passages
  python scripts/bench_retrieval.py --passages 300000 --requests 400
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.envs.kb import corpus_passages  # noqa: E402
from pipeline.envs.retrieval import ServerRetriever  # noqa: E402
from pipeline.envs.search import SearchIndex, build_index  # noqa: E402
from tools.retrieval import make_server  # noqa: E402


def make_corpus(path: Path, n: int, seed: int) -> list[str]:
    """Write ``n`` passages to ``path``; queries drawn from them."""
    rng = random.Random(seed)
    syll = ["ka", "lo", "mi", "ne", "ru", "ta", "vo", "zi", "be", "do", "fa", "gu", "he", "ji", "po", "se"]
    vocab = sorted({"".join(rng.choice(syll) for _ in range(rng.randint(2, 4))) for _ in range(60000)})[:50000]
    weights = [1 / (i + 1) for i in range(len(vocab))]
    queries = []
    with open(path, "w") as f:
        for i in range(n):
            words = rng.choices(vocab, weights, k=rng.randint(60, 140))
            title = " ".join(rng.choices(vocab, k=2))
            f.write(json.dumps({"id": str(i), "contents": f'"{title}"\n{" ".join(words)}'}) + "\n")
            if i % max(1, n // 2000) == 0:
                start = rng.randrange(len(words) - 6)
                queries.append(" ".join(words[start : start + rng.randint(3, 6)]))
    return queries


def latency(ask, queries: list[str], clients: int) -> tuple[float, float, float]:
    """(median ms, p95 ms, requests per second) of ``ask(query)`` over ``queries``, ``clients`` at once."""
    times: list[float] = []

    def one(q):
        t0 = time.perf_counter()
        ask(q)
        times.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, queries))
    wall = time.perf_counter() - t0
    times.sort()
    return statistics.median(times) * 1e3, times[int(0.95 * (len(times) - 1))] * 1e3, len(queries) / wall


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--passages", type=int, default=100_000)
    ap.add_argument("--requests", type=int, default=320, help="queries per measurement")
    ap.add_argument("--top-k", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        corpus, index = Path(tmp) / "wiki.jsonl", Path(tmp) / "wiki.sqlite"
        t0 = time.perf_counter()
        queries = make_corpus(corpus, args.passages, args.seed)
        print(
            f"corpus: {args.passages} passages, {corpus.stat().st_size / 1e6:.0f} MB ({time.perf_counter() - t0:.1f} s)"
        )
        t0 = time.perf_counter()
        n = build_index(index, corpus_passages(corpus))
        took = time.perf_counter() - t0
        print(
            f"indexing: {n} passages in {took:.1f} s = {n / took:,.0f} passages/s; index {index.stat().st_size / 1e6:.0f} MB"
        )
        qs = (queries * (args.requests // len(queries) + 1))[: args.requests]
        local = SearchIndex(index)
        k = args.top_k
        print(f"\nsearch latency, top {k}, {len(qs)} queries (median ms, p95 ms, queries/s):")
        med, p95, qps = latency(lambda q: local.search(q, k), qs, 1)
        print(f"  in-process index, 1 client       {med:7.1f} {p95:7.1f} {qps:8.1f}")
        server = make_server(index)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/retrieve"
        for protocol in ("search-r1", "erl"):
            for clients in (1, 16):
                med, p95, qps = latency(
                    lambda q, protocol=protocol: ServerRetriever(url, protocol, 60, 0).search_many([q], k), qs, clients
                )
                print(f"  server, {protocol:<9}, {clients:2d} clients  {med:7.1f} {p95:7.1f} {qps:8.1f}")
        batches = [qs[i : i + 16] for i in range(0, len(qs), 16)]
        remote = ServerRetriever(url, "search-r1", 60, 0)
        t0 = time.perf_counter()
        for b in batches:
            remote.search_many(b, k)
        wall = time.perf_counter() - t0
        print(
            f"  server, search-r1, a turn of 16 in one request: {wall / len(batches) * 1e3:.1f} ms per request, {len(qs) / wall:.1f} queries/s"
        )
        server.shutdown()
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
