"""`rag bench --scale N`: the store at N chunks: size on disk, build and load time, memory, query latency,
and recall@10 of the dense index against exact search.

For each N a real index version is written by the store (`store.write_change` + `publish`: one segment with
vectors.faiss exact or IVF by `Settings.ann_min_vectors`, chunks.sqlite, BM25 postings) into a temporary folder,
from real text
(rag/scale_data.py: sentence windows of the eval datasets' documents, cycled to N chunks). At most
`embed` of the vectors are real embeddings (cached after the first run); the rest are synthesised around
them, and the output says how many of each; the sentence index holds the chunks' real sentences with vectors
synthesised around their chunk's, the vocabulary random word vectors (`build_corpus`). Loading and querying
run in fresh processes, so their memory is what a `rag ask` would hold: the dense index alone, memory-mapped
and read into memory (the baseline of the same run), each in its own process; then the whole store loaded
as `rag ask` loads it (each file's size and modification time checked), the real eval questions searched one
at a time (dense only, then `Retriever.search`: question embedding, dense, BM25, fusion), and `Assistant.ask`
end to end on ANSWERED of them. Recall@10 compares the loaded index's top 10 with an exact scan of the same
vectors. Last, a one-file change: one document's CHUNKS_PER_DOCUMENT chunks replaced by other text (vectors
given: no parsing or embedding, which cost the same at any index size) and published through the store as ingest
does (`store.write_change`: a new segment, the old chunks deleted, BM25 statistics updated, a new manifest), timed,
with the bytes it wrote against the whole index's. Speed is measured here, never in tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rag.bench import percentile
from rag.settings import Settings

CHUNKS_PER_DOCUMENT = 100
DEFAULT_SIZES = (10_000, 100_000)
ANSWERED = 51  # at most this many questions are answered end to end (the first apart), the others searched


@dataclass
class ScaleResult:
    n: int
    real_vectors: int
    kind: str
    build_s: float
    vectors_mb: float
    total_mb: float
    store_load_s: float
    store_rss_mb: float
    dense_load_mmap_s: float
    dense_load_copy_s: float
    dense_rss_mmap_mb: float
    dense_rss_copy_mb: float
    dense_p50_ms: float
    dense_p95_ms: float
    search_p50_ms: float
    search_p95_ms: float
    first_ask_s: float
    ask_p50_ms: float
    ask_p95_ms: float
    recall_at_10: float
    peak_rss_mb: float
    change_s: float
    change_mb: float
    change_share: float  # bytes written by the one-file change / bytes of the index after it


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def measure_dense_load(vectors_file: Path, mmap: bool) -> dict:
    """Run in a fresh process: open the dense index alone, memory-mapped or read into memory."""
    from rag import dense

    before = _rss_mb()
    started = time.perf_counter()
    index = dense.read(vectors_file, mmap=mmap)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rss_mb": _rss_mb() - before, "vectors": index.ntotal}


def measure_loaded(index_dir: Path, queries_file: Path, settings: Settings) -> dict:
    """Run in a fresh process: load the live version as `rag ask` does, search it, then answer with `Assistant`."""
    import gc

    import faiss

    from rag import dense, store
    from rag.chat import Assistant
    from rag.embedding import load_query_encoder
    from rag.retrieval import Retriever

    faiss.omp_set_num_threads(1)  # one question at a time, as `rag ask` searches
    questions = json.loads(queries_file.read_text())["questions"]
    vectors = np.load(queries_file.with_suffix(".npy"))
    before = _rss_mb()
    started = time.perf_counter()
    snapshot = store.load(index_dir, settings.index_signature())
    out: dict = {"store_load_s": time.perf_counter() - started, "store_rss_mb": _rss_mb() - before,
                 "kind": ", ".join(sorted({dense.kind_of(s.dense) for s in snapshot.segments}))}

    found, ms = [], []
    for query in vectors:
        started = time.perf_counter()
        hits = snapshot.dense_search(query, 10, settings.ivf_nprobe)
        ms.append((time.perf_counter() - started) * 1000)
        found.append([chunk_id for chunk_id, _ in hits])
    out["found"] = found
    out["dense_p50_ms"], out["dense_p95_ms"] = percentile(ms, 50), percentile(ms, 95)

    retriever = Retriever(snapshot, load_query_encoder(settings), settings)
    answered = min(ANSWERED, max(2, len(questions) // 2))  # the first ones; the rest are searched
    retriever.search(questions[-1])  # the query encoder's first call
    ms = []
    for question in questions[answered:-1]:  # not the questions answered below: embeddings are cached
        started = time.perf_counter()
        retriever.search(question)
        ms.append((time.perf_counter() - started) * 1000)
    out["search_p50_ms"], out["search_p95_ms"] = percentile(ms, 50), percentile(ms, 95)
    del retriever, snapshot
    gc.collect()

    assistant = Assistant(settings)  # loads the version again, as a fresh `rag ask` would
    started = time.perf_counter()
    assistant.ask(questions[0])
    out["first_ask_s"] = time.perf_counter() - started  # corpus statistics the answerer computes once
    ms = []
    for question in questions[1:answered]:
        started = time.perf_counter()
        assistant.ask(question)
        ms.append((time.perf_counter() - started) * 1000)
    out["ask_p50_ms"], out["ask_p95_ms"] = percentile(ms, 50), percentile(ms, 95)
    hwm = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM:"))
    out["peak_rss_mb"] = int(hwm.split()[1]) / 1024
    return out


_CHILD = """
import json, sys
from pathlib import Path
from rag.bench_scale import measure_dense_load, measure_loaded
from rag.settings import Settings
if sys.argv[1] == "dense":
    print(json.dumps(measure_dense_load(Path(sys.argv[2]), sys.argv[3] == "mmap")))
