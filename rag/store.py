"""Everything under index/: immutable segments listed by a manifest per version; atomic publish, checked load.

Layout:
    index/CURRENT              name of the live version (replaced atomically)
    index/versions/<name>/     manifest.json (documents, the live segments with their files' checksums, the
                               deleted chunk ids of each) and terms.json (BM25 statistics over the live chunks)
    index/segments/<name>/     one immutable segment (SEGMENT_FILES): vectors.faiss, chunks.sqlite (chunk text
                               and metadata, word and term lookups), ids.npy, sentences.npy, sentence_spans.npy,
                               words.npy, postings_*.npy, lengths.npy
    index/ingest.lock          held by the one writer (see ingest.py)

An ingest writes one new segment holding the chunks of added, changed and renamed files, and a new version
whose manifest lists the old segments plus the new one; the chunks of removed or changed files become deleted
ids of their segment. So a change costs the size of the change, not of the index. Segments are written whole
(under segments/.tmp-<name>), checksummed, fsynced and renamed into place before the version naming them is
written the same way, and only then named in CURRENT: a reader sees either the old version or the new one.
After publishing, still under the writer lock, small segments are merged (a tiered policy, `merge_plan`) into
one new segment and a new version published; readers keep their snapshot meanwhile. A writer killed at any
point leaves CURRENT naming an intact version; its leftovers (tmp dirs, an unpublished version, segments no
live version lists, a CURRENT.tmp file) are removed by the next writer (`cleanup`). Old versions and
unreferenced segments are deleted as soon as a new version is published: a loaded snapshot has every file of
its segments open (memory maps, an SQLite connection), and POSIX keeps an open file readable after unlink; a
reader that read CURRENT just before the switch retries with the new name (`load`).

Loading reads the manifest and opens the segment files; nothing is parsed into Python objects: vectors are
memory-mapped (FAISS with IO_FLAG_MMAP_IFC, .npy with mmap_mode="r"), chunk text comes from SQLite per chunk
when asked. Checksums (sha256) are computed when a segment is written; `load` compares each file's size and
modification time with what was recorded and hashes only a file where they differ; `rag ingest --check`
(`verify_files`) hashes every file.

BM25 scores equal those of one bm25s index over the live chunks (method "lucene", k1 1.5, b 0.75): each
segment keeps raw postings (term frequencies, chunk lengths), and the global statistics (document frequency
of each term, number and total length of the live chunks) are kept per version in terms.json and updated by
ingest for added and deleted chunks. bm25s precomputes per-posting scores from corpus-wide statistics, so its
indexes cannot be merged or have chunks deleted; scoring the postings here with numpy at query time, with the
same float32/float64 steps as bm25s, keeps the scores exactly equal (tests/test_lifecycle.py).
"""

from __future__ import annotations

import hashlib
import heapq
import json
import logging
import math
import os
import shutil
import sqlite3
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import BinaryIO

import faiss
import numpy as np

from rag import dense
from rag.chunking import Chunk
from rag.language import get_language

FORMAT_VERSION = 5  # 2: sentence index; 3: corpus word vectors; 4: folded words in BM25 and the vocabulary
# (rag.language.fold); 5: segments, SQLite chunk store, .npy vectors
MANIFEST = "manifest.json"
TERMS = "terms.json"
CURRENT = "CURRENT"
VERSIONS = "versions"
SEGMENTS = "segments"
# The files of one segment; each has a checksum, size and mtime in the manifest.
VECTORS = "vectors.faiss"
CHUNKS = "chunks.sqlite"
IDS = "ids.npy"  # int64 (rows,): the chunk id of each row; rows are in chunk order
SENTENCE_VECTORS = "sentences.npy"  # float32 (sentences, dimension)
SENTENCE_SPANS = "sentence_spans.npy"  # int32 (sentences, 3): row of the chunk, start, end in its text
WORD_VECTORS = "words.npy"  # float32 (words, dimension); the words table in chunks.sqlite gives the row
POSTINGS_INDPTR = "postings_indptr.npy"  # int64 (terms + 1): term column -> slice of the two arrays below
POSTINGS_ROWS = "postings_rows.npy"  # int32: rows containing the term, ascending
POSTINGS_TF = "postings_tf.npy"  # float32: how often
LENGTHS = "lengths.npy"  # int32 (rows,): BM25 tokens per row (1 for a chunk with none, as bm25s counts it)
SEGMENT_FILES = (VECTORS, CHUNKS, IDS, SENTENCE_VECTORS, SENTENCE_SPANS, WORD_VECTORS, POSTINGS_INDPTR,
                 POSTINGS_ROWS, POSTINGS_TF, LENGTHS)
# How often `load` re-reads CURRENT when the version it names disappears under it (a writer published
# a newer one and deleted the old one between our reading CURRENT and opening the files).
LOAD_ATTEMPTS = 3
SQL_BATCH = 500  # values per "IN (...)" query, well under SQLite's bound on query parameters
PAUSE_ENV = "RAG_TEST_PAUSE_AT"
# bm25s's defaults (method "lucene"), which the index was built with before segments.
BM25_K1 = 1.5
BM25_B = 0.75
EMPTY_TOKEN = "\x00empty"  # bm25s cannot index a chunk without tokens; it stands in (length 1), as it always has

