"""Hybrid retrieval: dense (FAISS) and BM25 rankings, and the candidates they return ranked again by their best
sentence, fused by reciprocal rank on chunk id; then the sentences inside the top chunks scored as evidence.

Dense search finds paraphrases, BM25 finds rare exact terms (names, numbers); reciprocal rank fusion
combines their orders without calibrating their incomparable scores. A chunk's vector averages all its
sentences, so a chunk holding one sentence that answers the question ranks below chunks that are about the
question's subject throughout; the best-sentence ranking (sentence vectors were embedded at ingest) lifts it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from rag import store
from rag.chunking import Chunk
from rag.embedding import Embedder
from rag.index_reader import IndexReader
from rag.language import get_language
from rag.settings import Settings


@dataclass(frozen=True)
class Hit:
    chunk_id: int  # FAISS id
    chunk: Chunk
    score: float  # fused
    dense_rank: int | None
    bm25_rank: int | None
    dense_score: float | None
    sentence_rank: int | None = None  # rank of the chunk's best sentence among the candidates' best sentences


@dataclass(frozen=True)
class Sentence:
    """A sentence inside a retrieved chunk, with its span in the page text."""

    hit: Hit
    text: str
    start: int
    end: int
    previous: str = ""  # the sentence before it in the chunk: where "it" in this one is usually named


class Retriever:
    def __init__(self, snapshot: IndexReader, embedder: Embedder, settings: Settings) -> None:
        self.snapshot = snapshot
        self.embedder = embedder
        self.settings = settings

    @property
    def document_frequency(self) -> tuple[Mapping[str, int], int]:
        """Stemmed-term document frequencies over chunks: how informative a question word is here (stored at
        ingest, never re-tokenised here)."""
        df, n = self.snapshot.term_stats()
        return df, max(n, 1)

    def idf(self, term: str) -> float:
        df, n = self.document_frequency
        return math.log(1 + (n - df.get(term, 0) + 0.5) / (df.get(term, 0) + 0.5))

    def is_common(self, term: str) -> bool:
        """A stemmed term in most chunks: the corpus's own subject ("dongguan" in a corpus about it)."""
        df, n = self.document_frequency
        return df.get(term, 0) > n / 2

    def search(self, query: str, k: int | None = None) -> list[Hit]:
        k = k or self.settings.candidates
        snapshot = self.snapshot
        n = snapshot.chunk_count()
        if n == 0:
            return []
        depth = min(self.settings.candidates, n)
        query_vector = self.embed_texts([query])[0]  # cached: the answerer compares sentences with it too
        dense = snapshot.dense_search(query_vector, depth, self.settings.ivf_nprobe)
        tokens = store.bm25_tokens([query], self.settings.language)[0]
        bm25_ranked = [cid for cid, _ in snapshot.keyword_search(tokens, depth)] if tokens else []

        fused: dict[int, float] = {}
        dense_rank = {cid: rank for rank, (cid, _) in enumerate(dense, start=1)}
        bm25_rank = {cid: rank for rank, cid in enumerate(bm25_ranked, start=1)}
        for cid, rank in dense_rank.items():
            fused[cid] = fused.get(cid, 0.0) + self.settings.dense_weight / (self.settings.rrf_k + rank)
        for cid, rank in bm25_rank.items():
            fused[cid] = fused.get(cid, 0.0) + self.settings.bm25_weight / (self.settings.rrf_k + rank)
        # Equal fused scores are common (dense rank 1 + BM25 rank 2 ties with 2 + 1). Break ties by document
        # and position, never by FAISS id: ids differ between an incremental and a fresh build of one folder.
        chunks = {cid: snapshot.chunk(cid) for cid in fused}
        sentence_rank: dict[int, int] = {}
        if self.settings.sentence_weight:
            sentence_rank = {cid: rank for rank, cid in enumerate(self._by_best_sentence(chunks, query_vector), start=1)}
            for cid, rank in sentence_rank.items():
                fused[cid] += self.settings.sentence_weight / (self.settings.rrf_k + rank)
        dense_score = dict(dense)
        ordered = sorted(fused, key=lambda cid: (-fused[cid], store.chunk_order(chunks[cid])))[:k]
        return [
            Hit(cid, chunks[cid], fused[cid], dense_rank.get(cid), bm25_rank.get(cid), dense_score.get(cid),
                sentence_rank.get(cid))
            for cid in ordered
        ]

    def _by_best_sentence(self, chunks: dict[int, Chunk], query_vector: np.ndarray) -> list[int]:
        """The chunks ordered by the highest cosine between the query and one of their sentences (their vectors
        from the index: nothing is embedded here). Overlapping chunks share sentences, so ties are common: they
        go by document and position, as in `search`. A chunk the index holds no sentences for ranks last."""
        best: dict[int, float] = {}
        for cid in chunks:
            rows = self._sentence_rows(cid)
            best[cid] = float((np.stack([vector for _, _, vector in rows]) @ query_vector).max()) if rows else -1.0
        return sorted(chunks, key=lambda cid: (-best[cid], store.chunk_order(chunks[cid])))

    def sentences(self, hits: list[Hit]) -> list[Sentence]:
        """Every sentence of the given chunks, each once (overlapping chunks share sentences), as the index
        split them at ingest; their vectors become known to `embed_texts`."""
        seen: set[tuple[str, int | None, int]] = set()
        result: list[Sentence] = []
        for hit in hits:
            chunk = hit.chunk
            previous = ""
            for start, end in self._sentence_spans(hit.chunk_id, chunk.text):
                key = (chunk.source, chunk.page, chunk.start + start)
                text = chunk.text[start:end]
                if key not in seen:
                    seen.add(key)
                    result.append(Sentence(hit, text, chunk.start + start, chunk.start + end, previous))
                previous = text
        return result

    def _sentence_rows(self, chunk_id: int) -> list[tuple[int, int, np.ndarray]]:
        """The index's sentence rows of a chunk, read once per retriever: search ranks every candidate by them,
        then the answerer reads the top chunks' again. A version's rows never change; the retriever is per
        version."""
        rows = self._rows.get(chunk_id)
        if rows is None:
            if len(self._rows) > 2_000:  # about 50 questions of candidates
                self._rows.clear()
            rows = self._rows[chunk_id] = self.snapshot.sentence_rows(chunk_id)
        return rows

    def _sentence_spans(self, chunk_id: int, text: str) -> list[tuple[int, int]]:
        """Sentence spans in the chunk's `text`; their vectors become known to `embed_texts`."""
        rows = self._sentence_rows(chunk_id)
        if not rows:  # an index with no sentences for this chunk: split now, embed on demand
            return get_language(self.settings.language).split_sentences(text)
        for start, end, vector in rows:
            self._sentence_vectors.setdefault(text[start:end], vector)
        return [(start, end) for start, end, _ in rows]

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """Embeddings for short texts (sentences, words). Corpus sentences and words were embedded at ingest
        and are looked up; anything else (the query, a question's words) is embedded once and cached."""
        sentences = self._sentence_vectors
        cache = self._cache
        found = {t: sentences[t] for t in texts if t in sentences}
        unknown = [t for t in dict.fromkeys(texts) if t not in found and t not in cache]
        # Words in one lookup: a call to a remote store costs milliseconds.
        found |= self.snapshot.word_vectors(unknown)
        missing = [t for t in unknown if t not in found]
        if missing:
            for text, vector in zip(missing, self.embedder.embed(missing)):
                cache[text] = vector
            if len(cache) > 50_000:
                for key in list(cache)[: len(cache) // 2]:
                    del cache[key]
        if not texts:
            return np.zeros((0, self.embedder.dimension), np.float32)
        return np.stack([found[t] if t in found else cache[t] for t in texts])

    @cached_property
    def _sentence_vectors(self) -> dict[str, np.ndarray]:
        """Sentence text -> its vector from the index, for the chunks `sentences` has read so far."""
        return {}

    @cached_property
    def _rows(self) -> dict[int, list[tuple[int, int, np.ndarray]]]:
        return {}

    @cached_property
    def _cache(self) -> dict[str, np.ndarray]:
        return {}
