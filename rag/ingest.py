"""The only writer of index/: diff the corpus against the manifest and embed only what changed.

`plan` compares corpus/ with the manifest by content hash. Unchanged files stay where they are (their
segment, their ids); a file renamed, or copied, with identical bytes reuses the vectors of the identical
indexed file; new and changed files are parsed, chunked and embedded (identical new files once). The
chunks of new, changed, renamed and copied files become one new segment; those of deleted and changed files
become deleted ids. The result is written as a new version and published atomically (see store.py), so
readers never see a half-built index; then small segments are merged (`_merge`).

One writer at a time: `writer_lock` holds an flock on index/ingest.lock, which names the owner's pid.
The kernel drops the flock when its owner dies, even by `kill -9`, so a lock file left behind is stale
by definition and the next writer takes it over (with a warning); pid reuse cannot fake an owner.
A second writer fails at once with "another ingest (pid N) ..." unless asked to wait for the lock.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import itertools
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rag import backends, store
from rag.chunking import Chunk, Chunker, DocumentTooLong
from rag.dense import DenseParams
from rag.embedding import Embedder, load_embedder
from rag.loaders import LoadError, LoadOptions, SkippedFile, doc_id_for, hash_bytes, scan_corpus
from rag.parsing import Job, parse_files
from rag.language import get_language
from rag.settings import Settings

log = logging.getLogger(__name__)

LOCK = "ingest.lock"

Progress = Callable[[float, str], None]


class IngestError(Exception):
    """Nothing could be indexed, or another writer holds the lock; the message says what to do."""


class LockBusy(IngestError):
    """Another live process (or thread) is writing the index."""

    def __init__(self, message: str, owner: int | None) -> None:
        super().__init__(message)
        self.owner = owner


@dataclass
class IngestReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    renamed: list[tuple[str, str]] = field(default_factory=list)  # (old, new)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)
    embedded_chunks: int = 0
    embedded_sentences: int = 0
    seconds: float = 0.0
    version: str | None = None
    published: bool = False  # a new version was written and made live
    rebuilt: str | None = None  # why everything was re-embedded, if it was
    cleaned: list[str] = field(default_factory=list)  # leftovers of crashed writers that were deleted
    merged: list[list[str]] = field(default_factory=list)  # segments merged after publishing, one list a merge

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed or self.renamed)

    def summary(self) -> str:
        """"added 2, updated 1, removed 1, unchanged 40 in 0.4 s (renamed 0, skipped 0, 5 chunks embedded)"."""
        return (
            f"added {len(self.added)}, updated {len(self.updated)}, removed {len(self.removed)}, "
            f"unchanged {len(self.unchanged)} in {self.seconds:.1f} s "
            f"(renamed {len(self.renamed)}, skipped {len(self.skipped)}, {self.embedded_chunks} chunks embedded)"
        )


def _read_pid(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


@contextmanager
def writer_lock(index_dir: Path, wait: float = 0.0) -> Iterator[int | None]:
    """Hold index/ingest.lock; yield the pid of a dead owner whose lock was taken over, if any.

    Raises LockBusy naming the owner's pid when another process or thread holds it for `wait` seconds.
    """
    index_dir.mkdir(parents=True, exist_ok=True)
    path = index_dir / LOCK
    deadline = time.monotonic() + wait
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read_pid(fd)
            os.close(fd)
            if time.monotonic() < deadline:
                time.sleep(0.1)
                continue
            raise LockBusy(
                f"another ingest (pid {owner or 'unknown'}) is writing {index_dir}: wait for it to finish and "
                "run `rag ingest` again (the index it publishes stays usable meanwhile)",
                owner,
            ) from None
        # The previous owner unlinks the file on release: make sure we locked the file that is there now.
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    stale = _read_pid(fd)
    if stale is not None:
        log.warning("took over the ingest lock %s left by pid %s, which is no longer running", path, stale)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    try:
        yield stale
    finally:
        path.unlink(missing_ok=True)  # before unlocking, so a waiting writer re-opens a fresh file
        os.close(fd)


def _unreadable(doc_id: str, err: OSError) -> SkippedFile:
    return SkippedFile(doc_id, f"cannot read the file ({err.strerror}): check it exists and is readable")


@dataclass
class Plan:
    """What corpus/ holds compared with the manifest, by content hash; nothing parsed or embedded yet."""

    files: dict[str, tuple[Path, str]]  # doc_id -> (path, sha256) of every readable supported file
    unchanged: list[str]
    renamed: dict[str, str]  # new doc_id -> the deleted doc_id with the same bytes
    reuse: dict[str, str]  # doc_id (added or updated) -> an indexed doc_id with the same bytes (a copy)
    load: list[str]  # new or changed doc_ids whose bytes are not indexed anywhere: parse and embed
    removed: list[str]
    skipped: list[SkippedFile]  # unsupported types and unreadable files


def plan(corpus_dir: Path, documents: dict[str, store.DocumentEntry]) -> Plan:
    """Classify every file in corpus/ against the indexed `documents` (raises LoadError for a bad folder)."""
    paths, skipped = scan_corpus(corpus_dir)
    files: dict[str, tuple[Path, str]] = {}
    for path in paths:
        doc_id = doc_id_for(path, corpus_dir)
        try:
            files[doc_id] = (path, store.sha256_file(path))
        except OSError as err:  # vanished or unreadable since the scan: skip it, keep the rest
            skipped.append(_unreadable(doc_id, err))
    unchanged = [d for d, (_, h) in files.items() if d in documents and documents[d].content_hash == h]
    gone_by_hash: dict[str, list[str]] = {}
    for doc_id in sorted(set(documents) - set(files)):
        gone_by_hash.setdefault(documents[doc_id].content_hash, []).append(doc_id)
    indexed_by_hash = {entry.content_hash: doc_id for doc_id, entry in sorted(documents.items())}
    renamed: dict[str, str] = {}
    reuse: dict[str, str] = {}
    load: list[str] = []
    for doc_id in sorted(set(files) - set(unchanged)):
        digest = files[doc_id][1]
        if doc_id not in documents and gone_by_hash.get(digest):
            renamed[doc_id] = gone_by_hash[digest].pop(0)
        elif digest in indexed_by_hash:
            reuse[doc_id] = indexed_by_hash[digest]
        else:
            load.append(doc_id)
    removed = sorted(set(documents) - set(files) - set(renamed.values()))
    return Plan(files, sorted(unchanged), renamed, reuse, load, removed, skipped)


def _previous_state(
    settings: Settings, embedder: Embedder | None, rebuild: bool
) -> tuple[store.Manifest | None, store.IndexSnapshot | None, str | None]:
    """The live manifest (for the diff and next_id), the snapshot to copy vectors from, and why, if
    there is no snapshot to copy from although there is an index, everything is re-embedded."""
    try:
        manifest = backends.read_manifest(settings)
    except store.IndexProblem as err:
        log.warning("re-embedding everything: %s", err)
        return None, None, str(err)
    if manifest is None:
        return None, None, None
    if rebuild:
        return manifest, None, "rebuild requested"
    try:
        snapshot = backends.load_for_update(settings)
    except store.IndexUnavailable:
        raise  # not a reason to re-embed: the writer could not write either
    except store.IndexProblem as err:
        log.warning("re-embedding everything: %s", err)
        return manifest, None, str(err)
    if embedder is not None and snapshot.manifest.dimension != embedder.dimension:
        return manifest, None, "embedder dimension changed"
    return snapshot.manifest, snapshot, None


def ingest(
    settings: Settings,
    *,
    rebuild: bool = False,
    embedder: Embedder | None = None,
    progress: Progress | None = None,
    wait: float = 0.0,
) -> IngestReport:
    """Bring index/ in line with corpus/.

    Raises LockBusy when another writer holds the lock for `wait` seconds, and IngestError when the
    corpus folder is unusable or a first build finds nothing indexable (an existing index is then left
    as it is; an index whose documents were all deleted is emptied, since it must match the folder).
    The embedder is loaded only if something has to be chunked or embedded.
    """
    started = time.perf_counter()
    if not settings.corpus_dir.is_dir():  # fail before writer_lock creates index/
        try:
            scan_corpus(settings.corpus_dir)  # raises the loader's message for a missing folder or a file
        except LoadError as err:
            raise IngestError(str(err)) from err
    try:
        with writer_lock(settings.index_dir, wait):
            store.pause_point("locked")
            cleaned = backends.cleanup(settings)
            if cleaned:
                log.warning("removed leftovers of an interrupted ingest in %s: %s", settings.index_dir,
                            ", ".join(cleaned))
            try:
                report = _ingest_locked(settings, rebuild, embedder, progress)
            except store.IndexUnavailable as err:
                raise IngestError(f"{err}; the index already there is unchanged") from err
            report.cleaned = cleaned
    except OSError as err:  # corpus files that cannot be read are skipped inside: this is about index/
        if not _writing_index(err, settings.index_dir):
            raise
        raise IngestError(cannot_write(settings.index_dir, err)) from err
    report.seconds = time.perf_counter() - started
    return report


def _writing_index(err: OSError, index_dir: Path) -> bool:
    """A full disk or read-only file system (only index/ is written here), or an error on a path in index/."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS):
        return True
    return err.filename is not None and Path(os.fsdecode(err.filename)).resolve().is_relative_to(index_dir.resolve())