log = logging.getLogger(__name__)


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
    (corpus diffed, nothing read for embedding yet), embedding (after each batch), written (segment and
    version complete, not published), publishing (CURRENT.tmp written, not renamed), published (CURRENT
    renamed, old versions not yet deleted). Unset, it costs one getenv."""
    spec = os.environ.get(PAUSE_ENV)
    if not spec:
        return
    name, _, seconds = spec.partition(":")
    if name == stage:
        print(f"{PAUSE_ENV}: pid {os.getpid()} paused at {stage}", file=sys.stderr, flush=True)
        time.sleep(float(seconds or 60))


def bm25_tokens(texts: list[str], language: str = "en") -> list[list[str]]:
    """BM25 tokens of these texts, by the language pack's tokenizer (`English.bm25_tokens`); `language` is the
    index's (Settings.language, recorded in the manifest's signature)."""
    return get_language(language).bm25_tokens(texts)


def text_key(text: str) -> int:
    """A 63-bit key of a text for the SQLite lookups of known chunk and sentence texts (the text is compared
    after the lookup, so a collision costs a miss, never a wrong vector)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big") >> 1


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
class SegmentEntry:
    """A segment as a version's manifest lists it."""

    name: str
    rows: int
    min_id: int
    max_id: int
    files: dict[str, dict]  # file name -> {"sha256", "size", "mtime_ns"}, recorded when written
    deleted: list[int] = field(default_factory=list)  # ids of its chunks that are no longer live, sorted

    @property
    def live(self) -> int:
        return self.rows - len(self.deleted)

    def to_json(self) -> dict:
        return {"name": self.name, "rows": self.rows, "min_id": self.min_id, "max_id": self.max_id,
                "deleted": self.deleted, "files": self.files}

    @classmethod
    def from_json(cls, data: dict) -> SegmentEntry:
        return cls(data["name"], data["rows"], data["min_id"], data["max_id"], dict(data["files"]),
                   list(data.get("deleted", [])))


@dataclass
class Manifest:
    signature: dict  # embed_model, chunk_tokens, chunk_overlap (see Settings.index_signature)
    dimension: int
    documents: dict[str, DocumentEntry]
    skipped: list[dict]  # [{"path", "reason"}] from the last ingest
    next_id: int  # FAISS ids only grow, so a deleted chunk's id is never reused
    checksums: dict[str, str] = field(default_factory=dict)  # the version's own files (terms.json) -> sha256
    # path -> sha256 of files skipped at the last ingest, so `rag ingest --check` notices a fixed file
    skipped_hashes: dict[str, str] = field(default_factory=dict)
    segments: list[SegmentEntry] = field(default_factory=list)
    format_version: int = FORMAT_VERSION
    created_at: float = field(default_factory=time.time)

    @property
    def chunk_count(self) -> int:
        return sum(len(d.chunk_ids) for d in self.documents.values())

    def copy_with(self, **changes) -> Manifest:
        """The same manifest for a new version (created now) with `changes`."""
        return replace(self, created_at=time.time(), **changes)

    def to_json(self) -> dict:
        return {
            "format_version": self.format_version,
            "created_at": self.created_at,
            **self.signature,
            "dimension": self.dimension,
            "counts": {"documents": len(self.documents), "chunks": self.chunk_count, "skipped": len(self.skipped),
                       "segments": len(self.segments)},
            "next_id": self.next_id,
            "documents": {k: v.to_json() for k, v in sorted(self.documents.items())},
            "skipped": self.skipped,
            "skipped_hashes": self.skipped_hashes,
            "checksums": self.checksums,
            "segments": [s.to_json() for s in self.segments],
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
            segments=[SegmentEntry.from_json(s) for s in data.get("segments", [])],
            format_version=data["format_version"],
            created_at=data.get("created_at", 0.0),
        )


@dataclass
class TermStats:
    """BM25's corpus statistics over the live chunks: document frequency of each term, chunks, total length."""

    df: dict[str, int] = field(default_factory=dict)
    chunks: int = 0
    length: int = 0

    def add(self, tokens: Iterable[list[str]], sign: int = 1) -> None:
        """Count (sign 1) or uncount (sign -1) chunks given their BM25 tokens."""
        for doc in tokens:
            doc = doc or [EMPTY_TOKEN]
            for term in set(doc):
                count = self.df.get(term, 0) + sign
                if count:
                    self.df[term] = count
                else:
                    del self.df[term]
            self.chunks += sign
            self.length += sign * len(doc)

    def copy(self) -> TermStats:
        return TermStats(dict(self.df), self.chunks, self.length)

    def to_json(self) -> dict:
        return {"chunks": self.chunks, "length": self.length, "df": dict(sorted(self.df.items()))}

    @classmethod
    def from_json(cls, data: dict) -> TermStats:
        return cls(dict(data["df"]), data["chunks"], data["length"])


@dataclass
class SegmentData:
    """What a new segment holds, in memory, before `write_segment`. Rows are in chunk order."""

    ids: np.ndarray  # int64 (rows,)
    chunks: list[Chunk]
    vectors: np.ndarray  # float32 (rows, dimension), normalised
    sentence_spans: np.ndarray  # int32 (sentences, 3): row, start, end; grouped by row, rows ascending
    sentence_vectors: np.ndarray  # float32 (sentences, dimension)
    words: list[str]  # the words of its chunks, each once
    word_vectors: np.ndarray  # float32 (words, dimension)


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


def language_of(manifest: Manifest) -> str:
    """The language pack the index's words were split and stemmed by (Settings.language when it was built)."""
    return str(manifest.signature.get("language", "en"))


def current_version(index_dir: Path) -> str | None:
    try:
        name = (index_dir / CURRENT).read_text().strip()
    except FileNotFoundError:
        return None
    return name or None


