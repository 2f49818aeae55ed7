"""`rag eval`: ask a question set, score the answers and the retrieval, compare with a plain LlamaIndex
baseline on the same corpus, and gate CI on thresholds.

The eval calls the same public API as every front end (`Assistant.ask`), so it measures what users get.
Three file formats are read (detected from the content, see `load_eval_file`):

- questions (JSON Lines): `{"id": "q01", "question": "...", "answers": ["33"], "kind": "fact"}`;
  an empty `answers` list means the documents do not answer and the assistant must refuse;
- conversations (JSON Lines): `{"id": "c01", "turns": [{"question": ..., "answers": [...]}, ...]}`;
- a LlamaIndex `LabelledRagDataset` (JSON): `{"examples": [{"query", "reference_answer",
  "reference_contexts"}]}`.

Metric definitions are in README.md ("Evaluation"); `METRICS` lists their names, the keys of `--json`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import math
import os
import re
import shutil
import sys
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from rag.schema import Answer, Turn
from rag.settings import Settings

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

METRICS = (
    "answer_accuracy",
    "refusal_recall",
    "false_refusals",
    "turn_accuracy",
    "hit_at_1",
    "hit_at_2",
    "hit_at_3",
    "hit_at_5",
    "mrr_at_10",
    "answer_similarity",
    "token_f1",
    "citation_support",
    "verified_sentences",
    "llm_answers",
    "latency_p50_ms",
    "latency_p95_ms",
)
# For these a threshold is a maximum; for every other metric it is a minimum.
LOWER_IS_BETTER = frozenset({"false_refusals", "latency_p50_ms", "latency_p95_ms"})
HIT_KS = (1, 2, 3, 5)
RANK_DEPTH = 10  # MRR@10: the fused ranking is read this deep
MAX_ANSWER_CHARS = 400  # a longer answer is a paragraph dump, not an answer: scored wrong
PASS_DEPTH = 5  # a LabelledRagDataset question passes when a reference context is in this many chunks
NGRAM = 5  # reference-context overlap: word n-grams of this length
BASELINE_CHUNK_TOKENS = 1024
BASELINE_TOP_K = 2
CACHE_KEEP = 10  # cached eval indexes kept (least recently used are removed)

FileKind = Literal["questions", "conversations", "labelled"]
Progress = Callable[[str, int, int], None]  # (stage, done, total)


class EvalError(Exception):
    """A bad eval file, thresholds file or corpus; the message names the file, the place and the fix."""


# --------------------------------------------------------------------------------------------------
# Normalising and scoring text


_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_DECIMAL_POINT = re.compile(r"(?<=\d)\.(?=\d)")
_PUNCTUATION = re.compile(r"[^\w\s\x00]|_")
_CITATION_MARK = re.compile(r"\s*\[\d+\]")
_ARTICLES = frozenset({"a", "an", "the"})


def normalise(text: str) -> str:
    """Casefold, drop thousands separators ("8,102" -> "8102"), keep decimal points ("18.47"), turn
    every other punctuation character into a space ("5-billion-yuan" -> "5 billion yuan"), collapse
    whitespace. Both an accepted answer and the answer text go through this before comparing."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = _THOUSANDS.sub("", text)
    text = _DECIMAL_POINT.sub("\x00", text)
    text = _PUNCTUATION.sub(" ", text)
    return " ".join(text.replace("\x00", ".").split())


def contains_answer(text: str, accepted: str) -> bool:
    """`accepted` occurs in `text` as whole words after normalising both ("300" is not in "3000")."""
    needle = normalise(accepted)
    return bool(needle) and f" {needle} " in f" {normalise(text)} "


def answer_is_correct(answer: Answer, accepted: Sequence[str]) -> bool:
    """Right when not a refusal, at most MAX_ANSWER_CHARS long, and containing an accepted string."""
    if answer.refused or len(answer.text) > MAX_ANSWER_CHARS:
        return False
    return any(contains_answer(answer.text, a) for a in accepted)


