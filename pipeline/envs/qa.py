"""Tool-use question answering (the paper's HotpotQA setting, docs/method.md section 3): the policy answers a
multi-hop question within ``budget`` turns, calling a search tool (the top ``top_k`` passages) and giving its final
answer in \\boxed{}.

Where questions and passages come from (env.qa):

- the generated knowledge base of pipeline/envs/kb.py (the default: offline, deterministic per seed);
- the paper's setup: ``train_path`` and ``test_path`` (HotpotQA's JSON train and dev files, or the JSONL /
  Parquet question files of FlashRAG, Search-R1 and the ERL code), searched in ``corpus_path`` (a JSONL corpus in
  the wiki-18 layout, indexed by init) or through a retrieval server (``retriever: server``, pipeline/envs/
  retrieval.py);
- ``hotpot_path``, one HotpotQA file whose own context paragraphs are the corpus (a quick look, not the paper's
  setup: the gold paragraphs are always there to be found).

How a search is made (``tool_calls``):

    text     ```search : <query>```  in the reply; the result comes back as the next user message
    native   the chat template offers a ``search`` tool (``tools=``); the reply holds
             <tool_call>{"name": "search", "arguments": {"query": "..."}}</tool_call> and the result comes back
             as a ``tool`` message (the paper's prompts; Qwen3, Olmo-3 and most instruct models' templates)

and the answer is \\boxed{<answer>} in both. Anything else (no call, both, an unknown tool, an empty query or
answer, an unclosed \\boxed{) is an invalid action that uses a turn; the next message says why. Running out of
turns ends the episode with reward 0.

Reward: 1 for an exact match with any gold answer after normalization (lowercase, no punctuation, no articles,
collapsed spaces); otherwise the best token F1 if it is at least 0.3 (capped below 1, so only an exact match ever
counts as a success), otherwise 0. The score is computed when the answer is given and recorded in that step's
observation and event, so the verifier needs only the trace. Standard library only.
"""

from __future__ import annotations

import itertools
import json
import random
import re
import string
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from pipeline import layout
from pipeline.envs.base import Env, EnvParamsBase, Step, Task, Trace, last_code_block
from pipeline.envs.kb import (
    KnowledgeBase,
    Passage,
    Question,
    corpus_passages,
    generate_kb,
    load_hotpot,
    load_questions,
)
from pipeline.paramtypes import Real, resolve
from pipeline.prompts import PromptSet, braces

ACTIONS: tuple[str, ...] = ("search", "answer")
F1_THRESHOLD = 0.3
PARTIAL_CAP = 0.99  # a partial answer (token F1 without exact match) never reaches the success reward 1

OUTCOME = {
    "exact": "Your answer was correct.",
    "partial": "Your answer was partly correct.",
    "wrong": "Your answer was wrong.",
    "limit": "You ran out of turns without answering.",
}
# Why a reply was invalid (shown in the next message and in the attempt's observations).
NO_CALL = "reply with a search block or a boxed answer"
NO_CALL_NATIVE = "call the search tool or give a boxed answer"
BOTH = "a search and an answer in one reply"
BAD_CALL = "a search block reads search : words"
EMPTY_QUERY = "empty search query"
EMPTY_ANSWER = "empty answer"
UNCLOSED = "the boxed answer is not closed"
NO_MATCH = "no passage matched ."
BAD_TOOL_CALL = 'a tool call reads <tool_call>{"name": "search", "arguments": {"query": "..."}}</tool_call>'

_CALL = re.compile(r"^([A-Za-z_][\w-]*)\s*:\s*(.*)$", re.DOTALL)
_BOXED = re.compile(r"\\\s*boxed\s*\{")  # "\ boxed {" too: what a word-level tokenizer decodes to
_WORD = re.compile(r"[^\W_]+")
_SCORE = re.compile(r"^score : ([0-9.]+)$", re.MULTILINE)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_TOOL_CALL = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)


