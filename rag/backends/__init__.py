"""The store back ends behind one set of calls, chosen by `Settings.store_backend`.

'local' is rag/store.py (FAISS + files in index_dir); 'milvus' is rag/backends/milvus.py (chunks, vectors,
sentences and words in Milvus; the manifest in index_dir/milvus). Ingest, the Assistant and `rag ingest
--check` call these functions, so neither knows which back end holds the index: readers get a
rag.index_reader.IndexReader, the writer gets a store.IndexSnapshot of the live version to reuse vectors from.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rag import store
from rag.chunking import Chunk
from rag.dense import DenseParams
from rag.index_reader import IndexReader
from rag.settings import Settings


def record_dir(settings: Settings) -> Path:
    """The folder holding CURRENT and versions/<name>/manifest.json for this back end."""
    if settings.store_backend == "milvus":
        from rag.backends import milvus

        return milvus.record_dir(settings)
    return settings.index_dir


def live_version(settings: Settings) -> str | None:
    """The name of the live version, or None when nothing was ever published (cheap: one small file)."""
    return store.current_version(record_dir(settings))


def read_manifest(settings: Settings) -> store.Manifest | None:
    return store.read_manifest(record_dir(settings), list(settings.index_signature()))


def open_index(settings: Settings) -> IndexReader:
    """The live version for answering (raises store.IndexProblem with the fix when missing, damaged or stale)."""
    if settings.store_backend == "milvus":
        from rag.backends import milvus

        return milvus.open_reader(settings)
    return store.load(settings.index_dir, settings.index_signature())


def load_for_update(settings: Settings) -> store.IndexSnapshot:
    """The live version whole, for ingest to copy unchanged chunks, vectors, sentences and words from."""
    if settings.store_backend == "milvus":
        from rag.backends import milvus

        return milvus.materialise(settings)
    return store.load(settings.index_dir, settings.index_signature())


def cleanup(settings: Settings) -> list[str]:
    """Remove what crashed writers left (unpublished versions, CURRENT.tmp files); only the lock holder calls it."""
    return store.cleanup(record_dir(settings))


def verify(settings: Settings, manifest: store.Manifest) -> None:
    """Every file of the live version is present and intact (raises store.IndexCorrupt naming the file)."""
    version = live_version(settings)
    assert version is not None
    store.verify_files(record_dir(settings) / store.VERSIONS / version, manifest, _required_files(settings))


def _required_files(settings: Settings) -> tuple[str, ...]:
    if settings.store_backend == "milvus":
        from rag.backends import milvus

        return milvus.REQUIRED_FILES
    return store.REQUIRED_FILES


def write_and_publish(
    settings: Settings,
    manifest: store.Manifest,
    ids: np.ndarray,
    vectors: np.ndarray,
    chunks: dict[int, Chunk],
    sentences: store.SentenceIndex,
    vocabulary: store.Vocabulary,
    previous: store.IndexSnapshot | None,
) -> str:
    """Make this the live version and return its name. Local: a whole new version, published atomically.
    Milvus: rows of new chunks first, then the manifest, then old rows deleted (see milvus.write)."""
    if settings.store_backend == "milvus":
        from rag.backends import milvus

        return milvus.write(settings, manifest, ids, vectors, chunks, sentences, vocabulary, previous)
    version = store.write_version(settings.index_dir, manifest, ids, vectors, chunks, sentences, vocabulary,
                                  dense_params=DenseParams.from_settings(settings))
    store.pause_point("written")
    store.publish(settings.index_dir, version)
    return version
