"""Load during rebuilds: the real app on localhost, 8 concurrent clients asking through the Gradio API while
documents are added, edited and removed and the index is rebuilt version after version.

The work is bounded, not timed: ROUNDS rounds, in each of which every client asks ASKS_PER_ROUND questions
while the writer adds, edits and removes files and re-indexes once; a barrier ends the round. So the test
makes the same number of requests and rebuilds on an idle or a loaded machine, only slower on the latter.

Asserts: zero failed requests; every answer consistent with one index version that was live while it
was asked (each cited source is a document of that version and each quote is text of that document
there); the article's number never wrong; and at the end the index equals a fresh build of the folder.
"""

from __future__ import annotations

import html
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from gradio_client import Client

from rag import store
from rag.embedding import Embedder
from rag.ingest import check, ingest
from rag.settings import Settings
from tests.conftest import SHIPPED_CORPUS, Server
from tests.test_lifecycle import MemoEmbedder, assert_same_index, view, wait_until

CLIENTS = 8
ROUNDS = 10  # index versions published by the test (the app's own watcher may add more)
ASKS_PER_ROUND = 3  # per client: 8 * 3 * 10 = 240 requests in all
ARTICLE_QUESTION = "How many agreements were signed at the conference?"


def status_text(n: int) -> str:
    return f"Status report. The current shipment number is {n}. It left the harbour on schedule."


def shipment_text(n: int) -> str:
    return f"Shipment {n} carried {100 + n} containers of porcelain from the harbour of Dongguan."


def questions(n: int) -> list[str]:
    """What the clients ask while shipment n is the newest: the article, the edited file, recent and old files."""
    return [ARTICLE_QUESTION, "What is the current shipment number?",
            f"How many containers did shipment {n} carry?", f"How many containers did shipment {max(n - 3, 0)} carry?"]


@dataclass
class Version:
    name: str
    live_from: float
    live_until: float = float("inf")
    texts: dict[str, list[str]] = field(default_factory=dict)  # source -> chunk texts


