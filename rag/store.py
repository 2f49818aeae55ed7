"""Everything under index/: versioned FAISS + chunk store + BM25 + manifest; atomic publish, checked load.

Layout:
    index/CURRENT              name of the live version (replaced atomically)
    index/versions/<name>/     manifest.json, vectors.faiss, chunks.jsonl, sentences.npz, bm25/
    index/ingest.lock          held by the one writer (see ingest.py)

A version is written completely (under versions/.tmp-<name>), checksummed, fsynced, renamed into place,
and only then named in CURRENT, so a reader sees either the old version or the new one, never a
half-written one. A writer killed at any point leaves CURRENT naming an intact version; its leftovers
(tmp dirs, an unpublished version, a CURRENT.tmp file) are removed by the next writer (`cleanup`).
Old versions are deleted as soon as a new one is published: readers keep their loaded snapshot in
memory, and a reader that read CURRENT just before the switch retries with the new name (`load`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import bm25s
import faiss
import numpy as np
import Stemmer

from rag import dense
from rag.chunking import Chunk
from rag.language import fold

FORMAT_VERSION = 4  # 2: the sentence index (sentences.npz); 3: the corpus's word vectors (words.npz); 4: folded words
# in BM25 and the vocabulary (rag.language.fold)
MANIFEST = "manifest.json"
VECTORS = "vectors.faiss"
CHUNKS = "chunks.jsonl"
SENTENCES = "sentences.npz"
WORDS = "words.npz"
BM25_DIR = "bm25"
CURRENT = "CURRENT"
VERSIONS = "versions"

# Files a version cannot do without; each must have a checksum in the manifest.
REQUIRED_FILES = (VECTORS, CHUNKS, SENTENCES, WORDS, f"{BM25_DIR}/params.index.json")
# How often `load` re-reads CURRENT when the version it names disappears under it (a writer published
# a newer one and deleted the old one between our reading CURRENT and opening the files).
LOAD_ATTEMPTS = 3
PAUSE_ENV = "RAG_TEST_PAUSE_AT"

log = logging.getLogger(__name__)
STEMMER = Stemmer.Stemmer("english")
logging.getLogger("bm25s").setLevel(logging.WARNING)  # bm25s sets DEBUG on import


class IndexProblem(Exception):
    """The index is missing, damaged or built with other settings; the message says how to fix it."""


class IndexNotFound(IndexProblem):
    pass


class IndexMismatch(IndexProblem):
    pass


class IndexCorrupt(IndexProblem):
    pass


class IndexUnavailable(IndexProblem):
    """The store holding the index (a Milvus server, a Milvus Lite file) cannot be reached or opened now."""


def pause_point(stage: str) -> None:
    """Fault-test hook: with RAG_TEST_PAUSE_AT=<stage>[:seconds] the writer says so on stderr and sleeps
    at that stage (default 60 s) so a test can `kill -9` it there. Stages, in order: locked, planned
    (corpus diffed, nothing read for embedding yet), embedding (after each batch), written (version dir
    complete, not published), publishing (CURRENT.tmp written, not renamed), published (CURRENT renamed,
    old versions not yet deleted). Unset, it costs one getenv."""
    spec = os.environ.get(PAUSE_ENV)
    if not spec:
        return
    name, _, seconds = spec.partition(":")
    if name == stage:
        print(f"{PAUSE_ENV}: pid {os.getpid()} paused at {stage}", file=sys.stderr, flush=True)
        time.sleep(float(seconds or 60))


def bm25_tokens(texts: list[str]) -> list[list[str]]:
    """The one tokenizer for BM25, used for chunks at build time and for queries; words are folded
    (rag.language.fold), so "Beyonce" finds "Beyoncé"."""
    return bm25s.tokenize([fold(text) for text in texts], stopwords="en", stemmer=STEMMER, return_ids=False, show_progress=False)


@dataclass
class DocumentEntry:
    content_hash: str
    chunk_ids: list[int]  # FAISS ids, in chunk order
    pages: int
    indexed_at: float

    def to_json(self) -> dict:
        return {"hash": self.content_hash, "chunk_ids": self.chunk_ids, "pages": self.pages, "indexed_at": self.indexed_at}

    @classmethod
    def from_json(cls, data: dict) -> DocumentEntry:
        return cls(data["hash"], list(data["chunk_ids"]), data["pages"], data["indexed_at"])


@dataclass
class Manifest:
    signature: dict  # embed_model, chunk_tokens, chunk_overlap (see Settings.index_signature)
    dimension: int
    documents: dict[str, DocumentEntry]
    skipped: list[dict]  # [{"path", "reason"}] from the last ingest
    next_id: int  # FAISS ids only grow, so a deleted chunk's id is never reused
    checksums: dict[str, str] = field(default_factory=dict)  # file name -> sha256
    # path -> sha256 of files skipped at the last ingest, so `rag ingest --check` notices a fixed file
    skipped_hashes: dict[str, str] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    created_at: float = field(default_factory=time.time)

    @property
    def chunk_count(self) -> int:
        return sum(len(d.chunk_ids) for d in self.documents.values())

    def to_json(self) -> dict:
        return {
            "format_version": self.format_version,
            "created_at": self.created_at,
            **self.signature,
            "dimension": self.dimension,
            "counts": {"documents": len(self.documents), "chunks": self.chunk_count, "skipped": len(self.skipped)},
            "next_id": self.next_id,
            "documents": {k: v.to_json() for k, v in sorted(self.documents.items())},
            "skipped": self.skipped,
            "skipped_hashes": self.skipped_hashes,
            "checksums": self.checksums,
        }

    @classmethod
    def from_json(cls, data: dict, signature_keys: list[str]) -> Manifest:
        return cls(
            signature={k: data.get(k) for k in signature_keys},
            dimension=data["dimension"],
            documents={k: DocumentEntry.from_json(v) for k, v in data["documents"].items()},
            skipped=data.get("skipped", []),
            next_id=data["next_id"],
            checksums=data.get("checksums", {}),
            skipped_hashes=data.get("skipped_hashes", {}),
            format_version=data["format_version"],
            created_at=data.get("created_at", 0.0),
        )


@dataclass
class SentenceIndex:
    """Every sentence of every chunk, embedded once at ingest, so answering never embeds corpus text.

    Rows are grouped by chunk in the stored chunk order; a sentence is `chunk.text[start:end]`.
    Overlapping chunks share sentences, so the same sentence can have two rows (one per chunk).
    """

    chunk_ids: np.ndarray  # int64 (n,): FAISS id of the chunk each sentence is in
    spans: np.ndarray  # int32 (n, 2): start, end in that chunk's text
    vectors: np.ndarray  # float32 (n, dimension), normalised

    @classmethod
    def empty(cls, dimension: int) -> SentenceIndex:
        return cls(np.zeros(0, np.int64), np.zeros((0, 2), np.int32), np.zeros((0, dimension), np.float32))

    @cached_property
    def rows_by_chunk(self) -> dict[int, range]:
        rows: dict[int, range] = {}
        boundaries = np.flatnonzero(np.diff(self.chunk_ids)) + 1
        for start, end in zip(np.r_[0, boundaries], np.r_[boundaries, len(self.chunk_ids)]):
            if end > start:
                rows[int(self.chunk_ids[start])] = range(int(start), int(end))
        return rows

    def save(self, path: Path) -> None:
        with path.open("wb") as fh:
            np.savez(fh, chunk_ids=self.chunk_ids, spans=self.spans, vectors=self.vectors)

    @classmethod
    def load(cls, path: Path) -> SentenceIndex:
        with np.load(path) as data:
            return cls(data["chunk_ids"].astype(np.int64), data["spans"].astype(np.int32),
                       np.ascontiguousarray(data["vectors"], dtype=np.float32))


@dataclass
class Vocabulary:
    """Every word of the corpus, embedded once at ingest: how near a question's word is to a word of
    a sentence ("deals" ~ "agreements") is then a lookup, never a model call per word."""

    words: list[str]  # sorted
    vectors: np.ndarray  # float32 (len(words), dimension), normalised

    @cached_property
    def row_of(self) -> dict[str, int]:
        return {word: row for row, word in enumerate(self.words)}

    def save(self, path: Path) -> None:
        with path.open("wb") as fh:
            np.savez(fh, words=np.array(self.words, dtype=str), vectors=self.vectors)

    @classmethod
    def load(cls, path: Path) -> Vocabulary:
        with np.load(path) as data:
            return cls([str(w) for w in data["words"]], np.ascontiguousarray(data["vectors"], dtype=np.float32))


@dataclass
class IndexSnapshot:
    """One loaded, immutable index version. Readers hold a snapshot; a rebuild never changes it."""

    version: str
    manifest: Manifest
    faiss_index: faiss.IndexIDMap2
    chunks: dict[int, Chunk]  # FAISS id -> chunk
    bm25: bm25s.BM25
    bm25_ids: list[int]  # BM25 row -> FAISS id (rows are in chunks.jsonl order)
    sentences: SentenceIndex
    vocabulary: Vocabulary

    def sentence_text(self, row: int) -> str:
        start, end = self.sentences.spans[row]
        return self.chunks[int(self.sentences.chunk_ids[row])].text[start:end]

    def vector(self, faiss_id: int) -> np.ndarray:
        return self.faiss_index.reconstruct(int(faiss_id))

    # The rag.index_reader.IndexReader methods: what the Retriever reads.
    def chunk_count(self) -> int:
        return len(self.chunks)

    def chunk(self, chunk_id: int) -> Chunk:
        return self.chunks[chunk_id]

    def iter_chunks(self) -> Iterator[tuple[int, Chunk]]:
        return ((i, self.chunks[i]) for i in self.bm25_ids)  # chunks.jsonl is written in chunk order

    def dense_search(self, vector: np.ndarray, k: int, nprobe: int | None) -> list[tuple[int, float]]:
        scores, ids = dense.search(self.faiss_index, vector, k, nprobe)
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]

    def keyword_search(self, tokens: list[str], k: int) -> list[tuple[int, float]]:
        if not tokens or not self.chunks:
            return []
        rows, scores = self.bm25.retrieve([tokens], k=min(k, len(self.bm25_ids)), show_progress=False, n_threads=1)
        return [(self.bm25_ids[int(r)], float(s)) for r, s in zip(rows[0], scores[0]) if s > 0]

    @cached_property
    def _term_stats(self) -> tuple[Counter, int]:
        tokens = bm25_tokens([self.chunks[i].text for i in self.bm25_ids])
        return Counter(t for doc in tokens for t in set(doc)), max(len(tokens), 1)

    def term_stats(self) -> tuple[Mapping[str, int], int]:
        return self._term_stats

    def sentence_rows(self, chunk_id: int) -> list[tuple[int, int, np.ndarray]]:
        index = self.sentences
        return [(int(index.spans[r][0]), int(index.spans[r][1]), index.vectors[r])
                for r in index.rows_by_chunk.get(chunk_id, ())]

    def word_vector(self, word: str) -> np.ndarray | None:
        row = self.vocabulary.row_of.get(word)
        return None if row is None else self.vocabulary.vectors[row]


def sha256_file(path: Path) -> str:
    """sha256 of a file's bytes, read in blocks (index files here, corpus files in ingest)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_tree(root: Path) -> None:
    for path in [*root.rglob("*"), root]:
        _fsync(path)