def cannot_write(index_dir: Path, err: OSError) -> str:
    """One line for a failed write to index/ (full disk, read-only folder): the folder, the cause, the fix."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        fix = "free some space on its disk"
    elif err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = "make it writable for this user, or point --index / RAG_INDEX_DIR at a writable folder"
    else:
        fix = "check the folder and its disk"
    reason = err.strerror or type(err).__name__
    return (f"cannot write the index in {index_dir} ({reason}): {fix}, then run `rag ingest` again; "
            "the index already there is unchanged and still answers")


def _ingest_locked(
    settings: Settings, rebuild: bool, embedder: Embedder | None, progress: Progress | None
) -> IngestReport:
    report = IngestReport()

    def tell(fraction: float, message: str) -> None:
        if progress:
            progress(fraction, message)

    tell(0.0, f"comparing {settings.corpus_dir} with the index")
    old_manifest, previous, report.rebuilt = _previous_state(settings, embedder, rebuild)
    documents = old_manifest.documents if old_manifest else {}
    try:
        diff = plan(settings.corpus_dir, documents)
    except LoadError as err:
        raise IngestError(str(err)) from err
    store.pause_point("planned")
    report.skipped = list(diff.skipped)
    report.unchanged = list(diff.unchanged)
    report.removed = list(diff.removed)
    next_id = old_manifest.next_id if old_manifest else 0
    now = time.time()

    kept: dict[str, store.DocumentEntry] = {}
    chunks: dict[int, Chunk] = {}  # the chunks of the new segment
    vectors: dict[int, np.ndarray] = {}

    def place(doc_id: str, digest: str, pages: int, indexed_at: float, parts: list[tuple[Chunk, np.ndarray]]) -> None:
        """Put one document's chunks (renamed to `doc_id`) and vectors into the new segment, under new ids."""
        nonlocal next_id
        ids = list(range(next_id, next_id + len(parts)))
        next_id += len(parts)
        for position, (faiss_id, (chunk, vector)) in enumerate(zip(ids, parts)):
            chunks[faiss_id] = dataclasses.replace(chunk, chunk_id=f"{doc_id}#{position}", source=doc_id)
            vectors[faiss_id] = vector
        kept[doc_id] = store.DocumentEntry(digest, ids, pages, indexed_at)

    def indexed_parts(source: str) -> list[tuple[Chunk, np.ndarray]]:
        assert previous is not None
        return [(previous.chunk(i), previous.vector(i)) for i in previous.manifest.documents[source].chunk_ids]

    if previous is not None:
        for doc_id in diff.unchanged:  # stays in its segment, under its ids
            kept[doc_id] = documents[doc_id]
        for doc_id, source in diff.renamed.items():  # same vectors, new chunk records (their source changed)
            entry = documents[source]
            place(doc_id, entry.content_hash, entry.pages, entry.indexed_at, indexed_parts(source))
            report.renamed.append((source, doc_id))
        for doc_id, source in diff.reuse.items():
            place(doc_id, documents[source].content_hash, documents[source].pages, now, indexed_parts(source))
            (report.added if doc_id not in documents else report.updated).append(doc_id)
        to_load = diff.load
    else:  # nothing to copy vectors from: everything in the folder is embedded again
        to_load = sorted(diff.files)
        report.renamed = sorted((old, new) for new, old in diff.renamed.items())

    loaded = _load_and_embed(settings, diff, to_load, previous, embedder, report, tell)
    report.skipped.sort(key=lambda s: s.path)
    for doc_id in to_load:
        if doc_id not in loaded:  # skipped: it vanished or no longer parses
            if doc_id in report.unchanged:
                report.unchanged.remove(doc_id)
            if doc_id in documents:
                report.removed.append(doc_id)
            continue
        digest, pages, parts = loaded[doc_id]
        place(doc_id, digest, pages, now, parts)
        if previous is None and (doc_id in diff.unchanged or doc_id in diff.renamed):
            continue  # reported as unchanged / renamed above
        (report.added if doc_id not in documents else report.updated).append(doc_id)
    for names in (report.added, report.updated, report.removed, report.renamed):
        names.sort()

    if not kept and old_manifest is None:
        reasons = "; ".join(f"{s.path}: {s.reason}" for s in report.skipped) or "the folder has no documents"
        raise IngestError(
            f"nothing could be indexed from {settings.corpus_dir} ({reasons}). "
            f"Add .txt, .md, .pdf or .html files to {settings.corpus_dir} and run `rag ingest` again."
        )
    if not kept:
        log.warning("no document in %s could be indexed: the index is now empty", settings.corpus_dir)

    skipped_json = [{"path": s.path, "reason": s.reason} for s in report.skipped]
    skipped_hashes = {d: diff.files[d][1] for d in (s.path for s in report.skipped) if d in diff.files}
    same_skips = old_manifest is not None and old_manifest.skipped == skipped_json
    if previous is not None and not report.changed and same_skips:
        report.version = previous.version
        tell(1.0, "the index already matches the folder")
        return report
    tell(0.9, "writing the new index version")
    dimensions = {len(v) for v in vectors.values()} or {old_manifest.dimension if old_manifest else 0}
    if len(dimensions) > 1:
        raise IngestError(
            f"the embedder {settings.embed_model!r} now gives vectors of another size than the index holds "
            f"({sorted(dimensions)}): run `rag ingest --rebuild`"
        )
    dimension = dimensions.pop()
    manifest = store.Manifest(
        signature=settings.index_signature(),
        dimension=dimension,
        documents=kept,
        skipped=skipped_json,
        next_id=next_id,
        skipped_hashes=skipped_hashes,
    )
    segment = None
    if chunks:
        order = sorted(chunks, key=lambda i: store.chunk_order(chunks[i]))
        rows = [chunks[i] for i in order]
        spans, sentence_vectors = _sentence_index(settings, rows, previous, embedder, dimension, report, tell)
        words, word_vectors = _vocabulary(settings, rows, previous, embedder, dimension)
        segment = store.SegmentData(np.array(order, dtype=np.int64), rows, np.stack([vectors[i] for i in order]),
                                    spans, sentence_vectors, words, word_vectors)
    dense_params = DenseParams.from_settings(settings)
    tell(0.95, "writing and publishing")
    report.version = backends.write_and_publish(settings, previous, manifest, segment, dense_params)
    report.published = True
    if settings.store_backend == "local":  # Milvus compacts its own segments
        report.merged = _merge(settings, dense_params)
    if report.merged:
        report.version = store.current_version(settings.index_dir)
    tell(1.0, "done")
    return report