class VersionLog:
    """Every version that became live, with when and what it held (read from its chunks.jsonl at once:
    a version is deleted only when the next one is published, seconds later). Polls index/CURRENT, so it
    also sees versions published by anyone else (e.g. a watcher inside the app)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.versions: list[Version] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def start(self) -> VersionLog:
        self._record(store.current_version(self.settings.index_dir))
        self._thread.start()
        return self

    def _record(self, name: str | None) -> None:
        now = time.monotonic()
        if self.versions:
            self.versions[-1].live_until = now
        snapshot = store.load(self.settings.index_dir, self.settings.index_signature(), verify_checksums=False)
        assert snapshot.version == name, "a version lived less than the polling interval"
        version = Version(name, now)
        for _, chunk in snapshot.iter_chunks():
            version.texts.setdefault(chunk.source, []).append(chunk.text)
        self.versions.append(version)

    def _poll(self) -> None:
        while not self._stop.is_set():
            live = store.current_version(self.settings.index_dir)
            if live != self.versions[-1].name:
                self._record(live)
            time.sleep(0.01)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def live_between(self, start: float, end: float, slack: float) -> list[Version]:
        """Versions live at some time in [start - slack, end]. The slack covers an answer that began on the
        old snapshot while the app was loading the new one (readers never wait for that)."""
        return [v for v in self.versions if v.live_from <= end and v.live_until >= start - slack]


@dataclass
class Reply:
    question: str
    started: float
    ended: float
    text: str
    citations: list[tuple[str, str]]  # (source, quote)
    refused: bool


def parse_reply(question: str, started: float, ended: float, chat: list[dict]) -> Reply:
    """The answer message and the Sources (or Closest passages) message the app rendered."""
    def text_of(message: dict) -> str:
        content = message["content"]
        return content if isinstance(content, str) else "".join(part.get("text", "") for part in content)

    answer = text_of(chat[1])
    citations, refused = [], False
    for message in chat[2:]:
        title = (message.get("metadata") or {}).get("title") or ""
        refused = refused or title == "Closest passages"
        if title in ("Sources", "Closest passages"):
            for source, quote in re.findall(r"`corpus/([^`]+)`[^\n]*\n\n> (.*?)(?=\n\n\*\*\[|\Z)", text_of(message), re.S):
                citations.append((source, html.unescape(quote)))
    return Reply(question, started, ended, html.unescape(answer), citations, refused)


def consistent(reply: Reply, version: Version) -> bool:
    return all(source in version.texts and any(quote in text for text in version.texts[source])
               for source, quote in reply.citations)


@pytest.mark.slow
def test_answers_stay_consistent_while_the_index_is_rebuilt(tmp_path: Path, embedder: Embedder) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "article.txt").write_bytes((SHIPPED_CORPUS / "dongguan-hong-kong-cooperation.txt").read_bytes())
    (corpus / "status.txt").write_text(status_text(0))
    (corpus / "shipment-0.txt").write_text(shipment_text(0))
    settings = Settings(corpus_dir=corpus, index_dir=tmp_path / "index")
    ingest(settings, embedder=embedder)  # the app's start-up ingest then finds nothing to do

    server = Server(settings)
    try:
        server.wait()
        log = VersionLog(settings).start()
        newest = [0]
        replies: list[Reply] = []
        failures: list[str] = []
        # Clients and the writer meet at the end of each round; a broken barrier (a thread died) fails fast.
        round_end = threading.Barrier(CLIENTS + 1, timeout=300)

        def ask(worker: int) -> None:
            client = Client(server.url, verbose=False)
            n = 0
            for _ in range(ROUNDS):
                for _ in range(ASKS_PER_ROUND):
                    question = questions(newest[0])[(worker + n) % 4]
                    n += 1
                    started = time.monotonic()
                    try:
                        _, chat = client.submit(question, [], api_name="/respond").result(timeout=120)
                        reply = parse_reply(question, started, time.monotonic(), chat)
                    except Exception as err:  # noqa: BLE001 - every failed request is counted
                        failures.append(f"{question!r}: {type(err).__name__}: {err}")
                        continue
                    if "The index cannot be used" in reply.text:
                        failures.append(f"{question!r}: {reply.text}")
                    replies.append(reply)
                round_end.wait()

        def rebuild() -> None:
            """Each round: add a shipment, edit the status file, remove an old shipment; re-index."""
            for _ in range(ROUNDS):
                n = newest[0] + 1
                (corpus / f"shipment-{n}.txt").write_text(shipment_text(n))
                (corpus / "status.txt").write_text(status_text(n))
                if n >= 3:
                    (corpus / f"shipment-{n - 3}.txt").unlink()
                ingest(settings, embedder=embedder, wait=60)  # waits if the app itself is re-indexing
                newest[0] = n
                round_end.wait()

        workers = [threading.Thread(target=ask, args=(w,)) for w in range(CLIENTS)]
        writer = threading.Thread(target=rebuild)
        for thread in [*workers, writer]:
            thread.start()
        for thread in [*workers, writer]:
            thread.join(timeout=600)
        assert not any(thread.is_alive() for thread in [*workers, writer]), "a client or the writer hung"
        # The poller has seen the last version (it polls every 10 ms; the app's watcher may still publish).
        wait_until(lambda: log.versions[-1].name == store.current_version(settings.index_dir))
        log.stop()
    finally:
        server.stop()

    latencies = sorted(r.ended - r.started for r in replies)
    print(f"\nload: {len(replies)} answers, {len(failures)} failed, {len(log.versions)} index versions, "
          f"latency p50 {latencies[len(latencies) // 2]:.2f} s, max {latencies[-1]:.2f} s" if latencies else "")
    assert failures == []
    assert len(log.versions) >= ROUNDS + 1, "a published version was missed"
    assert len(replies) == ROUNDS * ASKS_PER_ROUND * CLIENTS
    inconsistent = []
    for reply in replies:
        candidates = log.live_between(reply.started, reply.ended, slack=5.0)
        if not any(consistent(reply, version) for version in candidates):
            inconsistent.append((reply.question, reply.citations, [v.name for v in candidates]))
        if reply.question == ARTICLE_QUESTION:
            assert re.match(r"\W*33\b", reply.text), reply.text
    assert inconsistent == []
    # The clients saw the edited file change under them, without a restart.
    seen = {m for r in replies for source, quote in r.citations if source == "status.txt"
            for m in re.findall(r"shipment number is (\d+)", quote)}
    assert len(seen) >= 3, seen

    assert check(settings) == []
    fresh = settings.model_copy(update={"index_dir": tmp_path / "fresh"})
    ingest(fresh, embedder=embedder)
    final_questions, answering = questions(newest[0]), MemoEmbedder(embedder)
    assert_same_index(view(settings, answering, final_questions), view(fresh, answering, final_questions))
