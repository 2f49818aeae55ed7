"""Hardening probes kept as tests (issue 11), the parts without a web server: huge one-line documents,
full disks and read-only index folders, terminal escapes in documents, a missing corpus folder."""

from __future__ import annotations

import errno
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rag import cli, store
from rag.chat import Assistant
from rag.chunking import Chunker, DocumentTooLong, pieces
from rag.embedding import Embedder
from rag.ingest import IngestError, ingest
from rag.loaders import Page, SourceDocument
from rag.render import printable
from rag.settings import Settings
from rag.web import ChatSession
from tests.conftest import REPO, run_rag, write_corpus

QUESTION = "How many agreements were signed at the trade conference?"
WORDS = ["alpha", "harbour", "ferry", "conference", "agreement", "Dongguan", "twelve", "signed", "river", "market"]


def words(n: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(n))


# --- one long line: bounded chunking --------------------------------------------------------------


def test_pieces_cut_at_paragraphs_then_sentences_then_spaces_then_anywhere() -> None:
    text = "a" * 60 + "\n\n" + "b" * 60
    assert list(pieces(text, 100)) == [(0, "a" * 60 + "\n\n"), (62, "b" * 60)]
    text = "One two three. " * 10  # 150 characters, sentence ends every 15
    assert [(o, len(p)) for o, p in pieces(text, 100)] == [(0, 90), (90, 60)]
    text = "word " * 30
    assert [(o, len(p)) for o, p in pieces(text, 52)] == [(0, 50), (50, 50), (100, 50)]
    assert [(o, len(p)) for o, p in pieces("x" * 250, 100)] == [(0, 100), (100, 100), (200, 50)]
    assert "".join(p for _, p in pieces(words(5000), 777)) == words(5000)


def test_a_long_single_line_is_chunked_in_pieces_with_exact_spans(embedder: Embedder) -> None:
    settings = Settings()
    chunker = Chunker(embedder.tokenize, settings.chunk_tokens, settings.chunk_overlap, embedder.max_tokens,
                      max_document_chars=settings.max_document_chars)
    text = words(40_000)  # ~290,000 characters, one line, no sentence end
    started = time.perf_counter()
    chunks = chunker.chunk(SourceDocument("line.txt", "h", (Page(text, None),)))
    seconds = time.perf_counter() - started
    assert len(chunks) > 200  # 289 here: ~1,000 characters a chunk
    assert all(text[c.start : c.end] == c.text for c in chunks)
    assert max(len(embedder.tokenize(c.text)) for c in chunks) <= settings.chunk_tokens
    assert chunks[0].start == 0 and chunks[-1].end == len(text)
    assert seconds < 60, f"{len(text)} characters took {seconds:.1f} s"


def test_a_document_over_the_limit_is_refused_before_splitting(embedder: Embedder) -> None:
    chunker = Chunker(embedder.tokenize, 200, 32, embedder.max_tokens, max_document_chars=1000)
    document = SourceDocument("big.pdf", "h", (Page("x" * 600, 1), Page("y" * 600, 2)))
    with pytest.raises(DocumentTooLong) as err:
        chunker.chunk(document)
    assert str(err.value) == ("its text is 1,200 characters, more than the 1,000 one document may hold "
                              "(RAG_MAX_DOCUMENT_CHARS): split the file into smaller ones or raise the limit")


