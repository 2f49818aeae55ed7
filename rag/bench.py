"""`rag bench`: how fast, measured in one run beside a plain LlamaIndex setup, as one table.

Rows: ingest (chunks/s, pages/s), query latency p50/p95/p99 and throughput with 1 client and with 8
(8 threads in-process, and 8 gradio_client clients against a real `rag serve` on loopback), the cold start
of `rag ask --json` in a fresh process, and peak memory. The baseline is rag eval's: a VectorStoreIndex with
the same embedder (rag/evaluation.py `Baseline`); its column is empty where it has no equivalent (it has
no server and no CLI). Every figure is a bounded amount of work (N questions, N requests), never "for 60 s".
Speed is measured here, not in tests.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rag.settings import Settings

COLD_RUNS = 3  # `rag ask` cold starts; the median is shown


@dataclass
class Figure:
    name: str
    ours: float | None
    baseline: float | None
    unit: str
    higher_is_better: bool

    def row(self) -> str:
        def show(value: float | None) -> str:
            if value is None:
                return "—"
            return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.2f}"

        ratio = "—"
        if self.ours is not None and self.baseline:
            ratio = f"{self.ours / self.baseline:.2f}"
        return f"| {self.name} | {show(self.ours)} | {show(self.baseline)} | {ratio} | {self.unit} |"


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sample."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def timed_calls(call: Callable[[str], object], questions: Sequence[str], requests: int, clients: int) -> tuple[list[float], float, int]:
    """`requests` calls of `call` spread over `clients` threads: latencies (ms), wall seconds, errors."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    counter = iter(range(requests))

    def worker() -> None:
        while True:
            with lock:
                n = next(counter, None)
            if n is None:
                return
            started = time.perf_counter()
            try:
                call(questions[n % len(questions)])
            except Exception as err:  # noqa: BLE001 - counted and shown, the run goes on
                with lock:
                    errors[0] += 1
                print(f"bench: request failed: {type(err).__name__}: {err}", file=sys.stderr)
                continue
            with lock:
                latencies.append((time.perf_counter() - started) * 1000)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, time.perf_counter() - started, errors[0]


def latency_figures(label: str, ours: tuple[list[float], float, int], baseline: tuple[list[float], float, int] | None) -> list[Figure]:
    figures = []
    for q in (50, 95, 99):
        figures.append(Figure(f"{label}: latency p{q}", percentile(ours[0], q),
                              percentile(baseline[0], q) if baseline else None, "ms", False))
    figures.append(Figure(f"{label}: throughput", len(ours[0]) / ours[1],
                          len(baseline[0]) / baseline[1] if baseline else None, "answers/s", True))
    figures.append(Figure(f"{label}: failed requests", float(ours[2]), float(baseline[2]) if baseline else None,
                          "requests", False))
    return figures


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# The child reports its own peak: VmHWM restarts at exec, while the rusage of a forked child (ru_maxrss) also
# counts the pages it shared with this process (torch and all) before exec.
_COLD_ASK = """
import sys
from rag.cli import main
code = main(sys.argv[1:])
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print("VmHWM", int(hwm.split()[1]), file=sys.stderr)
sys.exit(code)
"""


