"""Milvus as the store: chunks, vectors, sentences and words in Milvus collections, through pymilvus, whose client
code is the same for Milvus Lite (a file, in tests) and a Milvus server or cluster (`milvus_uri=http://...`).

Collections (prefix `Settings.milvus_collection`, then a generation that changes only on a full rebuild):
    <p>_<g>_chunks     id (the store's chunk id, INT64), vector, text, meta (JSON: the Chunk's other fields),
                       tokens (our BM25 tokens, space-joined), bm25 (SPARSE_FLOAT_VECTOR of BM25 weights)
    <p>_<g>_sentences  id (chunk id << 16 | position), chunk_id, start, end, vector
    <p>_<g>_words      word (primary key), vector

The manifest stays a file, as in the local store: index_dir/milvus/CURRENT names
index_dir/milvus/versions/<name>/{manifest.json, backend.json}; backend.json holds the generation and the
BM25 term statistics (document frequency per term, chunk count, total length). Readers keep to the chunk
ids of the manifest they loaded, so rows written for a version not yet published, or not yet deleted after
one was, are never answered from.

Keyword search ranks like the local store's bm25s index (method "lucene", k1 1.5, b 0.75) by storing our
own tokens (store.bm25_tokens) and weights: a chunk's sparse vector holds tf / (tf + k1 (1 - b + b dl/avgdl))
per term, and the query's holds each term's idf, so the inner product is BM25. avgdl is that of the ingest
that wrote the row, so the candidates Milvus returns (`milvus_overfetch` times as many) are re-scored
exactly with the live statistics from their stored tokens. Milvus's own BM25 function is not used: its
analyzer is not ours (Milvus Lite 3.2 offers only 'standard' and 'jieba'), and ranks would differ.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from rag import dense, store
from rag.chunking import Chunk
from rag.language import get_language
from rag.settings import Settings

log = logging.getLogger(__name__)
# Milvus Lite serves pymilvus from a gRPC server in this process, which logs a traceback for each call it does not
# implement (the query iterator asks for a timestamp, then goes on without one).
logging.getLogger("grpc._server").setLevel(logging.CRITICAL)

RECORD_DIR = "milvus"  # under index_dir: CURRENT and versions/ of the manifests
STATE = "backend.json"
REQUIRED_FILES = (STATE,)
SENTENCE_SHIFT = 16  # a sentence's id is chunk_id << 16 | its position in the chunk (chunks have < 65,536)
MAX_VARCHAR = 65_535  # bytes in a Milvus VARCHAR
MAX_LIMIT = 16_384  # Milvus's largest top-k
BATCH = 1_000  # rows per insert or delete
SCAN_BATCH = 10_000  # rows per page when reading a collection whole (Milvus returns at most 16,384)
EMPTY_DIMENSION = 2**31
K1, B = 1.5, 0.75  # bm25s's defaults, which the local store's index uses (method "lucene")


def record_dir(settings: Settings) -> Path:
    return settings.index_dir / RECORD_DIR


def resolve_uri(settings: Settings) -> str:
    return settings.milvus_uri or str(settings.index_dir / "milvus.db")


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://", "tcp://", "grpc://"))


_clients: dict[str, object] = {}
_clients_lock = threading.Lock()


def client(settings: Settings):  # -> pymilvus.MilvusClient (imported here: pymilvus is an optional extra)
    """One MilvusClient per uri in a process: Milvus Lite lets one process open a file, and ingest and the
    Assistant in one process (the web app, tests) share it."""
    uri = resolve_uri(settings)
    with _clients_lock:
        if uri not in _clients:
            try:
                from pymilvus import MilvusClient
            except ImportError as err:
                raise store.IndexProblem(
                    "store_backend='milvus' needs pymilvus and milvus-lite: pip install -e '.[scale]'") from err
            # After the import, which sets its logger up: its query iterator warns on every Milvus Lite scan.
            logging.getLogger("pymilvus").setLevel(logging.ERROR)
            if not is_server(uri):
                Path(uri).parent.mkdir(parents=True, exist_ok=True)
            try:
                _clients[uri] = MilvusClient(uri=uri, token=settings.milvus_token)
            except Exception as err:  # pymilvus raises MilvusException and ConnectionConfigException
                reason = getattr(err, "message", None) or str(err)
                fix = ("check that the Milvus server is running and RAG_MILVUS_URI / RAG_MILVUS_TOKEN are right"
                       if is_server(uri) else
                       "Milvus Lite opens a file in one process at a time: stop the other `rag` process using it "
                       "(serve, ingest, watch), or run a Milvus server and set RAG_MILVUS_URI=http://host:19530")
                raise store.IndexUnavailable(f"cannot open Milvus at {uri} ({reason}): {fix}") from err
        return _clients[uri]


def close_clients() -> None:
    """Close every client this process opened and stop the Milvus Lite servers behind them, which releases their
    files' locks for another process (closing a client alone keeps the file open)."""
    with _clients_lock:
        for uri, c in _clients.items():
            c.close()
            if not is_server(uri):
                from milvus_lite.server_manager import server_manager_instance

                server_manager_instance.release_server(uri)
        _clients.clear()


