"""The conversation and the `Assistant` facade that every front end (Gradio, CLI, eval) calls.

`Assistant.ask(question, history)` rewrites a follow-up into a standalone query, retrieves, answers,
and returns one `Answer`. It re-reads index/CURRENT before each question, so a rebuild in another
process is picked up without a restart while answers in flight keep their snapshot.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

from rag import backends, store
from rag.answer import ExtractiveAnswerer
from rag.embedding import Embedder, QueryEncoder, load_query_encoder
from rag.followup import condense, is_follow_up, last_query, llm_condense  # noqa: F401 (re-exported)
from rag.generate import GroundedAnswerer
from rag.index_reader import IndexReader
from rag.language import get_language
from rag.llm import describe_failure, open_llm
from rag.question import analyse
from rag.retrieval import Retriever
from rag.render import conversation_markdown  # noqa: F401  (the export, re-exported for callers)
from rag.schema import Answer, Turn
from rag.settings import Settings

if TYPE_CHECKING:
    from llama_index.core.llms import LLM

log = logging.getLogger(__name__)


def record_turn(history: Sequence[Turn], question: str, answer: Answer) -> list[Turn]:
    """The history with one more exchange; the turn keeps the whole answer (export, evidence pane)."""
    return [*history, Turn(question, answer)]


class Assistant:
    def __init__(self, settings: Settings, embedder: Embedder | QueryEncoder | None = None,
                 llm: LLM | None = None) -> None:
        """`llm` overrides the one settings.llm_backend would make (tests load a model once and share it)."""
        self.settings = settings
        self._lock = threading.Lock()
        self._snapshot: IndexReader | None = None
        self._retriever: Retriever | None = None
        # Open the index before the model: a missing index is reported without waiting for the model.
        snapshot = backends.open_index(settings)  # settings.store_backend: local files or Milvus
        self.embedder = embedder or load_query_encoder(settings)  # numpy: a question never imports torch
        self._install(snapshot)
        self.llm, self.llm_problem = (llm, None) if llm is not None else open_llm(settings)
        # An in-process model (llama.cpp) serves one generation at a time; a server queues requests itself.
        self._llm_lock = None if settings.llm_backend == "openai" else threading.Lock()

    @classmethod
    def load(cls, index_dir: Path | str | None = None, settings: Settings | None = None) -> Assistant:
        """Open the index (raises store.IndexProblem with the fix when it is missing, damaged or stale)."""
        settings = settings or Settings()
        if index_dir is not None:
            settings = settings.model_copy(update={"index_dir": Path(index_dir)})
        return cls(settings)

    @property
    def snapshot(self) -> IndexReader:
        assert self._snapshot is not None
        return self._snapshot

    def _refresh(self) -> Retriever:
        """Switch to the live index version if it changed since the last question.

        Never waits on a rebuild or a slow load: while one thread loads the new version, the others go on
        answering from the snapshot they have, and a question in flight keeps its snapshot to the end.
        """
        current = self._retriever
        live = backends.live_version(self.settings)
        if current is not None and (live is None or live == current.snapshot.version):
            return current
        if not self._lock.acquire(blocking=current is None):
            return current  # another thread is loading the new version
        try:
            if self._retriever is current:  # nobody switched while we waited for the lock
                self._install(backends.open_index(self.settings))
            assert self._retriever is not None
            return self._retriever
        finally:
            self._lock.release()

    def _install(self, snapshot: IndexReader) -> None:
        store.check_signature(snapshot.manifest, self.settings.index_signature(), self.embedder.dimension)
        self._snapshot = snapshot
        self._retriever = Retriever(snapshot, self.embedder, self.settings)
        log.info("serving index version %s", snapshot.version)

    def ask(self, question: str, history: Sequence[Turn] | None = None) -> Answer:
        """The whole answer at once (the last item `stream` yields)."""
        answer = None
        for item in self.stream(question, history):
            answer = item
        assert isinstance(answer, Answer)
        return answer

    def stream(self, question: str, history: Sequence[Turn] | None = None) -> Iterator[str | Answer]:
        """Text pieces as an LLM writes them (none when answering extractively), then the final Answer.

        The pieces are the model's raw words; the Answer is what survived verification, so front ends
        replace the streamed text with it.
        """
        started = time.perf_counter()
        question = (question or "").strip()
        if not question:
            yield Answer("Please type a question.", [], refused=True, query="")
            return
        if len(question) > self.settings.max_question_chars:
            yield Answer(
                f"The question is {len(question):,} characters long; the limit is "
                f"{self.settings.max_question_chars:,} (setting RAG_MAX_QUESTION_CHARS). Please shorten it.",
                [],
                refused=True,
                query="",
            )
            return
        retriever = self._refresh()
        language = get_language(self.settings.language)
        asked = analyse(question, language)  # once: the answerers and the rewriting all read this
        standalone = self.standalone(question, history)
        query = asked if standalone == asked.text else analyse(standalone, language)
        t0 = time.perf_counter()
        hits = retriever.search(query.text, k=self.settings.evidence_chunks)
        t1 = time.perf_counter()

        def extractive() -> Answer:
            return self._extractive(retriever).answer(asked, query, hits)

        if self.llm is None:
            answer = extractive()
            if self.llm_problem:
                answer.note = f"{self.llm_problem}. Answered extractively."
        else:
            answerer = GroundedAnswerer(self.llm, self.settings, retriever.embed_texts, extractive, self._llm_lock)
            answer = None
            for item in answerer.stream(asked, query, hits):
                if isinstance(item, Answer):
                    answer = item
                else:
                    yield item
            assert answer is not None
        t2 = time.perf_counter()
        answer.timings_ms = {
            "rewrite": (t0 - started) * 1000,
            "retrieve": (t1 - t0) * 1000,
            "answer": (t2 - t1) * 1000,
            "total": (t2 - started) * 1000,
        }
        answer.index_version = retriever.snapshot.version
        yield answer

    def _extractive(self, retriever: Retriever) -> ExtractiveAnswerer:
        """The answerer without a model: the default, and the fallback of every LLM answer."""
        return ExtractiveAnswerer(retriever, self.settings)

    def standalone(self, question: str, history: Sequence[Turn] | None) -> str:
        """The query to retrieve with.

        Only a follow-up (by `is_follow_up`) is rewritten, which spares a model call on most turns: by the
        LLM's condense prompt when one is configured, else, or when the model fails or returns something
        unusable, by `condense` (no model).
        """
        if self.llm is None or not last_query(history) or not is_follow_up(question):
            return condense(question, history)
        try:
            with self._llm_lock or nullcontext():
                rewritten = llm_condense(self.llm, question, history)
        except Exception as err:  # the answer step meets the same failure and puts it in the note
            log.warning("condensing with the LLM failed: %s", describe_failure(self.settings, err))
            rewritten = None
        return rewritten or condense(question, history)
