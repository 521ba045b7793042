"""Corpora and questions for the tool-use QA environment: a generated knowledge base of fictional entities
(the offline default, deterministic per seed) and a loader for HotpotQA-format JSON files. Standard library
only.

The generated knowledge base has countries, cities (each in a country), companies (each based in a city) and
people (each born in a city, working for a company), one short passage per entity, lowercase with
space-separated punctuation so a word-level tokenizer reads it:

    zarvo is a city . zarvo lies in the country melk .
    mira tolvek is a person . mira tolvek was born in the city zarvo . mira tolvek works for the company brontex .

Every question takes two hops through a bridge entity, e.g. "in which country was mira tolvek born ?"
(person -> birth city -> country). A fixed share of the cities and companies is held out: they are the bridge
of test questions only, so no training question shares its bridge with a test question.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import InputError

# Words the passages and questions use: generated names never collide with them.
TEMPLATE_WORDS = frozenset(
    "a an the is in of which was born city country company person lies based works for employer what who yes no "
    "search answer question score turns left invalid step steps".split()
)
_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "gr", "kr", "st", "tr")
_VOWELS = ("a", "e", "i", "o", "u")
_CODAS = ("", "", "", "n", "r", "l", "s", "k", "m", "x")


@dataclass(frozen=True)
class Passage:
    title: str
    text: str


@dataclass(frozen=True)
class Question:
    question: str
    answer: str
    support: tuple[str, ...]  # titles of the passages that answer it, in hop order
    bridge: str = ""  # the intermediate entity ("" when unknown)
    answers: tuple[str, ...] = ()  # every gold answer when a file gives several (the first is ``answer``)


@dataclass(frozen=True)
class KnowledgeBase:
    passages: tuple[Passage, ...]
    questions: tuple[Question, ...]  # every two-hop question, in a fixed order
    held_out: frozenset[str]  # bridge entities whose questions belong to the test split only

    def pool(self, split: str) -> list[Question]:
        """The questions a split may draw from: bridges held out for ``test``, the rest for any other split."""
        test = split == "test"
        return [q for q in self.questions if (q.bridge in self.held_out) == test]


def _words(rng: random.Random, n: int, taken: set[str]) -> list[str]:
    out: list[str] = []
    while len(out) < n:
        w = rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)
        if w not in taken and w not in TEMPLATE_WORDS:
            taken.add(w)
            out.append(w)
    return out


def generate_kb(
    seed: int, people: int = 1500, cities: int = 40, companies: int = 20, countries: int = 8, test_share: float = 0.2
) -> KnowledgeBase:
    """The knowledge base of ``seed``: the same arguments always give the same entities, passages and
    questions."""
    if min(people, cities, companies, countries) < 1:
        raise ValueError("a knowledge base needs at least one person, city, company and country")
    n_held = {k: round(test_share * m) for k, m in (("cities", cities), ("companies", companies))}
    if not all(1 <= n_held[k] < m for k, m in (("cities", cities), ("companies", companies))):
        raise ValueError(
            f"test_share {test_share} must hold out at least one and not every city and company "
            f"({cities} cities, {companies} companies)"
        )
    rng = random.Random(f"{seed}:qa-kb")
    side = math.ceil(math.sqrt(2 * people))  # first x last names: at least twice as many pairs as people
    taken: set[str] = set()
    country_names = _words(rng, countries, taken)
    city_names = _words(rng, cities, taken)
    company_names = _words(rng, companies, taken)
    firsts, lasts = _words(rng, side, taken), _words(rng, side, taken)

    # every country has a city; every city has somewhere to be
    country_of = {c: country_names[i] if i < countries else rng.choice(country_names) for i, c in enumerate(city_names)}
    city_of = {k: rng.choice(city_names) for k in company_names}
    names = [f"{firsts[i // side]} {lasts[i % side]}" for i in sorted(rng.sample(range(side * side), people))]
    rng.shuffle(names)
    born = {p: rng.choice(city_names) for p in names}
    works = {p: rng.choice(company_names) for p in names}
    held_out = frozenset(rng.sample(city_names, n_held["cities"]) + rng.sample(company_names, n_held["companies"]))

    passages = [Passage(c, f"{c} is a country .") for c in country_names]
    passages += [Passage(c, f"{c} is a city . {c} lies in the country {country_of[c]} .") for c in city_names]
    passages += [Passage(k, f"{k} is a company . {k} is based in the city {city_of[k]} .") for k in company_names]
    passages += [
        Passage(p, f"{p} is a person . {p} was born in the city {born[p]} . {p} works for the company {works[p]} .")
        for p in names
    ]
    questions = []
    for p in names:
        questions.append(Question(f"in which country was {p} born ?", country_of[born[p]], (p, born[p]), born[p]))
        questions.append(
            Question(f"in which city is the employer of {p} based ?", city_of[works[p]], (p, works[p]), works[p])
        )
    return KnowledgeBase(tuple(passages), tuple(questions), held_out)


# ---- HotpotQA ----------------------------------------------------------------------------------------------


class HotpotError(InputError):
    """A HotpotQA file that cannot be read as questions: the message names the file, the item and the field."""


def _field(item: dict, key: str, kind, where: str):
    if key not in item:
        raise HotpotError(f"{where}: no '{key}'")
    value = item[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise HotpotError(f"{where}: '{key}' must be a {names}, not {type(value).__name__} ({str(value)[:40]!r})")
    return value


def load_hotpot(path: str | Path) -> tuple[list[Passage], list[Question]]:
    """Passages and questions of a HotpotQA-format JSON file: a list of {question, answer, supporting_facts:
    [[title, sentence index], ...], context: [[title, [sentences...]], ...]}. The corpus is every context
    paragraph of every question (deduplicated, first occurrence first); a passage's text is "title : sentences".
    Every field is checked for its type (a string of sentences is not a list of them, a null answer is not the
    answer "None"); a bad one stops with HotpotError naming the file, the item and the field."""
    path = Path(path)
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"env.qa.hotpot_path: {path} not found") from None
    except UnicodeDecodeError as exc:
        raise HotpotError(f"env.qa.hotpot_path: {path}: not UTF-8 (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise HotpotError(f"env.qa.hotpot_path: {path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(data, list) or not data:
        raise HotpotError(f"env.qa.hotpot_path: {path}: expected a non-empty list of questions")
    passages: dict[tuple[str, str], Passage] = {}
    questions: list[Question] = []
    for i, item in enumerate(data):
        where = f"env.qa.hotpot_path: {path}: item {i}"
        if not isinstance(item, dict):
            raise HotpotError(f"{where}: expected an object, not {type(item).__name__}")
        question = _field(item, "question", str, where).strip()
        answer = _field(item, "answer", str, where).strip()
        if not question or not answer:
            raise HotpotError(f"{where}: empty {'question' if not question else 'answer'}")
        for j, para in enumerate(_field(item, "context", list, where)):
            if not isinstance(para, list) or len(para) != 2:
                raise HotpotError(f"{where}: context[{j}] must be [title, [sentences]]")
            title, sentences = para
            if (
                not isinstance(title, str)
                or not isinstance(sentences, list)
                or not all(isinstance(x, str) for x in sentences)
            ):
                raise HotpotError(f"{where}: context[{j}] must be [title, [sentences]] of strings")
            text = " ".join(x.strip() for x in sentences if x.strip())
            passages.setdefault((title, text), Passage(title, f"{title} : {text}"))
        facts = item.get("supporting_facts", [])
        if not isinstance(facts, list) or not all(isinstance(f, list) and f and isinstance(f[0], str) for f in facts):
            raise HotpotError(f"{where}: supporting_facts must be a list of [title, sentence index]")
        questions.append(Question(question, answer, tuple(dict.fromkeys(f[0] for f in facts))))
    return list(passages.values()), questions


# ---- question files and corpora of the real HotpotQA setup -------------------------------------------------


class DataFileError(InputError):
    """A question file or corpus that cannot be read: the message names the file and the row or line."""


def _answers_of(row: dict, where: str) -> list[str]:
    """The gold answers of a question row in any of the layouts peers use: ``answer`` (HotpotQA), ``golden_answers``
    (FlashRAG), ``reward_model.ground_truth.target`` (Search-R1's parquet), ``ground_truth`` (the ERL code's)."""
    for value in (
        row.get("answer"),
        row.get("golden_answers"),
        ((row.get("reward_model") or {}).get("ground_truth") or {}).get("target")
        if isinstance(row.get("reward_model"), dict)
        else None,
        row.get("ground_truth"),
    ):
        if value is None:
            continue
        items = [value] if isinstance(value, str) else list(value) if hasattr(value, "__iter__") else None
        if not items or not all(isinstance(a, str) for a in items):
            raise DataFileError(f"{where}: the answer must be a string or a list of strings (got {str(value)[:40]!r})")
        items = [a.strip() for a in items if a.strip()]
        if items:
            return items
    raise DataFileError(f"{where}: no answer (answer, golden_answers, reward_model.ground_truth.target)")


def _question_of(row: dict, where: str) -> str:
    q = row.get("question")
    if q is None and isinstance(row.get("extra_info"), dict):
        q = row["extra_info"].get("question")
    if not isinstance(q, str) or not q.strip():
        raise DataFileError(f"{where}: no question (a non-empty 'question' string)")
    return q.strip()


def load_questions(path: str | Path, key: str) -> list[Question]:
    """The questions of a file for the split ``key`` names (env.qa.train_path or test_path): HotpotQA's JSON (a
    list of {question, answer, supporting_facts, ...}: train, dev distractor or dev fullwiki), or JSONL / Parquet
    rows with a question and its answers (FlashRAG's golden_answers, Search-R1's reward_model, the ERL code's
    ground_truth). A bad row stops with DataFileError naming the file and the row."""
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"env.qa.{key}: {path}: no such file")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            rows = pq.read_table(path).to_pylist()
        except Exception as exc:  # pyarrow's errors for a damaged or foreign file
            raise DataFileError(f"env.qa.{key}: {path}: not a readable Parquet file ({str(exc)[:120]})") from None
    elif path.suffix in (".jsonl", ".ndjson"):
        rows, lines = [], []
        try:
            with open(path, encoding="utf-8", errors="strict") as f:
                for n, line in enumerate(f, 1):
                    if line.strip():
                        try:
                            rows.append(json.loads(line))
                        except json.JSONDecodeError as exc:
                            raise DataFileError(f"env.qa.{key}: {path}: line {n}: not JSON ({exc})") from None
                        lines.append(n)
        except UnicodeDecodeError as exc:
            raise DataFileError(f"env.qa.{key}: {path}: not UTF-8 (byte {exc.start})") from None
    else:
        try:
            rows = json.loads(path.read_bytes().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataFileError(f"env.qa.{key}: {path}: not a JSON list of questions ({exc})") from None
        if not isinstance(rows, list):
            raise DataFileError(f"env.qa.{key}: {path}: expected a JSON list of questions")
    out = []
    for i, row in enumerate(rows):
        where = f"env.qa.{key}: {path}: " + (f"line {lines[i]}" if path.suffix in (".jsonl", ".ndjson") else f"row {i}")
        if not isinstance(row, dict):
            raise DataFileError(f"{where}: expected an object, not {type(row).__name__}")
        answers = _answers_of(row, where)
        facts = row.get("supporting_facts") or []
        support = tuple(dict.fromkeys(f[0] for f in facts if isinstance(f, list) and f and isinstance(f[0], str)))
        out.append(Question(_question_of(row, where), answers[0], support, "", tuple(answers)))
    if not out:
        raise DataFileError(f"env.qa.{key}: {path}: holds no questions")
    return out


def corpus_passages(path: str | Path):
    """The passages of a corpus in the wiki-18 layout, one JSON object per line, ``{"id": ..., "contents":
    "\\"Title\\"\\ntext"}``, as (title, text) pairs, read lazily (a corpus has millions of lines). A line that is
    not JSON or has no ``contents`` stops with DataFileError naming the file and the line."""
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"env.qa.corpus_path: {path}: no such file")
    from pipeline.envs.retrieval import split_contents

    with open(path, "rb") as f:  # bytes, decoded per line: a bad byte is then reported with its line
        for n, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise DataFileError(f"env.qa.corpus_path: {path}: line {n}: not UTF-8 (byte {exc.start})") from None
            except json.JSONDecodeError as exc:
                raise DataFileError(f"env.qa.corpus_path: {path}: line {n}: not JSON ({exc})") from None
            contents = row.get("contents") if isinstance(row, dict) else None
            if not isinstance(contents, str) or not contents.strip():
                raise DataFileError(f"env.qa.corpus_path: {path}: line {n}: no 'contents' string")
            yield split_contents(contents)