def cold_ask(settings: Settings, question: str) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one `rag ask --json` in a fresh interpreter, to its printed JSON."""
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", _COLD_ASK, "ask", question, "--json", "--corpus", str(settings.corpus_dir),
         "--index", str(settings.index_dir)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"rag ask exited with {result.returncode}: {result.stderr[-2000:]}")
    peak_kb = int(result.stderr.rsplit("VmHWM", 1)[1].split()[0])
    return seconds, peak_kb / 1024


class Served:
    """`rag serve` in a child process on a free loopback port (stopped by `close`)."""

    def __init__(self, settings: Settings, log: Path) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = log
        env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "rag.cli", "serve", "--corpus", str(settings.corpus_dir), "--index",
             str(settings.index_dir), "--port", self.url.rsplit(":", 1)[1]],
            env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"rag serve exited with {self.process.returncode}: {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url, timeout=2):
                    return
            except OSError:
                time.sleep(0.2)  # polling a starting server: there is no event to wait on
        self.close()
        raise RuntimeError(f"rag serve did not answer on {self.url} within 300 s: {log.read_text()[-2000:]}")

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmHWM in /proc status")

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


PARTS = ("ingest", "cold", "query", "serve")  # what `rag bench --only` may name


def run_bench(corpus: Path, questions: Sequence[str], requests: int = 200, clients: int = 8,
              log: Callable[[str], None] = lambda message: print(message, file=sys.stderr),
              parts: Sequence[str] = PARTS) -> list[Figure]:
    """Everything in one run, on a temporary index of `corpus` (index/ is never touched).

    `parts` picks what is measured (to iterate on one of them): "ingest" (ours and the baseline), "cold"
    (`rag ask` in fresh processes), "query" (1 client and `clients` threads in-process, ours and the
    baseline), "serve" (`clients` gradio_client clients on `rag serve`, beside our in-process figure with
    as many threads, measured in the same run, which is the reference the server is held to). Our index is
    always built; the baseline only for "ingest" and "query". The concurrent measurements run warm: every
    question has been asked once by the process that answers (in-process, by the 1-client run).
    """
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise ValueError(f"unknown bench part(s) {', '.join(unknown)}: choose from {', '.join(PARTS)}")
    from rag.chat import Assistant
    from rag.embedding import Embedder
    from rag.evaluation import Baseline
    from rag.ingest import ingest
    from rag.store import load

    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="rag-bench-") as tmp:
        settings = Settings(corpus_dir=corpus, index_dir=Path(tmp) / "index")

        log(f"ingest {corpus}: ours" + (", then the LlamaIndex baseline (each loads its model)"
                                         if {"ingest", "query"} & set(parts) else ""))
        started = time.perf_counter()
        report = ingest(settings, embedder=Embedder(settings.embed_model))
        ours_ingest = time.perf_counter() - started
        baseline = None
        if {"ingest", "query"} & set(parts):
            started = time.perf_counter()
            baseline = Baseline(corpus, settings.embed_model)
            base_ingest = time.perf_counter() - started
        if "ingest" in parts:
            snapshot = load(settings.index_dir, settings.index_signature())
            chunks = snapshot.chunk_count()
            pages = sum(entry.pages for entry in snapshot.manifest.documents.values())
            figures += [
                Figure(f"ingest: chunks/s ({chunks} ours, {len(baseline.texts)} baseline)",
                       report.embedded_chunks / ours_ingest, len(baseline.texts) / base_ingest, "chunks/s", True),
                Figure(f"ingest: pages/s ({pages} pages)", pages / ours_ingest, pages / base_ingest, "pages/s", True),
            ]

        cold = []
        if "cold" in parts:
            log(f"cold start of `rag ask --json`: {COLD_RUNS} fresh processes")
            cold = [cold_ask(settings, questions[0]) for _ in range(COLD_RUNS)]

        if {"query", "serve"} & set(parts):
            assistant = Assistant(settings)
            for question in questions[:3]:  # warm: first-call imports and caches are the cold start's business
                assistant.ask(question)
                if baseline is not None:
                    baseline.retriever.retrieve(question)
        # Each measurement asks the next questions of the file (wrapping around), so a small file aside, none
        # is answered from the caches an earlier measurement filled.
        rest = list(questions[requests:]) + list(questions[:requests])
        if "query" in parts:
            log(f"{requests} questions, 1 client, in-process")
            figures += latency_figures("1 client", timed_calls(assistant.ask, questions, requests, 1),
                                       timed_calls(baseline.retriever.retrieve, questions, requests, 1))
        if "serve" in parts and "query" not in parts:
            for question in questions:  # warm as the 1-client run leaves it: every question asked once
                assistant.ask(question)
        if {"query", "serve"} & set(parts):
            log(f"{requests} questions, {clients} threads, in-process")
            figures += latency_figures(
                f"{clients} threads in-process", timed_calls(assistant.ask, rest, requests, clients),
                timed_calls(baseline.retriever.retrieve, rest, requests, clients) if "query" in parts else None)
        questions = rest[requests:] + rest[:requests]

        serve_rss = None
        if "serve" in parts:
            in_process = next(f for f in figures if f.name == f"{clients} threads in-process: throughput").ours
            log(f"{requests} requests from {clients} gradio_client clients against `rag serve` on loopback")
            served = Served(settings, Path(tmp) / "serve.log")
            try:
                from gradio_client import Client

                local = threading.local()

                def ask_server(question: str) -> object:
                    if not hasattr(local, "client"):
                        # Plain HTTP on loopback: there is no certificate to verify. With verification on,
                        # httpx loads the system's CA bundle for every request (gradio_client opens a new
                        # httpx client per request), which took half the clients' CPU, and the clients share
                        # the cores with the server they measure.
                        local.client = Client(served.url, verbose=False, ssl_verify=False)
                    return local.client.submit(question, [], api_name="/respond").result(timeout=120)

                # Warm as the in-process assistant is (its caches of sentence and word vectors are per process):
                # every question asked once, by all clients at a time.
                timed_calls(ask_server, questions, len(questions), clients)
                served_figures = latency_figures(f"{clients} clients on `rag serve`",
                                                 timed_calls(ask_server, questions, requests, clients), None)
                serve_rss = served.peak_rss_mb()
            finally:
                served.close()
            throughput = next(f for f in served_figures if f.name.endswith(": throughput")).ours
            figures += served_figures + [
                Figure(f"{clients} clients on `rag serve` / {clients} threads in-process: throughput ratio",
                       throughput / in_process, None, "x", True)]

        if cold:
            figures += [
                Figure("`rag ask --json` cold: wall time", statistics.median(c[0] for c in cold), None, "s", False),
                Figure("`rag ask --json` cold: peak RSS", max(c[1] for c in cold), None, "MB", False),
            ]
        if serve_rss is not None:
            figures.append(Figure(f"`rag serve` peak RSS after the {clients}-client run", serve_rss, None, "MB", False))
    return figures


def table(figures: Sequence[Figure]) -> str:
    lines = ["| measure | ours | plain LlamaIndex | ours / LlamaIndex | unit |", "|---|---:|---:|---:|---|"]
    return "\n".join(lines + [f.row() for f in figures])
