"""`rag bench --backends`: the local store and the Milvus back end (store_backend='milvus', a Milvus Lite file)
measured in one run on the same corpus and questions, so their ratio means something on a busy machine.

Per back end, on a copy of the corpus in a temporary folder: the first ingest (parse, embed, write), an ingest
after one file changed (one sentence appended to the first .txt/.md file, if any), a no-change ingest (the diff
alone), opening the Assistant, and `Assistant.ask` latency p50/p95 over `requests` questions asked of both in
turns (warm: three asked first). The embedding model is loaded once, before either back end's ingest, so
model loading is in neither figure.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from rag.bench import percentile
from rag.settings import Settings

BACKENDS = ("local", "milvus")


def build(settings: Settings, embedder, log: Callable[[str], None]) -> dict[str, float]:
    """Ingest timings of one back end on its copy of the corpus."""
    from rag.ingest import ingest

    figures: dict[str, float] = {}
    log(f"{settings.store_backend}: first ingest of {settings.corpus_dir}")
    started = time.perf_counter()
    report = ingest(settings, embedder=embedder)
    figures["first ingest (s)"] = time.perf_counter() - started
    figures["chunks"] = report.embedded_chunks
    first = sorted(p for p in settings.corpus_dir.rglob("*") if p.is_file() and p.suffix in (".txt", ".md"))
    if first:
        with first[0].open("a", encoding="utf-8") as fh:
            fh.write("\n\nThe benchmark appended this sentence to change one file.\n")
        started = time.perf_counter()
        ingest(settings, embedder=embedder)
        figures["ingest after a one-file change (s)"] = time.perf_counter() - started
    started = time.perf_counter()
    ingest(settings, embedder=embedder)
    figures["ingest with nothing changed (s)"] = time.perf_counter() - started
    return figures


def run_backends(corpus: Path, questions: Sequence[str], requests: int = 100, base: Settings | None = None,
                 log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> dict[str, dict[str, float]]:
    """Both back ends built, then asked the same questions in turns (local, milvus, local, ...), so both
    latencies are measured under the same load."""
    from rag.backends import milvus
    from rag.chat import Assistant
    from rag.embedding import Embedder

    from rag.embedding import load_query_encoder

    base = base or Settings()
    embedder = Embedder(base.embed_model)
    load_query_encoder(base)  # shared by both Assistants: loading it is in neither's opening time
    results: dict[str, dict[str, float]] = {}
    assistants = {}
    with tempfile.TemporaryDirectory(prefix="rag-bench-backends-") as tmp:
        for backend in BACKENDS:
            root = Path(tmp) / backend
            shutil.copytree(corpus, root / "corpus")
            settings = base.model_copy(update={"corpus_dir": root / "corpus", "index_dir": root / "index",
                                               "store_backend": backend, "milvus_uri": ""})
            results[backend] = build(settings, embedder, log)
            started = time.perf_counter()
            assistants[backend] = Assistant(settings)
            results[backend]["open the Assistant (s)"] = time.perf_counter() - started
            for question in questions[:3]:  # warm: first-call imports and caches
                assistants[backend].ask(question)
        log(f"{requests} questions to each back end, in turns")
        ask_in_turns(assistants, [questions[n % len(questions)] for n in range(requests)], results)
        milvus.close_clients()
    return results


def ask_in_turns(assistants: dict, questions: Sequence[str], results: dict[str, dict[str, float]]) -> None:
    """Each question asked of every back end in turn, so both latencies are measured under the same load."""
    latencies: dict[str, list[float]] = {backend: [] for backend in assistants}
    for question in questions:
        for backend, assistant in assistants.items():
            started = time.perf_counter()
            assistant.ask(question)
            latencies[backend].append((time.perf_counter() - started) * 1000)
    for backend, values in latencies.items():
        results[backend]["ask p50 (ms)"] = percentile(values, 50)
        results[backend]["ask p95 (ms)"] = percentile(values, 95)


def table(results: dict[str, dict[str, float]]) -> str:
    rows = ["| measure | local | milvus (Lite) | milvus / local |", "|---|---:|---:|---:|"]
    local, remote = results["local"], results["milvus"]
    for name in local:
        ratio = "" if name == "chunks" or not local[name] else f"{remote[name] / local[name]:.2f}"
        digits = 0 if name == "chunks" else (1 if "ms" in name else 2)
        rows.append(f"| {name} | {local[name]:,.{digits}f} | {remote[name]:,.{digits}f} | {ratio} |")
    return "\n".join(rows)


LOOKUPS = 1_000  # known texts looked up at once, as ingest does for a new segment's chunks and sentences


def time_lookups(reader, data, log: Callable[[str], None]) -> dict[str, float]:
    """How long ingest's batched lookups of known texts take (`indexed_vectors`, `sentence_vectors`): LOOKUPS
    chunk texts and LOOKUPS sentence texts spread over the index, each asked for at once."""
    chunks = [c.text for c in data.chunks[:: max(1, len(data.chunks) // LOOKUPS)][:LOOKUPS]]
    spans = data.sentence_spans[:: max(1, len(data.sentence_spans) // LOOKUPS)][:LOOKUPS]
    sentences = [data.chunks[int(row)].text[int(start) : int(end)] for row, start, end in spans]
    figures: dict[str, float] = {}
    for name, lookup, texts in (("chunk texts", reader.indexed_vectors, chunks),
                                ("sentence texts", reader.sentence_vectors, sentences)):
        started = time.perf_counter()
        found = lookup(texts)
        figures[f"look up {len(texts):,} known {name} (ms)"] = (time.perf_counter() - started) * 1000
        if len(found) != len(set(texts)):
            log(f"warning: {len(found)} of {len(set(texts))} known {name} found")
    return figures


def run_scale(n: int, base: Settings | None = None, embed: int = 4096, requests: int = 50,
              log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> dict[str, dict[str, float]]:
    """Both back ends at `n` chunks of rag bench --scale's corpus (real text; `embed` real vectors, the rest
    synthesised around them, see rag/bench_scale.py): writing the whole index, opening the Assistant, and
    `Assistant.ask` p50/p95 over `requests` real eval questions asked of both in turns."""
    from rag import backends, scale_data, store
    from rag.backends import milvus
    from rag.bench_scale import build_corpus
    from rag.chat import Assistant
    from rag.dense import DenseParams
    from rag.embedding import load_query_encoder

    base = base or Settings()
    load_query_encoder(base)  # shared by both Assistants: loading it is in neither's opening time
    texts = scale_data.passages()
    real = scale_data.embedded([t for _, t in texts[: min(embed, n)]], base.embed_model, log=log)
    questions = scale_data.queries()[:requests]
    documents, data = build_corpus(n, real, texts)
    results: dict[str, dict[str, float]] = {}
    assistants = {}
    with tempfile.TemporaryDirectory(prefix="rag-bench-backends-") as tmp:
        for backend in BACKENDS:
            settings = base.model_copy(update={"index_dir": Path(tmp) / backend, "store_backend": backend,
                                               "milvus_uri": ""})
            manifest = store.Manifest(signature=settings.index_signature(), dimension=data.vectors.shape[1],
                                      documents=documents, skipped=[], next_id=n)
            log(f"{backend}: writing {n:,} chunks")
            started = time.perf_counter()
            backends.write_and_publish(settings, None, manifest, data, DenseParams.from_settings(settings))
            results[backend] = {"chunks": n, "write the whole index (s)": time.perf_counter() - started}
            started = time.perf_counter()
            assistants[backend] = Assistant(settings)
            results[backend]["open the Assistant (s)"] = time.perf_counter() - started
            results[backend].update(time_lookups(backends.load_for_update(settings), data, log))
            for question in questions[:3]:
                assistants[backend].ask(question)
        log(f"{len(questions)} questions to each back end, in turns")
        ask_in_turns(assistants, questions, results)
        milvus.close_clients()
    return results