def _fsync(path: Path) -> None:
    """Flush a file's data or a directory's entries (a rename is durable only once its directory is)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def chunk_order(chunk: Chunk) -> tuple[str, int]:
    """Document, then position: the order rows are stored in. It does not depend on FAISS ids, which
    differ between an incremental and a fresh build, so both store the same rows in the same order."""
    return chunk.source, int(chunk.chunk_id.rsplit("#", 1)[1])


def current_version(index_dir: Path) -> str | None:
    try:
        name = (index_dir / CURRENT).read_text().strip()
    except FileNotFoundError:
        return None
    return name or None


def write_version(
    index_dir: Path,
    manifest: Manifest,
    ids: np.ndarray,
    vectors: np.ndarray,
    chunks: dict[int, Chunk],
    sentences: SentenceIndex,
    vocabulary: Vocabulary,
    *,
    dense_params: dense.DenseParams | None = None,
) -> str:
    """Write a complete new version beside the live one and return its name (not yet published). The dense
    index is shaped by `dense_params` (exact or IVF, see rag/dense.py); None: exact at any size."""
    return new_version(index_dir, lambda tmp: _write_files(tmp, manifest, ids, vectors, chunks, sentences,
                                                           vocabulary, dense_params))


def new_version(index_dir: Path, fill: Callable[[Path], None]) -> str:
    """A new version folder filled by `fill(folder)` (which writes and fsyncs its files), renamed into place
    under versions/ only once complete; returns its name (not yet published). Also used by rag/backends/milvus.py
    for its manifest-only versions."""
    versions = index_dir / VERSIONS
    versions.mkdir(parents=True, exist_ok=True)
    name = f"v{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{time.monotonic_ns() % 10**9:09d}"
    tmp = versions / f".tmp-{name}"
    tmp.mkdir()
    try:
        fill(tmp)
        tmp.rename(versions / name)
        _fsync(versions)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # on a full disk, give the space back at once
        raise
    return name


def _write_files(
    tmp: Path,
    manifest: Manifest,
    ids: np.ndarray,
    vectors: np.ndarray,
    chunks: dict[int, Chunk],
    sentences: SentenceIndex,
    vocabulary: Vocabulary,
    dense_params: dense.DenseParams | None = None,
) -> None:
    order = sorted(chunks, key=lambda i: chunk_order(chunks[i]))  # FAISS rows, chunks.jsonl and BM25 rows
    row_of = {int(faiss_id): row for row, faiss_id in enumerate(ids)}
    index = dense.build(manifest.dimension, np.array(order, dtype=np.int64), vectors[[row_of[i] for i in order]],
                        dense_params or dense.DenseParams.exact())
    # Serialised and written by Python, not faiss.write_index: a full disk is then an OSError with its errno,
    # not a RuntimeError carrying C++ text.
    (tmp / VECTORS).write_bytes(faiss.serialize_index(index).tobytes())

    with (tmp / CHUNKS).open("w", encoding="utf-8") as fh:
        for faiss_id in order:
            fh.write(json.dumps({"id": faiss_id, **chunks[faiss_id].to_json()}, ensure_ascii=False) + "\n")
    retriever = bm25s.BM25()
    tokens = bm25_tokens([chunks[i].text for i in order]) if order else [[]]
    # bm25s cannot index an empty corpus or an all-stopword one; a placeholder token keeps the shapes valid.
    retriever.index([t or ["\x00empty"] for t in tokens], show_progress=False)
    retriever.save(str(tmp / BM25_DIR))
    sentences.save(tmp / SENTENCES)
    vocabulary.save(tmp / WORDS)

    manifest.checksums = {
        p.relative_to(tmp).as_posix(): sha256_file(p) for p in sorted(tmp.rglob("*")) if p.is_file()
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest.to_json(), indent=1, ensure_ascii=False), encoding="utf-8")
    _fsync_tree(tmp)


def publish(index_dir: Path, version: str) -> None:
    """Make `version` live with one atomic rename, then remove versions no reader will open again."""
    tmp = index_dir / f".{CURRENT}.tmp-{os.getpid()}"
    with tmp.open("w") as fh:
        fh.write(version + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    pause_point("publishing")
    os.replace(tmp, index_dir / CURRENT)
    _fsync(index_dir)
    pause_point("published")
    cleanup(index_dir)


def cleanup(index_dir: Path) -> list[str]:
    """Delete every version but the live one, plus leftovers of crashed writers (tmp dirs, unpublished
    versions, CURRENT.tmp files); return what was deleted. Only the lock holder calls this."""
    keep = current_version(index_dir)
    removed = []
    versions = index_dir / VERSIONS
    for path in sorted(versions.iterdir()) if versions.is_dir() else []:
        if path.name != keep:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
    for stray in index_dir.glob(f".{CURRENT}.tmp-*"):
        stray.unlink(missing_ok=True)
        removed.append(stray.name)
    return removed


def read_manifest(index_dir: Path, signature_keys: list[str], version: str | None = None) -> Manifest | None:
    version = version or current_version(index_dir)
    if version is None:
        return None
    path = index_dir / VERSIONS / version / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Manifest.from_json(data, signature_keys)
    except FileNotFoundError as err:
        raise IndexCorrupt(f"{path} is missing: run `rag ingest --rebuild`") from err
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise IndexCorrupt(f"{path} is damaged ({err}): run `rag ingest --rebuild`") from err


def check_signature(manifest: Manifest, expected: dict, dimension: int | None = None) -> None:
    diffs = [f"{k}: index has {manifest.signature.get(k)!r}, settings say {v!r}" for k, v in expected.items()
             if manifest.signature.get(k) != v]
    if dimension is not None and manifest.dimension != dimension:
        diffs.append(f"dimension: index has {manifest.dimension}, embedder gives {dimension}")
    if manifest.format_version != FORMAT_VERSION:
        diffs.append(f"format_version: index has {manifest.format_version}, this code reads {FORMAT_VERSION}")
    if diffs:
        raise IndexMismatch("the index was built with other settings (" + "; ".join(diffs) + "): run `rag ingest`")


def verify_files(root: Path, manifest: Manifest, required: tuple[str, ...] = REQUIRED_FILES) -> None:
    """Every file the manifest lists is present with its checksum, and none the index needs is unlisted."""
    for rel in required:
        if rel not in manifest.checksums:
            raise IndexCorrupt(f"{root / MANIFEST} has no checksum for {rel}: run `rag ingest --rebuild`")
    for rel, digest in manifest.checksums.items():
        path = root / rel
        try:
            actual = sha256_file(path)
        except OSError as err:
            raise IndexCorrupt(f"index file {path} is missing or unreadable ({err.strerror}): "
                               "run `rag ingest --rebuild`") from err
        if actual != digest:
            raise IndexCorrupt(f"index file {path} is damaged (checksum mismatch): run `rag ingest --rebuild`")


def load(index_dir: Path, expected_signature: dict, verify_checksums: bool = True) -> IndexSnapshot:
    """Open the live version, checking that every part is present, intact and built with these settings.

    Never blocks on a writer. If the version named by CURRENT vanishes while we read it (a writer
    published a newer one and deleted it), CURRENT is read again and the newer version loaded.
    """
    version = current_version(index_dir)
    for _ in range(LOAD_ATTEMPTS):
        if version is None:
            raise IndexNotFound(f"no index in {index_dir}: run `rag ingest` to build it from your corpus")
        try:
            return _load_version(index_dir, version, expected_signature, verify_checksums)
        except IndexCorrupt:
            latest = current_version(index_dir)
            if latest == version:
                raise  # really damaged, not replaced
            log.info("index version %s was replaced while being loaded; loading %s", version, latest)
            version = latest
    raise IndexProblem(f"the index in {index_dir} changed {LOAD_ATTEMPTS} times while being loaded: try again")


def _load_version(index_dir: Path, version: str, expected_signature: dict, verify_checksums: bool) -> IndexSnapshot:
    root = index_dir / VERSIONS / version
    manifest = read_manifest(index_dir, list(expected_signature), version)
    assert manifest is not None
    check_signature(manifest, expected_signature)
    if verify_checksums:
        verify_files(root, manifest)
    try:
        faiss_index = dense.read(root / VECTORS)  # memory-mapped
    except Exception as err:  # faiss raises RuntimeError for a truncated or foreign file
        raise IndexCorrupt(f"index file {root / VECTORS} cannot be read ({err}): run `rag ingest --rebuild`") from err
    chunks: dict[int, Chunk] = {}
    try:
        with (root / CHUNKS).open(encoding="utf-8") as fh:
            for line in fh:
                record = json.loads(line)
                faiss_id = record.pop("id")
                chunks[faiss_id] = Chunk.from_json(record)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise IndexCorrupt(f"index file {root / CHUNKS} cannot be read ({err}): run `rag ingest --rebuild`") from err
    try:
        bm25 = bm25s.BM25.load(str(root / BM25_DIR))
    except Exception as err:  # numpy, json and bm25s errors all mean a damaged file
        raise IndexCorrupt(f"index files in {root / BM25_DIR} cannot be read ({err}): run `rag ingest --rebuild`") from err
    try:
        sentences = SentenceIndex.load(root / SENTENCES)
        vocabulary = Vocabulary.load(root / WORDS)
    except Exception as err:  # numpy and zipfile errors all mean a damaged file
        raise IndexCorrupt(f"index files {root / SENTENCES} or {root / WORDS} cannot be read ({err}): "
                           "run `rag ingest --rebuild`") from err
    if faiss_index.ntotal != len(chunks) or len(chunks) != manifest.chunk_count:
        raise IndexCorrupt(
            f"index version {root} is inconsistent ({faiss_index.ntotal} vectors, {len(chunks)} chunks, "
            f"manifest says {manifest.chunk_count}): run `rag ingest --rebuild`"
        )
    return IndexSnapshot(version, manifest, faiss_index, chunks, bm25, list(chunks), sentences, vocabulary)