def scoring_text(answer_text: str) -> str:
    """The answer without citation marks ("[1]"): they are not words of the answer."""
    return _CITATION_MARK.sub("", answer_text)


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD-style token F1 on normalised tokens, articles removed."""
    pred = [t for t in normalise(prediction).split() if t not in _ARTICLES]
    ref = [t for t in normalise(reference).split() if t not in _ARTICLES]
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def word_ngrams(text: str, n: int = NGRAM) -> set[tuple[str, ...]]:
    words = normalise(text).split()
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def contexts_overlap(chunk: str, context: str, n: int = NGRAM) -> bool:
    """A retrieved chunk matches a reference context when at least half of the word n-grams of either
    one are in the other (texts shorter than n words are compared as their whole word sequence)."""
    n = min(n, len(normalise(chunk).split()), len(normalise(context).split()))
    if n == 0:
        return False
    a, b = word_ngrams(chunk, n), word_ngrams(context, n)
    shared = len(a & b)
    return shared >= len(a) / 2 or shared >= len(b) / 2


# --------------------------------------------------------------------------------------------------
# Eval files


@dataclass(frozen=True)
class Case:
    """One question to ask: a line of a questions file, a turn of a conversation, or a dataset example."""

    id: str
    question: str
    answers: tuple[str, ...] | None = None  # None for a LabelledRagDataset; () = must refuse
    kind: str | None = None
    reference_answer: str | None = None
    reference_contexts: tuple[str, ...] = ()

    @property
    def answerable(self) -> bool:
        return self.answers is None or bool(self.answers)

    @property
    def expected(self) -> str:
        if self.answers is None:
            return self.reference_answer or ""
        return " | ".join(self.answers) if self.answers else "(refusal)"


@dataclass
class EvalSet:
    path: Path
    kind: FileKind
    conversations: list[list[Case]]  # a questions file is conversations of one turn each

    @property
    def cases(self) -> list[Case]:
        return [case for conversation in self.conversations for case in conversation]


_QUESTION_FORMAT = '{"id": "q01", "question": "...", "answers": ["33"], "kind": "fact"}'
_CONVERSATION_FORMAT = '{"id": "c01", "turns": [{"question": "...", "answers": ["..."]}, ...]}'
_LABELLED_FORMAT = '{"examples": [{"query": "...", "reference_answer": "...", "reference_contexts": ["..."]}]}'


def load_eval_file(path: Path | str) -> EvalSet:
    """Read a questions file, a conversations file or a LabelledRagDataset, detected from the content.

    A `.json` file is one JSON document (a LabelledRagDataset); anything else is JSON Lines whose first
    object decides: "turns" makes it a conversations file, otherwise a questions file.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EvalError(f"{path}: no such file: give a questions .jsonl, a conversations .jsonl or a rag_dataset.json") from None
    except (OSError, UnicodeDecodeError) as err:
        raise EvalError(f"{path}: cannot read it as UTF-8 text ({err})") from None
    if not text.strip():
        raise EvalError(f"{path}: the file is empty: write one question a line, e.g. {_QUESTION_FORMAT}")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise EvalError(f"{path} line {err.lineno} column {err.colno}: not valid JSON ({err.msg})") from None
        if not isinstance(data, dict) or "examples" not in data:
            raise EvalError(
                f"{path}: a .json eval file must be a LlamaIndex LabelledRagDataset, {_LABELLED_FORMAT}; "
                f"for questions or conversations use JSON Lines (.jsonl)"
            )
        return EvalSet(path, "labelled", [[case] for case in _labelled_cases(path, data)])
    return _load_jsonl(path, text)


def _load_jsonl(path: Path, text: str) -> EvalSet:
    kind: FileKind | None = None
    first_line = 0
    conversations: list[list[Case]] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise EvalError(f"{where}: not valid JSON ({err.msg} at column {err.colno}); each line is one object like {_QUESTION_FORMAT}") from None
        if isinstance(obj, dict) and "examples" in obj:
            return EvalSet(path, "labelled", [[case] for case in _labelled_cases(path, obj)])
        if not isinstance(obj, dict):
            raise EvalError(f"{where}: expected a JSON object like {_QUESTION_FORMAT}, got {type(obj).__name__}")
        line_kind: FileKind = "conversations" if "turns" in obj else "questions"
        if kind is None:
            kind, first_line = line_kind, number
        elif line_kind != kind:
            raise EvalError(
                f"{where}: this line is a {line_kind[:-1]} but line {first_line} is a {kind[:-1]}: "
                "keep questions and conversations in separate files"
            )
        item_id = _field(obj, "id", str, where, _QUESTION_FORMAT if kind == "questions" else _CONVERSATION_FORMAT)
        if item_id in seen:
            raise EvalError(f"{where}: id {item_id!r} is already used on line {seen[item_id]}: ids must be unique")
        seen[item_id] = number
        if kind == "questions":
            conversations.append([_question_case(obj, item_id, where)])
            continue
        turns = obj["turns"]
        if not isinstance(turns, list) or not turns:
            raise EvalError(f"{where}: \"turns\" must be a non-empty list of {{\"question\", \"answers\"}} objects")
        conversation = []
        for n, turn in enumerate(turns, start=1):
            turn_where = f"{where} turn {n}"
            if not isinstance(turn, dict):
                raise EvalError(f"{turn_where}: expected an object {{\"question\": ..., \"answers\": [...]}}, got {type(turn).__name__}")
            conversation.append(_question_case(turn, f"{item_id}.t{n}", turn_where))
        conversations.append(conversation)
    assert kind is not None
    return EvalSet(path, kind, conversations)


