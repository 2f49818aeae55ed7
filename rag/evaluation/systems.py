"""The systems under test: the product (`Ours`, the same `Assistant.ask` every front end calls) and a
plain LlamaIndex baseline on the same corpus and embedder."""

from __future__ import annotations

import contextlib
import io
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rag.evaluation.datasets import EvalError
from rag.schema import Answer, Turn
from rag.settings import Settings

RANK_DEPTH = 10  # MRR@10: the fused ranking is read this deep
BASELINE_CHUNK_TOKENS = 1024
BASELINE_TOP_K = 2


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
        self._chunks = {c.chunk_id: c for _, c in self.assistant.snapshot.iter_chunks()}
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
    from rag import backends

    key = json.dumps([str(settings.index_dir.resolve()), backends.live_version(settings),
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


