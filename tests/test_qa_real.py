"""The real HotpotQA setup of the QA environment: question files for each split, a wiki-18 corpus indexed by init,
a retrieval server over HTTP (both protocols, concurrent requests, a server that is down or talks nonsense),
search as a native tool call through a chat template that declares tools, and the counts of searches and turns.
No torch."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jinja2
import pytest

from pipeline.config import Sampling
from pipeline.engine import Generation
from pipeline.envs.kb import DataFileError, corpus_passages, load_questions
from pipeline.envs.qa import QA, SEARCH_TOOL
from pipeline.envs.retrieval import RetrievalError, ServerRetriever
from pipeline.rollout import Episode, encode_chat, run_episodes
from tools.retrieval import make_server

# ---- data files ----------------------------------------------------------------------------------------------

WIKI = [
    ("Zarvo", "Zarvo is a city in the country of Melk."),
    ("Mira Tolvek", "Mira Tolvek is a painter born in Zarvo."),
    ("Brontex", "Brontex is a company based in Kelda."),
    ("Kelda", "Kelda is a city in the country of Dorn."),
    ("Tam Brisk", "Tam Brisk works for Brontex."),
]


def write_corpus(path, rows=WIKI):
    with open(path, "w") as f:
        for i, (title, text) in enumerate(rows):
            f.write(json.dumps({"id": str(i), "contents": f'"{title}"\n{text}'}) + "\n")
    return path


def write_hotpot(path, items):
    path.write_text(
        json.dumps([{"_id": str(i), **x, "supporting_facts": [], "context": []} for i, x in enumerate(items)])
    )
    return path


TRAIN = [
    {"question": "In which country was Mira Tolvek born?", "answer": "Melk"},
    {"question": "In which country is the company Tam Brisk works for based?", "answer": "Dorn"},
]
TEST = [{"question": "Which city is Brontex based in?", "golden_answers": ["Kelda", "Kelda city"]}]


@pytest.fixture
def files(tmp_path):
    train = write_hotpot(tmp_path / "hotpot_train.json", TRAIN)
    test = tmp_path / "dev.jsonl"
    test.write_text("".join(json.dumps(x) + "\n" for x in TEST))
    return {"train_path": str(train), "test_path": str(test), "corpus_path": str(write_corpus(tmp_path / "wiki.jsonl"))}


def test_questions_come_from_their_own_files_and_the_corpus_is_indexed(files, tmp_path):
    env = QA(artifacts=tmp_path / "art", **files)
    assert env.prepare(0) == "search index: 5 passages"
    train, test = env.generate("train", 2, 0), env.generate("test", 1, 0)
    assert {t.spec["question"] for t in train} == {x["question"] for x in TRAIN}
    assert test[0].spec["answers"] == ["Kelda", "Kelda city"] and test[0].spec["source"] == "test"
    assert env.search("Mira Tolvek born")[0] == "Mira Tolvek is a painter born in Zarvo."  # led by its title
    # any gold answer counts
    for reply, event in (("\\boxed{Kelda city}", "exact"), ("\\boxed{kelda}", "exact"), ("\\boxed{Dorn}", "wrong")):
        _, step = env.step(env.reset(test[0]), reply)
        assert step.event == event, reply
    with pytest.raises(RuntimeError, match="found only 1 of 2 distinct questions for split 'test'"):
        env.generate("test", 2, 0)


def test_parquet_questions_in_search_r1s_layout(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"question": "Who?", "reward_model": {"ground_truth": {"target": ["Ann", "Anne"]}}}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "train.parquet")
    (q,) = load_questions(tmp_path / "train.parquet", "train_path")
    assert q.answer == "Ann" and q.answers == ("Ann", "Anne")


@pytest.mark.parametrize(
    "content, where",
    [
        ('[{"question": "Who?"}]', "row 0: no answer"),
        ('[{"answer": "x"}]', "row 0: no question"),
        ('[{"question": "Who?", "answer": 3}]', "row 0: the answer must be a string"),
        ("[1]", "row 0: expected an object"),
        ("{not json", "not a JSON list of questions"),
        ("", "not a JSON list of questions"),
    ],
)
def test_a_malformed_question_file_names_the_file_and_row(tmp_path, content, where):
    path = tmp_path / "train.json"
    path.write_text(content)
    with pytest.raises(DataFileError) as exc:
        load_questions(path, "train_path")
    msg = str(exc.value)
    assert msg.startswith(f"env.qa.train_path: {path}:") and where in msg and "\n" not in msg


def test_a_corpus_line_without_contents_names_the_line(tmp_path):
    path = write_corpus(tmp_path / "wiki.jsonl")
    with open(path, "a") as f:
        f.write(json.dumps({"id": "9", "text": "no contents"}) + "\n")
    with pytest.raises(DataFileError, match=r"env.qa.corpus_path: .*wiki.jsonl: line 6: no 'contents' string"):
        list(corpus_passages(path))


# ---- the retrieval server --------------------------------------------------------------------------------------


@pytest.fixture
def server(files, tmp_path):
    """The project's own index of the corpus, served over HTTP on a free port (both protocols)."""
    env = QA(artifacts=tmp_path / "art", **files)
    env.prepare(0)
    srv = make_server(env.index_path)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/retrieve", env
    srv.shutdown()
    srv.server_close()