def _field(obj: dict, name: str, kind: type, where: str, example: str):
    if name not in obj:
        raise EvalError(f"{where}: missing \"{name}\"; expected {example}")
    value = obj[name]
    if not isinstance(value, kind) or (kind is str and not value.strip()):
        wanted = "a non-empty string" if kind is str else f"a {kind.__name__}"
        raise EvalError(f"{where}: \"{name}\" must be {wanted}, got {json.dumps(value)[:80]}")
    return value


def _question_case(obj: dict, case_id: str, where: str) -> Case:
    question = _field(obj, "question", str, where, _QUESTION_FORMAT)
    answers = _field(obj, "answers", list, where, _QUESTION_FORMAT)
    for answer in answers:
        if not isinstance(answer, str) or not normalise(answer):
            raise EvalError(
                f"{where}: every answer must be a string with a letter or digit, got {json.dumps(answer)}; "
                "use an empty list [] when the documents do not answer"
            )
    kind = obj.get("kind")
    if kind is not None and (not isinstance(kind, str) or not kind):
        raise EvalError(f"{where}: \"kind\" must be a string such as \"fact\", \"paraphrase\" or \"unanswerable\"")
    if kind == "unanswerable" and answers:
        raise EvalError(f"{where}: kind \"unanswerable\" but answers {answers}: make answers [] or change the kind")
    if kind is not None and kind != "unanswerable" and not answers:
        raise EvalError(f"{where}: answers is [] (must refuse) but kind is {kind!r}: set kind to \"unanswerable\" or add answers")
    return Case(case_id, question.strip(), tuple(answers), kind)


def _labelled_cases(path: Path, data: dict) -> list[Case]:
    examples = data["examples"]
    if not isinstance(examples, list) or not examples:
        raise EvalError(f"{path}: \"examples\" must be a non-empty list; expected {_LABELLED_FORMAT}")
    width = len(str(len(examples)))
    cases = []
    for n, example in enumerate(examples, start=1):
        where = f"{path} examples[{n - 1}]"
        if not isinstance(example, dict):
            raise EvalError(f"{where}: expected an object, got {type(example).__name__}")
        query = _field(example, "query", str, where, _LABELLED_FORMAT)
        reference = example.get("reference_answer")
        if not isinstance(reference, str) or not reference.strip():
            raise EvalError(f"{where}: \"reference_answer\" must be a non-empty string; expected {_LABELLED_FORMAT}")
        contexts = example.get("reference_contexts") or []
        if not isinstance(contexts, list) or not all(isinstance(c, str) for c in contexts):
            raise EvalError(f"{where}: \"reference_contexts\" must be a list of strings")
        cases.append(Case(f"ex{n:0{width}d}", query.strip(), None, None, reference, tuple(contexts)))
    return cases


# --------------------------------------------------------------------------------------------------
# The index the eval runs on


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rag-eval"


def index_key(corpus_dir: Path, settings: Settings) -> str:
    """Hash of what an index is built from: every corpus file (path and bytes), the index settings, and
    the source of the modules that turn files into index entries (a code change must not reuse a stale
    index)."""
    from rag import chunking, embedding, loaders, store

    digest = hashlib.sha256()
    digest.update(json.dumps(settings.index_signature(), sort_keys=True, default=str).encode())
    for module in (loaders, chunking, embedding, store):
        digest.update(Path(module.__file__).read_bytes())
    for path in sorted(p for p in corpus_dir.rglob("*") if p.is_file()):
        digest.update(path.relative_to(corpus_dir).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:20]