def term_index(term: str) -> int:
    """The sparse-vector dimension of a BM25 term: a stable 31-bit hash (Milvus takes indices below 2**32 - 1).
    A rare collision only affects which candidates come back; their final scores are computed on the tokens."""
    return zlib.crc32(term.encode("utf-8")) & 0x7FFF_FFFF


@dataclass
class TermStats:
    """BM25 statistics over the live chunks, updated by each ingest with what it added and removed."""

    df: dict[str, int]
    chunks: int
    total_length: int  # sum of chunk lengths in tokens, an all-stopword chunk counting 1 (as in bm25s's index)

    @classmethod
    def empty(cls) -> TermStats:
        return cls({}, 0, 0)

    def add(self, tokens: Iterable[list[str]], sign: int) -> None:
        for doc in tokens:
            self.chunks += sign
            self.total_length += sign * max(len(doc), 1)
            for term in set(doc):
                count = self.df.get(term, 0) + sign
                if count > 0:
                    self.df[term] = count
                else:
                    self.df.pop(term, None)

    @property
    def avgdl(self) -> float:
        return self.total_length / self.chunks if self.chunks else 1.0

    def idf(self, term: str) -> float:
        df = self.df.get(term, 0)
        return math.log(1 + (self.chunks - df + 0.5) / (df + 0.5))

    def doc_weights(self, doc: list[str]) -> dict[int, float]:
        norm = K1 * (1 - B + B * max(len(doc), 1) / self.avgdl)
        weights: dict[int, float] = {}
        for term, tf in Counter(doc).items():
            index = term_index(term)
            weights[index] = weights.get(index, 0.0) + tf / (tf + norm)
        # Milvus wants a non-zero weight in every sparse row: an all-stopword chunk gets one on a dimension no term
        # hashes to (term_index keeps 31 bits), which no question's vector has.
        return weights or {EMPTY_DIMENSION: 1e-30}

    def score(self, query: list[str], doc: list[str]) -> float:
        """BM25 as bm25s scores it: every query token (repeats too) that the chunk has adds idf x tf part."""
        counts = Counter(doc)
        norm = K1 * (1 - B + B * max(len(doc), 1) / self.avgdl)
        return sum(self.idf(t) * counts[t] / (counts[t] + norm) for t in query if counts[t])

    def to_json(self) -> dict:
        return {"chunks": self.chunks, "total_length": self.total_length, "df": dict(sorted(self.df.items()))}

    @classmethod
    def from_json(cls, data: dict) -> TermStats:
        return cls(dict(data["df"]), int(data["chunks"]), int(data["total_length"]))


@dataclass
class Names:
    chunks: str
    sentences: str
    words: str

    @classmethod
    def of(cls, prefix: str, generation: str) -> Names:
        base = f"{prefix}_{generation}"
        return cls(f"{base}_chunks", f"{base}_sentences", f"{base}_words")

    def all(self) -> list[str]:
        return [self.chunks, self.sentences, self.words]


def _read_state(settings: Settings, version: str) -> dict:
    path = record_dir(settings) / store.VERSIONS / version / STATE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise store.IndexCorrupt(f"{path} is missing: run `rag ingest --rebuild`") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise store.IndexCorrupt(f"{path} is damaged ({err}): run `rag ingest --rebuild`") from err


