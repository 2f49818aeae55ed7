"""Recall@10 against exact search, and single-query latency, of FAISS HNSW and IVF-Flat parameter grids.

    PYTHONPATH=. .venv/bin/python bench/ann_curve.py --n 100000 --queries 500 --embed 4096

The database is the eval datasets' real passages embedded with the project's model (rag/scale_data.py),
topped up to --n with vectors synthesised around them (said in the output); the queries are real eval
questions embedded with the same model. Every row is one (family, build parameters, search parameter):
build seconds, recall@10 (share of the exact top 10 ids found in the approximate top 10, averaged over the
queries), p50/p95 ms of one query at a time on one thread (as `rag ask` searches), and the index's bytes.
The settings `ann_*` in rag/settings.py were chosen from this table (see the README's "Scale" section).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import faiss
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rag import scale_data  # noqa: E402
from rag.bench import percentile  # noqa: E402
from rag.settings import Settings  # noqa: E402


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


def timed(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, list[float]]:
    """One query per call, as retrieval does; returns ids and per-query milliseconds."""
    ids, ms = [], []
    for q in queries:
        started = time.perf_counter()
        _, i = index.search(q[None, :], k)
        ms.append((time.perf_counter() - started) * 1000)
        ids.append(i[0])
    return np.array(ids), ms


def row(family: str, build: str, search: str, seconds: float, recall: float, ms: list[float], size: int) -> str:
    return (f"| {family} | {build} | {search} | {seconds:.1f} | {recall:.3f} | {percentile(ms, 50):.2f} | "
            f"{percentile(ms, 95):.2f} | {size / 2**20:.0f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="database vectors (default 100,000)")
    parser.add_argument("--embed", type=int, default=4096, help="real embedded passages (cached; default 4096)")
    parser.add_argument("--queries", type=int, default=500, help="real questions asked (default 500)")
    parser.add_argument("--hnsw-m", default="16,32", help="HNSW M values")
    parser.add_argument("--ef-construction", default="40,100", help="HNSW efConstruction values")
    parser.add_argument("--ef-search", default="16,32,64,128", help="HNSW efSearch values")
    parser.add_argument("--nlist", default="", help="IVF nlist values (default 4*sqrt(n) rounded to a power of 2)")
    parser.add_argument("--nprobe", default="8,16,32,64", help="IVF nprobe values")
    args = parser.parse_args(argv)
    ints = lambda text: [int(x) for x in text.split(",") if x]  # noqa: E731

    model = Settings().embed_model
    log = lambda m: print(m, file=sys.stderr)  # noqa: E731
    texts = [t for _, t in scale_data.passages()]
    real = scale_data.embedded(texts[: args.embed], model, log=log)[: args.n]
    questions = scale_data.queries()
    rng = np.random.default_rng(scale_data.SEED)
    picked = sorted(rng.choice(len(questions), min(args.queries, len(questions)), replace=False))
    query_vectors = scale_data.embedded(questions, model, log=log)[picked]
    synthetic = max(0, args.n - len(real))
    data = np.concatenate([real, scale_data.synthesise(real, synthetic)]) if synthetic else real
    faiss.omp_set_num_threads(1)  # latency of one query on one thread; builds use all cores (set below)

    exact = faiss.IndexFlatIP(data.shape[1])
    exact.add(data)
    truth, exact_ms = timed(exact, query_vectors, 10)
    print(f"{len(data):,} vectors ({len(real):,} real embedded passages of eval/datasets, {synthetic:,} synthesised "
          f"around them), {len(query_vectors)} real questions, {os.cpu_count()} cores, faiss {faiss.__version__}\n")
    print("| family | build | search | build s | recall@10 | p50 ms | p95 ms | MB |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    print(row("exact", "flat", "-", 0.0, 1.0, exact_ms, data.nbytes), flush=True)

    for m in ints(args.hnsw_m):
        for ef_c in ints(args.ef_construction):
            faiss.omp_set_num_threads(os.cpu_count() or 1)
            index = faiss.IndexHNSWFlat(data.shape[1], m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = ef_c
            started = time.perf_counter()
            index.add(data)
            seconds = time.perf_counter() - started
            faiss.omp_set_num_threads(1)
            size = faiss.serialize_index(index).nbytes
            for ef_s in ints(args.ef_search):
                index.hnsw.efSearch = ef_s
                found, ms = timed(index, query_vectors, 10)
                print(row("HNSW", f"M={m} efC={ef_c}", f"efSearch={ef_s}", seconds, recall_at(found, truth), ms, size),
                      flush=True)
            del index

    nlists = ints(args.nlist) or [1 << int(round(np.log2(4 * np.sqrt(len(data)))))]
    for nlist in nlists:
        faiss.omp_set_num_threads(os.cpu_count() or 1)
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(data.shape[1]), data.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
        started = time.perf_counter()
        index.train(data[rng.choice(len(data), min(len(data), 64 * nlist), replace=False)])
        index.add(data)
        seconds = time.perf_counter() - started
        faiss.omp_set_num_threads(1)
        size = faiss.serialize_index(index).nbytes
        for nprobe in ints(args.nprobe):
            index.nprobe = nprobe
            found, ms = timed(index, query_vectors, 10)
            print(row("IVF-Flat", f"nlist={nlist}", f"nprobe={nprobe}", seconds, recall_at(found, truth), ms, size),
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