@contextlib.contextmanager
def _locked(folder: Path, blocking: bool = True) -> Iterator[bool]:
    """An advisory lock on a cache entry: two evals share one build, and pruning skips entries in use."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "eval.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cached_index(settings: Settings, corpus_dir: Path, cache_dir: Path, embedder, progress: Progress | None = None) -> Settings:
    """Settings pointing at an index of `corpus_dir` under `cache_dir`, built on first use and reused by
    every later run with the same corpus contents, index settings and indexing code."""
    from rag.ingest import IngestError, ingest

    if not corpus_dir.is_dir():
        raise EvalError(f"corpus {corpus_dir} is not a folder: pass --corpus DIR with the documents the questions are about")
    folder = cache_dir / index_key(corpus_dir, settings)
    settings = settings.model_copy(update={"corpus_dir": corpus_dir, "index_dir": folder / "index"})
    tell = (lambda fraction, message: progress(f"indexing {corpus_dir.name}: {message}", round(fraction * 100), 100)) if progress else None
    with _locked(folder):
        try:
            ingest(settings, embedder=embedder, progress=tell)
        except IngestError as err:
            raise EvalError(f"cannot index {corpus_dir}: {err}") from None
        os.utime(folder)
    _prune(cache_dir, keep=CACHE_KEEP)
    return settings


def _prune(cache_dir: Path, keep: int) -> None:
    entries = sorted((p for p in cache_dir.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[keep:]:
        with _locked(old, blocking=False) as free:
            if free:
                shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------------------------------
# The systems under test


@dataclass
class Reply:
    """What a system did for one question: its answer, its ranking (chunk texts, best first), its time."""

    answer: Answer
    ranking: list[str]
    latency_ms: float


class Ours:
    """The product: `Assistant.ask` with the conversation history, plus the retriever's fused ranking."""

    name = "ours"

    def __init__(self, settings: Settings, embedder) -> None:
        from rag.chat import Assistant
        from rag.retrieval import Retriever

        self.assistant = Assistant(settings, embedder=embedder)
        self.retriever = Retriever(self.assistant.snapshot, embedder, settings)
        self._chunks = {c.chunk_id: c for c in self.assistant.snapshot.chunks.values()}
        self._pages: dict[tuple[str, int | None], str] = {}

    def chunk_texts(self) -> list[str]:
        return [c.text for c in self._chunks.values()]

    def ask(self, question: str, history: list[Turn]) -> Reply:
        started = time.perf_counter()
        answer = self.assistant.ask(question, history)
        latency = answer.timings_ms.get("total", (time.perf_counter() - started) * 1000)
        ranking = [hit.chunk.text for hit in self.retriever.search(answer.query, k=RANK_DEPTH)]
        return Reply(answer, ranking, latency)

    def citation_supported(self, citation) -> bool:
        """The cited passage contains the quoted text verbatim: in the cited chunk, or at the cited span
        of the page (a quote may run across two neighbouring chunks)."""
        chunk = self._chunks.get(citation.chunk_id)
        if chunk is None or not citation.text:
            return False
        if citation.text in chunk.text:
            return True
        return self._page(chunk.source, chunk.page)[citation.start : citation.end] == citation.text

    def _page(self, source: str, page: int | None) -> str:
        key = (source, page)
        if key not in self._pages:
            parts = sorted((c for c in self._chunks.values() if (c.source, c.page) == key), key=lambda c: c.start)
            text = [" "] * max((c.end for c in parts), default=0)
            for c in parts:
                text[c.start : c.end] = c.text
            self._pages[key] = "".join(text)
        return self._pages[key]


_OPEN: dict[str, Ours] = {}


def _open_ours(settings: Settings, embedder) -> Ours:
    """One `Ours` per index version and settings in a process: evaluating several files on one index
    (a notebook, the tests) reuses the assistant's warm caches instead of re-embedding the corpus."""
    from rag import store

    key = json.dumps([str(settings.index_dir.resolve()), store.current_version(settings.index_dir),
                      settings.model_dump(mode="json")], sort_keys=True)
    if key not in _OPEN:
        _OPEN.clear()  # keep one: an assistant holds its index and caches in memory
        _OPEN[key] = Ours(settings, embedder)
    return _OPEN[key]