@pytest.mark.slow
def test_two_50_mb_files_are_skipped_in_bounded_time_and_memory_and_the_rest_is_indexed(tmp_path: Path) -> None:
    """Real 50 MB files, one a single line, one with line breaks but no sentence end, through `rag ingest`.
    The bound: both are skipped (over RAG_MAX_DOCUMENT_CHARS) and the small file indexed in under 300 s for
    the whole run, model load included, with no process (ingest or a parse worker) above 2 GB. Measured
    here: 21 s and 0.7 GB on a quiet machine, 124 s with other jobs on both cores; before, one such file
    ran 7 min at 5.8 GB and indexed nothing."""
    corpus = write_corpus(tmp_path / "corpus", {"ferries.txt": "Ferries leave twice a day from pier 7."})
    line = words(20_000)
    size = 50 * 1024 * 1024
    (corpus / "one-line.txt").write_text((line + " ") * (size // (len(line) + 1) + 1))
    wrapped = "\n".join(line[i : i + 80] for i in range(0, len(line), 80)) + "\n"
    (corpus / "no-sentence-ends.txt").write_text(wrapped * (size // len(wrapped) + 1))
    # The child reports its own and its parse workers' peak memory (RUSAGE_CHILDREN here would include
    # earlier tests' children).
    probe = ("import atexit, resource, runpy, sys; atexit.register(lambda: print('maxrss_kb', max("
             "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN)"
             ".ru_maxrss), file=sys.stderr)); "
             "sys.argv = ['rag'] + sys.argv[1:]; runpy.run_module('rag.cli', run_name='__main__')")
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", probe, "ingest", "--corpus", str(corpus), "--index",
                             str(tmp_path / "index")], cwd=REPO, capture_output=True, text=True, timeout=600)
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    for name in ("no-sentence-ends.txt", "one-line.txt"):
        length = len((corpus / name).read_text())
        assert (f"skipped {name}: its text is {length:,} characters, more than the 5,000,000 one document may hold "
                "(RAG_MAX_DOCUMENT_CHARS): split the file into smaller ones or raise the limit") in result.stderr
    assert result.stdout.startswith("added 1, updated 0, removed 0, unchanged 0")
    peak_mb = int(re.search(r"maxrss_kb (\d+)", result.stderr).group(1)) / 1024
    assert seconds < 300 and peak_mb < 2048, (seconds, peak_mb)
    answer = run_rag("ask", "How often do ferries leave?", "--json", "--corpus", str(corpus), "--index",
                     str(tmp_path / "index"))
    assert json.loads(answer.stdout)["citations"][0]["source"] == "ferries.txt"


# --- full disk and read-only index folder ----------------------------------------------------------


def test_a_full_disk_is_one_line_naming_the_folder_and_the_old_index_still_answers(
    tiny_index: Settings, embedder: Embedder, monkeypatch, capsys
) -> None:
    """The disk fills while the new version is written. Fault-injected at the write call (a real full
    tmpfs needs root): part of the version is written, then ENOSPC, as a full disk does."""
    old = store.current_version(tiny_index.index_dir)
    (tiny_index.corpus_dir / "ferries.txt").write_text("Ferries leave twice a day from pier 7.")
    real_write = store._write_files

    def fill_the_disk(tmp: Path, *args) -> None:
        (tmp / "vectors.faiss").write_bytes(b"\0" * 4096)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp / "chunks.jsonl"))

    monkeypatch.setattr(store, "_write_files", fill_the_disk)
    monkeypatch.setattr("rag.ingest.load_embedder", lambda name: embedder)
    index = tiny_index.index_dir
    message = (f"cannot write the index in {index} (No space left on device): free some space on its disk, then "
               "run `rag ingest` again; the index already there is unchanged and still answers")
    with pytest.raises(IngestError) as err:
        ingest(tiny_index, embedder=embedder)
    assert str(err.value) == message
    assert cli.main(["ingest", "--corpus", str(tiny_index.corpus_dir), "--index", str(index)]) == 1
    out = capsys.readouterr()
    assert out.err == f"error: {message}\n" and out.out == ""  # one line, no traceback
    assert store.current_version(index) == old
    assert sorted(p.name for p in (index / "versions").iterdir()) == [old]  # the partial version is gone
    live = [s["name"] for s in json.loads((index / "versions" / old / "manifest.json").read_text())["segments"]]
    assert sorted(p.name for p in (index / "segments").iterdir()) == live  # and so is the partial segment
    assert Assistant(tiny_index, embedder).ask(QUESTION).short_answer == "33"

    # The web app says the same without the server's paths.
    shown = ChatSession(tiny_index).public(f"Re-index failed: {message}")
    assert shown == (f"Re-index failed: cannot write the index in {index.name} (No space left on device): free "
                     "some space on its disk, then run `rag ingest` again; the index already there is unchanged "
                     "and still answers")
    assert str(tiny_index.index_dir.parent) not in shown
    monkeypatch.setattr(store, "_write_files", real_write)
    assert ingest(tiny_index, embedder=embedder).added == ["ferries.txt"]