def _merge(settings: Settings, dense_params: DenseParams) -> list[list[str]]:
    """Merge segments as the tiered policy says (see Settings.segment_merge_*), each merge published as its own
    version; the live chunks do not change, only how many segments hold them. Returns the merged groups."""
    policy = store.MergePolicy(settings.segment_merge_factor, settings.segment_merge_floor,
                               settings.segment_max_deleted)
    language = get_language(settings.language)
    merged: list[list[str]] = []
    for _ in range(16):  # each merge leaves fewer segments or fewer deleted rows; a bound all the same
        snapshot = store.load(settings.index_dir, settings.index_signature(), verify_checksums=False)
        names = policy.plan(snapshot.manifest.segments)
        if not names:
            break
        version = store.merge(settings.index_dir, snapshot, names, language.corpus_words, dense_params)
        store.publish(settings.index_dir, version)
        merged.append(names)
        del snapshot
    return merged


def document_embedder(settings: Settings, embedder: Embedder | None) -> Embedder:
    """What embeds documents: `embedder` (tests pass one) or this process's model, or with
    settings.embed_backend='ray' the same model on Ray actors (rag/ray_embed.py), which reuse `embedder` to tokenize."""
    if settings.embed_backend == "ray":
        from rag.ray_embed import ray_embedder

        return ray_embedder(settings, embedder)  # type: ignore[return-value]  (the Embedder interface)
    return embedder or load_embedder(settings.embed_model)