class Baseline:
    """A plain LlamaIndex VectorStoreIndex: SentenceSplitter chunks of 1024 tokens, the same embedder,
    top-k 2, answer = the retrieved text. No LLM, no history, never refuses: what a default setup gives."""

    name = "baseline"

    def __init__(self, corpus_dir: Path, embed_model: str) -> None:
        from rag.embedding import resolve_model_path
        from rag.loaders import LoadError, load_document, scan_corpus

        # llama-index prints "LLM is explicitly disabled" on stdout, which belongs to --json.
        with contextlib.redirect_stdout(sys.stderr):
            from llama_index.core import Document, VectorStoreIndex
            from llama_index.core import Settings as LlamaSettings
            from llama_index.core.node_parser import SentenceSplitter
            from llama_index.embeddings.huggingface import HuggingFaceEmbedding

            with contextlib.redirect_stdout(io.StringIO()):  # "LLM is explicitly disabled. Using MockLLM."
                LlamaSettings.llm = None  # nothing may reach for OpenAI
            embed = HuggingFaceEmbedding(model_name=resolve_model_path(embed_model), device="cpu")
            LlamaSettings.embed_model = embed
        documents = []
        files, _ = scan_corpus(corpus_dir)
        for path in files:
            try:
                source = load_document(path, corpus_dir)
            except LoadError:
                continue
            for page in source.pages:
                documents.append(
                    Document(
                        text=page.text,
                        metadata={"source": source.doc_id, "page": page.number},
                        excluded_embed_metadata_keys=["source", "page"],
                        excluded_llm_metadata_keys=["source", "page"],
                    )
                )
        if not documents:
            raise EvalError(f"baseline: no document in {corpus_dir} could be read")
        nodes = SentenceSplitter(chunk_size=BASELINE_CHUNK_TOKENS).get_nodes_from_documents(documents)
        self.doc_ids = sorted({d.metadata["source"] for d in documents})
        self.texts = [n.get_content() for n in nodes]
        index = VectorStoreIndex(nodes, embed_model=embed, show_progress=False)
        self.retriever = index.as_retriever(similarity_top_k=RANK_DEPTH)

    def chunk_texts(self) -> list[str]:
        return self.texts

    def ask(self, question: str, history: list[Turn]) -> Reply:
        started = time.perf_counter()
        ranking = [n.node.get_content() for n in self.retriever.retrieve(question)]
        text = "\n\n".join(ranking[:BASELINE_TOP_K])
        latency = (time.perf_counter() - started) * 1000
        return Reply(Answer(text, [], refused=False, query=question, timings_ms={"total": latency}), ranking, latency)

    def citation_supported(self, citation) -> bool:  # pragma: no cover - the baseline cites nothing
        return False


# --------------------------------------------------------------------------------------------------
# Running and scoring


@dataclass
class Row:
    """One question (one turn of a conversation) as scored."""

    case: Case
    answer: Answer
    passed: bool
    rank: int | None  # 1-based rank of the first evidence chunk in the top RANK_DEPTH; None if absent
    latency_ms: float
    supported: list[bool] = field(default_factory=list)  # per citation: quote found verbatim
    similarity: float | None = None
    f1: float | None = None

    def to_json(self) -> dict:
        data = self.answer.to_json()
        return {
            "id": self.case.id,
            "question": self.case.question,
            "query": self.answer.query,
            "answer": self.answer.text,
            "refused": self.answer.refused,
            "citations": data["citations"],
            "passed": self.passed,
            "kind": self.case.kind,
            "expected": list(self.case.answers) if self.case.answers is not None else self.case.reference_answer,
            "rank": self.rank,
            "latency_ms": round(self.latency_ms, 1),
            "citations_supported": self.supported,
            "answer_similarity": None if self.similarity is None else round(self.similarity, 4),
            "token_f1": None if self.f1 is None else round(self.f1, 4),
            "written_by": self.answer.written_by,
            "sentences": data.get("sentences", []),
            "note": self.answer.note,
        }


def is_evidence(case: Case, chunk_text: str) -> bool:
    """Questions: the chunk contains an accepted answer. LabelledRagDataset: it overlaps a reference context."""
    if case.answers is None:
        return any(contexts_overlap(chunk_text, context) for context in case.reference_contexts)
    return any(contains_answer(chunk_text, a) for a in case.answers)


def first_evidence_rank(case: Case, ranking: Sequence[str]) -> int | None:
    for rank, text in enumerate(ranking[:RANK_DEPTH], start=1):
        if is_evidence(case, text):
            return rank
    return None


