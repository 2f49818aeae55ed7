"""The conversation and the `Assistant` facade that every front end (Gradio, CLI, eval) calls.

`Assistant.ask(question, history)` rewrites a follow-up into a standalone query, retrieves, answers,
and returns one `Answer`. It re-reads index/CURRENT before each question, so a rebuild in another
process is picked up without a restart while answers in flight keep their snapshot.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from rag import store
from rag.answer import STOPWORDS, ExtractiveAnswerer, content_words
from rag.embedding import Embedder, load_embedder
from rag.retrieval import Retriever
from rag.schema import Answer
from rag.settings import Settings

log = logging.getLogger(__name__)

# A message in history: {"role": "user" | "assistant", "content": str, "query": optional standalone query}.
Message = dict

_DEPENDENT = re.compile(
    r"\b(it|its|it's|they|them|their|theirs|this|that|these|those|he|him|his|she|her|there|then|the same|such)\b",
    re.IGNORECASE,
)
_ELLIPSIS_START = re.compile(r"^\s*(and|also|what about|how about|what of|and what about|same for|but)\b", re.IGNORECASE)


def is_follow_up(question: str) -> bool:
    """A question that leans on the previous turn: a pronoun, a leading "and/what about", or no subject."""
    if _ELLIPSIS_START.search(question) or _DEPENDENT.search(question):
        return True
    return len(content_words(question)) <= 1


def topic_of(text: str) -> str:
    """The words a question is about, in order: what a follow-up inherits from its predecessor."""
    words = re.findall(r"[\w()+-]+", text.replace("'s ", " "))
    return " ".join(dict.fromkeys(w for w in words if w.lower().strip("()") not in STOPWORDS))


def condense(question: str, history: Sequence[Message] | None) -> str:
    """Rewrite a follow-up into a standalone query without a model: append the conversation's topic.

    "When did it open?" after "Tell me about the City University of Hong Kong (Dongguan)" becomes
    "When did it open? (City University Hong Kong (Dongguan))". Retrieval then finds the right passage;
    the answer type still comes from the question itself.
    """
    question = question.strip()
    if not is_follow_up(question):
        return question
    topic = conversation_topic(history)
    return f"{question} ({topic})" if topic else question


def conversation_topic(history: Sequence[Message] | None) -> str:
    """The last answer's short answer ("OPPO": what "its" most likely means) and the words of the latest
    question that stood on its own (follow-ups inherit it, so topics do not nest)."""
    users = [m for m in history or [] if m.get("role") == "user"]
    if not users:
        return ""
    anchor = next((m for m in reversed(users) if not is_follow_up(m.get("content", ""))), users[-1])
    last = history[-1] if history and history[-1].get("role") == "assistant" else {}
    short = (last.get("answer") or {}).get("short_answer") or ""
    return " ".join(part for part in (short, topic_of(anchor.get("content", ""))) if part)


def last_query(history: Sequence[Message] | None) -> str | None:
    """The standalone query of the latest user turn (its rewritten form when known)."""
    for message in reversed(history or []):
        if message.get("role") == "user":
            return message.get("query") or message.get("content")
    return None


class Assistant:
    def __init__(self, settings: Settings, embedder: Embedder | None = None) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._snapshot: store.IndexSnapshot | None = None
        self._retriever: Retriever | None = None
        # Open the index before the model: a missing index is reported without waiting for the model.
        snapshot = store.load(settings.index_dir, settings.index_signature())
        self.embedder = embedder or load_embedder(settings.embed_model)
        self._install(snapshot)

    @classmethod
    def load(cls, index_dir: Path | str | None = None, settings: Settings | None = None) -> Assistant:
        """Open the index (raises store.IndexProblem with the fix when it is missing, damaged or stale)."""
        settings = settings or Settings()
        if index_dir is not None:
            settings = settings.model_copy(update={"index_dir": Path(index_dir)})
        return cls(settings)

    @property
    def snapshot(self) -> store.IndexSnapshot:
        assert self._snapshot is not None
        return self._snapshot

    def _refresh(self) -> Retriever:
        """Switch to the live index version if it changed since the last question.

        Never waits on a rebuild or a slow load: while one thread loads the new version, the others go on
        answering from the snapshot they have, and a question in flight keeps its snapshot to the end.
        """
        current = self._retriever
        live = store.current_version(self.settings.index_dir)
        if current is not None and (live is None or live == current.snapshot.version):
            return current
        if not self._lock.acquire(blocking=current is None):
            return current  # another thread is loading the new version
        try:
            if self._retriever is current:  # nobody switched while we waited for the lock
                self._install(store.load(self.settings.index_dir, self.settings.index_signature()))
            assert self._retriever is not None
            return self._retriever
        finally:
            self._lock.release()

    def _install(self, snapshot: store.IndexSnapshot) -> None:
        store.check_signature(snapshot.manifest, self.settings.index_signature(), self.embedder.dimension)
        self._snapshot = snapshot
        self._retriever = Retriever(snapshot, self.embedder, self.settings)
        log.info("serving index version %s", snapshot.version)

    def ask(self, question: str, history: Sequence[Message] | None = None) -> Answer:
        started = time.perf_counter()
        question = (question or "").strip()
        if not question:
            return Answer("Please type a question.", [], refused=True, query="")
        if len(question) > self.settings.max_question_chars:
            return Answer(
                f"The question is {len(question):,} characters long; the limit is "
                f"{self.settings.max_question_chars:,} (setting RAG_MAX_QUESTION_CHARS). Please shorten it.",
                [],
                refused=True,
                query="",
            )
        retriever = self._refresh()
        query = condense(question, history)
        t0 = time.perf_counter()
        hits = retriever.search(query, k=self.settings.evidence_chunks)
        t1 = time.perf_counter()
        answerer = ExtractiveAnswerer(retriever, self.settings)
        answer = answerer.answer(question, query, hits)
        t2 = time.perf_counter()
        answer.timings_ms = {
            "retrieve": (t1 - t0) * 1000,
            "answer": (t2 - t1) * 1000,
            "total": (t2 - started) * 1000,
        }
        answer.index_version = retriever.snapshot.version
        return answer
