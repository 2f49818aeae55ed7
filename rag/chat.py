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
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

from rag import store
from rag.answer import STOPWORDS, ExtractiveAnswerer, content_words
from rag.embedding import Embedder, QueryEncoder, load_query_encoder
from rag.generate import GroundedAnswerer
from rag.llm import describe_failure, open_llm
from rag.retrieval import Retriever
from rag.render import conversation_markdown  # noqa: F401  (the export, re-exported for callers)
from rag.schema import Answer, Turn
from rag.settings import Settings

if TYPE_CHECKING:
    from llama_index.core.llms import LLM

log = logging.getLogger(__name__)


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


def condense(question: str, history: Sequence[Turn] | None) -> str:
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


def conversation_topic(history: Sequence[Turn] | None) -> str:
    """The last answer's short answer ("OPPO": what "its" most likely means) and the words of the latest
    question that stood on its own (follow-ups inherit it, so topics do not nest)."""
    if not history:
        return ""
    anchor = next((t for t in reversed(history) if not is_follow_up(t.question)), history[-1])
    short = history[-1].answer.short_answer or ""
    return " ".join(part for part in (short, topic_of(anchor.question)) if part)


def last_query(history: Sequence[Turn] | None) -> str | None:
    """The standalone query of the latest turn (its rewritten form when known)."""
    return history[-1].query if history else None


# The LLM's rewrite of a follow-up; a module constant so callers may override it.
CONDENSE_PROMPT = (
    "Rewrite the follow-up question as one standalone question that names what it refers to, using the "
    "conversation below. Reply with the rewritten question only; do not answer it.\n\n"
    "Conversation:\n{conversation}\n\nFollow-up question: {question}\nStandalone question:"
)


def llm_condense(llm: LLM, question: str, history: Sequence[Turn], prompt: str = CONDENSE_PROMPT) -> str | None:
    """The LLM's standalone form of a follow-up, or None when what it wrote is not a usable rewrite: not a
    question (the model answered instead), far too long, still a follow-up by `is_follow_up` (an echo), or
    without the follow-up's own words."""
    from llama_index.core.llms import ChatMessage

    lines = []
    for turn in list(history)[-2:]:
        for speaker, said in (("User", turn.question), ("Assistant", turn.answer.text)):
            lines.append(f"{speaker}: {' '.join(said.split())[:300]}")
    response = llm.chat([ChatMessage(role="user", content=prompt.format(conversation="\n".join(lines),
                                                                         question=question))])
    text = (response.message.content or "").strip()
    text = re.sub(r"^(standalone question|question)\s*:\s*", "", text.splitlines()[0] if text else "", flags=re.I)
    text = text.strip().strip('"\'“”').strip()
    own = set(content_words(question))
    if not text.endswith("?") or len(text) > 2 * len(question) + 200 or is_follow_up(text):
        return None  # not a question (an answer), rambling, or still leaning on the conversation (an echo)
    if own and len(own & set(content_words(text))) < len(own) / 2:
        return None
    return text


def record_turn(history: Sequence[Turn], question: str, answer: Answer) -> list[Turn]:
    """The history with one more exchange; the turn keeps the whole answer (export, evidence pane)."""
    return [*history, Turn(question, answer)]


class Assistant:
    def __init__(self, settings: Settings, embedder: Embedder | QueryEncoder | None = None,
                 llm: LLM | None = None) -> None:
        """`llm` overrides the one settings.llm_backend would make (tests load a model once and share it)."""
        self.settings = settings
        self._lock = threading.Lock()
        self._snapshot: store.IndexSnapshot | None = None
        self._retriever: Retriever | None = None
        # Open the index before the model: a missing index is reported without waiting for the model.
        snapshot = store.load(settings.index_dir, settings.index_signature())
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
        query = self.standalone(question, history)
        t0 = time.perf_counter()
        hits = retriever.search(query, k=self.settings.evidence_chunks)
        t1 = time.perf_counter()

        def extractive() -> Answer:
            return self._extractive(retriever).answer(question, query, hits)

        if self.llm is None:
            answer = extractive()
            if self.llm_problem:
                answer.note = f"{self.llm_problem}. Answered extractively."
        else:
            answerer = GroundedAnswerer(self.llm, self.settings, retriever.embed_texts, extractive, self._llm_lock)
            answer = None
            for item in answerer.stream(question, query, hits):
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