def _chunk_of(row: dict) -> Chunk:
    meta = {k: v for k, v in row["meta"].items() if k != "sentences"}
    return Chunk(text=row["text"], **meta)


def _chunk_row(chunk_id: int, chunk: Chunk, vector: np.ndarray, tokens: list[str], stats: TermStats,
               sentences: int = 0) -> dict:
    """A chunk's row; meta also holds how many sentence rows it has, so they are read by primary key."""
    meta = chunk.to_json()
    text = meta.pop("text")
    meta["sentences"] = sentences
    if len(text.encode("utf-8")) > MAX_VARCHAR:
        raise store.IndexProblem(
            f"a chunk of {chunk.source} holds {len(text.encode('utf-8')):,} bytes of text; a Milvus VARCHAR holds "
            f"{MAX_VARCHAR:,}: lower RAG_CHUNK_TOKENS and run `rag ingest --rebuild`")
    return {"id": int(chunk_id), "vector": np.asarray(vector, np.float32), "text": text, "meta": meta,
            "tokens": " ".join(tokens)[:MAX_VARCHAR], "bm25": stats.doc_weights(tokens)}


class MilvusReader:
    """One published version read from Milvus: the rag.index_reader.IndexReader methods."""

    def __init__(self, settings: Settings, version: str, manifest: store.Manifest, state: dict) -> None:
        self.version = version
        self.manifest = manifest
        self.settings = settings
        self.names = Names.of(settings.milvus_collection, state["generation"])
        self.stats = TermStats.from_json(state["bm25"])
        self.live = {i for entry in manifest.documents.values() for i in entry.chunk_ids}
        self._client = client(settings)
        self._chunks: dict[int, Chunk] = {}  # read so far (a version's chunks never change)
        self._sentences: dict[int, list[tuple[int, int, np.ndarray]]] = {}
        self._words: dict[str, np.ndarray | None] = {}
        self._recent: list[int] = []  # the top chunks of the last searches, whose sentences are read next
        self._sentence_counts: dict[int, int] = {}  # chunk id -> its sentence rows (ids chunk_id << 16 | n)
        for name in self.names.all():
            self._client.load_collection(name)

    def chunk_count(self) -> int:
        return len(self.live)

    def chunk(self, chunk_id: int) -> Chunk:
        if chunk_id not in self.live:
            raise KeyError(chunk_id)
        if chunk_id not in self._chunks:
            rows = self._client.get(self.names.chunks, ids=[int(chunk_id)], output_fields=["text", "meta"])
            if not rows:
                raise store.IndexCorrupt(f"chunk {chunk_id} of index version {self.version} is missing from Milvus "
                                         f"collection {self.names.chunks}: run `rag ingest --rebuild`")
            self._remember(rows)
        return self._chunks[chunk_id]

    def _remember(self, rows: Iterable[dict]) -> None:
        if len(self._chunks) > 50_000:
            self._chunks.clear()
        for row in rows:
            self._chunks[int(row["id"])] = _chunk_of(row)
            self._sentence_counts[int(row["id"])] = int(row["meta"].get("sentences", 0))

    def iter_chunks(self) -> Iterator[tuple[int, Chunk]]:
        found = {int(row["id"]): _chunk_of(row)
                 for row in self._scan(self.names.chunks, ["id", "text", "meta"]) if int(row["id"]) in self.live}
        return iter(sorted(found.items(), key=lambda item: store.chunk_order(item[1])))

    def _scan(self, collection: str, fields: list[str]) -> Iterator[dict]:
        iterator = self._client.query_iterator(collection, batch_size=SCAN_BATCH, filter="", output_fields=fields)
        try:
            while batch := iterator.next():
                yield from batch
        finally:
            iterator.close()

    def _search(self, field: str, query: object, k: int, fields: list[str], params: dict) -> list[dict]:
        """At least k live rows, best first, if the collection has them: rows not in this version (written by a
        running ingest or awaiting deletion) are dropped, asking for more until k remain or all are seen."""
        limit = min(max(k * self.settings.milvus_overfetch, k), MAX_LIMIT)
        while True:
            found = self._client.search(self.names.chunks, data=[query], anns_field=field, limit=limit,
                                        output_fields=fields, search_params=params)[0]
            live = [hit for hit in found if int(hit["id"]) in self.live]
            if len(live) >= k or len(found) < limit or limit >= MAX_LIMIT:
                self._remember({"id": hit["id"], **hit["entity"]} for hit in live)
                return live
            limit = min(limit * 4, MAX_LIMIT)

    def dense_search(self, vector: np.ndarray, k: int, nprobe: int | None) -> list[tuple[int, float]]:
        params = {"metric_type": "COSINE", "params": {"nprobe": nprobe} if nprobe else {}}
        hits = self._search("vector", np.asarray(vector, np.float32), k, ["text", "meta"], params)
        found = [(int(hit["id"]), float(hit["distance"])) for hit in hits[:k]]
        self._recent = [cid for cid, _ in found[: self.settings.evidence_chunks]]  # a new question: see _prefetch
        return found

    def keyword_search(self, tokens: list[str], k: int) -> list[tuple[int, float]]:
        query = Counter(t for t in tokens if t in self.stats.df)
        if not query or not self.live:
            return []
        weights: dict[int, float] = {}
        for term, count in query.items():
            weights[term_index(term)] = weights.get(term_index(term), 0.0) + count * self.stats.idf(term)
        hits = self._search("bm25", weights, k, ["text", "meta", "tokens"], {"metric_type": "IP"})
        scored = [(int(hit["id"]), self.stats.score(tokens, hit["entity"]["tokens"].split())) for hit in hits]
        scored = [(cid, s) for cid, s in scored if s > 0]
        scored.sort(key=lambda item: (-item[1], store.chunk_order(self._chunks[item[0]])))
        self._recent += [cid for cid, _ in scored[: self.settings.evidence_chunks] if cid not in self._recent]
        return scored[:k]

    def term_stats(self) -> tuple[Mapping[str, int], int]:
        return self.stats.df, max(self.stats.chunks, 1)

    def sentence_rows(self, chunk_id: int) -> list[tuple[int, int, np.ndarray]]:
        if chunk_id not in self._sentences:
            self._prefetch([chunk_id, *(c for c in self._recent if c != chunk_id and c not in self._sentences)])
        return self._sentences[chunk_id]

    def _prefetch(self, chunk_ids: list[int]) -> None:
        """The sentences of these chunks, and the vectors of their words, in two Milvus calls.

        Why: the answerer reads the sentences of the top chunks one chunk at a time, and then looks up the words
        of those sentences one word at a time; a Milvus call costs milliseconds (3-5 ms with Milvus Lite here, a
        network round trip with a server), and per-call lookups made an answer 50-odd calls. The top chunks of
        the last dense and keyword searches are fetched together, since the answerer's chunks are among them.
        """
        if len(self._sentences) > 20_000 or len(self._words) > 200_000:
            self._sentences.clear()
            self._words.clear()
        for cid in chunk_ids:
            if cid not in self._sentence_counts:
                self.chunk(cid)  # reads its row, and with it its sentence count
        # By primary key: a filter on chunk_id scans the collection in Milvus Lite (55 ms at 10,000 chunks).
        keys = [(int(c) << SENTENCE_SHIFT) | n for c in chunk_ids for n in range(self._sentence_counts[c])]
        grouped: dict[int, list[dict]] = {int(c): [] for c in chunk_ids}
        for start in range(0, len(keys), BATCH):
            for row in self._client.get(self.names.sentences, ids=keys[start : start + BATCH],
                                        output_fields=["chunk_id", "start", "end", "vector"]):
                grouped[int(row["chunk_id"])].append(row)
        for cid, found in grouped.items():
            self._sentences[cid] = [(int(r["start"]), int(r["end"]), np.asarray(r["vector"], np.float32))
                                    for r in sorted(found, key=lambda r: r["id"])]
        language = get_language(self.settings.language)
        words = sorted({w for c in chunk_ids if c in self._chunks for w in language.corpus_words(self._chunks[c].text)
                        if w not in self._words and _word_ok(w)})
        self._fetch_words(words)

    def _fetch_words(self, words: list[str]) -> None:
        for start in range(0, len(words), BATCH):
            part = words[start : start + BATCH]
            found = {r["word"]: np.asarray(r["vector"], np.float32)
                     for r in self._client.get(self.names.words, ids=part, output_fields=["vector"])}
            for word in part:
                self._words[word] = found.get(word)

    def word_vector(self, word: str) -> np.ndarray | None:
        if word not in self._words:
            if not _word_ok(word):
                return None
            self._fetch_words([word])
        return self._words[word]

    def vector(self, chunk_id: int) -> np.ndarray:
        rows = self._client.get(self.names.chunks, ids=[int(chunk_id)], output_fields=["vector"])
        if not rows:
            raise KeyError(chunk_id)
        return np.asarray(rows[0]["vector"], np.float32)