def _load_and_embed(
    settings: Settings,
    diff: Plan,
    doc_ids: list[str],
    previous: store.IndexSnapshot | None,
    embedder: Embedder | None,
    report: IngestReport,
    tell: Progress,
) -> dict[str, tuple[str, int, list[tuple[Chunk, np.ndarray]]]]:
    """Parse, chunk and embed these documents: doc_id -> (sha256, pages, [(chunk, vector)]).

    Bytes are read once more here and hashed again, so the hash recorded is of the bytes indexed even if
    the file changed since `plan`; a file that vanished or no longer parses is added to report.skipped.
    Identical files are chunked once, and a chunk whose exact text is already in `previous` keeps that
    vector: an edit near the end of a long document re-embeds only the chunks it touched.
    Files are parsed in worker processes (rag.parsing: any parser failure, time-out or memory overrun
    skips that file) while this process chunks and embeds the files already parsed.
    """
    if not doc_ids:
        return {}
    doc_digest: dict[str, str] = {}  # doc_id -> sha256 of the bytes read for parsing
    queued: set[str] = set()

    def jobs() -> Iterator[Job]:
        for doc_id in doc_ids:
            path = diff.files[doc_id][0]
            try:
                data = path.read_bytes()
            except OSError as err:
                report.skipped.append(_unreadable(doc_id, err))
                continue
            digest = hash_bytes(data)
            doc_digest[doc_id] = digest
            if digest not in queued:  # identical files are parsed and chunked once
                queued.add(digest)
                yield doc_id, path, data

    results = parse_files(jobs(), settings.corpus_dir, LoadOptions.from_settings(settings),
                          workers=settings.parse_workers, timeout_s=settings.parse_timeout_s,
                          memory_mb=settings.parse_memory_mb, total=len(doc_ids))
    tell(0.05, f"parsing {len(doc_ids)} files")
    first = next(results, None)  # starts the workers; they parse on while the embedder loads
    if first is None:
        return {}
    embedder = document_embedder(settings, embedder)
    chunker = Chunker(embedder.tokenize, settings.chunk_tokens, settings.chunk_overlap, embedder.max_tokens,
                      max_document_chars=settings.max_document_chars)

    indexed: dict[str, np.ndarray | None] = {}  # chunk text -> its vector in `previous`, if it has one

    def look_up(doc_chunks: list[Chunk]) -> None:
        """Which of a document's chunk texts `previous` holds, asked for all of them at once."""
        asked = [c.text for c in doc_chunks if c.text not in indexed]
        found = previous.indexed_vectors(asked) if previous is not None and asked else {}
        indexed.update((text, found.get(text)) for text in asked)

    by_digest: dict[str, tuple[int, list[Chunk]]] = {}
    texts: list[str] = []  # new chunk texts in first-seen order, embedded in batches as parsing goes on
    queued_texts: set[str] = set()
    vectors: list[np.ndarray] = []
    embedded = parsed = pages = 0
    batch = settings.embed_batch_size

    def embed(final: bool) -> None:
        """Embed full batches of the texts queued so far (and the rest when `final`). Fixed batches of
        consecutive texts in first-seen order: the same batches, so the same vectors, as a serial run."""
        nonlocal embedded
        while len(texts) - embedded >= batch or (final and embedded < len(texts)):
            vectors.append(embedder.embed(texts[embedded : embedded + batch], batch_size=batch))
            embedded = min(embedded + batch, len(texts))
            store.pause_point("embedding")

    for doc_id, outcome in itertools.chain([first], results):
        parsed += 1
        if isinstance(outcome, SkippedFile):
            report.skipped.append(outcome)
            continue
        try:
            doc_chunks = chunker.chunk(outcome)
        except DocumentTooLong as err:  # more text than RAG_MAX_DOCUMENT_CHARS: skipped, the rest goes on
            log.warning("skipped %s: %s", doc_id, err)
            report.skipped.append(SkippedFile(doc_id, str(err)))
            continue
        pages += len(outcome.pages)
        by_digest[outcome.content_hash] = (len(outcome.pages), doc_chunks)
        look_up(doc_chunks)
        for chunk in doc_chunks:
            if chunk.text not in queued_texts and indexed[chunk.text] is None:
                queued_texts.add(chunk.text)
                texts.append(chunk.text)
        embed(final=False)
        tell(0.05 + 0.8 * parsed / max(len(queued), 1),
             f"parsed {parsed}/{len(queued)} files ({pages} pages), embedded {embedded} chunks")
    embed(final=True)
    tell(0.9, f"parsed {parsed} files ({pages} pages), embedded {embedded} chunks")
    report.embedded_chunks = len(texts)
    matrix = np.concatenate(vectors) if vectors else np.zeros((0, embedder.dimension), np.float32)
    vector_of = dict(zip(texts, matrix))

    def vector(text: str) -> np.ndarray:
        return vector_of[text] if text in vector_of else indexed[text]

    parts_of = {digest: [(c, vector(c.text)) for c in doc_chunks] for digest, (_, doc_chunks) in by_digest.items()}
    return {d: (h, by_digest[h][0], parts_of[h]) for d, h in doc_digest.items() if h in by_digest}