def run_system(system, eval_set: EvalSet, progress: Progress | None = None) -> list[Row]:
    """Ask every question; a conversation's turns share a history as in `rag chat`."""
    from rag.chat import record_turn

    rows: list[Row] = []
    total = len(eval_set.cases)
    for conversation in eval_set.conversations:
        history: list[Turn] = []
        for case in conversation:
            reply = system.ask(case.question, history)
            history = record_turn(history, case.question, reply.answer)  # as the web chat and `rag chat` keep it
            rank = first_evidence_rank(case, reply.ranking) if case.answerable else None
            if case.answers is None:  # LabelledRagDataset: no short answer to check
                found = rank is not None and rank <= PASS_DEPTH
                passed = not reply.answer.refused and (found or not case.reference_contexts)
            elif case.answers:
                passed = answer_is_correct(reply.answer, case.answers)
            else:
                passed = reply.answer.refused
            supported = [system.citation_supported(c) for c in reply.answer.citations]
            rows.append(Row(case, reply.answer, passed, rank, reply.latency_ms, supported))
            if progress:
                progress(f"asking ({system.name})", len(rows), total)
    return rows


def score_references(rows: list[Row], embedder) -> None:
    """LabelledRagDataset: cosine of answer and reference answer (our embedder), and token F1."""
    labelled = [r for r in rows if r.case.reference_answer is not None]
    if not labelled:
        return
    answers = [scoring_text(r.answer.text) for r in labelled]
    references = [r.case.reference_answer or "" for r in labelled]
    vectors = embedder.embed(answers + references)
    for n, row in enumerate(labelled):
        row.similarity = float(vectors[n] @ vectors[len(labelled) + n])
        row.f1 = token_f1(answers[n], references[n])


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


def compute_metrics(rows: list[Row], kind: FileKind, llm: bool = False) -> dict[str, float | None]:
    """Every metric in METRICS; None where it does not apply to this file, or (`verified_sentences`,
    `llm_answers`) to a run without an LLM (see README "Evaluation")."""
    labelled = kind == "labelled"
    answerable = [r for r in rows if r.case.answerable]
    unanswerable = [r for r in rows if not r.case.answerable]
    retrieval = [r for r in answerable if r.case.answers is not None or r.case.reference_contexts]
    citations = [s for r in rows for s in r.supported]
    latencies = [r.latency_ms for r in rows]
    metrics: dict[str, float | None] = {
        "answer_accuracy": None if labelled else _mean([r.passed for r in answerable]),
        "refusal_recall": _mean([r.answer.refused for r in unanswerable]),
        "false_refusals": _mean([r.answer.refused for r in answerable]),
        "turn_accuracy": _mean([r.passed for r in rows]) if kind == "conversations" else None,
    }
    for k in HIT_KS:
        metrics[f"hit_at_{k}"] = _mean([r.rank is not None and r.rank <= k for r in retrieval])
    metrics["mrr_at_10"] = _mean([1 / r.rank if r.rank else 0.0 for r in retrieval])
    metrics["answer_similarity"] = _mean([r.similarity for r in rows if r.similarity is not None]) if labelled else None
    metrics["token_f1"] = _mean([r.f1 for r in rows if r.f1 is not None]) if labelled else None
    metrics["citation_support"] = _mean(citations)
    written = [s.verified for r in rows for s in r.answer.sentences]
    metrics["verified_sentences"] = _mean(written) if llm else None
    metrics["llm_answers"] = _mean([r.answer.written_by == "llm" for r in rows]) if llm else None
    metrics["latency_p50_ms"] = float(np.percentile(latencies, 50)) if latencies else None
    metrics["latency_p95_ms"] = float(np.percentile(latencies, 95)) if latencies else None
    return metrics


