"""Tool-use question answering (the paper's HotpotQA setting, docs/method.md section 3): the policy answers a
multi-hop question within ``budget`` turns, calling a local search tool (top-``top_k`` passages, SQLite FTS5
ranked by bm25) and giving its final answer in \\boxed{}.

Reply format (one per turn, exactly one of the two):

    ```search : <query>```      a search; the next message lists the top passages
    \\boxed{<answer>}            the final answer; the episode ends

Anything else (no call, both, an unknown tool, an empty query or answer, an unclosed \\boxed{) is an invalid
action that uses a turn; the next message says why. Running out of turns ends the episode with reward 0.

Reward: 1 for an exact match after normalization (lowercase, no punctuation, no articles, collapsed spaces);
otherwise the token F1 if it is at least 0.3 (capped below 1, so only an exact match ever counts as a
success), otherwise 0. The score is computed when the answer is given and recorded in that step's
observation and event, so the verifier needs only the trace.

Corpus and questions: the generated knowledge base of pipeline/envs/kb.py (default, offline, deterministic
per seed) or a HotpotQA-format file (``hotpot_path``). The index is built once by the init stage
(``build_index``) and opened read-only afterwards. Standard library only.
"""

from __future__ import annotations

import random
import re
import string
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pipeline.config import QAParams, resolve
from pipeline.envs.base import Step, Task, Trace, last_code_block
from pipeline.envs.kb import KnowledgeBase, Passage, Question, generate_kb, load_hotpot
from pipeline.envs.search import SearchIndex, build_index

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
BOTH = "a search and an answer in one reply"
BAD_CALL = "a search block reads search : words"
EMPTY_QUERY = "empty search query"
EMPTY_ANSWER = "empty answer"
UNCLOSED = "the boxed answer is not closed"
NO_MATCH = "no passage matched ."

_CALL = re.compile(r"^([A-Za-z_][\w-]*)\s*:\s*(.*)$", re.DOTALL)
_BOXED = re.compile(r"\\\s*boxed\s*\{")  # "\ boxed {" too: what a word-level tokenizer decodes to
_WORD = re.compile(r"[^\W_]+")
_SCORE = re.compile(r"^score : ([0-9.]+)$", re.MULTILINE)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


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


def score_answer(prediction: str, gold: str) -> tuple[str, float]:
    """(event, reward): ("exact", 1.0), ("partial", F1 capped below 1) when F1 >= 0.3, else ("wrong", 0.0)."""
    if exact_match(prediction, gold):
        return "exact", 1.0
    f1 = f1_score(prediction, gold)
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


def parse_reply(reply: str) -> Call:
    """The one call a reply makes: the last ``` block as ``search : <query>``, or the last \\boxed{...}."""
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


# ---- environment -----------------------------------------------------------------------------------------


def _spec_of(task_or_spec: Task | dict[str, Any]) -> dict[str, Any]:
    return task_or_spec.spec if isinstance(task_or_spec, Task) else task_or_spec


def map_key(task_or_spec: Task | dict[str, Any]) -> str:
    """The normalized question: equal questions give equal keys."""
    return normalize_answer(_spec_of(task_or_spec)["question"])


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