QUERIES = ["Mira Tolvek", "Brontex", "Kelda country", "Zarvo", "painter", "Tam Brisk works"] * 3  # 18 queries


@pytest.mark.parametrize("protocol", ["search-r1", "erl"])
def test_the_server_answers_concurrent_requests_like_the_local_index(server, protocol):
    url, local = server
    want = [local.retriever().index.search(q, 3) for q in QUERIES]
    remote = ServerRetriever(url, protocol, timeout=10, retries=0, workers=16)
    assert remote.search_many(QUERIES, 3) == want  # one batch (search-r1) or 18 concurrent requests (erl)
    # 16 clients at once, each with its own request
    with ThreadPoolExecutor(16) as pool:
        got = list(pool.map(lambda q: ServerRetriever(url, protocol, 10, 0).search_many([q], 3)[0], QUERIES))
    assert got == want


def test_qa_runs_through_the_server_with_a_turns_searches_batched(server, files, tmp_path):
    url, local = server
    served = QA(artifacts=tmp_path / "none", retriever="server", server_url=url, **files)
    assert served.prepare(0).startswith("retrieval server")
    tasks = served.generate("train", 2, 0) * 8  # 16 episodes in one turn
    replies = [f"```search : {q}```" for q in QUERIES[:16]]
    before = served.retriever().requests
    out = served.step_many([served.reset(t) for t in tasks], replies)
    assert served.retriever().requests == before + 1  # one search-r1 request for the whole turn
    want = local.step_many([local.reset(t) for t in tasks], replies)
    assert [s.observation for _, s in out] == [s.observation for _, s in want]
    assert all(served.tool_calls(s) == 1 for _, s in out)


class _Bad(BaseHTTPRequestHandler):
    body = b"<html>busy</html>"
    seen = 0

    def log_message(self, *a):
        pass

    def do_POST(self):
        type(self).seen += 1
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)


@pytest.mark.parametrize("body", [b"<html>busy</html>", b'{"result": "none"}', b'{"result": [[{"document": 1}]]}'])
def test_a_server_that_talks_nonsense_is_retried_then_named(body):
    handler = type("Bad", (_Bad,), {"body": body, "seen": 0})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}/retrieve"
    try:
        with pytest.raises(RetrievalError) as exc:
            ServerRetriever(url, "search-r1", timeout=5, retries=2).search_many(["x"], 3)
    finally:
        srv.shutdown()
        srv.server_close()
    msg = str(exc.value)
    assert msg.startswith(f"env.qa.server_url: {url}:") and "\n" not in msg
    assert handler.seen >= 3  # the first try and two retries


def test_a_server_that_is_down_is_retried_then_named():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Bad)
    port = srv.server_address[1]
    srv.server_close()  # nothing listens there now
    t0 = time.monotonic()
    with pytest.raises(RetrievalError, match=rf"env.qa.server_url: http://127.0.0.1:{port}/retrieve: no usable answer"):
        ServerRetriever(f"http://127.0.0.1:{port}/retrieve", "erl", timeout=2, retries=2).search_many(["x"], 3)
    assert time.monotonic() - t0 < 10  # 0.5 s + 1 s of backoff


