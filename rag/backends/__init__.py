"""The store back ends behind one set of calls, chosen by `Settings.store_backend`.

'local' is rag/store.py (FAISS + files in index_dir); 'milvus' is rag/backends/milvus.py (chunks, vectors,
sentences and words in Milvus; the manifest in index_dir/milvus). Ingest, the Assistant and `rag ingest
--check` call these functions, so neither knows which back end holds the index: readers get a
rag.index_reader.IndexReader, the writer gets the live version's reader, whose text-keyed lookups reuse vectors, and hands over
only the new segment and the manifest (the removed chunks are those it no longer lists).
"""

from __future__ import annotations

from pathlib import Path

from rag import store
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
    """The live version for ingest: its manifest, and the batched text-keyed lookups (indexed_vectors,
    indexed_sentence_rows, sentence_vectors, word_vectors) and chunk/vector reads through which unchanged texts
    keep their vectors."""
    if settings.store_backend == "milvus":
        from rag.backends import milvus

        return milvus.open_reader(settings)  # type: ignore[return-value]  (the same reader methods)
    return store.load(settings.index_dir, settings.index_signature())


def cleanup(settings: Settings) -> list[str]:
    """Remove what crashed writers left (unpublished versions, CURRENT.tmp files; in Milvus, rows no published
    version holds); only the lock holder calls it."""
    removed = store.cleanup(record_dir(settings))
    if settings.store_backend == "milvus":
        from rag.backends import milvus

        removed += milvus.cleanup_rows(settings)
    return removed


def verify(settings: Settings, manifest: store.Manifest) -> None:
    """Every file of the live version is present and intact (raises store.IndexCorrupt naming the file)."""
    version = live_version(settings)
    assert version is not None
    if settings.store_backend == "milvus":
        from rag.backends import milvus

        milvus.verify(settings, version, manifest)
        return
    store.verify_files(settings.index_dir, version, manifest)


def write_and_publish(
    settings: Settings,
    previous: store.IndexSnapshot | None,
    manifest: store.Manifest,
    new: store.SegmentData | None,
    dense_params: DenseParams,
) -> str:
    """Make the version `manifest` describes live and return its name: the chunks of `previous` that the manifest
    no longer lists are removed, the `new` segment's rows added. Local: a new segment and version
    (store.write_change), published atomically. Milvus: new rows upserted, then the manifest published, then
    removed rows deleted (see milvus.write)."""
    if settings.store_backend == "milvus":
        from rag.backends import milvus

        return milvus.write(settings, previous, manifest, new)  # type: ignore[arg-type]
    version = store.write_change(settings.index_dir, previous, manifest, new, dense_params)
    store.pause_point("written")
    store.publish(settings.index_dir, version)
    return version
