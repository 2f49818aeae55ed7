"""The only writer of index/: diff the corpus against the manifest and embed only what changed.

New and changed files are parsed, chunked and embedded; unchanged files keep their chunks and vectors;
a file renamed with identical bytes keeps its vectors under its new name; deleted files drop out.
The result is written as a new version and published atomically (see store.py).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rag import store
from rag.chunking import Chunk, Chunker
from rag.embedding import Embedder, load_embedder
from rag.loaders import LoadError, SkippedFile, doc_id_for, hash_bytes, load_document, scan_corpus
from rag.settings import Settings

log = logging.getLogger(__name__)

LOCK = "ingest.lock"

Progress = Callable[[float, str], None]


class IngestError(Exception):
    """Nothing could be indexed, or another writer holds the lock; the message says what to do."""


@dataclass
class IngestReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    renamed: list[tuple[str, str]] = field(default_factory=list)  # (old, new)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)
    embedded_chunks: int = 0
    seconds: float = 0.0
    version: str | None = None
    rebuilt: str | None = None  # why everything was re-embedded, if it was

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed or self.renamed)

    def summary(self) -> str:
        text = (
            f"added {len(self.added)}, updated {len(self.updated)}, removed {len(self.removed)}, "
            f"renamed {len(self.renamed)}, unchanged {len(self.unchanged)}, skipped {len(self.skipped)} "
            f"in {self.seconds:.1f} s ({self.embedded_chunks} chunks embedded)"
        )
        return text


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def writer_lock(index_dir: Path):
    """One writer at a time: an O_EXCL lock file holding the owner's pid; a dead owner's lock is taken over."""
    index_dir.mkdir(parents=True, exist_ok=True)
    path = index_dir / LOCK
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                owner = int(path.read_text().strip() or 0)
            except (OSError, ValueError):
                owner = 0
            if owner and _pid_alive(owner) and owner != os.getpid():
                raise IngestError(
                    f"another ingest (pid {owner}) is writing {index_dir}: wait for it to finish "
                    f"(or, if no ingest is running, delete {path})"
                ) from None
            log.warning("taking over stale ingest lock %s left by pid %s, which is no longer running", path, owner)
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(str(os.getpid()))
        break
    else:
        raise IngestError(f"could not take the ingest lock {path}: delete it if no ingest is running")
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def _previous_state(settings: Settings, embedder: Embedder, rebuild: bool) -> tuple[store.IndexSnapshot | None, str | None]:
    """The live snapshot to reuse vectors from, or None with the reason everything is re-embedded."""
    if rebuild:
        return None, "rebuild requested"
    try:
        snapshot = store.load(settings.index_dir, settings.index_signature())
    except store.IndexNotFound:
        return None, None
    except store.IndexProblem as err:
        log.warning("re-embedding everything: %s", err)
        return None, str(err)
    if snapshot.manifest.dimension != embedder.dimension:
        return None, "embedder dimension changed"
    return snapshot, None


def ingest(
    settings: Settings,
    *,
    rebuild: bool = False,
    embedder: Embedder | None = None,
    progress: Progress | None = None,
) -> IngestReport:
    """Bring index/ in line with corpus/. Raises IngestError when nothing at all could be indexed."""
    started = time.perf_counter()
    embedder = embedder or load_embedder(settings.embed_model)
    chunker = Chunker(embedder.tokenize, settings.chunk_tokens, settings.chunk_overlap, embedder.max_tokens)
    report = IngestReport()

    def tell(fraction: float, message: str) -> None:
        if progress:
            progress(fraction, message)

    with writer_lock(settings.index_dir):
        try:
            files, report.skipped = scan_corpus(settings.corpus_dir)
        except LoadError as err:
            raise IngestError(str(err)) from err
        previous, report.rebuilt = _previous_state(settings, embedder, rebuild)
        old_docs = previous.manifest.documents if previous else {}
        old_by_hash = {entry.content_hash: doc_id for doc_id, entry in old_docs.items()}
        next_id = previous.manifest.next_id if previous else 0

        kept: dict[str, store.DocumentEntry] = {}
        chunks: dict[int, Chunk] = {}
        vectors: dict[int, np.ndarray] = {}
        to_embed: list[tuple[str, list[Chunk]]] = []
        pages_of: dict[str, int] = {}
        seen_hashes: set[str] = set()

        for n, path in enumerate(files):
            tell(0.4 * n / max(len(files), 1), f"reading {path.name}")
            doc_id = doc_id_for(path, settings.corpus_dir)
            try:
                data = path.read_bytes()
            except OSError as err:  # vanished or unreadable since the scan: skip it, keep the rest
                report.skipped.append(SkippedFile(doc_id, f"cannot read the file ({err.strerror}): check it exists and is readable"))
                continue
            digest = hash_bytes(data)
            old_entry = old_docs.get(doc_id)
            reuse_from = doc_id if old_entry and old_entry.content_hash == digest else old_by_hash.get(digest)
            if previous and reuse_from is not None and reuse_from in old_docs and digest not in seen_hashes:
                entry = old_docs[reuse_from]
                new_ids = []
                for position, faiss_id in enumerate(entry.chunk_ids):
                    old = previous.chunks[faiss_id]
                    chunks[faiss_id] = Chunk(f"{doc_id}#{position}", doc_id, old.page, old.start, old.end, old.text)
                    vectors[faiss_id] = previous.vector(faiss_id)
                    new_ids.append(faiss_id)
                kept[doc_id] = store.DocumentEntry(digest, new_ids, entry.pages, entry.indexed_at)
                seen_hashes.add(digest)
                if reuse_from == doc_id:
                    report.unchanged.append(doc_id)
                else:
                    report.renamed.append((reuse_from, doc_id))
                continue
            try:
                document = load_document(path, settings.corpus_dir, data)
            except LoadError as err:
                log.warning("skipped %s: %s", doc_id, err)
                report.skipped.append(SkippedFile(doc_id, str(err)))
                continue
            doc_chunks = chunker.chunk(document)
            to_embed.append((digest, doc_chunks))
            pages_of[doc_id] = len(document.pages)
            seen_hashes.add(digest)
            (report.updated if doc_id in old_docs else report.added).append(doc_id)

        renamed_from = {old for old, _ in report.renamed}
        report.removed = sorted(d for d in old_docs if d not in kept and d not in pages_of and d not in renamed_from)

        texts = [c.text for _, doc_chunks in to_embed for c in doc_chunks]
        tell(0.4, f"embedding {len(texts)} chunks")
        new_vectors = _embed_with_progress(embedder, texts, settings.embed_batch_size, tell)
        report.embedded_chunks = len(texts)
        row = 0
        now = time.time()
        for digest, doc_chunks in to_embed:
            ids = []
            for chunk in doc_chunks:
                chunks[next_id] = chunk
                vectors[next_id] = new_vectors[row]
                ids.append(next_id)
                next_id += 1
                row += 1
            doc_id = doc_chunks[0].source if doc_chunks else None
            if doc_id is not None:
                kept[doc_id] = store.DocumentEntry(digest, ids, pages_of[doc_id], now)

        if not kept:
            reasons = "; ".join(f"{s.path}: {s.reason}" for s in report.skipped) or "the folder has no documents"
            raise IngestError(
                f"nothing could be indexed from {settings.corpus_dir} ({reasons}). "
                f"Add .txt, .md, .pdf or .html files to {settings.corpus_dir} and run `rag ingest` again."
            )

        skipped_json = [{"path": s.path, "reason": s.reason} for s in report.skipped]
        same_skips = previous is not None and previous.manifest.skipped == skipped_json
        if previous is not None and not report.changed and same_skips:
            report.version = previous.version
        else:
            tell(0.9, "writing index")
            manifest = store.Manifest(
                signature=settings.index_signature(),
                dimension=embedder.dimension,
                documents=kept,
                skipped=skipped_json,
                next_id=next_id,
            )
            ids = np.array(sorted(chunks), dtype=np.int64)
            matrix = np.stack([vectors[i] for i in ids]) if len(ids) else np.zeros((0, embedder.dimension), np.float32)
            report.version = store.write_version(settings.index_dir, manifest, ids, matrix, chunks)
            store.publish(settings.index_dir, report.version)
        tell(1.0, "done")
    report.seconds = time.perf_counter() - started
    return report


def _embed_with_progress(embedder: Embedder, texts: list[str], batch_size: int, tell: Progress) -> np.ndarray:
    """Embed in batches so a UI progress bar moves; sentence-transformers' own bar only reaches a terminal."""
    parts = []
    for start in range(0, len(texts), batch_size):
        parts.append(embedder.embed(texts[start : start + batch_size], batch_size=batch_size))
        tell(0.4 + 0.5 * min(start + batch_size, len(texts)) / len(texts), f"embedded {min(start + batch_size, len(texts))}/{len(texts)} chunks")
    return np.concatenate(parts) if parts else np.zeros((0, embedder.dimension), np.float32)


def check(settings: Settings) -> list[str]:
    """Drift between corpus/ and the live index, as human-readable lines; empty when they match."""
    manifest = store.read_manifest(settings.index_dir, list(settings.index_signature()))
    if manifest is None:
        return [f"no index in {settings.index_dir}"]
    problems = []
    if manifest.signature != settings.index_signature():
        problems.append(f"built with {manifest.signature}, settings say {settings.index_signature()}")
    try:
        files, _ = scan_corpus(settings.corpus_dir)
    except LoadError as err:
        return [str(err)]
    skipped = {s["path"] for s in manifest.skipped}
    on_disk = {}
    for path in files:
        doc_id = doc_id_for(path, settings.corpus_dir)
        try:
            on_disk[doc_id] = hash_bytes(path.read_bytes())
        except OSError:
            continue
    for doc_id, digest in sorted(on_disk.items()):
        entry = manifest.documents.get(doc_id)
        if entry is None and doc_id not in skipped:
            problems.append(f"new: {doc_id}")
        elif entry is not None and entry.content_hash != digest:
            problems.append(f"changed: {doc_id}")
    for doc_id in sorted(set(manifest.documents) - set(on_disk)):
        problems.append(f"deleted: {doc_id}")
    return problems