def _sentence_index(
    settings: Settings,
    chunks: list[Chunk],
    previous: store.IndexSnapshot | None,
    embedder: Embedder | None,
    dimension: int,
    report: IngestReport,
    tell: Progress,
) -> tuple[np.ndarray, np.ndarray]:
    """Split the new segment's chunks (in row order) into sentences and embed each sentence once, for the
    answerer: returns (spans: row, start, end; vectors).

    A chunk whose exact text is in the previous version keeps its sentences and their vectors; a
    sentence whose exact text was indexed before keeps its vector; only new sentences are embedded.
    """
    language = get_language(settings.language)
    spans: list[tuple[int, int, int]] = []
    sources: list[np.ndarray | int] = []  # a vector from `previous`, or a position in `texts`
    texts: dict[str, int] = {}
    # Looked up in two batches (chunks, then the sentences of chunks not found) rather than text by text.
    reused = previous.indexed_sentence_rows([c.text for c in chunks]) if previous is not None else {}
    split = {c.text: language.split_sentences(c.text) for c in chunks if not reused.get(c.text)}
    asked = [text[start:end] for text, spans_of in split.items() for start, end in spans_of]
    known = previous.sentence_vectors(asked) if previous is not None and asked else {}
    for row, chunk in enumerate(chunks):
        text = chunk.text
        if reused.get(text):
            pieces = [(start, end, vector) for start, end, vector in reused[text]]
        else:
            pieces = []
            for start, end in split[text]:
                vector = known.get(text[start:end])
                pieces.append((start, end, vector if vector is not None else texts.setdefault(text[start:end], len(texts))))
        for start, end, source in pieces:
            spans.append((row, start, end))
            sources.append(source)
    new_vectors = np.zeros((0, dimension), np.float32)
    if texts:
        embedder = document_embedder(settings, embedder)
        tell(0.9, f"embedding {len(texts)} sentences")
        new_vectors = embedder.embed(list(texts), batch_size=settings.embed_batch_size)
    report.embedded_sentences = len(texts)
    matrix = np.zeros((len(sources), dimension), np.float32)
    for row, source in enumerate(sources):
        matrix[row] = new_vectors[source] if isinstance(source, int) else source
    return np.array(spans, np.int32).reshape(-1, 3), matrix


