"""The dense (FAISS) index of one segment: exact below a size, IVF-Flat above it; memory-mapped on load.

Below `Settings.ann_min_vectors` vectors the index is exact: `IndexIDMap2` over `IndexFlatIP` (inner product
on normalised vectors = cosine). At or above it, the same `IndexIDMap2` wraps an `IndexIVFFlat`: the vectors
are clustered into `ivf_lists` lists by k-means and a query scans the `ivf_nprobe` lists whose centroids are
nearest. IVF-Flat was chosen over HNSW from the curve of bench/ann_curve.py (README, "Scale"): on 100,000
text vectors it reached recall@10 0.995 at 0.23 ms a query (nprobe 32) after a 17 s build, where HNSW needed
a 58 s build (M 32, efConstruction 100) for 0.991 at 0.29 ms and 15% more memory for its graph. The build
time is paid whenever a segment that large is written (a full build, a merge); IVF's is the shorter.

`IndexIDMap2` keeps the store's own ids (that only grow) and `reconstruct(id)`, which ingest and merges use to
copy stored vectors (a renamed file, a merged segment); under it the IVF has a direct map for reconstruct.
Nothing is ever removed from a written index: a deleted chunk is an id the store's search skips.

Loading memory-maps the vectors (`IO_FLAG_MMAP_IFC`: the flat codes and the IVF lists are used in place in
the file, not copied), so opening an index costs the id map; the vectors' pages are read when a search
touches them and are shared by every process that opened the file. The store never rewrites a published
file (a segment is immutable), so a mapping stays valid, and a segment deleted while mapped stays
readable until it is unmapped (POSIX unlink semantics).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import faiss
import numpy as np

if TYPE_CHECKING:
    from rag.settings import Settings

TRAIN_SEED = 14  # the k-means sample is drawn with it, so a rebuild of the same vectors gives the same lists


@dataclass(frozen=True)
class DenseParams:
    """The settings that shape a dense index (see `Settings.ann_min_vectors`, `ivf_*`)."""

    ann_min_vectors: int
    ivf_lists: int
    ivf_nprobe: int
    ivf_train_per_list: int

    @classmethod
    def from_settings(cls, settings: Settings) -> DenseParams:
        return cls(settings.ann_min_vectors, settings.ivf_lists, settings.ivf_nprobe, settings.ivf_train_per_list)

    @classmethod
    def exact(cls) -> DenseParams:
        """Exact search at any size (what the store wrote before ANN existed)."""
        return cls(ann_min_vectors=2**62, ivf_lists=0, ivf_nprobe=1, ivf_train_per_list=1)

    def lists_for(self, count: int) -> int:
        """`ivf_lists`, or when 0 the power of two nearest 4 x sqrt(count) (1,024 at 100,000; 4,096 at 1M)."""
        return self.ivf_lists or 2 ** round(math.log2(4 * math.sqrt(max(count, 1))))


def build(dimension: int, ids: np.ndarray, vectors: np.ndarray, params: DenseParams) -> faiss.IndexIDMap2:
    """An id-mapped inner-product index of `vectors` (rows, normalised) under `ids`: exact, or IVF-Flat from
    `params.ann_min_vectors` vectors on (its k-means trained on a seeded sample of the vectors)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if len(ids) >= params.ann_min_vectors:
        lists = min(params.lists_for(len(ids)), len(ids))
        inner = faiss.IndexIVFFlat(faiss.IndexFlatIP(dimension), dimension, lists, faiss.METRIC_INNER_PRODUCT)
        sample = min(len(ids), lists * params.ivf_train_per_list)
        rows = np.sort(np.random.default_rng(TRAIN_SEED).choice(len(ids), sample, replace=False))
        inner.train(vectors[rows])
        inner.nprobe = params.ivf_nprobe
        inner.make_direct_map()  # reconstruct(id), which ingest uses to carry vectors over
    else:
        inner = faiss.IndexFlatIP(dimension)
    index = faiss.IndexIDMap2(inner)
    if len(ids):
        index.add_with_ids(vectors, np.asarray(ids, dtype=np.int64))
    return index


def read(path: Path, mmap: bool = True) -> faiss.Index:
    """Open a written index; its vectors memory-mapped unless `mmap` is False. Raises faiss's RuntimeError
    for a truncated or foreign file (the store turns it into IndexCorrupt)."""
    index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC if mmap else 0)
    kind_of(index)  # an index type this module never writes means a foreign file
    return index


def kind_of(index: faiss.Index) -> str:
    """'exact' or 'ivf': what `build` made (shown by `rag bench --scale`)."""
    inner = faiss.downcast_index(faiss.downcast_index(index).index)
    if isinstance(inner, faiss.IndexIVFFlat):
        return "ivf"
    if isinstance(inner, faiss.IndexFlat):
        return "exact"
    raise RuntimeError(f"unexpected dense index type {type(inner).__name__}")


def excluding(ids: np.ndarray) -> tuple[faiss.IDSelector, faiss.IDSelector]:
    """A selector of every id but `ids` for `search` (build it once: it copies the ids into a hash set). The
    first element owns the ids and must stay referenced while the second is used."""
    batch = faiss.IDSelectorBatch(np.ascontiguousarray(ids, dtype=np.int64))
    return batch, faiss.IDSelectorNot(batch)


def search(index: faiss.Index, query: np.ndarray, k: int, nprobe: int | None = None,
           exclude: tuple[faiss.IDSelector, faiss.IDSelector] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (scores, ids) of each query row; `nprobe` (the setting) overrides the lists scanned that were
    written at build time (exact indexes ignore it); `exclude` (from `excluding`) skips those ids inside the
    scan, so deleted chunks cost no extra depth however many there are."""
    query = np.ascontiguousarray(np.atleast_2d(query), dtype=np.float32)
    ivf = kind_of(index) == "ivf"
    selector = exclude[1] if exclude is not None else None
    if ivf and (nprobe is not None or selector is not None):
        nprobe = nprobe or faiss.downcast_index(faiss.downcast_index(index).index).nprobe
        return index.search(query, k, params=faiss.SearchParametersIVF(nprobe=nprobe, sel=selector))
    if selector is not None:
        return index.search(query, k, params=faiss.SearchParameters(sel=selector))
    return index.search(query, k)
