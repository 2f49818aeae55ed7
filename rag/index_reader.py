"""What the Retriever reads from an index version, whatever stores it (rag/store.py's local snapshot,
rag/backends/milvus.py's reader): the Retriever calls these methods and never touches a store's fields, so a
second store back end is one class with these methods."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Protocol

import numpy as np

from rag.chunking import Chunk

if TYPE_CHECKING:
    from rag.store import Manifest


class IndexReader(Protocol):
    """One immutable index version, read-only."""

    version: str
    manifest: Manifest

    def chunk_count(self) -> int:
        """Chunks in this version."""

    def chunk(self, chunk_id: int) -> Chunk:
        """The chunk with this id (KeyError for an id not in this version)."""

    def iter_chunks(self) -> Iterator[tuple[int, Chunk]]:
        """(id, chunk) of every chunk, in chunk order (store.chunk_order)."""

    def dense_search(self, vector: np.ndarray, k: int, nprobe: int | None) -> list[tuple[int, float]]:
        """The k chunks nearest the normalised `vector`: (id, cosine), best first."""

    def keyword_search(self, tokens: list[str], k: int) -> list[tuple[int, float]]:
        """BM25 over store.bm25_tokens: (id, score) of at most k chunks with score > 0, best first."""

    def term_stats(self) -> tuple[Mapping[str, int], int]:
        """Document frequency of each stemmed BM25 term over chunks, and the chunk count (at least 1)."""

    def sentence_rows(self, chunk_id: int) -> list[tuple[int, int, np.ndarray]]:
        """(start, end, vector) of each sentence of the chunk embedded at ingest, in text order."""

    def word_vector(self, word: str) -> np.ndarray | None:
        """The vector of a corpus word embedded at ingest, or None for a word the corpus does not have."""

    def vector(self, chunk_id: int) -> np.ndarray:
        """The chunk's own vector."""