def test_the_server_refuses_requests_of_neither_protocol(server):
    import urllib.error
    import urllib.request

    url, _ = server
    for body in (b'{"q": "x"}', b'{"queries": "x"}', b'{"query": "x", "top_k": 0}', b"[1]", b"\xff"):
        req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(req, timeout=5)
        assert exc.value.code == 400
    health = json.loads(urllib.request.urlopen(url.replace("/retrieve", "/health"), timeout=5).read())
    assert health == {"passages": 5}


# ---- native tool calls through a chat template that declares tools ---------------------------------------------

# A template in the style of Qwen3's: the tools' schemas in the system turn, tool results in <tool_response>.
TOOL_TEMPLATE = (
    "{%- if tools %}<|im_start|>system\n{{ messages[0].content }}\n# Tools\n<tools>"
    "{%- for t in tools %}\n{{ t | tojson }}{%- endfor %}\n</tools>\n"
    'Call one with <tool_call>{"name": ..., "arguments": ...}</tool_call><|im_end|>\n'
    "{%- else %}<|im_start|>system\n{{ messages[0].content }}<|im_end|>\n{%- endif %}"
    "{%- for m in messages[1:] %}"
    "{%- if m.role == 'tool' %}<|im_start|>user\n<tool_response>\n{{ m.content }}\n</tool_response><|im_end|>\n"
    "{%- else %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}<|im_start|>assistant\n{%- endif %}"
)


class ToolTok:
    """Characters as token ids; the chat template above, rendered with jinja2 as transformers renders one."""

    def __init__(self):
        env = jinja2.Environment()
        env.policies["json.dumps_kwargs"] = {"sort_keys": False}
        self.template = env.from_string(TOOL_TEMPLATE)
        self.seen_tools = []

    def apply_chat_template(self, msgs, add_generation_prompt, tokenize, tools=None):
        self.seen_tools.append(tools)
        return self.template.render(messages=msgs, tools=tools, add_generation_prompt=add_generation_prompt)

    def encode(self, text, add_special_tokens=False):
        return [ord(c) for c in text]

    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(i) for i in ids)


class ToolEngine:
    """Searches for the question's subject with a tool call, then answers from what came back."""

    def generate(self, prompts, sampling, seeds):
        out = []
        for p in prompts:
            text = "".join(map(chr, p))
            if "<tool_response>" not in text:
                reply = '<tool_call>{"name": "search", "arguments": {"query": "Brontex based"}}</tool_call>'
            else:
                reply = "\\boxed{Kelda}"
            out.append(Generation([ord(c) for c in reply], True))
        return out


def test_search_as_a_native_tool_call_through_the_template(files, tmp_path):
    env = QA(artifacts=tmp_path / "art", tool_calls="native", **files)
    env.prepare(0)
    task = env.generate("test", 1, 0)[0]
    tok = ToolTok()
    ep = Episode("r0", task, "Answer directly.", seed=0)
    run_episodes(ToolEngine(), tok, env, [ep], Sampling(), history=0, max_prompt_tokens=100_000, budget=5)
    assert [s.action for s in ep.steps] == ["search", "answer"] and ep.steps[-1].event == "exact"
    assert ep.roles == ["user", "tool"] and ep.tool_calls == 1 and len(ep.steps) == 2
    assert tok.seen_tools == [[SEARCH_TOOL]] * 2
    second = "".join(map(chr, ep.prompt_ids[1]))
    assert '"name": "search"' in second and "<tool_response>\n1 . Brontex is a company" in second
    assert second.count("Which city is Brontex based in?") == 1  # a tool message does not repeat the question
    # a text reply is not a tool call in native mode, and the reason names the tool
    _, step = env.step(env.reset(task), "```search : Brontex```")
    assert not step.valid and "call the search tool" in step.observation


def test_a_real_tokenizer_passes_the_tools_to_its_template():
    from pipeline.tiny.model import build_tokenizer

    tok = build_tokenizer(["a b c"])
    tok.chat_template = TOOL_TEMPLATE
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]
    ids = encode_chat(tok, msgs, 10_000, tools=[SEARCH_TOOL])
    text = tok.apply_chat_template(msgs, tools=[SEARCH_TOOL], add_generation_prompt=True, tokenize=False)
    assert '"name": "search"' in text and "<tools>" in text and len(ids) > 0
    assert "<tools>" not in tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
