"""The dense (FAISS) index of one index version: exact below a size, HNSW above it; memory-mapped on load.

Below `Settings.ann_min_vectors` vectors the index is exact: `IndexIDMap2` over `IndexFlatIP` (inner product
on normalised vectors = cosine). At or above it, the same `IndexIDMap2` wraps an `IndexHNSWFlat`, whose
parameters (M, efConstruction, efSearch) were chosen from the recall@10 / latency curve printed by
bench/ann_curve.py (README, "Scale"). HNSW cannot remove vectors, which is why it sits under `IndexIDMap2`
and why the store writes every version whole (a version is never edited in place, only rebuilt); the
map keeps the store's own ids (that only grow) and `reconstruct(id)`, which ingest uses to carry the
vectors of unchanged files into the next version, works for both kinds.

Loading memory-maps the vectors (`IO_FLAG_MMAP_IFC`: the flat codes of both kinds are read in place from
the file, not copied), so opening an index costs the id map and, for HNSW, the graph's links; the pages of
the vectors are read when a search touches them and are shared by every process that opened the file. The
store never rewrites a published file (a new version is a new folder), so a mapping stays valid, and a
version deleted while mapped stays readable until it is unmapped (POSIX unlink semantics).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import faiss
import numpy as np

if TYPE_CHECKING:
    from rag.settings import Settings


@dataclass(frozen=True)
class DenseParams:
    """The settings that shape a dense index (see `Settings.ann_*`)."""

    ann_min_vectors: int
    hnsw_m: int
    hnsw_ef_construction: int
    hnsw_ef_search: int

    @classmethod
    def from_settings(cls, settings: Settings) -> DenseParams:
        return cls(settings.ann_min_vectors, settings.hnsw_m, settings.hnsw_ef_construction, settings.hnsw_ef_search)

    @classmethod
    def exact(cls) -> DenseParams:
        """Exact search at any size (what the store wrote before ANN existed)."""
        return cls(ann_min_vectors=2**62, hnsw_m=32, hnsw_ef_construction=40, hnsw_ef_search=64)


def build(dimension: int, ids: np.ndarray, vectors: np.ndarray, params: DenseParams) -> faiss.IndexIDMap2:
    """An id-mapped inner-product index of `vectors` (rows, normalised) under `ids`: exact, or HNSW from
    `params.ann_min_vectors` vectors on."""
    if len(ids) >= params.ann_min_vectors:
        inner = faiss.IndexHNSWFlat(dimension, params.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = params.hnsw_ef_construction
        inner.hnsw.efSearch = params.hnsw_ef_search
    else:
        inner = faiss.IndexFlatIP(dimension)
    index = faiss.IndexIDMap2(inner)
    if len(ids):
        index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64))
    return index


def read(path: Path, mmap: bool = True) -> faiss.Index:
    """Open a written index; its vectors memory-mapped unless `mmap` is False. Raises faiss's RuntimeError
    for a truncated or foreign file (the store turns it into IndexCorrupt)."""
    index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC if mmap else 0)
    kind_of(index)  # a foreign index type is a damaged file here
    return index


def kind_of(index: faiss.Index) -> str:
    """'exact' or 'hnsw': what `build` made (shown by `rag bench --scale`)."""
    inner = faiss.downcast_index(faiss.downcast_index(index).index)
    if isinstance(inner, faiss.IndexHNSW):
        return "hnsw"
    if isinstance(inner, faiss.IndexFlat):
        return "exact"
    raise RuntimeError(f"unexpected dense index type {type(inner).__name__}")


def search(index: faiss.Index, query: np.ndarray, k: int, ef_search: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (scores, ids) of each query row; `ef_search` overrides the HNSW breadth written at build time
    (it must be at least k, so it is raised to k). Exact indexes ignore it."""
    query = np.ascontiguousarray(np.atleast_2d(query), dtype=np.float32)
    if ef_search is not None and kind_of(index) == "hnsw":
        params = faiss.SearchParametersHNSW(efSearch=max(ef_search, k))
        return index.search(query, k, params=params)
    return index.search(query, k)