def read_only(folder: Path, argv: list[str]) -> list[str]:
    """`argv` run with `folder` read-only. Root ignores file modes, so for root the folder is bind-mounted
    read-only in a private mount namespace (unshare); for anyone else its mode is enough."""
    if os.geteuid() != 0:
        for path in [folder, *folder.rglob("*")]:
            path.chmod(path.stat().st_mode & ~0o222)
        return argv
    script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(folder), *argv]


@pytest.mark.slow
def test_a_read_only_index_folder_is_one_line_naming_the_folder(tiny_index: Settings) -> None:
    index = tiny_index.index_dir
    old = store.current_version(index)
    (tiny_index.corpus_dir / "ferries.txt").write_text("Ferries leave twice a day from pier 7.")
    rag = [sys.executable, "-m", "rag.cli"]
    paths = ["--corpus", str(tiny_index.corpus_dir), "--index", str(index)]
    ingest_run = subprocess.run(read_only(index, [*rag, "ingest", *paths]), cwd=REPO, capture_output=True, text=True,
                                timeout=300)
    ask_run = subprocess.run(read_only(index, [*rag, "ask", QUESTION, "--json", *paths]), cwd=REPO,
                             capture_output=True, text=True, timeout=300)
    assert ingest_run.returncode == 1
    reason = "Read-only file system" if os.geteuid() == 0 else "Permission denied"
    assert ingest_run.stderr.splitlines()[-1] == (
        f"error: cannot write the index in {index} ({reason}): make it writable for this user, or point --index / "
        "RAG_INDEX_DIR at a writable folder, then run `rag ingest` again; the index already there is unchanged "
        "and still answers"
    )
    assert "Traceback" not in ingest_run.stderr
    assert store.current_version(index) == old
    assert ask_run.returncode == 0, ask_run.stderr
    assert json.loads(ask_run.stdout)["short_answer"] == "33"


def test_ingest_with_a_missing_corpus_creates_no_index_folder(tmp_path: Path) -> None:
    settings = Settings(corpus_dir=tmp_path / "nope", index_dir=tmp_path / "index")
    with pytest.raises(IngestError) as err:
        ingest(settings)
    assert str(err.value) == f"corpus folder {tmp_path / 'nope'} does not exist: create it and put documents in it"
    assert not (tmp_path / "index").exists()


# --- terminal escapes -------------------------------------------------------------------------------

HOSTILE = "The ferry to Lantau leaves at 7 am.\033]0;PWNED\007 It is free\033[2J for children.\n"


def test_terminal_escapes_in_documents_are_not_printed(tmp_path: Path, embedder: Embedder, capsys,
                                                       monkeypatch) -> None:
    """`rag ask` and `rag chat` in-process (the CLI's own code, the session's model)."""
    corpus = write_corpus(tmp_path / "corpus", {"ferry.txt": HOSTILE, "\033[31mred.bin": "Buses.", "[bold]x.bin": "Trams."})
    settings = Settings(corpus_dir=corpus, index_dir=tmp_path / "index")
    ingest(settings, embedder=embedder)
    paths = ["--corpus", str(corpus), "--index", str(settings.index_dir)]
    assert cli.main(["ask", "When does the ferry to Lantau leave?", *paths]) == 0
    out = capsys.readouterr()
    assert "The ferry to Lantau leaves at 7 am." in out.out and "It is free for children." in out.out
    for printed in (out.out, out.err):
        assert "\033" not in printed and "\007" not in printed and "PWNED" not in printed

    lines = iter(["When does the ferry to Lantau leave?", ""])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    assert cli.main(["chat", *paths]) == 0
    out = capsys.readouterr()
    assert "It is free for children." in out.out
    assert "\033" not in out.out + out.err and "\007" not in out.out + out.err

    shutil.rmtree(settings.index_dir)
    assert cli.main(["ingest", *paths]) == 0
    err = capsys.readouterr().err
    assert "skipped red.bin: unsupported file type '.bin'" in err  # the escape sequence removed whole
    assert "skipped [bold]x.bin: unsupported file type '.bin'" in err  # printed as named, not as rich markup
    assert "\033" not in err


def test_printable_removes_whole_sequences() -> None:
    assert printable(HOSTILE) == "The ferry to Lantau leaves at 7 am. It is free for children.\n"
    assert printable("a\tb\nc\x00d\x7fe\x9b2Jf\u202eg") == "a\tb\ncdefg"