class QA:
    name = "qa"
    actions = ACTIONS

    def __init__(self, params: QAParams | None = None, index_path: str | Path | None = None, **overrides) -> None:
        """``params`` (env.qa; default: params.yaml's values), with ``overrides`` of single keys. ``index_path``:
        the search index (built by the init stage)."""
        p = resolve(QAParams, params, overrides)
        self.params = p
        self.budget, self.top_k = p.budget, p.top_k
        self.hotpot_path = p.hotpot_path
        self.kb_args = dict(
            people=p.kb_people,
            cities=p.kb_cities,
            companies=p.kb_companies,
            countries=p.kb_countries,
            test_share=p.kb_test_share,
        )
        self.index_path = None if index_path is None else Path(index_path)
        self._index: SearchIndex | None = None
        self._kbs: dict[int, KnowledgeBase] = {}
        self._hotpot: tuple[list[Passage], list[Question]] | None = None

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

    def corpus(self, seed: int) -> list[Passage]:
        """Every passage the search tool indexes (the knowledge base of ``seed``, or the HotpotQA file's)."""
        return self._hotpot_data()[0] if self.hotpot_path else list(self._kb(seed).passages)

    def build_index(self, seed: int) -> int:
        """Write the search index of ``corpus(seed)`` to ``index_path``; the number of passages."""
        if self.index_path is None:
            raise ValueError("qa: no index_path to build the search index at")
        self.close()
        meta = (
            {"source": "hotpot", "path": str(self.hotpot_path)}
            if self.hotpot_path
            else {"source": "kb", "seed": str(seed)}
        )
        return build_index(self.index_path, [(p.title, p.text) for p in self.corpus(seed)], meta)

    def generate(self, split: str, n: int, seed: int, exclude: set[str] | None = None) -> list[Task]:
        """``n`` distinct questions, deterministic in (seed, split), none whose map_key is in ``exclude``.
        Generated knowledge base: ``test`` draws only questions whose bridge entity is held out, every other
        split only the rest, so train and test never share a bridge. HotpotQA: every split draws from the
        whole file; ``exclude`` keeps them apart."""
        if self.hotpot_path:
            pool, source = self._hotpot_data()[1], {"source": "hotpot"}
        else:
            pool, source = self._kb(seed).pool(split), {"source": "kb", "kb_seed": seed}
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
            spec = {
                "question": q.question,
                "answer": q.answer,
                "support": list(q.support),
                "bridge": q.bridge,
                **source,
            }
            # honest lower bound: one search per supporting passage, then the answer
            optimal = len(q.support) + 1 if q.support else 2
            tasks.append(Task(task_id=f"qa-{split}-{len(tasks):06d}", split=split, spec=spec, optimal_len=optimal))
        if len(tasks) < n:
            where = f"HotpotQA file {self.hotpot_path}" if self.hotpot_path else f"knowledge base ({self.kb_args})"
            raise RuntimeError(
                f"qa: found only {len(tasks)} of {n} distinct questions for split {split!r} in the "
                f"{where}, {len(exclude)} excluded; ask for fewer or enlarge the corpus"
            )
        return tasks

    # ---- search tool -------------------------------------------------------------------------------------

    def search(self, query: str) -> list[str]:
        """Texts of the top-``top_k`` passages for ``query``."""
        if self._index is None:
            if self.index_path is None:
                raise ValueError("qa: no index_path; make_env passes artifacts/init/qa_index.sqlite")
            self._index = SearchIndex(self.index_path)
        return [text for _, text in self._index.search(query, self.top_k)]

    def close(self) -> None:
        if self._index is not None:
            self._index.close()
            self._index = None

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
        if state.done:
            raise ValueError("step() called on a finished episode")
        call = parse_reply(reply)
        steps = state.steps + 1
        event, moved = "", False
        if call.kind == "search":
            passages = tuple(self.search(call.arg))
            moved = bool(passages)
            new = replace(state, query=call.arg, passages=passages, note="" if passages else NO_MATCH)
        elif call.kind == "answer":
            event, score = score_answer(call.arg, state.spec["answer"])
            moved = True
            new = replace(state, answer=call.arg, score=score, note="")
        else:
            new = replace(state, note=f"invalid : {call.error} .")
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
        """User-turn text: the question, the last reply's problem if any, the latest result, turns left."""
        return f"{self.render(state)}\nTurns left: {state.steps_left}"

    def random_reply(self, state: QAState, rng: random.Random) -> str:
        """A well-formed reply with random content (warm start): a search for one or two consecutive words of
        the question or the shown passages, or one of those words as the answer. Never the gold answer by
        design: the words are drawn blindly."""
        words = _WORD.findall(" ".join([state.spec["question"], *state.passages]).lower())
        words = [w for w in words if normalize_answer(w)] or ["none"]  # an article alone is an empty answer
        if rng.random() < 2 / 3:
            i = rng.randrange(len(words))
            return f"```search : {' '.join(words[i : i + rng.choice((1, 2))])}```"
        return f"\\boxed{{{rng.choice(words)}}}"

    def vocabulary(self, tasks: list[Task]) -> list[str]:
        """Texts covering every word this environment can show: the corpus, the questions and answers, and
        every fixed message."""
        seed = tasks[0].spec.get("kb_seed", 0) if tasks else 0
        texts = [p.text for p in self.corpus(seed)]
        texts += [t.spec["question"] for t in tasks] + [t.spec["answer"] for t in tasks]
        texts += [
            *OUTCOME.values(),
            NO_CALL,
            BOTH,
            BAD_CALL,
            EMPTY_QUERY,
            EMPTY_ANSWER,
            UNCLOSED,
            NO_MATCH,
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