else:
    print(json.dumps(measure_loaded(Path(sys.argv[2]), Path(sys.argv[3]), Settings.model_validate_json(sys.argv[4]))))
"""


def _child(*args: str) -> dict:
    """Run `_CHILD` with `args` in a fresh interpreter and return the JSON it prints."""
    child = subprocess.run([sys.executable, "-c", _CHILD, *args], capture_output=True, text=True)
    if child.returncode != 0:
        raise RuntimeError(f"the measuring process exited with {child.returncode}: {child.stderr[-3000:]}")
    return json.loads(child.stdout.strip().splitlines()[-1])


def build_corpus(n: int, real: np.ndarray, texts: Sequence[tuple[str, str]], first_id: int = 0, first_doc: int = 0):
    """N chunks cycling over the real passages (as CHUNKS_PER_DOCUMENT-chunk documents), their N vectors (the real
    embeddings first, then synthesised ones), their sentence index and the corpus's vocabulary. Returns
    (documents, store.SegmentData) for `store.write_change`; ids from `first_id`, documents from `first_doc`.

    Sentence rows are the chunks' real sentences (`split_sentences`); a one-sentence chunk's sentence has the
    chunk's vector, the others a vector synthesised around it. Word vectors are random unit vectors: the
    answerer's near-synonym lookup then finds none, which changes what it answers, not what it costs."""
    from rag import scale_data, store
    from rag.chunking import Chunk
    from rag.language import get_language

    language = get_language()

    dimension = real.shape[1]
    vectors = np.empty((n, dimension), dtype=np.float32)
    take = min(n, len(real))
    vectors[:take] = real[:take]
    if n > take:
        vectors[take:] = scale_data.synthesise(real, n - take)
    chunks: list[Chunk] = []
    documents: dict[str, store.DocumentEntry] = {}
    now = time.time()
    for i in range(n):
        text = texts[i % len(texts)][1]
        number = first_doc + i // CHUNKS_PER_DOCUMENT
        doc = f"scale/{number:06d}.txt"
        chunks.append(Chunk(f"{doc}#{i % CHUNKS_PER_DOCUMENT}", doc, None, 0, len(text), text))
        entry = documents.setdefault(doc, store.DocumentEntry(f"synthetic-{number}", [], 1, now))
        entry.chunk_ids.append(first_id + i)

    spans_of = [np.array(language.split_sentences(text), dtype=np.int32).reshape(-1, 2) for _, text in texts]
    counts = np.array([len(spans_of[i % len(texts)]) for i in range(n)])
    rows = int(counts.sum())
    chunk_of_row = np.repeat(np.arange(n, dtype=np.int64), counts)  # rows are in stored chunk order
    spans = np.concatenate([spans_of[i % len(texts)] for i in range(n)]) if rows else np.zeros((0, 2), np.int32)
    sentence_vectors = np.empty((rows, dimension), dtype=np.float32)
    rng = np.random.default_rng(scale_data.SEED)
    for start in range(0, rows, 65536):
        block = vectors[chunk_of_row[start : start + 65536]].copy()
        several = counts[chunk_of_row[start : start + 65536]] > 1
        block[several] += rng.standard_normal((int(several.sum()), dimension), dtype=np.float32) * (0.6 / np.sqrt(dimension))
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        sentence_vectors[start : start + len(block)] = block

    words = sorted({w for _, text in texts[: min(n, len(texts))] for w in language.corpus_words(text)})
    word_vectors = rng.standard_normal((len(words), dimension), dtype=np.float32)
    word_vectors /= np.linalg.norm(word_vectors, axis=1, keepdims=True)
    spans3 = np.column_stack([chunk_of_row.astype(np.int32), spans]) if rows else np.zeros((0, 3), np.int32)
    data = store.SegmentData(np.arange(first_id, first_id + n, dtype=np.int64), chunks, vectors, spans3,
                             sentence_vectors, words, word_vectors)
    return documents, data