def _word_ok(word: str) -> bool:
    """Corpus words are alphabetic (language.corpus_words); anything else is not stored, so never queried."""
    return word.isalpha() and len(word.encode("utf-8")) <= 512


def open_reader(settings: Settings) -> MilvusReader:
    """The live version (raises store.IndexProblem with the fix when missing, stale or unreachable)."""
    folder = record_dir(settings)
    version = store.current_version(folder)
    if version is None:
        raise store.IndexNotFound(f"no Milvus index recorded in {folder}: run `rag ingest` to build it from your "
                                  f"corpus (RAG_STORE_BACKEND=milvus)")
    manifest = store.read_manifest(folder, list(settings.index_signature()), version)
    assert manifest is not None
    store.check_signature(manifest, settings.index_signature())
    return MilvusReader(settings, version, manifest, _read_state(settings, version))


def materialise(settings: Settings) -> store.IndexSnapshot:
    """The live version read out of Milvus, for ingest to carry unchanged chunks, vectors, sentences and words
    over (as it does from the local store): chunks and vectors now, sentences and words when first used. Chunk
    rows that are not in the live manifest (left by a writer that died before deleting them, or before
    publishing) are deleted here with their sentences."""
    reader = open_reader(settings)
    c, names = reader._client, reader.names
    chunks: dict[int, Chunk] = {}
    vectors: dict[int, np.ndarray] = {}
    stale: list[int] = []
    for row in reader._scan(names.chunks, ["id", "text", "meta", "vector"]):
        cid = int(row["id"])
        if cid in reader.live:
            chunks[cid] = _chunk_of(row)
            vectors[cid] = np.asarray(row["vector"], np.float32)
        else:
            stale.append(cid)
    if len(chunks) != len(reader.live):
        missing = sorted(reader.live - set(chunks))[:5]
        raise store.IndexCorrupt(f"Milvus collection {names.chunks} lacks chunks {missing} of index version "
                                 f"{reader.version}: run `rag ingest --rebuild`")
    order = sorted(chunks, key=lambda i: store.chunk_order(chunks[i]))
    dimension = reader.manifest.dimension
    ids = np.array(order, np.int64)
    matrix = np.array([vectors[i] for i in order], np.float32).reshape(-1, dimension)
    if stale:
        log.warning("deleting %d chunk rows from Milvus that no published version holds, and their sentences",
                    len(stale))
        _delete_sentences(c, names.sentences, stale)
        _delete_ids(c, names.chunks, stale)
    # bm25 is not built: ingest only copies from this snapshot; answering reads Milvus through MilvusReader.
    return _Materialised(reader, dense.build(dimension, ids, matrix, dense.DenseParams.exact()),
                         {i: chunks[i] for i in order})