def _new_name(prefix: str) -> str:
    return f"{prefix}{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{time.monotonic_ns() % 10**9:09d}"


# --- writing ---------------------------------------------------------------------------------------------

@contextmanager
def _new_folder(parent: Path, prefix: str) -> Iterator[tuple[str, Path]]:
    """(name, tmp folder) to fill; on exit the folder is fsynced and renamed to parent/name, complete or not at
    all. On any error it is removed at once (on a full disk, give the space back)."""
    parent.mkdir(parents=True, exist_ok=True)
    name = _new_name(prefix)
    tmp = parent / f".tmp-{name}"
    tmp.mkdir()
    try:
        yield name, tmp
        _fsync_tree(tmp)
        tmp.rename(parent / name)
        _fsync(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_segment(index_dir: Path, data: SegmentData, dimension: int, language: str,
                  dense_params: dense.DenseParams | None = None) -> tuple[SegmentEntry, TermStats]:
    """Write one immutable segment beside the live ones; return its manifest entry and its chunks' BM25
    statistics (for the version's terms.json). The dense index is shaped by `dense_params` (exact or IVF by
    the segment's size, see rag/dense.py); None: exact at any size."""
    with _new_folder(index_dir / SEGMENTS, "s") as (name, tmp):
        stats = _write_files(tmp, data, dimension, language, dense_params)
        files = {}
        for rel in SEGMENT_FILES:
            info = (tmp / rel).stat()
            files[rel] = {"sha256": sha256_file(tmp / rel), "size": info.st_size, "mtime_ns": info.st_mtime_ns}
    ids = data.ids
    entry = SegmentEntry(name, len(ids), int(ids.min()) if len(ids) else 0, int(ids.max()) if len(ids) else -1, files)
    return entry, stats


def _write_files(tmp: Path, data: SegmentData, dimension: int, language: str,
                 dense_params: dense.DenseParams | None) -> TermStats:
    """The segment's files into `tmp`; returns the BM25 statistics of its chunks."""
    rows = len(data.ids)
    index = dense.build(dimension, np.asarray(data.ids, dtype=np.int64), data.vectors,
                        dense_params or dense.DenseParams.exact())
    # Serialised and written by Python, not faiss.write_index: a full disk is then an OSError with its errno,
    # not a RuntimeError carrying C++ text.
    (tmp / VECTORS).write_bytes(faiss.serialize_index(index).tobytes())
    del index
    _save_npy(tmp / IDS, np.asarray(data.ids, dtype=np.int64))
    _save_npy(tmp / SENTENCE_VECTORS, np.asarray(data.sentence_vectors, dtype=np.float32).reshape(-1, dimension))
    spans = np.asarray(data.sentence_spans, dtype=np.int32).reshape(-1, 3)
    _save_npy(tmp / SENTENCE_SPANS, spans)
    _save_npy(tmp / WORD_VECTORS, np.asarray(data.word_vectors, dtype=np.float32).reshape(-1, dimension))

    # BM25 postings, column per term (CSC): a query reads only its terms' columns.
    tokenized = get_language(language).bm25_tokens([c.text for c in data.chunks], return_ids=True)
    vocab = dict(tokenized.vocab)
    empty = vocab.setdefault(EMPTY_TOKEN, len(vocab))
    docs = [doc or [empty] for doc in tokenized.ids]
    lengths = np.fromiter((len(d) for d in docs), dtype=np.int64, count=rows)
    flat = np.fromiter((t for d in docs for t in d), dtype=np.int64, count=int(lengths.sum()))
    row_of = np.repeat(np.arange(rows, dtype=np.int64), lengths)
    pairs, tf = np.unique(flat * max(rows, 1) + row_of, return_counts=True)  # sorted by term, then row
    columns, post_rows = np.divmod(pairs, max(rows, 1))
    indptr = np.zeros(len(vocab) + 1, dtype=np.int64)
    np.cumsum(np.bincount(columns, minlength=len(vocab)), out=indptr[1:])
    _save_npy(tmp / POSTINGS_INDPTR, indptr)
    _save_npy(tmp / POSTINGS_ROWS, post_rows.astype(np.int32))
    _save_npy(tmp / POSTINGS_TF, tf.astype(np.float32))
    _save_npy(tmp / LENGTHS, lengths.astype(np.int32))
    terms = {term: col for term, col in vocab.items()}
    df = np.diff(indptr)
    stats = TermStats({t: int(df[c]) for t, c in terms.items() if df[c]}, rows, int(lengths.sum()))

    sentence_rows = np.zeros((rows, 2), dtype=np.int64)  # [first, end) sentence of each row
    if len(spans):
        first = np.searchsorted(spans[:, 0], np.arange(rows), side="left")
        last = np.searchsorted(spans[:, 0], np.arange(rows), side="right")
        sentence_rows[:, 0], sentence_rows[:, 1] = first, last
    db = sqlite3.connect(tmp / CHUNKS)
    try:
        db.execute("PRAGMA journal_mode=OFF")  # a new file in a tmp folder: fsynced and renamed when complete
        db.execute("PRAGMA synchronous=OFF")
        db.execute("CREATE TABLE chunks (id INTEGER PRIMARY KEY, row INTEGER NOT NULL, chunk_id TEXT NOT NULL, "
                   "source TEXT NOT NULL, page INTEGER, start_char INTEGER NOT NULL, end_char INTEGER NOT NULL, "
                   "text TEXT NOT NULL, label TEXT, ocr INTEGER NOT NULL, text_key INTEGER NOT NULL, "
                   "sentence_first INTEGER NOT NULL, sentence_end INTEGER NOT NULL)")
        db.executemany(
            "INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ((int(data.ids[r]), r, c.chunk_id, c.source, c.page, c.start, c.end, c.text, c.label, int(c.ocr),
              text_key(c.text), int(sentence_rows[r, 0]), int(sentence_rows[r, 1]))
             for r, c in enumerate(data.chunks)),
        )
        db.execute("CREATE INDEX chunks_by_text ON chunks (text_key)")
        db.execute("CREATE INDEX chunks_by_row ON chunks (row)")
        db.execute("CREATE TABLE sentences (key INTEGER NOT NULL, row INTEGER NOT NULL)")
        db.executemany("INSERT INTO sentences VALUES (?, ?)",
                       ((text_key(data.chunks[r].text[a:b]), i) for i, (r, a, b) in enumerate(spans.tolist())))
        db.execute("CREATE INDEX sentences_by_key ON sentences (key)")
        db.execute("CREATE TABLE words (word TEXT PRIMARY KEY, row INTEGER NOT NULL) WITHOUT ROWID")
        db.executemany("INSERT INTO words VALUES (?, ?)", ((w, i) for i, w in enumerate(data.words)))
        db.execute("CREATE TABLE terms (term TEXT PRIMARY KEY, col INTEGER NOT NULL) WITHOUT ROWID")
        db.executemany("INSERT INTO terms VALUES (?, ?)", terms.items())
        db.commit()
    finally:
        db.close()
    return stats