@dataclass
class EvalResult:
    eval_set: EvalSet
    rows: list[Row]
    metrics: dict[str, float | None]
    baseline_metrics: dict[str, float | None] | None
    baseline_rows: list[Row] | None
    index_dir: Path
    corpus_dir: Path | None
    seconds: float
    warnings: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[Row]:
        return [r for r in self.rows if not r.passed]

    def to_json(self) -> dict:
        """The `--json` object: the metrics, `questions` (one row per question or turn), `baseline`."""
        data: dict = {name: _round(self.metrics[name]) for name in METRICS}
        data["questions"] = [r.to_json() for r in self.rows]
        data["baseline"] = (
            {name: _round(self.baseline_metrics[name]) for name in METRICS} if self.baseline_metrics else None
        )
        return data


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def run_eval(
    path: Path | str,
    settings: Settings,
    *,
    corpus: Path | None = None,
    index: Path | None = None,
    baseline: bool = True,
    cache_dir: Path | None = None,
    progress: Progress | None = None,
) -> EvalResult:
    """Evaluate one file. With `index`, that index is used as is; otherwise an index of `corpus` (default
    settings.corpus_dir) is built in `cache_dir` and reused while nothing it depends on changes."""
    from rag.embedding import load_embedder
    from rag.store import IndexProblem

    started = time.perf_counter()
    eval_set = load_eval_file(path)
    embedder = load_embedder(settings.embed_model)
    if index is not None:
        settings = settings.model_copy(update={"index_dir": Path(index), **({"corpus_dir": Path(corpus)} if corpus else {})})
    else:
        settings = cached_index(settings, Path(corpus or settings.corpus_dir), cache_dir or default_cache_dir(), embedder, progress)
    try:
        ours = _open_ours(settings, embedder)
    except IndexProblem as err:
        raise EvalError(str(err)) from None
    if ours.assistant.llm_problem:  # an LLM eval without its model would measure the extractive answerer
        raise EvalError(f"cannot evaluate with llm_backend={settings.llm_backend}: {ours.assistant.llm_problem}")
    warnings = _unfindable_answers(eval_set, ours.chunk_texts())
    rows = run_system(ours, eval_set, progress)
    score_references(rows, embedder)
    baseline_rows = baseline_metrics = None
    if baseline:
        if progress:
            progress("building the LlamaIndex baseline", 0, 1)
        base = Baseline(settings.corpus_dir, settings.embed_model)
        indexed = sorted(ours.assistant.snapshot.manifest.documents)
        if base.doc_ids != indexed:
            raise EvalError(
                f"baseline: corpus {settings.corpus_dir} holds {base.doc_ids[:5]} but index {settings.index_dir} "
                f"holds {indexed[:5]}: pass --corpus with the folder the index was built from, or --no-baseline"
            )
        baseline_rows = run_system(base, eval_set, progress)
        score_references(baseline_rows, embedder)
        baseline_metrics = compute_metrics(baseline_rows, eval_set.kind)
    return EvalResult(
        eval_set,
        rows,
        compute_metrics(rows, eval_set.kind, llm=settings.llm_backend != "none"),
        baseline_metrics,
        baseline_rows,
        settings.index_dir,
        settings.corpus_dir,
        time.perf_counter() - started,
        warnings,
    )


def _unfindable_answers(eval_set: EvalSet, chunk_texts: list[str]) -> list[str]:
    """Answerable questions whose accepted answers occur in no chunk: a likely typo in the answer string."""
    normalised = [f" {normalise(t)} " for t in chunk_texts]
    warnings = []
    for case in eval_set.cases:
        if not case.answers:
            continue
        needles = [f" {normalise(a)} " for a in case.answers]
        if not any(n in text for n in needles for text in normalised):
            warnings.append(f"{case.id}: no chunk of the index contains any accepted answer {list(case.answers)}; check the answer strings")
    return warnings


# --------------------------------------------------------------------------------------------------
# The CI gate