class _Materialised(store.IndexSnapshot):
    """A snapshot whose sentences and words are read from Milvus on first use: an ingest that changes nothing
    reads neither (reading a corpus's words made a no-change ingest of BlockchainSolana take a second)."""

    def __init__(self, reader: MilvusReader, index, chunks: dict[int, Chunk]) -> None:
        # Not the dataclass __init__: `sentences` and `vocabulary` are the cached properties below.
        self.version, self.manifest, self.faiss_index, self.chunks = reader.version, reader.manifest, index, chunks
        self.bm25, self.bm25_ids = None, list(chunks)  # type: ignore[assignment]
        self._reader = reader

    @cached_property
    def sentences(self) -> store.SentenceIndex:  # type: ignore[override]
        position = {cid: n for n, cid in enumerate(self.chunks)}
        rows = sorted((r for r in self._reader._scan(self._reader.names.sentences,
                                                     ["id", "chunk_id", "start", "end", "vector"])
                       if int(r["chunk_id"]) in position), key=lambda r: (position[int(r["chunk_id"])], int(r["id"])))
        if not rows:
            return store.SentenceIndex.empty(self.manifest.dimension)
        return store.SentenceIndex(np.array([r["chunk_id"] for r in rows], np.int64),
                                   np.array([(r["start"], r["end"]) for r in rows], np.int32),
                                   np.array([r["vector"] for r in rows], np.float32))

    @cached_property
    def vocabulary(self) -> store.Vocabulary:  # type: ignore[override]
        words = sorted((str(r["word"]), r["vector"]) for r in self._reader._scan(self._reader.names.words,
                                                                                   ["word", "vector"]))
        return store.Vocabulary([w for w, _ in words],
                                np.array([v for _, v in words], np.float32).reshape(-1, self.manifest.dimension))