def _save_npy(path: Path, array: np.ndarray) -> None:
    with path.open("wb") as fh:
        np.save(fh, array, allow_pickle=False)


def write_version(index_dir: Path, manifest: Manifest, stats: TermStats) -> str:
    """Write a new version (manifest + terms.json) naming already written segments; return its name (not yet
    published)."""
    with _new_folder(index_dir / VERSIONS, "v") as (name, tmp):
        (tmp / TERMS).write_text(json.dumps(stats.to_json(), ensure_ascii=False), encoding="utf-8")
        manifest.checksums = {TERMS: sha256_file(tmp / TERMS)}
        # Compact: with `indent` json encodes in Python, seconds for the chunk ids of a million-chunk index.
        (tmp / MANIFEST).write_text(json.dumps(manifest.to_json(), ensure_ascii=False, separators=(",", ":")),
                                    encoding="utf-8")
    return name


def write_change(index_dir: Path, previous: IndexSnapshot | None, manifest: Manifest, new: SegmentData | None,
                 dense_params: dense.DenseParams | None = None) -> str:
    """Write the version that `manifest.documents` describes: the previous version's segments, with the chunks
    no document lists any more marked deleted, plus a segment of `new` chunks (None or empty: none). Returns
    the version's name (not yet published). `previous` None: `new` holds every chunk."""
    live = {i for entry in manifest.documents.values() for i in entry.chunk_ids}
    segments: list[SegmentEntry] = []
    stats = TermStats()
    if previous is not None:
        stats = previous.stats.copy()
        gone = np.array(sorted(set(previous.live_ids()) - live), dtype=np.int64)
        texts = []
        for segment in previous.segments:
            entry = segment.entry
            ids = segment.ids
            in_range = gone[(gone >= entry.min_id) & (gone <= entry.max_id)]
            newly = in_range[np.isin(in_range, ids)] if len(in_range) else in_range
            if len(newly):
                texts += [segment.text_of(int(i)) for i in newly]
            deleted = sorted(set(entry.deleted) | {int(i) for i in newly})
            if len(deleted) < entry.rows:  # a segment with no live chunk left is dropped
                segments.append(SegmentEntry(entry.name, entry.rows, entry.min_id, entry.max_id, entry.files, deleted))
        stats.add(bm25_tokens(texts, language_of(manifest)) if texts else [], sign=-1)
    if new is not None and len(new.ids):
        entry, added = write_segment(index_dir, new, manifest.dimension, language_of(manifest), dense_params)
        segments.append(entry)
        for term, count in added.df.items():
            stats.df[term] = stats.df.get(term, 0) + count
        stats.chunks += added.chunks
        stats.length += added.length
    manifest.segments = segments
    return write_version(index_dir, manifest, stats)


def publish(index_dir: Path, version: str) -> None:
    """Make `version` live with one atomic rename, then remove versions and segments no reader will open again."""
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
    """Delete every version but the live one and every segment it does not list, plus leftovers of crashed
    writers (tmp dirs, unpublished versions and segments, CURRENT.tmp files); return what was deleted
    (segments as "segments/<name>"). Only the lock holder calls this."""
    keep = current_version(index_dir)
    removed = []
    versions = index_dir / VERSIONS
    for path in sorted(versions.iterdir()) if versions.is_dir() else []:
        if path.name != keep:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
    live: set[str] | None = set()
    if keep is not None:
        try:
            data = json.loads((versions / keep / MANIFEST).read_text(encoding="utf-8"))
            live = {s["name"] for s in data.get("segments", [])}
        except (OSError, ValueError, KeyError, TypeError):
            live = None  # the live manifest is unreadable: keep every segment, the next ingest rebuilds
    segments = index_dir / SEGMENTS
    for path in sorted(segments.iterdir()) if segments.is_dir() else []:
        if path.name.startswith(".tmp-") or (live is not None and path.name not in live):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(f"{SEGMENTS}/{path.name}")
    for stray in index_dir.glob(f".{CURRENT}.tmp-*"):
        stray.unlink(missing_ok=True)
        removed.append(stray.name)
    return removed


