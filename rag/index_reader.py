"""What a reader needs from a loaded index: the one interface the Retriever (and eval, bench) are typed against.

Two back ends stand behind it: `rag.store.IndexSnapshot` (segments on local disk) and a distributed engine's
snapshot. Everything is keyed by the store's integer chunk id (ids only grow; never reused); text and vectors
are fetched per chunk on demand, so a back end never has to hold the corpus in Python objects.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from rag.chunking import Chunk
    from rag.store import Manifest


@runtime_checkable
class IndexReader(Protocol):
    """One immutable, loaded index version."""

    version: str
    manifest: Manifest

    def chunk_count(self) -> int:
        """Live chunks."""
        ...

    def chunk(self, chunk_id: int) -> Chunk:
        """The chunk with this id (KeyError if it is not live)."""
        ...

    def iter_chunks(self) -> Iterator[tuple[int, Chunk]]:
        """Every live chunk in chunk order (document, then position: `store.chunk_order`)."""
        ...

    def dense_search(self, vector: np.ndarray, k: int, nprobe: int | None) -> list[tuple[int, float]]:
        """The k nearest live chunks to a normalised query vector: (id, cosine), best first. `nprobe` overrides
        the lists an approximate index scans (None: as written)."""
        ...

    def keyword_search(self, tokens: list[str], k: int) -> list[tuple[int, float]]:
        """BM25 over live chunks for already tokenised query terms (`store.bm25_tokens`): (id, score), score > 0
        only, best first; scores equal a fresh build's of the same chunks."""
        ...

    def term_stats(self) -> tuple[Mapping[str, int], int]:
        """(document frequency of each stemmed BM25 term over live chunks, live chunk count), computed at ingest."""
        ...

    def sentence_rows(self, chunk_id: int) -> list[tuple[int, int, np.ndarray]]:
        """The chunk's sentences as split and embedded at ingest: (start, end in chunk text, vector); empty
        when the index holds none for it."""
        ...

    def word_vectors(self, words: Sequence[str]) -> dict[str, np.ndarray]:
        """The embeddings (made once at ingest) of those of `words` that are corpus words, in one lookup."""
        ...

    def vector(self, chunk_id: int) -> np.ndarray:
        """The chunk's stored embedding."""
        ...