def load_thresholds(path: Path | str, kind: FileKind) -> dict[str, float]:
    """The [kind] table of a thresholds TOML file: metric = minimum (maximum for LOWER_IS_BETTER)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EvalError(f"thresholds file {path} does not exist: fix the --gate path") from None
    except tomllib.TOMLDecodeError as err:
        raise EvalError(f"thresholds file {path}: not valid TOML ({err})") from None
    unknown_sections = set(data) - {"questions", "conversations", "labelled"}
    if unknown_sections:
        raise EvalError(f"thresholds file {path}: unknown section(s) {sorted(unknown_sections)}; use [questions], [conversations], [labelled]")
    table = data.get(kind)
    if table is None:
        raise EvalError(f"thresholds file {path} has no [{kind}] section for this {kind} file: add one")
    thresholds = {}
    for name, value in table.items():
        if name not in METRICS:
            raise EvalError(f"thresholds file {path} [{kind}]: unknown metric {name!r}; known: {', '.join(METRICS)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            raise EvalError(f"thresholds file {path} [{kind}] {name}: must be a number, got {value!r}")
        thresholds[name] = float(value)
    return thresholds


def check_gate(metrics: dict[str, float | None], thresholds: dict[str, float]) -> tuple[list[str], list[str]]:
    """(failures, notes): a failure names the metric, its value and its threshold."""
    failures, notes = [], []
    for name, limit in thresholds.items():
        value = metrics.get(name)
        if value is None:
            notes.append(f"{name} does not apply to this file: not gated")
        elif name in LOWER_IS_BETTER and value > limit:
            failures.append(f"{name} = {_fmt(name, value)} is above its threshold {_fmt(name, limit)}")
        elif name not in LOWER_IS_BETTER and value < limit:
            failures.append(f"{name} = {_fmt(name, value)} is below its threshold {_fmt(name, limit)}")
    return failures, notes


# --------------------------------------------------------------------------------------------------
# Output: console table, Markdown report with a chart


def _fmt(name: str, value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.0f}" if name.endswith("_ms") else f"{value:.3f}"


def metrics_table(result: EvalResult):
    from rich.table import Table

    table = Table(title=f"{result.eval_set.path.name} ({result.eval_set.kind}, {len(result.rows)} questions)")
    table.add_column("metric")
    table.add_column("ours", justify="right")
    table.add_column("baseline", justify="right")
    for name in METRICS:
        base = result.baseline_metrics[name] if result.baseline_metrics else None
        table.add_row(name, _fmt(name, result.metrics[name]), _fmt(name, base))
    return table


def _cell(text: str, limit: int = 300) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def write_report(result: EvalResult, folder: Path | str) -> Path:
    """report.md (metrics ours vs baseline, the chart, every failure) and metrics.png in `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    chart = write_chart(result, folder / "metrics.png")
    names = [n for n in METRICS if result.metrics[n] is not None or (result.baseline_metrics or {}).get(n) is not None]
    lines = [
        f"# Eval report: {result.eval_set.path.name}",
        "",
        f"{len(result.rows)} {'turns' if result.eval_set.kind == 'conversations' else 'questions'} "
        f"({result.eval_set.kind} file `{result.eval_set.path}`), corpus `{result.corpus_dir}`, "
        f"{result.seconds:.1f} s. Baseline: plain LlamaIndex VectorStoreIndex, chunk {BASELINE_CHUNK_TOKENS}, "
        f"top-k {BASELINE_TOP_K}, same embedder, answer = retrieved text. Metric definitions: README.md, Evaluation.",
        "",
        "| metric | ours | baseline |",
        "|---|---:|---:|",
    ]
    for name in names:
        base = result.baseline_metrics[name] if result.baseline_metrics else None
        lines.append(f"| {name} | {_fmt(name, result.metrics[name])} | {_fmt(name, base)} |")
    lines += ["", f"![metrics]({chart.name})", "", f"## Failures ({len(result.failures)})", ""]
    if result.failures:
        lines += ["| id | question | expected | got |", "|---|---|---|---|"]
        for row in result.failures:
            got = ("(refused) " if row.answer.refused else "") + row.answer.text
            lines.append(f"| {row.case.id} | {_cell(row.case.question)} | {_cell(row.case.expected)} | {_cell(got)} |")
    else:
        lines.append("None.")
    if result.warnings:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in result.warnings]
    path = folder / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_chart(result: EvalResult, path: Path) -> Path:
    """Grouped bars, ours vs baseline: the 0-1 metrics on one axis, latency (ms) on a second."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = result.baseline_metrics or {}
    rates = [n for n in METRICS if not n.endswith("_ms") and result.metrics[n] is not None]
    times = [n for n in METRICS if n.endswith("_ms") and result.metrics[n] is not None]
    fig, (ax, ax_time) = plt.subplots(1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [max(len(rates), 1), 1.6]})
    width = 0.4
    for axis, names, unit in ((ax, rates, "score"), (ax_time, times, "ms")):
        x = np.arange(len(names))
        ours_values = [result.metrics[n] or 0.0 for n in names]
        base_values = [base.get(n) or 0.0 for n in names]
        bars = axis.bar(x - width / 2, ours_values, width, label="ours", color="#2b6cb0")
        axis.bar_label(bars, labels=[_fmt(n, v) for n, v in zip(names, ours_values)], fontsize=7, padding=2)
        if base:
            bars = axis.bar(x + width / 2, base_values, width, label="baseline", color="#a0aec0")
            axis.bar_label(bars, labels=[_fmt(n, base.get(n)) for n in names], fontsize=7, padding=2)
        axis.set_xticks(x, [n.replace("_ms", "") for n in names], rotation=35, ha="right", fontsize=8)
        axis.set_ylabel(unit)
    ax.set_ylim(0, 1.25)
    ax.set_title(f"{result.eval_set.path.name}: ours vs LlamaIndex baseline", fontsize=10)
    ax_time.set_title("latency per question", fontsize=10)
    ax_time.set_ylim(0, max([result.metrics[n] or 0 for n in times] + [base.get(n) or 0 for n in times] + [1]) * 1.2)
    ax.legend(loc="upper left", ncol=2, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