# --- merging ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MergePolicy:
    """Tiered merging (see Settings.segment_merge_*): a segment's tier is 0 below `floor` live chunks, then
    grows by one each `factor` times more; `factor` segments in one tier are merged into one (of the next
    tier), and a segment with more than `max_deleted` of its rows deleted is rewritten without them."""

    factor: int
    floor: int
    max_deleted: float

    def tier(self, live: int) -> int:
        tier, bound = 0, self.floor
        while live >= bound:  # integers: math.log(30 / 10, 3) is not exactly 1
            tier, bound = tier + 1, bound * self.factor
        return tier

    def plan(self, segments: list[SegmentEntry]) -> list[str]:
        """Names of the segments to merge now (the smallest tier that is full, or the ones mostly deleted);
        empty when nothing needs merging."""
        tiers: dict[int, list[SegmentEntry]] = {}
        for entry in segments:
            tiers.setdefault(self.tier(entry.live), []).append(entry)
        for tier in sorted(tiers):
            if len(tiers[tier]) >= self.factor:
                return [e.name for e in sorted(tiers[tier], key=lambda e: e.live)[: self.factor]]
        return [e.name for e in segments if e.rows and len(e.deleted) / e.rows > self.max_deleted]


def merge(index_dir: Path, snapshot: IndexSnapshot, names: list[str], words_of: Callable[[str], Iterable[str]],
          dense_params: dense.DenseParams | None = None) -> str:
    """Write one segment holding the live chunks of the segments `names` (vectors, sentences and word
    vectors copied, postings rebuilt) and a version listing it instead of them; return the version's name (not
    yet published). The live chunks, their ids and the BM25 statistics are unchanged."""
    chosen = [s for s in snapshot.segments if s.entry.name in names]
    rows = list(heapq.merge(*(s.live_rows() for s in chosen), key=lambda item: chunk_order(item[2])))
    dimension = snapshot.manifest.dimension
    ids = np.array([chunk_id for _, chunk_id, _ in rows], dtype=np.int64)
    vectors = np.zeros((len(rows), dimension), np.float32)
    spans: list[tuple[int, int, int]] = []
    sentence_vectors: list[np.ndarray] = []
    words: dict[str, np.ndarray] = {}
    for row, (segment, chunk_id, chunk) in enumerate(rows):
        vectors[row] = segment.vector_of(chunk_id)
        for start, end, vector in segment.sentences_of(chunk_id):
            spans.append((row, start, end))
            sentence_vectors.append(vector)
        wanted = [word for word in dict.fromkeys(words_of(chunk.text)) if word not in words]
        found = segment.word_vectors_of(wanted)
        words.update((word, found[word]) for word in wanted if word in found)  # in the chunk's word order
    data = SegmentData(ids, [chunk for _, _, chunk in rows], vectors,
                       np.array(spans, np.int32).reshape(-1, 3),
                       np.stack(sentence_vectors) if sentence_vectors else np.zeros((0, dimension), np.float32),
                       list(words), np.stack(list(words.values())) if words else np.zeros((0, dimension), np.float32))
    entry, _ = write_segment(index_dir, data, dimension, language_of(snapshot.manifest), dense_params)
    manifest = snapshot.manifest.copy_with(
        segments=[s for s in snapshot.manifest.segments if s.name not in names] + [entry])
    return write_version(index_dir, manifest, snapshot.stats.copy())


# --- reading ---------------------------------------------------------------------------------------------

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


def _file_checks(index_dir: Path, version: str, manifest: Manifest) -> Iterator[tuple[Path, dict]]:
    """(path, recorded {"sha256", "size"?, "mtime_ns"?}) of every file the version needs."""
    if TERMS not in manifest.checksums:
        raise IndexCorrupt(f"{index_dir / VERSIONS / version / MANIFEST} has no checksum for {TERMS}: "
                           "run `rag ingest --rebuild`")
    yield index_dir / VERSIONS / version / TERMS, {"sha256": manifest.checksums[TERMS]}
    for entry in manifest.segments:
        for rel in SEGMENT_FILES:
            if rel not in entry.files:
                raise IndexCorrupt(f"{index_dir / VERSIONS / version / MANIFEST} has no checksum for "
                                   f"{SEGMENTS}/{entry.name}/{rel}: run `rag ingest --rebuild`")
            yield index_dir / SEGMENTS / entry.name / rel, entry.files[rel]


def _check_file(path: Path, recorded: dict, full: bool) -> None:
    """Raise IndexCorrupt naming `path` unless its bytes are the ones written. Unless `full`, a file whose size
    and modification time are as recorded is taken as written, and only others are hashed."""
    try:
        info = path.stat()
        if not full and info.st_size == recorded.get("size") and info.st_mtime_ns == recorded.get("mtime_ns"):
            return
        actual = sha256_file(path)
    except OSError as err:
        raise IndexCorrupt(f"index file {path} is missing or unreadable ({err.strerror}): "
                           "run `rag ingest --rebuild`") from err
    if actual != recorded["sha256"]:
        raise IndexCorrupt(f"index file {path} is damaged (checksum mismatch): run `rag ingest --rebuild`")


def verify_files(index_dir: Path, version: str, manifest: Manifest) -> None:
    """Every file the version needs is present with its checksum (every byte hashed: `rag ingest --check`)."""
    for path, recorded in _file_checks(index_dir, version, manifest):
        _check_file(path, recorded, full=True)