def _bytes(paths: Sequence[Path]) -> int:
    return sum(p.stat().st_size for root in paths for p in [root, *root.rglob("*")] if p.is_file())


def one_file_change(settings: Settings, real: np.ndarray, texts: Sequence[tuple[str, str]]) -> tuple[float, int, int]:
    """Replace the first document's chunks with other real text, as ingest publishes an edited file; return
    (seconds, bytes written, bytes of the index after it)."""
    from rag import dense, store

    previous = store.load(settings.index_dir, settings.index_signature())
    manifest = previous.manifest
    doc = min(manifest.documents)
    start = manifest.next_id
    shifted = list(texts[CHUNKS_PER_DOCUMENT // 2 :]) + list(texts[: CHUNKS_PER_DOCUMENT // 2])  # other text
    documents, data = build_corpus(CHUNKS_PER_DOCUMENT, real[CHUNKS_PER_DOCUMENT // 2 :], shifted, first_id=start)
    entry = next(iter(documents.values()))
    entry.content_hash = "synthetic-edited"
    before = {p for p in settings.index_dir.rglob("*")}
    started = time.perf_counter()
    version = store.write_change(settings.index_dir, previous,
                                 manifest.copy_with(documents={**manifest.documents, doc: entry},
                                                    next_id=start + CHUNKS_PER_DOCUMENT),
                                 data, dense.DenseParams.from_settings(settings))
    store.publish(settings.index_dir, version)
    seconds = time.perf_counter() - started
    written = [p for p in settings.index_dir.rglob("*") if p not in before and p.is_file()]
    return seconds, sum(p.stat().st_size for p in written), _bytes([settings.index_dir / store.VERSIONS,
                                                                     settings.index_dir / store.SEGMENTS])


def run_scale(n: int, settings: Settings, embed: int = 4096, queries: int = 200,
              log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> ScaleResult:
    """Build, load and query an index of `n` chunks in a temporary folder; see the module docstring."""
    import faiss

    from rag import dense, scale_data, store

    texts = scale_data.passages()
    real = scale_data.embedded([t for _, t in texts[: min(embed, n)]], settings.embed_model, log=log)
    questions = scale_data.queries()
    picked = sorted(np.random.default_rng(scale_data.SEED).choice(len(questions), min(queries, len(questions)), replace=False))
    query_vectors = scale_data.embedded(questions, settings.embed_model, log=log)[picked]

    documents, data = build_corpus(n, real, texts)
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    _, truth = faiss.knn(query_vectors, data.vectors, 10, metric=faiss.METRIC_INNER_PRODUCT)  # exact, no copy
    truth = data.ids[truth]

    with tempfile.TemporaryDirectory(prefix="rag-scale-") as tmp:
        run = settings.model_copy(update={"index_dir": Path(tmp) / "index"})
        manifest = store.Manifest(signature=run.index_signature(), dimension=data.vectors.shape[1],
                                  documents=documents, skipped=[], next_id=n)
        log(f"{n:,} chunks: writing the index version ({len(real):,} real vectors, {n - min(n, len(real)):,} synthesised)")
        started = time.perf_counter()
        version = store.write_change(run.index_dir, None, manifest, data, dense.DenseParams.from_settings(run))
        store.publish(run.index_dir, version)
        build_s = time.perf_counter() - started
        del data
        segment = run.index_dir / store.SEGMENTS / manifest.segments[0].name
        total = _bytes([run.index_dir / store.VERSIONS, run.index_dir / store.SEGMENTS])

        queries_file = Path(tmp) / "queries.json"
        queries_file.write_text(json.dumps({"questions": [questions[i] for i in picked]}))
        np.save(queries_file.with_suffix(".npy"), query_vectors)
        log(f"{n:,} chunks: loading and querying in a fresh process")
        mapped, copied = (_child("dense", str(segment / store.VECTORS), mode) for mode in ("mmap", "copy"))
        out = _child("store", str(run.index_dir), str(queries_file), run.model_dump_json())
        out.update(dense_load_mmap_s=mapped["seconds"], dense_rss_mmap_mb=mapped["rss_mb"],
                   dense_load_copy_s=copied["seconds"], dense_rss_copy_mb=copied["rss_mb"])
        recall = float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(out.pop("found"), truth.tolist())]))
        log(f"{n:,} chunks: publishing a one-file change")
        change_s, change_bytes, after = one_file_change(run, real, texts)
        return ScaleResult(n=n, real_vectors=min(n, len(real)), build_s=build_s,
                           vectors_mb=(segment / store.VECTORS).stat().st_size / 2**20, total_mb=total / 2**20,
                           recall_at_10=recall, change_s=change_s, change_mb=change_bytes / 2**20,
                           change_share=change_bytes / after, **out)


def table(results: Sequence[ScaleResult]) -> str:
    rows = [
        ("chunks (real embedded vectors)", lambda r: f"{r.n:,} ({r.real_vectors:,})"),
        ("dense index", lambda r: r.kind),
        ("index build and publish (s)", lambda r: f"{r.build_s:.1f}"),
        ("size on disk: vectors.faiss / whole index (MB)", lambda r: f"{r.vectors_mb:,.0f} / {r.total_mb:,.0f}"),
        ("store load as `rag ask` does, file sizes and times checked (s)", lambda r: f"{r.store_load_s:.2f}"),
        ("RSS added by the store load (MB)", lambda r: f"{r.store_rss_mb:,.0f}"),
        ("dense index load: memory-mapped / read in (s)", lambda r: f"{r.dense_load_mmap_s:.3f} / {r.dense_load_copy_s:.3f}"),
        ("RSS added by the dense load: memory-mapped / read in (MB)", lambda r: f"{r.dense_rss_mmap_mb:,.0f} / {r.dense_rss_copy_mb:,.0f}"),
        ("dense query p50 / p95 (ms)", lambda r: f"{r.dense_p50_ms:.2f} / {r.dense_p95_ms:.2f}"),
        ("retrieval (embed question, dense, BM25, fusion) p50 / p95 (ms)", lambda r: f"{r.search_p50_ms:.1f} / {r.search_p95_ms:.1f}"),
        ("first answer after load (s)", lambda r: f"{r.first_ask_s:.2f}"),
        ("answer (`Assistant.ask`: retrieval and answer) p50 / p95 (ms)", lambda r: f"{r.ask_p50_ms:.0f} / {r.ask_p95_ms:.0f}"),
        ("dense recall@10 against exact search", lambda r: f"{r.recall_at_10:.3f}"),
        ("peak RSS of the loading process (MB)", lambda r: f"{r.peak_rss_mb:,.0f}"),
        (f"one-file change ({CHUNKS_PER_DOCUMENT} chunks) published (s)", lambda r: f"{r.change_s:.2f}"),
        ("one-file change: bytes written (MB, share of the index)",
         lambda r: f"{r.change_mb:,.1f} ({100 * r.change_share:.2f}%)"),
    ]
    head = "| measure | " + " | ".join(f"{r.n:,}" for r in results) + " |"
    lines = [head, "|---|" + "---:|" * len(results)]
    lines += [f"| {name} | " + " | ".join(show(r) for r in results) + " |" for name, show in rows]
    return "\n".join(lines)