# ---- answer scoring (HotpotQA / SQuAD normalization) ------------------------------------------------------


def normalize_answer(text: str) -> str:
    """Lowercase, drop punctuation, drop the articles a/an/the, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in string.punctuation)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: str) -> bool:
    return normalize_answer(prediction) == normalize_answer(gold)


def f1_score(prediction: str, gold: str) -> float:
    """Token F1 of the normalized strings (HotpotQA's rule: a yes/no/noanswer mismatch scores 0)."""
    pred, ref = normalize_answer(prediction), normalize_answer(gold)
    if pred != ref and (pred in ("yes", "no", "noanswer") or ref in ("yes", "no", "noanswer")):
        return 0.0
    p, g = pred.split(), ref.split()
    common = sum((Counter(p) & Counter(g)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


def score_answer(prediction: str, gold: str | list[str]) -> tuple[str, float]:
    """(event, reward) against the gold answer(s): ("exact", 1.0) when any matches exactly, ("partial", the best F1
    capped below 1) when that is >= 0.3, else ("wrong", 0.0)."""
    golds = [gold] if isinstance(gold, str) else list(gold)
    if any(exact_match(prediction, g) for g in golds):
        return "exact", 1.0
    f1 = max(f1_score(prediction, g) for g in golds)
    if f1 >= F1_THRESHOLD:
        return "partial", round(min(f1, PARTIAL_CAP), 4)
    return "wrong", 0.0


# ---- reply parsing ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """A parsed reply: ``kind`` "search" | "answer" with its ``arg``, or None with the ``error``."""

    kind: str | None
    arg: str = ""
    error: str = ""


def _boxed(reply: str) -> tuple[bool, str | None]:
    """(found, content) of the last \\boxed{...} (braces balanced); content None when it is not closed."""
    matches = list(_BOXED.finditer(reply))
    if not matches:
        return False, None
    start = matches[-1].end()
    depth = 1
    for i in range(start, len(reply)):
        if reply[i] == "{":
            depth += 1
        elif reply[i] == "}":
            depth -= 1
            if depth == 0:
                return True, reply[start:i]
    return True, None


def _tool_call(reply: str) -> Call | None:
    """The search the last <tool_call> of a reply makes (None when it has none)."""
    calls = _TOOL_CALL.findall(reply)
    if not calls:
        return None
    try:
        call = json.loads(calls[-1])
    except ValueError:
        return Call(None, error=BAD_TOOL_CALL)
    args = call.get("arguments") if isinstance(call, dict) else None
    if isinstance(args, str):  # some templates emit the arguments as a JSON string
        try:
            args = json.loads(args)
        except ValueError:
            args = None
    if not isinstance(args, dict) or not isinstance(call.get("name"), str):
        return Call(None, error=BAD_TOOL_CALL)
    if call["name"] != "search":
        return Call(None, error=f"unknown tool {call['name'][:40]} , the only tool is search")
    query = args.get("query")
    if not isinstance(query, str) or not _WORD.search(query):
        return Call(None, error=EMPTY_QUERY)
    return Call("search", " ".join(query.split()))


def parse_reply(reply: str, native: bool = False) -> Call:
    """The one call a reply makes: the last \\boxed{...}, or a search: the last ``` block as ``search : <query>``
    (text tool calls) or the last <tool_call> (``native``)."""
    if native:
        call = _tool_call(reply)
        has_answer, answer = _boxed(reply)
        if call is not None and has_answer:
            return Call(None, error=BOTH)
        if call is not None:
            return call
        if not has_answer:
            return Call(None, error=NO_CALL)
        if answer is None:
            return Call(None, error=UNCLOSED)
        answer = " ".join(answer.split())
        return Call("answer", answer) if normalize_answer(answer) else Call(None, error=EMPTY_ANSWER)
    block = last_code_block(reply)
    has_answer, answer = _boxed(reply)
    if block is not None and has_answer:
        return Call(None, error=BOTH)
    if has_answer:
        if answer is None:
            return Call(None, error=UNCLOSED)
        answer = " ".join(answer.split())
        if not normalize_answer(answer):
            return Call(None, error=EMPTY_ANSWER)
        return Call("answer", answer)
    if block is None:
        return Call(None, error=NO_CALL)
    m = _CALL.match(block)
    if m is None:
        return Call(None, error=BAD_CALL)
    tool, query = m.group(1).lower(), " ".join(m.group(2).split())
    if tool != "search":
        return Call(None, error=f"unknown tool {tool} , the only tool is search")
    if not _WORD.search(query):
        return Call(None, error=EMPTY_QUERY)
    return Call("search", query)


# ---- settings (env.qa) ---------------------------------------------------------------------------------------


class QAParams(EnvParamsBase):
    """env.qa: where questions and passages come from, how search is reached and called, the turn budget."""

    budget: int = Field(5, ge=1, description="turns per episode (searches and the answer)")
    top_k: int = Field(5, ge=1, le=50, description="passages a search returns")
    train_path: str | None = Field(
        None, min_length=1, description="training questions: HotpotQA JSON, or JSONL / Parquet rows (question, answer)"
    )
    test_path: str | None = Field(None, min_length=1, description="held-out questions, in the same formats")
    corpus_path: str | None = Field(
        None, min_length=1, description="JSONL corpus in the wiki-18 layout (id, contents), indexed by init"
    )
    hotpot_path: str | None = Field(
        None,
        min_length=1,
        description="one HotpotQA JSON file for both splits, searched in its own context paragraphs (a quick look)",
    )
    retriever: Literal["index", "server"] = Field(
        "index", description="index: the one init builds; server: a retrieval server (server_url)"
    )
    server_url: str | None = Field(None, min_length=1, description="http://host:port/retrieve")
    server_protocol: Literal["search-r1", "erl"] = Field("search-r1", description="see pipeline/envs/retrieval.py")
    server_timeout: Real = Field(30.0, gt=0, description="seconds a request may take")
    server_retries: int = Field(3, ge=0, le=10, description="tries after the first, waiting 0.5 s, 1 s, 2 s, ...")
    server_workers: int = Field(16, ge=1, le=256, description="requests in flight at once (protocol erl)")
    tool_calls: Literal["text", "native"] = Field(
        "text", description="text: ``` search : q ``` blocks; native: the chat template's tools (prompts: paper)"
    )
    kb_people: int = Field(
        1500, ge=1, le=100000, description="people in the generated knowledge base (2 questions each)"
    )
    kb_cities: int = Field(40, ge=2, le=10000)
    kb_companies: int = Field(20, ge=2, le=10000)
    kb_countries: int = Field(8, ge=1, le=10000)
    kb_test_share: Real = Field(
        0.2, gt=0.0, lt=1.0, description="share of cities and companies that bridge test questions only"
    )

    @model_validator(mode="after")
    def _consistent(self):
        for key, n in (("kb_cities", self.kb_cities), ("kb_companies", self.kb_companies)):
            if not 1 <= round(self.kb_test_share * n) < n:
                raise ValueError(f"kb_test_share must hold out at least one and not all of {key} ({n})")
        if (self.train_path is None) != (self.test_path is None):
            raise ValueError("train_path and test_path go together (questions for each split)")
        if self.train_path and self.hotpot_path:
            raise ValueError("hotpot_path is one file for both splits; with train_path and test_path leave it null")
        if self.retriever == "server" and not self.server_url:
            raise ValueError("retriever: server needs server_url")
        if self.retriever == "index" and self.train_path and not self.corpus_path:
            raise ValueError("with train_path the index needs corpus_path (or retriever: server)")
        return self


# ---- prompts (policy.prompts) --------------------------------------------------------------------------------

# Templates that go through str.format (reflector_user, no_reflection_system) double their literal braces.
_TINY_FORMAT = "answer the question . search with ``` search : words ``` or answer with \\boxed{ answer } ."
_TEXT_FORMAT = (
    "Each reply must do exactly one of two things: search, by writing a ``` block that contains "
    "`search: <query>` (the tool returns the top passages of a local corpus), or answer, by writing the final "
    "answer as \\boxed{<answer>}. A reply with both, or with neither, is invalid and wastes a turn."
)
_TOOL_FORMAT = (
    "Call the search tool when you need facts; give the final answer as \\boxed{<answer>}. A reply with both a "
    "tool call and an answer, or with neither, is invalid and wastes a turn."
)
_SOLVER = "Answer the question directly and efficiently. Use the search tool when you need facts; never invent them. "
_REFLECTOR = (
    "You are an expert at updating the instructions of a question-answering agent that uses a search tool. Read its "
    "trajectories, tool calls and rewards, and add rules that prevent the failures you see (a missing search, an "
    "invented fact, an answer outside \\boxed{}). Keep the prompt short. Output only <prompt>...</prompt>."
)
_CONTEXT = (
    "Current instructions (may be inaccurate):\n{memory}\n\n{batch}\n\nThe attempt:\n{summary}\n\n"
    "Think step by step and give improved instructions inside <prompt></prompt> tags."
)


def _paper(fmt: str) -> PromptSet:
    return PromptSet(
        system=_SOLVER + fmt,
        format_reminder=fmt,
        reflector_system=_REFLECTOR,
        reflector_user=_CONTEXT,
        no_memory="(none yet)",
        no_reflection_system=(
            "Answer the question directly and efficiently. "
            + braces(fmt)
            + " Use the data of your past attempt below to answer better this time.\n{context}"
        ),
    )


PROMPTS = {
    "tiny": PromptSet(
        system=_TINY_FORMAT,
        format_reminder=_TINY_FORMAT,
        reflector_system="the attempt failed . write a better prompt in <prompt> </prompt> .",
        reflector_user="{summary}\nmemory : {memory}",
        no_memory="none",
        no_reflection_system=braces(_TINY_FORMAT) + " use your past attempt .\n{summary}",
        compact_summary=True,
    ),
    "paper": _paper(_TOOL_FORMAT),  # the paper's: search offered through the chat template (tool_calls: native)
    "paper-text": _paper(_TEXT_FORMAT),  # for a model whose template has no tools (tool_calls: text)
}
NATIVE_PROMPTS = ("paper",)  # the sets that describe a native tool call, not the text block

SEARCH_TOOL = {
    "type": "function",
    "function": {
        "name": "search",
        "description": "Search the corpus; returns the top passages, best first.",
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string", "description": "what to look for, in a few words"}},
            "required": ["query"],
        },
    },
}
VOCABULARY_PASSAGES = 20000  # of a real corpus, the passages the embedded default's word-level tokenizer sees


# ---- environment -----------------------------------------------------------------------------------------


def _spec_of(task_or_spec: Task | dict[str, Any]) -> dict[str, Any]:
    return task_or_spec.spec if isinstance(task_or_spec, Task) else task_or_spec


def map_key(task_or_spec: Task | dict[str, Any]) -> str:
    """The normalized question: equal questions give equal keys."""
    return normalize_answer(_spec_of(task_or_spec)["question"])


def gold_answers(spec: dict[str, Any]) -> list[str]:
    """Every gold answer of a task (a file may give several; the first is ``answer``)."""
    return list(spec.get("answers") or [spec["answer"]])


def shown(title: str, text: str) -> str:
    """A passage as the policy reads it: its text, led by its title when the text does not start with it."""
    return text if text.startswith(title) else f"{title} : {text}"


@dataclass(frozen=True)
class QAState:
    """Immutable episode state; ``step`` returns a new one."""

    spec: dict[str, Any]
    steps: int = 0  # turns used so far (invalid replies count)
    budget: int = 5
    done: bool = False
    event: str = ""  # last event: "" | "exact" | "partial" | "wrong" | "limit"
    query: str = ""  # the latest search that ran, and its passages
    passages: tuple[str, ...] = ()
    note: str = ""  # what went wrong with the last reply, if anything
    answer: str | None = None
    score: float = 0.0

    @property
    def steps_left(self) -> int:
        return self.budget - self.steps


class QA(Env):
    name = "qa"
    actions = ACTIONS
    Params = QAParams
    prompts = PROMPTS

    def __init__(
        self,
        params: QAParams | None = None,
        artifacts: str | Path | None = None,
        index_path: str | Path | None = None,
        **overrides,
    ) -> None:
        """``params`` (env.qa; default: params.yaml's values), with ``overrides`` of single keys. ``artifacts``: the
        artifact root, where init builds the search index (``index_path`` overrides where it is)."""
        p = resolve(QAParams, params, overrides)
        super().__init__(p, None if artifacts is None else Path(artifacts))
        self.top_k, self.hotpot_path, self.native = p.top_k, p.hotpot_path, p.tool_calls == "native"
        self.kb_args = dict(
            people=p.kb_people,
            cities=p.kb_cities,
            companies=p.kb_companies,
            countries=p.kb_countries,
            test_share=p.kb_test_share,
        )
        if index_path is None and artifacts is not None:
            index_path = layout.qa_index_path(Path(artifacts))
        self.index_path = None if index_path is None else Path(index_path)
        self._retriever = None
        self._kbs: dict[int, KnowledgeBase] = {}
        self._hotpot: tuple[list[Passage], list[Question]] | None = None
        self._files: dict[str, list[Question]] = {}

    # ---- params, files and init's work ------------------------------------------------------------------------

    @classmethod
    def check(cls, params: QAParams, prompts: str) -> str | None:
        native = prompts in NATIVE_PROMPTS
        if native and params.tool_calls != "native":
            return f"tool_calls: the {prompts!r} prompts offer search as a native tool call; set tool_calls: native"
        if params.tool_calls == "native" and not native:
            return f"tool_calls: native goes with policy.prompts: {' or '.join(NATIVE_PROMPTS)} (not {prompts!r})"
        return None

    @classmethod
    def data_files(cls, params: QAParams) -> list[str]:
        return [f for f in (params.train_path, params.test_path, params.corpus_path, params.hotpot_path) if f]

    @classmethod
    def built_files(cls, params: QAParams, artifacts: Path) -> list[Path]:
        return [layout.qa_index_path(artifacts)] if params.retriever == "index" else []

    def prepare(self, seed: int) -> str:
        """Build the search index (``retriever: index``), or ask the server one question, so that a server that is
        down stops init before anything is written."""
        if self.params.retriever == "server":
            self.retriever().search_many(["test"], 1)
            return f"retrieval server {self.params.server_url} answers ({self.params.server_protocol})"
        return f"search index: {self.build_index(seed)} passages"

    # ---- corpus and tasks --------------------------------------------------------------------------------

    map_key = staticmethod(map_key)

    def _kb(self, seed: int) -> KnowledgeBase:
        if seed not in self._kbs:
            self._kbs[seed] = generate_kb(seed, **self.kb_args)
        return self._kbs[seed]

    def _hotpot_data(self) -> tuple[list[Passage], list[Question]]:
        if self._hotpot is None:
            self._hotpot = load_hotpot(self.hotpot_path)
        return self._hotpot

    def _questions(self, key: str) -> list[Question]:
        if key not in self._files:
            self._files[key] = load_questions(getattr(self.params, key), key)
        return self._files[key]

    def corpus(self, seed: int):
        """Every (title, text) passage the index holds: the corpus file's (read lazily), the HotpotQA file's
        context paragraphs, or the knowledge base of ``seed``."""
        if self.params.corpus_path:
            return corpus_passages(self.params.corpus_path)
        passages = self._hotpot_data()[0] if self.hotpot_path else self._kb(seed).passages
        return ((p.title, p.text) for p in passages)

    def build_index(self, seed: int) -> int:
        """Write the search index of ``corpus(seed)`` to ``index_path``; the number of passages."""
        from pipeline.envs.search import build_index

        if self.index_path is None:
            raise ValueError("qa: no index_path to build the search index at")
        self.close()
        if self.params.corpus_path:
            meta = {"source": "corpus", "path": str(self.params.corpus_path)}
        elif self.hotpot_path:
            meta = {"source": "hotpot", "path": str(self.hotpot_path)}
        else:
            meta = {"source": "kb", "seed": str(seed)}
        return build_index(self.index_path, self.corpus(seed), meta)

    def generate(self, split: str, n: int, seed: int, exclude: set[str] | None = None) -> list[Task]:
        """``n`` distinct questions, deterministic in (seed, split), none whose map_key is in ``exclude``.
        Question files: ``test`` draws from test_path, every other split from train_path. Generated knowledge base:
        ``test`` draws only questions whose bridge entity is held out, every other split only the rest, so train
        and test never share a bridge. One HotpotQA file: every split draws from all of it; ``exclude`` keeps them
        apart."""
        if self.params.train_path:
            key = "test_path" if split == "test" else "train_path"
            pool, source = self._questions(key), {"source": key.removesuffix("_path")}
            where = f"env.qa.{key} {getattr(self.params, key)}"
        elif self.hotpot_path:
            pool, source = self._hotpot_data()[1], {"source": "hotpot"}
            where = f"HotpotQA file {self.hotpot_path}"
        else:
            pool, source = self._kb(seed).pool(split), {"source": "kb", "kb_seed": seed}
            where = f"knowledge base ({self.kb_args})"
        exclude = exclude or set()
        order = list(range(len(pool)))
        random.Random(f"{seed}:{split}:qa").shuffle(order)
        seen: set[str] = set()
        tasks: list[Task] = []
        for i in order:
            if len(tasks) == n:
                break
            q = pool[i]
            key = normalize_answer(q.question)
            if key in seen or key in exclude:
                continue
            seen.add(key)
            spec = {"question": q.question, "answer": q.answer, "support": list(q.support), "bridge": q.bridge}
            if len(q.answers) > 1:
                spec["answers"] = list(q.answers)
            spec.update(source)
            # honest lower bound: one search per supporting passage, then the answer
            optimal = len(q.support) + 1 if q.support else 2
            tasks.append(Task(task_id=f"qa-{split}-{len(tasks):06d}", split=split, spec=spec, optimal_len=optimal))
        if len(tasks) < n:
            raise RuntimeError(
                f"qa: found only {len(tasks)} of {n} distinct questions for split {split!r} in the "
                f"{where}, {len(exclude)} excluded; ask for fewer or enlarge the corpus"
            )
        return tasks

    # ---- search tool -------------------------------------------------------------------------------------

    def retriever(self):
        """The search back end (opened on first use): the local index or the retrieval server."""
        if self._retriever is None:
            from pipeline.envs.retrieval import LocalRetriever, ServerRetriever

            p = self.params
            if p.retriever == "server":
                self._retriever = ServerRetriever(
                    p.server_url, p.server_protocol, p.server_timeout, p.server_retries, p.server_workers
                )
            else:
                from pipeline.envs.search import SearchIndex

                if self.index_path is None:
                    raise ValueError("qa: no index_path; make_env passes artifacts/init/qa_index.sqlite")
                self._retriever = LocalRetriever(SearchIndex(self.index_path))
        return self._retriever

    def search_many(self, queries: list[str]) -> list[list[str]]:
        """Texts of the top-``top_k`` passages of each query (a server gets them in one batch, or concurrently)."""
        return [[shown(t, x) for t, x in hits] for hits in self.retriever().search_many(queries, self.top_k)]

    def search(self, query: str) -> list[str]:
        return self.search_many([query])[0]

    def tools(self) -> list[dict] | None:
        return [SEARCH_TOOL] if self.native else None

    def role_of(self, step: Step) -> str:
        return "tool" if self.native and step.action == "search" else "user"

    def tool_calls(self, step: Step) -> int:
        return int(step.action == "search")

    def close(self) -> None:
        if self._retriever is not None:
            self._retriever.close()
            self._retriever = None

    # ---- episode -----------------------------------------------------------------------------------------

    def reset(self, task: Task | dict[str, Any]) -> QAState:
        return QAState(spec=_spec_of(task), budget=self.budget)

    def render(self, state: QAState) -> str:
        """The question, what went wrong with the last reply (if anything), and the latest tool result: the
        passages of the latest search, or the final answer and its score once answered."""
        lines = [f"question : {state.spec['question']}"]
        if state.note:
            lines.append(state.note)
        if state.answer is not None:
            lines += [f"answer : {state.answer}", f"score : {state.score}"]
        elif state.query:
            lines.append(f"search : {state.query}")
            lines += [f"{i} . {text}" for i, text in enumerate(state.passages, 1)]
        return "\n".join(lines)

    def step(self, state: QAState, reply: str) -> tuple[QAState, Step]:
        return self.step_many([state], [reply])[0]

    def step_many(self, states: list[QAState], replies: list[str]) -> list[tuple[QAState, Step]]:
        """A turn of several episodes: their searches go to the back end together."""
        if any(s.done for s in states):
            raise ValueError("step() called on a finished episode")
        calls = [parse_reply(r, self.native) for r in replies]
        searches = [c.arg for c in calls if c.kind == "search"]
        results = iter(self.search_many(searches) if searches else [])
        return [self._advance(s, c, next(results) if c.kind == "search" else ()) for s, c in zip(states, calls)]

    def _advance(self, state: QAState, call: Call, passages) -> tuple[QAState, Step]:
        steps = state.steps + 1
        event, moved = "", False
        if call.kind == "search":
            passages = tuple(passages)
            moved = bool(passages)
            new = replace(state, query=call.arg, passages=passages, note="" if passages else NO_MATCH)
        elif call.kind == "answer":
            event, score = score_answer(call.arg, gold_answers(state.spec))
            moved = True
            new = replace(state, answer=call.arg, score=score, note="")
        else:
            error = NO_CALL_NATIVE if self.native and call.error == NO_CALL else call.error
            new = replace(state, note=f"invalid : {error} .")
        if not event and steps >= state.budget:
            event = "limit"
        new = replace(new, steps=steps, done=bool(event), event=event)
        return new, Step(
            action=call.kind,
            valid=call.kind is not None,
            moved=moved,
            event=event,
            done=new.done,
            observation=self.render(new),
        )

    def message(self, state: QAState, last_step: Step | None = None) -> str:
        """The next message: the question, the last reply's problem if any, the latest result, turns left; with
        native tool calls, the result of a search alone (a ``tool`` message: the question is already above)."""
        if last_step is not None and self.role_of(last_step) == "tool":
            found = [f"{i} . {text}" for i, text in enumerate(state.passages, 1)] or [NO_MATCH]
            return "\n".join([*found, f"Turns left: {state.steps_left}"])
        return f"{self.render(state)}\nTurns left: {state.steps_left}"

    def random_reply(self, state: QAState, rng: random.Random) -> str:
        """A well-formed reply with random content (warm start): a search for one or two consecutive words of
        the question or the shown passages, or one of those words as the answer. Never the gold answer by
        design: the words are drawn blindly."""
        words = _WORD.findall(" ".join([state.spec["question"], *state.passages]).lower())
        words = [w for w in words if normalize_answer(w)] or ["none"]  # an article alone is an empty answer
        if rng.random() < 2 / 3:
            i = rng.randrange(len(words))
            query = " ".join(words[i : i + rng.choice((1, 2))])
            if self.native:
                return "<tool_call>" + json.dumps({"name": "search", "arguments": {"query": query}}) + "</tool_call>"
            return f"```search : {query}```"
        return f"\\boxed{{{rng.choice(words)}}}"

    def vocabulary(self, tasks: list[Task]) -> list[str]:
        """Texts covering every word this environment can show: the corpus, the questions and answers, and
        every fixed message."""
        seed = tasks[0].spec.get("kb_seed", 0) if tasks else 0
        corpus = () if self.params.retriever == "server" else self.corpus(seed)
        texts = [shown(t, x) for t, x in itertools.islice(corpus, VOCABULARY_PASSAGES)]
        texts += [t.spec["question"] for t in tasks] + [a for t in tasks for a in gold_answers(t.spec)]
        texts += [
            *OUTCOME.values(),
            NO_CALL,
            BOTH,
            BAD_CALL,
            EMPTY_QUERY,
            EMPTY_ANSWER,
            UNCLOSED,
            NO_MATCH,
            NO_CALL_NATIVE,
            BAD_TOOL_CALL,
            "unknown tool , the only tool is search",
            "invalid : .",
            "question : search : answer : score :",
            "Turns left:",
            "The episode did not finish.",
            "```search : words``` \\boxed{answer}",
            "Actions with no effect: (invalid, empty searches). Last action: search answer invalid none. "
            "Reward=, steps=",
            "Initial observation: Actions: Feedback: Step ; ( no effect ) (no effect)",
        ]
        texts += [str(i) for i in range(max(self.budget, self.top_k) + 1)]
        return texts

    # ---- verifier ----------------------------------------------------------------------------------------

    def reward(self, trace: Trace) -> float:
        if not trace.steps:
            return 0.0
        last = trace.steps[-1]
        if last.event == "exact":
            return 1.0
        if last.event == "partial":
            m = _SCORE.search(last.observation)
            return float(m.group(1)) if m else 0.0
        return 0.0

    def feedback(self, trace: Trace) -> str:
        steps = trace.steps
        event = steps[-1].event if steps else ""
        outcome = OUTCOME.get(event, "The episode did not finish.")
        invalid = sum(1 for s in steps if not s.valid)
        empty = sum(1 for s in steps if s.valid and not s.moved)
        last = (steps[-1].action or "invalid") if steps else "none"
        return (
            f"{outcome} Actions with no effect: {invalid + empty} ({invalid} invalid, {empty} empty searches). "
            f"Last action: {last}. Reward={self.reward(trace)}, steps={len(steps)}"
        )

    @staticmethod
    def _call_line(step: Step) -> str:
        """One step as a short line: the search or answer it made (read off its observation), or "invalid"."""
        if not step.valid:
            return "invalid"
        prefix = f"{step.action} : "
        line = next((ln for ln in step.observation.splitlines() if ln.startswith(prefix)), step.action or "")
        return line + ("" if step.moved else " ( no effect )")

    def summary(self, trace: Trace, initial_observation: str, compact: bool = False, annotated: bool = False) -> str:
        """Text of one attempt for the reflector: the question, each turn's call and result, feedback.
        ``compact``: the question, the calls only, and the feedback (short prompts for the tiny model); the full
        form already shows every call and its result (``annotated`` changes nothing here)."""
        if compact:
            calls = " ; ".join(self._call_line(s) for s in trace.steps)
            return f"{initial_observation}\nActions: {calls}\nFeedback: {self.feedback(trace)}"
        parts = [f"Initial observation:\n{initial_observation}"]
        for i, s in enumerate(trace.steps, 1):
            note = "" if s.moved else " (no effect)"
            parts.append(f"Step {i}: {s.action or 'invalid'}{note}\n{s.observation}")
        parts.append(f"Feedback: {self.feedback(trace)}")
        return "\n\n".join(parts)
