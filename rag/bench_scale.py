"""`rag bench --scale N`: the store at N chunks: size on disk, build and load time, memory, query latency,
and recall@10 of the dense index against exact search.

For each N a real index version is written by the store (`store.write_version` + `publish`: vectors.faiss
exact or HNSW by `Settings.ann_min_vectors`, chunks.jsonl, BM25) into a temporary folder, from real text
(rag/scale_data.py: sentence windows of the eval datasets' documents, cycled to N chunks). At most
`embed` of the vectors are real embeddings (cached after the first run); the rest are synthesised around
them, and the output says how many of each. Loading and querying run in a fresh process, so its memory
is what a `rag ask` would hold: the whole store loaded as `rag ask` loads it (checksums verified), the
dense index alone read memory-mapped and read into memory (the baseline of the same run), and the real
eval questions searched one at a time (dense only, then the whole `Retriever.search`: question
embedding, dense, BM25, fusion). Recall@10 compares the loaded index's top 10 with an exact scan of the same
vectors. Speed is measured here, never in tests.
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
    first_search_s: float
    recall_at_10: float
    peak_rss_mb: float


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def measure_loaded(index_dir: Path, queries_file: Path, settings: Settings) -> dict:
    """Run in a fresh process (see `_child`): load and query the live version; what `run_scale` reports."""
    import faiss

    from rag import dense, store
    from rag.embedding import load_query_encoder
    from rag.retrieval import Retriever

    faiss.omp_set_num_threads(1)  # one question at a time, as `rag ask` searches
    data = json.loads(queries_file.read_text())
    vectors = np.load(queries_file.with_suffix(".npy"))
    version = store.current_version(index_dir)
    assert version is not None
    vectors_file = index_dir / store.VERSIONS / version / store.VECTORS
    before = _rss_mb()
    started = time.perf_counter()
    snapshot = store.load(index_dir, settings.index_signature())
    out: dict = {"store_load_s": time.perf_counter() - started, "store_rss_mb": _rss_mb() - before,
                 "kind": dense.kind_of(snapshot.faiss_index)}
    for mmap in (True, False):
        before = _rss_mb()
        started = time.perf_counter()
        index = dense.read(vectors_file, mmap=mmap)
        out["dense_load_mmap_s" if mmap else "dense_load_copy_s"] = time.perf_counter() - started
        out["dense_rss_mmap_mb" if mmap else "dense_rss_copy_mb"] = _rss_mb() - before
        del index


    found, ms = [], []
    for query in vectors:
        started = time.perf_counter()
        _, ids = dense.search(snapshot.faiss_index, query, 10, settings.ivf_nprobe)
        ms.append((time.perf_counter() - started) * 1000)
        found.append(ids[0].tolist())
    out["found"] = found
    out["dense_p50_ms"], out["dense_p95_ms"] = percentile(ms, 50), percentile(ms, 95)

    retriever = Retriever(snapshot, load_query_encoder(settings), settings)
    started = time.perf_counter()
    retriever.search(data["questions"][0])
    out["first_search_s"] = time.perf_counter() - started  # includes the query encoder's first call
    ms = []
    for question in data["questions"][1:]:
        started = time.perf_counter()
        retriever.search(question)
        ms.append((time.perf_counter() - started) * 1000)
    out["search_p50_ms"], out["search_p95_ms"] = percentile(ms, 50), percentile(ms, 95)
    hwm = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM:"))
    out["peak_rss_mb"] = int(hwm.split()[1]) / 1024
    return out


_CHILD = """
import json, sys
from pathlib import Path
from rag.bench_scale import measure_loaded
from rag.settings import Settings
settings = Settings.model_validate_json(sys.argv[3])
print(json.dumps(measure_loaded(Path(sys.argv[1]), Path(sys.argv[2]), settings)))
"""


def build_corpus(n: int, real: np.ndarray, texts: Sequence[tuple[str, str]]):
    """N chunks cycling over the real passages (as CHUNKS_PER_DOCUMENT-chunk documents) and N vectors: the real
    embeddings first, then synthesised ones. Returns (manifest, ids, vectors, chunks) for `store.write_version`."""
    from rag import scale_data, store
    from rag.chunking import Chunk

    vectors = np.empty((n, real.shape[1]), dtype=np.float32)
    take = min(n, len(real))
    vectors[:take] = real[:take]
    if n > take:
        vectors[take:] = scale_data.synthesise(real, n - take)
    chunks: dict[int, Chunk] = {}
    documents: dict[str, store.DocumentEntry] = {}
    now = time.time()
    for i in range(n):
        source, text = texts[i % len(texts)]
        doc = f"scale/{i // CHUNKS_PER_DOCUMENT:06d}-{Path(source).stem}.txt"
        chunks[i] = Chunk(f"{doc}#{i % CHUNKS_PER_DOCUMENT}", doc, None, 0, len(text), text)
        entry = documents.setdefault(doc, store.DocumentEntry(f"synthetic-{i // CHUNKS_PER_DOCUMENT}", [], 1, now))
        entry.chunk_ids.append(i)
    return documents, np.arange(n, dtype=np.int64), vectors, chunks


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

    documents, ids, vectors, chunks = build_corpus(n, real, texts)
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    _, truth = faiss.knn(query_vectors, vectors, 10, metric=faiss.METRIC_INNER_PRODUCT)  # exact, no copy of vectors
    truth = ids[truth]

    with tempfile.TemporaryDirectory(prefix="rag-scale-") as tmp:
        run = settings.model_copy(update={"index_dir": Path(tmp) / "index"})
        manifest = store.Manifest(signature=run.index_signature(), dimension=vectors.shape[1], documents=documents,
                                  skipped=[], next_id=n)
        log(f"{n:,} chunks: writing the index version ({len(real):,} real vectors, {n - min(n, len(real)):,} synthesised)")
        started = time.perf_counter()
        version = store.write_version(run.index_dir, manifest, ids, vectors, chunks,
                                      dense_params=dense.DenseParams.from_settings(run))
        store.publish(run.index_dir, version)
        build_s = time.perf_counter() - started
        del chunks, vectors
        root = run.index_dir / store.VERSIONS / version
        total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())

        queries_file = Path(tmp) / "queries.json"
        queries_file.write_text(json.dumps({"questions": [questions[i] for i in picked]}))
        np.save(queries_file.with_suffix(".npy"), query_vectors)
        log(f"{n:,} chunks: loading and querying in a fresh process")
        child = subprocess.run([sys.executable, "-c", _CHILD, str(run.index_dir), str(queries_file), run.model_dump_json()],
                               capture_output=True, text=True)
        if child.returncode != 0:
            raise RuntimeError(f"the measuring process exited with {child.returncode}: {child.stderr[-3000:]}")
        out = json.loads(child.stdout.strip().splitlines()[-1])
        recall = float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(out.pop("found"), truth.tolist())]))
        return ScaleResult(n=n, real_vectors=min(n, len(real)), build_s=build_s,
                           vectors_mb=(root / store.VECTORS).stat().st_size / 2**20, total_mb=total / 2**20,
                           recall_at_10=recall, **out)


def table(results: Sequence[ScaleResult]) -> str:
    rows = [
        ("chunks (real embedded vectors)", lambda r: f"{r.n:,} ({r.real_vectors:,})"),
        ("dense index", lambda r: r.kind),
        ("index build and publish (s)", lambda r: f"{r.build_s:.1f}"),
        ("size on disk: vectors.faiss / whole version (MB)", lambda r: f"{r.vectors_mb:,.0f} / {r.total_mb:,.0f}"),
        ("store load as `rag ask` does, checksums verified (s)", lambda r: f"{r.store_load_s:.2f}"),
        ("RSS added by the store load (MB)", lambda r: f"{r.store_rss_mb:,.0f}"),
        ("dense index load: memory-mapped / read in (s)", lambda r: f"{r.dense_load_mmap_s:.3f} / {r.dense_load_copy_s:.3f}"),
        ("RSS added by the dense load: memory-mapped / read in (MB)", lambda r: f"{r.dense_rss_mmap_mb:,.0f} / {r.dense_rss_copy_mb:,.0f}"),
        ("dense query p50 / p95 (ms)", lambda r: f"{r.dense_p50_ms:.2f} / {r.dense_p95_ms:.2f}"),
        ("retrieval (embed question, dense, BM25, fusion) p50 / p95 (ms)", lambda r: f"{r.search_p50_ms:.1f} / {r.search_p95_ms:.1f}"),
        ("first retrieval after load (s)", lambda r: f"{r.first_search_s:.2f}"),
        ("dense recall@10 against exact search", lambda r: f"{r.recall_at_10:.3f}"),
        ("peak RSS of the loading process (MB)", lambda r: f"{r.peak_rss_mb:,.0f}"),
    ]
    head = "| measure | " + " | ".join(f"{r.n:,}" for r in results) + " |"
    lines = [head, "|---|" + "---:|" * len(results)]
    lines += [f"| {name} | " + " | ".join(show(r) for r in results) + " |" for name, show in rows]
    return "\n".join(lines)