def _delete_sentences(c, collection: str, chunk_ids: list[int]) -> None:
    for start in range(0, len(chunk_ids), BATCH):
        c.delete(collection, filter=f"chunk_id in {chunk_ids[start : start + BATCH]}")


def _delete_ids(c, collection: str, ids: list) -> None:
    for start in range(0, len(ids), BATCH):
        c.delete(collection, ids=ids[start : start + BATCH])


def _create(c, names: Names, dimension: int, server: bool) -> None:
    """The three collections of a generation (a server picks its vector index; Milvus Lite searches exactly)."""
    from pymilvus import DataType

    vector_index = "AUTOINDEX" if server else "FLAT"
    for name in names.all():
        if c.has_collection(name):
            c.drop_collection(name)
    schema = c.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dimension)
    schema.add_field("text", DataType.VARCHAR, max_length=MAX_VARCHAR)
    schema.add_field("meta", DataType.JSON)
    schema.add_field("tokens", DataType.VARCHAR, max_length=MAX_VARCHAR)
    schema.add_field("bm25", DataType.SPARSE_FLOAT_VECTOR)
    index = c.prepare_index_params()
    index.add_index("vector", index_type=vector_index, metric_type="COSINE")
    index.add_index("bm25", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
    c.create_collection(names.chunks, schema=schema, index_params=index, consistency_level="Strong")

    schema = c.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("chunk_id", DataType.INT64)
    schema.add_field("start", DataType.INT32)
    schema.add_field("end", DataType.INT32)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dimension)
    index = c.prepare_index_params()
    index.add_index("vector", index_type=vector_index, metric_type="COSINE")
    c.create_collection(names.sentences, schema=schema, index_params=index, consistency_level="Strong")

    schema = c.create_schema(auto_id=False)
    schema.add_field("word", DataType.VARCHAR, is_primary=True, max_length=1024)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dimension)
    index = c.prepare_index_params()
    index.add_index("vector", index_type=vector_index, metric_type="COSINE")
    c.create_collection(names.words, schema=schema, index_params=index, consistency_level="Strong")


def _upsert(c, collection: str, rows: list[dict]) -> None:
    for start in range(0, len(rows), BATCH):
        c.upsert(collection, rows[start : start + BATCH])


