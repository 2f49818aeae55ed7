"""Faults: `kill -9` of an ingest at each stage, two writers at once, damaged index files, a file that
disappears mid-ingest. Real processes, real signals, the real index on disk.

The writer is stopped at a named stage with the tiny RAG_TEST_PAUSE_AT hook (rag/store.py `pause_point`):
it prints "RAG_TEST_PAUSE_AT: pid N paused at <stage>" on stderr and sleeps there until killed.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from rag import cli, store
from rag.chat import Assistant
from rag.embedding import Embedder
from rag.ingest import LOCK, LockBusy, check, ingest, writer_lock
from rag.settings import Settings
from tests.conftest import REPO, TINY_CORPUS, segment_file, write_corpus

QUESTION = "How many agreements were signed at the trade conference?"
# What each killed writer was doing: an added file needs the model (to reach "embedding"); the other
# stages come after a deletion, which needs no model, so those writers start in a few seconds.
STAGES = ["embedding", "written", "publishing", "published"]


class PausedWriter:
    """`rag ingest` in a child process, stopped at `stage` by RAG_TEST_PAUSE_AT."""

    def __init__(self, settings: Settings, stage: str, extra_args: tuple[str, ...] = ()) -> None:
        self.settings = settings
        self.stage = stage
        self.process = subprocess.Popen(
            [sys.executable, "-m", "rag.cli", "ingest", "--corpus", str(settings.corpus_dir),
             "--index", str(settings.index_dir), *extra_args],
            cwd=REPO, env={**os.environ, "RAG_TEST_PAUSE_AT": f"{stage}:600"},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.stderr: list[str] = []
        self._paused = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr.append(line)
            if line.startswith(f"RAG_TEST_PAUSE_AT: pid {self.process.pid} paused at {self.stage}"):
                self._paused.set()

    def wait_paused(self, timeout: float = 240) -> None:
        if not self._paused.wait(timeout):
            self.kill()
            raise AssertionError(f"the writer never reached {self.stage}:\n{''.join(self.stderr)}")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)


def index_copy(base: Settings, root: Path) -> Settings:
    shutil.copytree(base.corpus_dir, root / "corpus")
    shutil.copytree(base.index_dir, root / "index")
    return Settings(corpus_dir=root / "corpus", index_dir=root / "index")


@pytest.fixture(scope="module")
def paused_writers(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder):
    """One writer per stage, all started at once (they share two cores), each paused at its stage."""
    base_root = tmp_path_factory.mktemp("base")
    base = Settings(corpus_dir=write_corpus(base_root / "corpus", TINY_CORPUS), index_dir=base_root / "index")
    ingest(base, embedder=embedder)
    writers = {}
    for stage in STAGES:
        settings = index_copy(base, tmp_path_factory.mktemp(stage))
        if stage == "embedding":
            (settings.corpus_dir / "ferries.txt").write_text("Ferries leave twice a day from pier 7.")
        else:
            (settings.corpus_dir / "cats.html").unlink()
        writers[stage] = (PausedWriter(settings, stage), store.current_version(settings.index_dir))
    yield writers
    for writer, _ in writers.values():
        if writer.process.poll() is None:
            writer.kill()


# The writers paused at each stage are child processes (kill -9 is the point), one of which loads the model:
# slow tier.
@pytest.mark.slow
def test_a_second_writer_is_refused_naming_the_first(paused_writers, embedder: Embedder) -> None:
    writer, _ = paused_writers["embedding"]  # holds the lock while it sleeps
    writer.wait_paused()
    settings = writer.settings
    pid = writer.process.pid
    with pytest.raises(LockBusy) as err:
        ingest(settings, embedder=embedder)
    assert str(err.value) == (
        f"another ingest (pid {pid}) is writing {settings.index_dir}: wait for it to finish and run "
        "`rag ingest` again (the index it publishes stays usable meanwhile)"
    )
    assert err.value.owner == pid


@pytest.mark.slow
@pytest.mark.parametrize("stage", STAGES)
def test_kill_9_leaves_the_old_version_serving_and_the_next_ingest_recovers(
    stage: str, paused_writers, embedder: Embedder, caplog: pytest.LogCaptureFixture
) -> None:
    writer, old = paused_writers[stage]
    writer.wait_paused()
    settings = writer.settings
    index = settings.index_dir
    pid = writer.process.pid
    leftovers = sorted(p.name for p in (index / "versions").iterdir() if p.name != old)
    writer.kill()

    assert (index / LOCK).read_text().strip() == str(pid)  # the dead writer's lock is still there
    live = store.current_version(index)
    if stage == "published":
        assert live != old and leftovers == [live]  # switched, but the old version was not deleted yet
    else:
        assert live == old  # the previous version is still the one served
        assert len(leftovers) == (1 if stage in ("written", "publishing") else 0)
    answer = Assistant(settings, embedder).ask(QUESTION)
    assert answer.index_version == live and answer.short_answer == "33"
    assert answer.citations[0].source == "conference.txt"

    with caplog.at_level(logging.WARNING, logger="rag.ingest"):
        report = ingest(settings, embedder=embedder)
    assert f"took over the ingest lock {index / LOCK} left by pid {pid}, which is no longer running" in caplog.text
    expected_cleaned = {
        "embedding": [], "written": leftovers,
        "publishing": leftovers + [f".CURRENT.tmp-{pid}"], "published": [old],
    }[stage]
    assert report.cleaned == expected_cleaned
    if stage == "published":
        assert not report.published and report.version == live  # the killed writer had finished the job
    else:
        assert report.published and report.version not in (old, *leftovers)
    assert not (index / LOCK).exists()
    assert sorted(p.name for p in (index / "versions").iterdir()) == [report.version]
    assert not list(index.glob(".CURRENT.tmp-*"))
    assert check(settings) == []
    assert store.load(index, settings.index_signature()).version == report.version


def test_a_waiting_writer_goes_once_the_lock_is_free(tiny_index: Settings, embedder: Embedder) -> None:
    held, release = threading.Event(), threading.Event()

    def hold_until_released() -> None:
        with writer_lock(tiny_index.index_dir):
            held.set()
            release.wait(30)

    thread = threading.Thread(target=hold_until_released)
    thread.start()
    held.wait(10)
    with pytest.raises(LockBusy, match=rf"another ingest \(pid {os.getpid()}\) is writing"):
        ingest(tiny_index, embedder=embedder)
    # The lock is released 0.5 s after the waiting ingest starts, however long the refused one above took.
    started = time.monotonic()
    threading.Timer(0.5, release.set).start()
    report = ingest(tiny_index, embedder=embedder, wait=30)
    thread.join()
    assert time.monotonic() - started >= 0.5 and report.unchanged == ["cats.html", "conference.txt", "weather.md"]
    thread.join()


def test_a_damaged_index_is_named_and_repaired(tiny_index: Settings, embedder: Embedder, capsys) -> None:
    """`rag ingest --check` and `--rebuild` run in-process here (the CLI's own code; the model is the one
    this test session already loaded), so no child process has to import torch again."""
    paths = ["--corpus", str(tiny_index.corpus_dir), "--index", str(tiny_index.index_dir)]
    vectors = segment_file(tiny_index.index_dir, "vectors.faiss")
    vectors.write_bytes(vectors.read_bytes()[:100])  # truncated
    message = f"index file {vectors} is damaged (checksum mismatch): run `rag ingest --rebuild`"
    with pytest.raises(store.IndexCorrupt) as err:
        store.load(tiny_index.index_dir, tiny_index.index_signature())
    assert str(err.value) == message
    assert check(tiny_index) == [message]

    assert cli.main(["ingest", "--check", *paths]) == 1
    assert capsys.readouterr().err == f"drift {message}\n"
    assert cli.main(["ingest", "--rebuild", *paths]) == 0
    out = capsys.readouterr()
    assert out.err == "rebuilt from scratch: rebuild requested\n"
    assert re.fullmatch(r"added 0, updated 0, removed 0, unchanged 3 in \d+\.\d s "
                        r"\(renamed 0, skipped 0, 3 chunks embedded\)\n", out.out), out.out
    assert cli.main(["ingest", "--check", *paths]) == 0
    assert capsys.readouterr().err == f"index {tiny_index.index_dir} matches {tiny_index.corpus_dir}\n"
    assert Assistant(tiny_index, embedder).ask(QUESTION).short_answer == "33"


def test_a_plain_ingest_also_recovers_from_damage(tiny_index: Settings, embedder: Embedder) -> None:
    chunks = segment_file(tiny_index.index_dir, "chunks.sqlite")
    data = chunks.read_bytes()
    chunks.write_bytes(data.replace(b"33 signed", b"34 signed"))  # garbled, same size, still a valid database
    assert chunks.read_bytes() != data
    report = ingest(tiny_index, embedder=embedder)
    assert report.rebuilt == f"index file {chunks} is damaged (checksum mismatch): run `rag ingest --rebuild`"
    assert (report.embedded_chunks, report.unchanged) == (3, ["cats.html", "conference.txt", "weather.md"])
    assert Assistant(tiny_index, embedder).ask(QUESTION).short_answer == "33"

    manifest = tiny_index.index_dir / "versions" / report.version / "manifest.json"
    manifest.write_text(manifest.read_text()[:-10])
    with pytest.raises(store.IndexCorrupt, match=re.escape(f"{manifest} is damaged (")):
        store.load(tiny_index.index_dir, tiny_index.index_signature())
    report = ingest(tiny_index, embedder=embedder)
    assert report.rebuilt.startswith(f"{manifest} is damaged (") and report.added == sorted(TINY_CORPUS)
    assert check(tiny_index) == []


def test_a_file_that_disappears_mid_ingest_is_skipped_with_the_reason(tiny_settings: Settings, embedder: Embedder,
                                                                       monkeypatch) -> None:
    corpus = tiny_settings.corpus_dir
    (corpus / "gone-after-scan.txt").write_text("Ferries leave twice a day.")
    (corpus / "gone-after-hash.txt").write_text("Buses leave every hour.")
    from rag import ingest as ingest_module

    real_scan = ingest_module.scan_corpus

    def scan_then_delete(folder: Path):
        result = real_scan(folder)
        (corpus / "gone-after-scan.txt").unlink()  # after the folder was listed, before it was hashed
        return result

    def delete_when_planned(stage: str) -> None:
        if stage == "planned":
            (corpus / "gone-after-hash.txt").unlink()  # after it was hashed, before it was read to embed

    monkeypatch.setattr(ingest_module, "scan_corpus", scan_then_delete)
    monkeypatch.setattr(store, "pause_point", delete_when_planned)
    report = ingest(tiny_settings, embedder=embedder)
    reason = "cannot read the file (No such file or directory): check it exists and is readable"
    assert [(s.path, s.reason) for s in report.skipped] == [
        ("gone-after-hash.txt", reason), ("gone-after-scan.txt", reason)]
    assert report.added == ["cats.html", "conference.txt", "weather.md"]
    assert Assistant(tiny_settings, embedder).ask(QUESTION).short_answer == "33"
