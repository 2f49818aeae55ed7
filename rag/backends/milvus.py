"""Milvus as the store: chunks, vectors, sentences and words in Milvus collections, through pymilvus, whose client
code is the same for Milvus Lite (a file, in tests) and a Milvus server or cluster (`milvus_uri=http://...`).

Collections (prefix `Settings.milvus_collection`, then a generation that changes only on a full rebuild):
    <p>_<g>_chunks     id (the store's chunk id, INT64), vector, text, meta (JSON: the Chunk's other fields),
                       tokens (our BM25 tokens, space-joined), bm25 (SPARSE_FLOAT_VECTOR of BM25 weights),
                       text_key (store.text_key of the text: ingest's lookup of a known chunk text)
    <p>_<g>_sentences  id (chunk id << 16 | position), chunk_id, start, end, key (store.text_key), vector
    <p>_<g>_words      word (primary key), vector

The manifest stays a file, as in the local store: index_dir/milvus/CURRENT names
index_dir/milvus/versions/<name>/{manifest.json, backend.json}; backend.json holds the generation, the
BM25 term statistics (document frequency per term, chunk count, total length), how many live chunks have each
corpus word, and the rows the version's writer deletes after publishing. An ingest hands over what the local
store writes as a segment (the new chunks, their sentences and words) and the manifest; the chunks the manifest no
longer lists are deleted. Readers keep to the chunk
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
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rag import store
from rag.chunking import Chunk
from rag.language import get_language
from rag.settings import Settings

log = logging.getLogger(__name__)
# Milvus Lite serves pymilvus from a gRPC server in this process, which logs a traceback for each call it does not
# implement (the query iterator asks for a timestamp, then goes on without one).
logging.getLogger("grpc._server").setLevel(logging.CRITICAL)

RECORD_DIR = "milvus"  # under index_dir: CURRENT and versions/ of the manifests
STATE = "backend.json"
SENTENCE_SHIFT = 16  # a sentence's id is chunk_id << 16 | its position in the chunk (chunks have < 65,536)
MAX_VARCHAR = 65_535  # bytes in a Milvus VARCHAR
MAX_LIMIT = 16_384  # Milvus's largest top-k
BATCH = 1_000  # rows per insert or delete
LOOKUP_BATCH = 500  # hashed texts per lookup query of the writer
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
            "tokens": " ".join(tokens)[:MAX_VARCHAR], "bm25": stats.doc_weights(tokens),
            "text_key": store.text_key(chunk.text)}


class MilvusReader:
    """One published version read from Milvus: the rag.index_reader.IndexReader methods."""

    def __init__(self, settings: Settings, version: str, manifest: store.Manifest, state: dict) -> None:
        self.version = version
        self.manifest = manifest
        self.settings = settings
        self.names = Names.of(settings.milvus_collection, state["generation"])
        self.stats = TermStats.from_json(state["bm25"])
        self.live = {i for entry in manifest.documents.values() for i in entry.chunk_ids}
        self.word_counts: dict[str, int] = state.get("words", {})  # corpus word -> live chunks that have it
        self._client = client(settings)
        self._chunks: dict[int, Chunk] = {}  # read so far (a version's chunks never change)
        self._sentences: dict[int, list[tuple[int, int, np.ndarray]]] = {}
        self._words: dict[str, np.ndarray | None] = {}
        self._recent: list[int] = []  # the chunks the last searches returned, whose sentences are read next
        self._likely: list[int] = []  # ... and the top ones among them, whose words are read next (see _prefetch)
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
        self._recent = [cid for cid, _ in found]  # a new question: see _prefetch
        self._likely = self._recent[: self.settings.evidence_chunks]
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
        self._recent += [cid for cid, _ in scored[:k] if cid not in self._recent]
        self._likely += [cid for cid, _ in scored[: self.settings.evidence_chunks] if cid not in self._likely]
        return scored[:k]

    def term_stats(self) -> tuple[Mapping[str, int], int]:
        return self.stats.df, max(self.stats.chunks, 1)

    def sentence_rows(self, chunk_id: int) -> list[tuple[int, int, np.ndarray]]:
        if chunk_id not in self._sentences:
            self._prefetch([chunk_id, *(c for c in self._recent if c != chunk_id and c not in self._sentences)],
                           words_of=[chunk_id, *self._likely])
        return self._sentences[chunk_id]

    def _prefetch(self, chunk_ids: list[int], words_of: list[int]) -> None:
        """The sentences of `chunk_ids`, and the vectors of the words of `words_of`, in a few batched Milvus calls.

        Why: the retriever reads the sentences of every candidate chunk, one chunk at a time, and the answerer
        then looks up the words of the top chunks' sentences; a Milvus call costs milliseconds (3-5 ms with Milvus
        Lite here, a network round trip with a server), and per-call lookups made an answer 50-odd calls. The
        chunks of the last dense and keyword searches are fetched together, since the answerer's are among them;
        words only for the top ones, since only the evidence sentences' words are compared with the question's.
        """
        if len(self._sentences) > 20_000 or len(self._words) > 200_000:
            self._sentences.clear()
            self._words.clear()
        for cid in {*chunk_ids, *words_of}:
            if cid not in self._sentence_counts:
                self.chunk(cid)  # reads its row, and with it its sentence count
        self._fetch_sentences(chunk_ids)
        language = get_language(self.settings.language)
        words = sorted({w for c in words_of if c in self._chunks for w in language.corpus_words(self._chunks[c].text)
                        if w not in self._words and _word_ok(w)})
        self._fetch_words(words)

    def _fetch_sentences(self, chunk_ids: list[int]) -> None:
        """The sentence rows of these chunks (whose rows are read), by primary key in batches: a filter on
        chunk_id scans the collection in Milvus Lite (55 ms at 10,000 chunks)."""
        keys = [(int(c) << SENTENCE_SHIFT) | n for c in chunk_ids for n in range(self._sentence_counts[c])]
        grouped: dict[int, list[dict]] = {int(c): [] for c in chunk_ids}
        for start in range(0, len(keys), BATCH):
            for row in self._client.get(self.names.sentences, ids=keys[start : start + BATCH],
                                        output_fields=["chunk_id", "start", "end", "vector"]):
                grouped[int(row["chunk_id"])].append(row)
        for cid, found in grouped.items():
            self._sentences[cid] = [(int(r["start"]), int(r["end"]), np.asarray(r["vector"], np.float32))
                                    for r in sorted(found, key=lambda r: r["id"])]

    def _fetch_words(self, words: list[str]) -> None:
        for start in range(0, len(words), BATCH):
            part = words[start : start + BATCH]
            found = {r["word"]: np.asarray(r["vector"], np.float32)
                     for r in self._client.get(self.names.words, ids=part, output_fields=["vector"])}
            for word in part:
                self._words[word] = found.get(word)

    def vector(self, chunk_id: int) -> np.ndarray:
        rows = self._client.get(self.names.chunks, ids=[int(chunk_id)], output_fields=["vector"])
        if not rows:
            raise KeyError(chunk_id)
        return np.asarray(rows[0]["vector"], np.float32)


    # --- for the writer (rag/ingest.py): the text-keyed lookups store.IndexSnapshot offers ----------------------
    def live_ids(self) -> list[int]:
        return sorted(self.live)

    def texts(self, chunk_ids: list[int]) -> list[str]:
        """The texts of these live chunks, read by primary key in batches."""
        found: dict[int, str] = {}
        for start in range(0, len(chunk_ids), BATCH):
            for row in self._client.get(self.names.chunks, ids=[int(i) for i in chunk_ids[start : start + BATCH]],
                                        output_fields=["text"]):
                found[int(row["id"])] = row["text"]
        missing = [i for i in chunk_ids if i not in found]
        if missing:
            raise store.IndexCorrupt(f"Milvus collection {self.names.chunks} lacks chunks {missing[:5]} of index "
                                     f"version {self.version}: run `rag ingest --rebuild`")
        return [found[i] for i in chunk_ids]

    # Batched: the writer asks for every chunk of a document, and every sentence and word of a segment, at once.
    # One query per LOOKUP_BATCH keys on the hashed text, then the texts compared; one call per text cost
    # 18 ms a chunk and 33 ms a sentence in Milvus Lite at 10,000 chunks (README, "Running past one machine").
    def _query_keys(self, collection: str, field: str, keys: Sequence[int], fields: list[str]) -> Iterator[dict]:
        """The rows whose `field` is one of `keys`; a batch that fills Milvus's largest result is split."""
        for start in range(0, len(keys), LOOKUP_BATCH):
            part = [int(k) for k in keys[start : start + LOOKUP_BATCH]]
            rows = self._client.query(collection, filter=f"{field} in {part}", output_fields=fields, limit=MAX_LIMIT)
            if len(rows) >= MAX_LIMIT and len(part) > 1:
                half = len(part) // 2
                yield from self._query_keys(collection, field, part[:half], fields)
                yield from self._query_keys(collection, field, part[half:], fields)
            else:
                yield from rows

    def _with_texts(self, texts: Sequence[str]) -> dict[str, int]:
        """A live chunk with exactly each of these texts, for the texts the version holds."""
        wanted = set(texts)
        keys = sorted({store.text_key(text) for text in wanted})
        found: dict[str, int] = {}
        for row in self._query_keys(self.names.chunks, "text_key", keys, ["id", "text"]):
            if int(row["id"]) in self.live and row["text"] in wanted:
                found.setdefault(row["text"], int(row["id"]))
        return found

    def _read_chunks(self, chunk_ids: Iterable[int]) -> dict[int, Chunk]:
        """These chunks (rows read in batches unless read already; with them their sentence counts)."""
        wanted = sorted({int(c) for c in chunk_ids})
        chunks = {c: self._chunks[c] for c in wanted if c in self._chunks}
        missing = [c for c in wanted if c not in chunks]
        for start in range(0, len(missing), BATCH):
            rows = self._client.get(self.names.chunks, ids=missing[start : start + BATCH], output_fields=["text", "meta"])
            self._remember(rows)
            chunks.update((int(row["id"]), _chunk_of(row)) for row in rows)
        return chunks

    def indexed_vectors(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """The vectors of chunks with exactly these texts, for the texts the version holds."""
        found = self._with_texts(texts)
        vectors: dict[int, np.ndarray] = {}
        ids = sorted(set(found.values()))
        for start in range(0, len(ids), BATCH):
            for row in self._client.get(self.names.chunks, ids=ids[start : start + BATCH], output_fields=["vector"]):
                vectors[int(row["id"])] = np.asarray(row["vector"], np.float32)
        return {text: vectors[cid] for text, cid in found.items() if cid in vectors}

    def indexed_sentence_rows(self, texts: Sequence[str]) -> dict[str, list[tuple[int, int, np.ndarray]]]:
        """The sentence rows of chunks with exactly these texts, for the texts the version holds."""
        found = self._with_texts(texts)
        self._read_chunks(found.values())
        self._fetch_sentences([cid for cid in set(found.values()) if cid not in self._sentences])
        return {text: self._sentences[cid] for text, cid in found.items()}

    def sentence_vectors(self, sentences: Sequence[str]) -> dict[str, np.ndarray]:
        """The vectors of sentences with exactly these texts in live chunks, for those the version holds."""
        wanted = set(sentences)
        keys = sorted({store.text_key(sentence) for sentence in wanted})
        rows = [row for row in self._query_keys(self.names.sentences, "key", keys, ["chunk_id", "start", "end", "vector"])
                if int(row["chunk_id"]) in self.live]
        chunks = self._read_chunks(int(row["chunk_id"]) for row in rows)
        found: dict[str, np.ndarray] = {}
        for row in rows:
            chunk = chunks.get(int(row["chunk_id"]))
            sentence = chunk.text[int(row["start"]) : int(row["end"])] if chunk else None
            if sentence in wanted:
                found.setdefault(sentence, np.asarray(row["vector"], np.float32))
        return found

    def word_vectors(self, words: Sequence[str]) -> dict[str, np.ndarray]:
        """The vectors of these corpus words, for those the version holds (a killed writer's row is not one)."""
        asked = [w for w in dict.fromkeys(words) if w in self.word_counts and _word_ok(w)]
        self._fetch_words([w for w in asked if w not in self._words])
        return {w: vector for w in asked if (vector := self._words.get(w)) is not None}


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
    schema.add_field("text_key", DataType.INT64)  # store.text_key(text): ingest finds a known text's vector by it
    index = c.prepare_index_params()
    index.add_index("vector", index_type=vector_index, metric_type="COSINE")
    index.add_index("bm25", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
    c.create_collection(names.chunks, schema=schema, index_params=index, consistency_level="Strong")

    schema = c.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("chunk_id", DataType.INT64)
    schema.add_field("start", DataType.INT32)
    schema.add_field("end", DataType.INT32)
    schema.add_field("key", DataType.INT64)  # store.text_key of the sentence's text
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


def _state_json(generation: str, settings: Settings, stats: TermStats, words: dict[str, int], gone: list[int],
                dead_words: list[str]) -> dict:
    return {"generation": generation, "uri": resolve_uri(settings), "bm25": stats.to_json(),
            "words": dict(sorted(words.items())), "deleting": {"chunks": gone, "words": dead_words}}


def _count_words(counts: dict[str, int], texts: Iterable[str], sign: int, language) -> None:
    for text in texts:
        for word in set(language.corpus_words(text)):
            if _word_ok(word):
                count = counts.get(word, 0) + sign
                if count > 0:
                    counts[word] = count
                else:
                    counts.pop(word, None)


def write(
    settings: Settings,
    previous: MilvusReader | None,
    manifest: store.Manifest,
    new: store.SegmentData | None,
) -> str:
    """Publish the version `manifest` describes: `previous`'s chunks that it no longer lists are removed, the `new`
    segment's rows added (None: a full build when `previous` is None too, into a new generation).

    Milvus has no transaction over collections, so the order makes each step safe for readers: (1) upsert the
    rows of the new segment's chunks, their sentences and new words; (2) write the manifest and its state (BM25
    statistics, word counts, and the rows step 3 deletes) and publish them with an atomic rename of CURRENT;
    (3) delete the rows of removed chunks and of words no live chunk has. A reader keeps to its manifest's chunk
    ids and words, so it never sees rows of (1) before (2) nor misses rows before (3). A writer killed in (1)
    leaves rows with ids from the live manifest's next_id up, killed in (3) rows its state names: the next
    ingest deletes both first (`cleanup_rows`).
    """
    folder = record_dir(settings)
    c = client(settings)
    old_state = _read_state(settings, previous.version) if previous is not None else None
    generation = old_state["generation"] if old_state else time.strftime("g%Y%m%d_%H%M%S_") + f"{os.getpid()}"
    names = Names.of(settings.milvus_collection, generation)
    if old_state is None:
        _create(c, names, manifest.dimension, is_server(resolve_uri(settings)))
    stats = TermStats.from_json(old_state["bm25"]) if old_state else TermStats.empty()
    words = dict(old_state.get("words", {})) if old_state else {}
    old_words = set(words)
    language = get_language(settings.language)

    live = {i for entry in manifest.documents.values() for i in entry.chunk_ids}
    gone = sorted(previous.live - live) if previous is not None else []
    gone_texts = previous.texts(gone) if previous is not None and gone else []
    stats.add(store.bm25_tokens(gone_texts, settings.language) if gone_texts else [], -1)
    _count_words(words, gone_texts, -1, language)

    # (1) new rows
    if new is not None and len(new.ids):
        added = [int(i) for i in new.ids]
        texts = [chunk.text for chunk in new.chunks]
        tokens = store.bm25_tokens(texts, settings.language)
        stats.add(tokens, +1)  # before the rows: their BM25 weights use the new average length
        _count_words(words, texts, +1, language)
        spans = np.asarray(new.sentence_spans, np.int64).reshape(-1, 3)
        per_row = np.bincount(spans[:, 0], minlength=len(added)) if len(spans) else np.zeros(len(added), np.int64)
        _upsert(c, names.chunks, [_chunk_row(cid, new.chunks[r], new.vectors[r], tokens[r], stats, int(per_row[r]))
                                  for r, cid in enumerate(added)])
        position: dict[int, int] = {}
        sentence_rows = []
        for n, (row, start, end) in enumerate(spans.tolist()):
            cid, nth = added[row], position.get(row, 0)
            position[row] = nth + 1
            sentence_rows.append({"id": (cid << SENTENCE_SHIFT) | nth, "chunk_id": cid, "start": start, "end": end,
                                  "key": store.text_key(texts[row][start:end]), "vector": new.sentence_vectors[n]})
        _upsert(c, names.sentences, sentence_rows)
        _upsert(c, names.words, [{"word": w, "vector": new.word_vectors[n]} for n, w in enumerate(new.words)
                                 if w not in old_words and _word_ok(w)])
    _flush(c, names)
    store.pause_point("written")

    # (2) the manifest, published atomically
    dead_words = sorted(old_words - set(words))
    with store._new_folder(folder / store.VERSIONS, "v") as (name, tmp):
        (tmp / STATE).write_text(json.dumps(_state_json(generation, settings, stats, words, gone, dead_words),
                                            ensure_ascii=False), encoding="utf-8")
        manifest.checksums = {STATE: store.sha256_file(tmp / STATE)}
        manifest.segments = []
        (tmp / store.MANIFEST).write_text(json.dumps(manifest.to_json(), ensure_ascii=False, separators=(",", ":")),
                                          encoding="utf-8")
    store.publish(folder, name)

    # (3) old rows: sentences first, so a writer killed here leaves chunk rows that name what is left to delete
    _delete_rows(c, names, gone, dead_words)
    _drop_other_generations(c, settings.milvus_collection, generation)
    return name


def _delete_rows(c, names: Names, chunk_ids: list[int], words: list[str]) -> None:
    if not chunk_ids and not words:
        return
    _delete_sentences(c, names.sentences, chunk_ids)
    _delete_ids(c, names.chunks, chunk_ids)
    _delete_ids(c, names.words, words)
    _flush(c, names)


def cleanup_rows(settings: Settings) -> list[str]:
    """Delete the rows a killed writer left in Milvus: chunks (and their sentences) with ids from the live
    manifest's next_id up, written before a publish that never came, and the removed chunks and words the live
    state names, whose deletion after publishing may not have finished. Returns what was deleted, for the
    report (nothing when there was nothing)."""
    folder = record_dir(settings)
    version = store.current_version(folder)
    if version is None:
        return []
    try:
        manifest = store.read_manifest(folder, list(settings.index_signature()), version)
        state = _read_state(settings, version)
    except store.IndexProblem:
        return []  # the next ingest rebuilds into a new generation and drops this one
    c = client(settings)
    names = Names.of(settings.milvus_collection, state["generation"])
    if not all(c.has_collection(name) for name in names.all()):
        return []
    for name in names.all():
        c.load_collection(name)  # a new process's client: Milvus queries only loaded collections
    pending = state.get("deleting", {})
    stray: list[int] = []
    while True:  # at most MAX_LIMIT ids a query; deleting them lets the next query see the rest
        found = [int(r["id"]) for r in c.query(names.chunks, filter=f"id >= {int(manifest.next_id)}",
                                               output_fields=["id"], limit=MAX_LIMIT)]
        _delete_rows(c, names, found, [])
        stray += found
        if len(found) < MAX_LIMIT:
            break
    gone = _existing(c, names.chunks, "id", pending.get("chunks", []))
    words = _existing(c, names.words, "word", pending.get("words", []))
    chunk_ids = sorted(set(stray) | set(gone))
    # Step 3 deletes a chunk's sentences before its row, so chunks whose rows are gone have no sentences left.
    _delete_rows(c, names, chunk_ids, words)
    removed = [f"{len(chunk_ids)} Milvus chunk rows no published version holds"] if chunk_ids else []
    return removed + ([f"{len(words)} Milvus word rows no live chunk has"] if words else [])


def _existing(c, collection: str, key: str, ids: list) -> list:
    """Which of these primary keys have a row (read in batches)."""
    return [r[key] for start in range(0, len(ids), BATCH)
            for r in c.get(collection, ids=ids[start : start + BATCH], output_fields=[key])]


def verify(settings: Settings, version: str, manifest: store.Manifest) -> None:
    """The version's state file is present with the checksum its manifest recorded (raises store.IndexCorrupt)."""
    path = record_dir(settings) / store.VERSIONS / version / STATE
    if STATE not in manifest.checksums:
        raise store.IndexCorrupt(f"{path.parent / store.MANIFEST} has no checksum for {STATE}: "
                                 "run `rag ingest --rebuild`")
    store._check_file(path, {"sha256": manifest.checksums[STATE]}, full=True)


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