def write(
    settings: Settings,
    manifest: store.Manifest,
    ids: np.ndarray,
    vectors: np.ndarray,
    chunks: dict[int, Chunk],
    sentences: store.SentenceIndex,
    vocabulary: store.Vocabulary,
    previous: store.IndexSnapshot | None,
) -> str:
    """Publish this state, writing only what changed since `previous` (None: a full build, into a new generation).

    Milvus has no transaction over collections, so the order makes each step safe for readers: (1) upsert the
    rows of new chunks (and of renamed ones: same ids, new source), their sentences and new words; (2) write the
    manifest and publish it with an atomic rename of CURRENT; (3) delete the rows of chunks the new manifest no
    longer has, and words no chunk has. A reader keeps to its manifest's chunk ids, so it never sees rows of
    (1) before (2) nor misses rows before (3). A writer killed in (1) or (3) leaves rows no manifest names;
    the next ingest deletes them (`materialise`), and re-uses the ids of (1) (ids come from the manifest's
    next_id), so a retry upserts the same rows.
    """
    folder = record_dir(settings)
    c = client(settings)
    old_state = _read_state(settings, previous.version) if previous is not None else None
    generation = old_state["generation"] if old_state else time.strftime("g%Y%m%d_%H%M%S_") + f"{os.getpid()}"
    names = Names.of(settings.milvus_collection, generation)
    if old_state is None:
        _create(c, names, manifest.dimension, is_server(resolve_uri(settings)))
    stats = TermStats.from_json(old_state["bm25"]) if old_state else TermStats.empty()

    old_chunks = previous.chunks if previous is not None else {}
    gone = sorted(set(old_chunks) - set(chunks))
    added = [int(i) for i in ids if int(i) not in old_chunks]
    renamed = [int(i) for i in ids if int(i) in old_chunks and old_chunks[int(i)] != chunks[int(i)]]
    stats.add(store.bm25_tokens([old_chunks[i].text for i in gone]) if gone else [], -1)
    added_tokens = store.bm25_tokens([chunks[i].text for i in added]) if added else []
    stats.add(added_tokens, +1)

    # (1) new rows
    row_of = {int(i): n for n, i in enumerate(ids)}
    tokens_of = dict(zip(added, added_tokens))
    if renamed:
        tokens_of.update(zip(renamed, store.bm25_tokens([chunks[i].text for i in renamed])))
    by_chunk = sentences.rows_by_chunk
    rows = [_chunk_row(i, chunks[i], vectors[row_of[i]], tokens_of[i], stats, len(by_chunk.get(i, ())))
            for i in added + renamed]
    _upsert(c, names.chunks, rows)
    sentence_rows = [
        {"id": (cid << SENTENCE_SHIFT) | n, "chunk_id": cid, "start": int(sentences.spans[r][0]),
         "end": int(sentences.spans[r][1]), "vector": sentences.vectors[r]}
        for cid in added for n, r in enumerate(by_chunk.get(cid, ()))
    ]
    _upsert(c, names.sentences, sentence_rows)
    old_words = set(previous.vocabulary.words) if previous is not None else set()
    _upsert(c, names.words, [{"word": w, "vector": vocabulary.vectors[n]} for n, w in enumerate(vocabulary.words)
                             if w not in old_words and _word_ok(w)])
    _flush(c, names)
    store.pause_point("written")

    # (2) the manifest, published atomically
    def fill(tmp: Path) -> None:
        (tmp / STATE).write_text(json.dumps({"generation": generation, "uri": resolve_uri(settings),
                                             "bm25": stats.to_json()}, ensure_ascii=False), encoding="utf-8")
        manifest.checksums = {STATE: store.sha256_file(tmp / STATE)}
        (tmp / store.MANIFEST).write_text(json.dumps(manifest.to_json(), indent=1, ensure_ascii=False),
                                          encoding="utf-8")
        store._fsync_tree(tmp)

    name = store.new_version(folder, fill)
    store.publish(folder, name)

    # (3) old rows: sentences first, so a writer killed here leaves chunk rows that name what is left to delete
    _delete_sentences(c, names.sentences, gone)
    _delete_ids(c, names.chunks, gone)
    new_words = set(vocabulary.words)
    _delete_ids(c, names.words, sorted(w for w in old_words - new_words if _word_ok(w)))
    _flush(c, names)
    _drop_other_generations(c, settings.milvus_collection, generation)
    return name


def _flush(c, names: Names) -> None:
    """Seal what was written into indexed segments. Why: Milvus Lite searches unflushed rows by scanning them in
    Python; at 10,000 chunks a dense search took 470 ms and a BM25 one 1.6 s before a flush, 16 and 11 ms after."""
    for name in names.all():
        c.flush(name)


def _drop_other_generations(c, prefix: str, generation: str) -> None:
    """After a full rebuild is published, the collections of earlier generations hold nothing live."""
    keep = set(Names.of(prefix, generation).all())
    for name in c.list_collections():
        if name.startswith(f"{prefix}_g") and name not in keep and name.rsplit("_", 1)[-1] in (
                "chunks", "sentences", "words"):
            c.drop_collection(name)