def load(index_dir: Path, expected_signature: dict, verify_checksums: bool = True) -> IndexSnapshot:
    """Open the live version, checking that every part is present, unchanged since written (size and
    modification time, else its checksum) and built with these settings.

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
    manifest = read_manifest(index_dir, list(expected_signature), version)
    assert manifest is not None
    check_signature(manifest, expected_signature)
    checks = list(_file_checks(index_dir, version, manifest))
    if verify_checksums:
        for path, recorded in checks[1:]:  # terms.json is hashed whenever it is read
            _check_file(path, recorded, full=False)
    segments = [Segment(index_dir / SEGMENTS / entry.name, entry) for entry in manifest.segments]
    live = sum(s.entry.live for s in segments)
    if live != manifest.chunk_count:
        raise IndexCorrupt(f"index version {index_dir / VERSIONS / version} is inconsistent ({live} live chunks "
                           f"in its segments, manifest says {manifest.chunk_count}): run `rag ingest --rebuild`")
    terms_path, recorded = checks[0]
    try:
        terms = terms_path.open("rb")  # opened now, read on first use: a later delete does not take it away
    except OSError as err:
        raise IndexCorrupt(f"index file {terms_path} is missing or unreadable ({err.strerror}): "
                           "run `rag ingest --rebuild`") from err
    return IndexSnapshot(version, manifest, index_dir / VERSIONS / version, segments, terms, recorded["sha256"])


# np.load parses the .npy header with ast.literal_eval, which CPython 3.11 does not make thread-safe (concurrent
# calls raise "SystemError: AST constructor recursion depth mismatch", cpython#106905): readers loading in
# threads (the web app) take turns here. Opening is a header read and an mmap, so the wait is short.
_NPY_LOCK = threading.Lock()


def _npy(path: Path) -> np.ndarray:
    """A segment array memory-mapped (an empty one read: there is nothing to map)."""
    with _NPY_LOCK:
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError:
            return np.load(path, allow_pickle=False)


class Segment:
    """One open segment of a loaded version: every file opened (so a later delete does not take it away),
    nothing read until asked. Row lookups go through SQLite; vectors are memory-mapped."""

    def __init__(self, root: Path, entry: SegmentEntry) -> None:
        self.root = root
        self.entry = entry
        self.deleted = frozenset(entry.deleted)
        try:
            self.dense = dense.read(root / VECTORS)  # memory-mapped
        except Exception as err:  # faiss raises RuntimeError for a truncated or foreign file
            raise IndexCorrupt(f"index file {root / VECTORS} cannot be read ({err}): run `rag ingest --rebuild`") from err
        try:
            # A URI needs an absolute path; the default index folder, "index", is relative to where rag runs.
            self._db = sqlite3.connect(f"{(root / CHUNKS).absolute().as_uri()}?mode=ro&immutable=1", uri=True,
                                       check_same_thread=False)
            self._db.execute("SELECT count(*) FROM sqlite_master").fetchone()  # opens the file now
            self.ids = _npy(root / IDS)
            self.sentence_spans = _npy(root / SENTENCE_SPANS)
            self.sentence_vectors = _npy(root / SENTENCE_VECTORS)
            self.word_vectors = _npy(root / WORD_VECTORS)
            self.indptr = _npy(root / POSTINGS_INDPTR)
            self.post_rows = _npy(root / POSTINGS_ROWS)
            self.post_tf = _npy(root / POSTINGS_TF)
            self.lengths = _npy(root / LENGTHS)
        except (OSError, ValueError, sqlite3.Error) as err:
            raise IndexCorrupt(f"index files in {root} cannot be read ({err}): run `rag ingest --rebuild`") from err
        if self.dense.ntotal != entry.rows or len(self.ids) != entry.rows or len(self.lengths) != entry.rows:
            raise IndexCorrupt(f"index segment {root} is inconsistent ({self.dense.ntotal} vectors, {len(self.ids)} "
                               f"ids, manifest says {entry.rows}): run `rag ingest --rebuild`")
        self._lock = threading.Lock()  # one connection, shared by the threads answering questions

    def query(self, sql: str, args: tuple = ()) -> list[tuple]:
        try:
            with self._lock:
                return self._db.execute(sql, args).fetchall()
        except sqlite3.DatabaseError as err:
            raise IndexCorrupt(f"index file {self.root / CHUNKS} cannot be read ({err}): "
                               "run `rag ingest --rebuild`") from err

    def holds(self, chunk_id: int) -> bool:
        return self.entry.min_id <= chunk_id <= self.entry.max_id

    _CHUNK = "row, chunk_id, source, page, start_char, end_char, text, label, ocr"

    @staticmethod
    def _chunk(record: tuple) -> Chunk:
        _, chunk_id, source, page, start, end, text, label, ocr = record
        return Chunk(chunk_id, source, page, start, end, text, label, bool(ocr))

    def row_of(self, chunk_id: int) -> tuple | None:
        """The chunk's record (row first), deleted or not; None if this segment never held it."""
        if not self.holds(chunk_id):
            return None
        found = self.query(f"SELECT {self._CHUNK} FROM chunks WHERE id = ?", (int(chunk_id),))
        return found[0] if found else None

    def text_of(self, chunk_id: int) -> str:
        return self.query("SELECT text FROM chunks WHERE id = ?", (int(chunk_id),))[0][0]

    def live_rows(self) -> Iterator[tuple[Segment, int, Chunk]]:
        """(self, id, chunk) of every live row, in chunk order."""
        with self._lock:
            cursor = self._db.execute(f"SELECT id, {self._CHUNK} FROM chunks ORDER BY row")
            records = cursor.fetchall()
        for chunk_id, *record in records:
            if chunk_id not in self.deleted:
                yield self, chunk_id, self._chunk(tuple(record))

    def vector_of(self, chunk_id: int) -> np.ndarray:
        return self.dense.reconstruct(int(chunk_id))

    def sentences_of(self, chunk_id: int) -> list[tuple[int, int, np.ndarray]]:
        found = self.query("SELECT sentence_first, sentence_end FROM chunks WHERE id = ?", (int(chunk_id),))
        if not found:
            return []
        first, end = found[0]
        # One read of each memory map, not one per sentence: indexing a memmap row by row is Python work under
        # the GIL, and the threads answering questions then queue behind it.
        spans = np.asarray(self.sentence_spans[first:end])
        vectors = np.asarray(self.sentence_vectors[first:end])
        return [(int(spans[i, 1]), int(spans[i, 2]), vectors[i]) for i in range(end - first)]

    def word_vectors_of(self, words: Sequence[str]) -> dict[str, np.ndarray]:
        """The vectors of those of `words` this segment holds, in one query and one read of the memory map."""
        found: list[tuple[str, int]] = []
        unique = list(dict.fromkeys(words))
        for start in range(0, len(unique), SQL_BATCH):
            part = unique[start : start + SQL_BATCH]
            found += self.query(f"SELECT word, row FROM words WHERE word IN ({','.join('?' * len(part))})", tuple(part))
        if not found:
            return {}
        vectors = np.asarray(self.word_vectors[np.array([row for _, row in found])])
        return {word: vectors[i] for i, (word, _) in enumerate(found)}

    @cached_property
    def exclusion(self) -> tuple | None:
        """FAISS's selector of the live ids (None when none is deleted), built once per loaded segment."""
        return dense.excluding(np.fromiter(self.deleted, np.int64)) if self.deleted else None

    @cached_property
    def deleted_rows(self) -> np.ndarray:
        """Rows of deleted chunks (for masking keyword scores)."""
        if not self.deleted:
            return np.zeros(0, np.int64)
        return np.flatnonzero(np.isin(self.ids, np.fromiter(self.deleted, np.int64)))

    def columns(self, terms: list[str]) -> dict[str, int]:
        unique = sorted(set(terms))
        marks = ",".join("?" * len(unique))
        return dict(self.query(f"SELECT term, col FROM terms WHERE term IN ({marks})", tuple(unique)))