def _vocabulary(
    settings: Settings,
    chunks: list[Chunk],
    previous: store.IndexSnapshot | None,
    embedder: Embedder | None,
    dimension: int,
) -> tuple[list[str], np.ndarray]:
    """The words of the new segment's chunks (see `English.corpus_words`) with their vectors, so the answerer
    compares a question word with a sentence's words without a model call; words the previous version had
    keep their vectors, only new words are embedded."""
    language = get_language(settings.language)
    words = sorted({w for chunk in chunks for w in language.corpus_words(chunk.text)})
    known = previous.word_vectors(words) if previous is not None else {}
    new = [w for w in words if w not in known]
    vectors = np.zeros((len(words), dimension), np.float32)
    if new:
        embedder = document_embedder(settings, embedder)
        fresh = dict(zip(new, embedder.embed(new, batch_size=max(settings.embed_batch_size, 256))))
    for row, word in enumerate(words):
        vectors[row] = known[word] if word in known else fresh[word]
    return words, vectors


def check(settings: Settings) -> list[str]:
    """Drift between corpus/ and the live index, as human-readable lines; empty when they match.

    Reads only: the manifest, the index files' checksums, and the corpus files' hashes.
    """
    try:
        manifest = backends.read_manifest(settings)
        if manifest is None:
            return [f"no index in {backends.record_dir(settings)}: run `rag ingest`"]
        store.check_signature(manifest, settings.index_signature())
        backends.verify(settings, manifest)
    except store.IndexProblem as err:
        return [str(err)]
    try:
        diff = plan(settings.corpus_dir, manifest.documents)
    except LoadError as err:
        return [str(err)]
    problems = []
    for doc_id in diff.load + sorted(diff.reuse):
        if doc_id in manifest.documents:
            problems.append(f"changed: {doc_id}")
        elif manifest.skipped_hashes.get(doc_id) != diff.files[doc_id][1]:
            problems.append(f"new: {doc_id}")  # skipped files count once they change
    problems += [f"renamed: {old} -> {new}" for new, old in sorted(diff.renamed.items())]
    problems += [f"deleted: {doc_id}" for doc_id in diff.removed]
    problems += [f"unreadable: {s.path} ({s.reason})" for s in diff.skipped if s.path in manifest.documents]
    return sorted(problems, key=lambda line: line.split(": ", 1)[1])