class IndexSnapshot:
    """One loaded, immutable index version (implements rag.index_reader.IndexReader). Readers hold a
    snapshot; an ingest never changes it."""

    def __init__(self, version: str, manifest: Manifest, root: Path, segments: list[Segment], terms: BinaryIO,
                 terms_sha256: str):
        self.version = version
        self.manifest = manifest
        self.root = root
        self.segments = segments
        self._terms = terms
        self._terms_sha256 = terms_sha256
        self._stats_lock = threading.Lock()

    # --- the reader interface (rag/index_reader.py) ---------------------------------------------------
    def chunk_count(self) -> int:
        return self.manifest.chunk_count

    def _find(self, chunk_id: int) -> tuple[Segment, tuple] | None:
        """The segment and record of a chunk, live or deleted (ingest reuses deleted chunks' vectors)."""
        for segment in self.segments:
            record = segment.row_of(chunk_id)
            if record is not None:
                return segment, record
        return None

    def chunk(self, chunk_id: int) -> Chunk:
        found = self._find(chunk_id)
        if found is None or chunk_id in found[0].deleted:
            raise KeyError(chunk_id)
        return Segment._chunk(found[1])

    def iter_chunks(self) -> Iterator[tuple[int, Chunk]]:
        for _, chunk_id, chunk in heapq.merge(*(s.live_rows() for s in self.segments),
                                              key=lambda item: chunk_order(item[2])):
            yield chunk_id, chunk

    def dense_search(self, vector: np.ndarray, k: int, nprobe: int | None) -> list[tuple[int, float]]:
        found: list[tuple[int, float]] = []
        for segment in self.segments:
            depth = min(segment.entry.live, k)
            if depth <= 0:
                continue
            scores, ids = dense.search(segment.dense, vector, depth, nprobe, segment.exclusion)
            found += [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0 and int(i) not in segment.deleted]
        return self._best(found, k)

    def keyword_search(self, tokens: list[str], k: int) -> list[tuple[int, float]]:
        stats = self.stats
        terms = [t for t in tokens if stats.df.get(t, 0) > 0]  # in query order, repeats kept (as bm25s scores)
        if not terms or stats.chunks == 0:
            return []
        idf = {t: np.float32(math.log(1 + (stats.chunks - stats.df[t] + 0.5) / (stats.df[t] + 0.5))) for t in terms}
        average = np.float64(stats.length) / stats.chunks  # what np.mean of the lengths gives
        found: list[tuple[int, float]] = []
        for segment in self.segments:
            if segment.entry.live == 0:
                continue
            columns = segment.columns(terms)
            if not columns:
                continue
            scores = np.zeros(segment.entry.rows, np.float32)
            for term in terms:
                column = columns.get(term)
                if column is None:
                    continue
                start, end = int(segment.indptr[column]), int(segment.indptr[column + 1])
                rows = np.asarray(segment.post_rows[start:end], dtype=np.int64)
                tf = np.asarray(segment.post_tf[start:end])
                # bm25s's steps: float64 length norm, float32 tf, float32 idf, a float32 score per posting
                # summed in float32 in query-term order. A term holds each row once, so += is np.add.at.
                norm = BM25_K1 * ((1 - BM25_B) + BM25_B * segment.lengths[rows].astype(np.float64) / average)
                scores[rows] += (idf[term] * (tf / (norm + tf))).astype(np.float32)
            if len(segment.deleted):
                scores[segment.deleted_rows] = 0
            hits = np.flatnonzero(scores > 0)
            if len(hits) > k:
                hits = hits[np.argpartition(-scores[hits], k - 1)[:k]]
                cut = scores[hits].min()
                hits = np.flatnonzero(scores >= cut)  # every row tied with the k-th, for `_best` to order
            found += [(int(segment.ids[r]), float(scores[r])) for r in hits]
        return self._best(found, k)

    def _best(self, found: list[tuple[int, float]], k: int) -> list[tuple[int, float]]:
        """The k best (id, score), ties in chunk order (never by id: ids differ between an incremental and a
        fresh build of one folder, chunk order does not)."""
        found.sort(key=lambda item: -item[1])
        if len(found) > k:
            cut = found[k - 1][1]
            found = [item for item in found if item[1] >= cut]
        counts = Counter(score for _, score in found)
        if any(n > 1 for n in counts.values()):
            order = {cid: chunk_order(self.chunk(cid)) for cid, score in found if counts[score] > 1}
            found.sort(key=lambda item: (-item[1], order.get(item[0], ("", 0))))
        return found[:k]

    def term_stats(self) -> tuple[Mapping[str, int], int]:
        stats = self.stats
        return stats.df, stats.chunks

    def sentence_rows(self, chunk_id: int) -> list[tuple[int, int, np.ndarray]]:
        found = self._find(chunk_id)
        return found[0].sentences_of(chunk_id) if found else []

    def vector(self, chunk_id: int) -> np.ndarray:
        found = self._find(chunk_id)
        if found is None:
            raise KeyError(chunk_id)
        return found[0].vector_of(chunk_id)

    # --- for the writer (rag/ingest.py) and the benches ---------------------------------------------------
    @property
    def stats(self) -> TermStats:
        """The version's BM25 statistics (terms.json), read and checksummed on first use."""
        with self._stats_lock:
            if "_stats" not in self.__dict__:
                path = self.root / TERMS
                with self._terms:
                    data = self._terms.read()
                if hashlib.sha256(data).hexdigest() != self._terms_sha256:
                    raise IndexCorrupt(f"index file {path} is damaged (checksum mismatch): run `rag ingest --rebuild`")
                try:
                    self._stats = TermStats.from_json(json.loads(data.decode("utf-8")))
                except (ValueError, KeyError, TypeError) as err:
                    raise IndexCorrupt(f"index file {path} cannot be read ({err}): run `rag ingest --rebuild`") from err
            return self._stats

    def live_ids(self) -> list[int]:
        return [i for entry in self.manifest.documents.values() for i in entry.chunk_ids]

    def _with_text(self, text: str) -> tuple[Segment, int] | None:
        """A chunk with exactly this text in any segment (live or deleted: its vectors are as good)."""
        key = text_key(text)
        for segment in self.segments:
            for chunk_id, stored in segment.query("SELECT id, text FROM chunks WHERE text_key = ?", (key,)):
                if stored == text:
                    return segment, chunk_id
        return None

    # Batched, as the writer asks for every chunk of a document at once: the Milvus reader answers each batch in
    # a few calls (rag/backends/milvus.py); SQLite lookups are cheap, so here they go one text at a time.
    def indexed_vectors(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """The vectors of chunks with exactly these texts, for the texts the index holds."""
        found = {text: self._with_text(text) for text in dict.fromkeys(texts)}
        return {text: where[0].vector_of(where[1]) for text, where in found.items() if where}

    def indexed_sentence_rows(self, texts: Sequence[str]) -> dict[str, list[tuple[int, int, np.ndarray]]]:
        """The sentence rows of chunks with exactly these texts, for the texts the index holds."""
        found = {text: self._with_text(text) for text in dict.fromkeys(texts)}
        return {text: where[0].sentences_of(where[1]) for text, where in found.items() if where}

    def sentence_vectors(self, sentences: Sequence[str]) -> dict[str, np.ndarray]:
        """The vectors of sentences with exactly these texts in any segment, for those the index holds."""
        found = {sentence: self._sentence_vector(sentence) for sentence in dict.fromkeys(sentences)}
        return {sentence: vector for sentence, vector in found.items() if vector is not None}

    def word_vectors(self, words: Sequence[str]) -> dict[str, np.ndarray]:
        """The vectors of these corpus words, for those the index holds (the first segment holding a word)."""
        found: dict[str, np.ndarray] = {}
        wanted = list(dict.fromkeys(words))
        for segment in self.segments:
            if not wanted:
                break
            found |= segment.word_vectors_of(wanted)
            wanted = [word for word in wanted if word not in found]
        return found

    def _sentence_vector(self, sentence: str) -> np.ndarray | None:
        key = text_key(sentence)
        for segment in self.segments:
            for (row,) in segment.query("SELECT row FROM sentences WHERE key = ?", (key,)):
                chunk_row, start, end = (int(v) for v in segment.sentence_spans[row])
                if segment.text_of(int(segment.ids[chunk_row]))[start:end] == sentence:
                    return segment.sentence_vectors[row]
        return None

    def files(self) -> list[Path]:
        """Every file this version reads: its own and its segments'."""
        return [self.root / MANIFEST, self.root / TERMS] + [s.root / rel for s in self.segments for rel in SEGMENT_FILES]
