"""One bad file never stops an ingest: each failure path triggered by a real file made here.

No parser is mocked: the files below make PDFium itself fail, run long, or need too much memory.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from rag.ingest import ingest
from rag.loaders import LoadOptions, SkippedFile, SourceDocument, scan_corpus
from rag.parsing import parse_files
from rag.settings import Settings
from tests.conftest import make_pdf, write_corpus


def broken_page_pdf() -> bytes:
    """Opens (the catalog is sound) but its one page object is not a page: PDFium raises PdfiumError while
    loading the page, an exception type no loader declares."""
    return make_pdf(["Hello there."]).replace(b"/Type /Page /Parent", b"/Type /Pagx /Parent")


def slow_pdf(operations: int = 3_200_000) -> bytes:
    """A page whose content stream shows 3,200,000 one-character strings (22 MB): a real pathological file,
    not an artificial sleep. Our PDF loader takes about 4.5 s on it on a 2-core machine, nine times the 0.5 s
    limit the tests set; 400,000 strings (0.6 s here) finished within the limit on a faster CI machine."""
    pdf = make_pdf(["x"])
    stream = "BT /F1 12 Tf 72 720 Td " + " ".join(f"({i % 10}) Tj" for i in range(operations)) + " ET"
    old = b"BT /F1 12 Tf 72 720 Td (x) Tj ET"
    return pdf.replace(b"<< /Length %d >>" % len(old), b"<< /Length %d >>" % len(stream)).replace(old, stream.encode())


def huge_blank_pdf() -> bytes:
    """A 4000 x 4000 pt page without text: OCR renders it at 300 dpi, a 16,667 px square bitmap (> 1 GB)."""
    return make_pdf([""]).replace(b"/MediaBox [0 0 612 792]", b"/MediaBox [0 0 4000 4000]")


def parse(corpus: Path, names: list[str], **bounds) -> list[tuple[str, object]]:
    jobs = [(name, corpus / name, (corpus / name).read_bytes()) for name in names]
    settings = {"workers": 2, "timeout_s": 60.0, "memory_mb": 2048} | bounds
    return list(parse_files(jobs, corpus, LoadOptions(), total=len(jobs), **settings))


def test_any_parser_exception_skips_only_that_file(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path, {"a.txt": "Alpha text.", "bad.pdf": broken_page_pdf(), "z.txt": "Zulu text."})
    results = parse(corpus, ["a.txt", "bad.pdf", "z.txt"])
    assert [name for name, _ in results] == ["a.txt", "bad.pdf", "z.txt"]  # input order, whatever finishes first
    assert isinstance(results[0][1], SourceDocument) and isinstance(results[2][1], SourceDocument)
    assert results[1][1] == SkippedFile(
        "bad.pdf",
        "the PDF file parser failed unexpectedly (PdfiumError: Failed to load page.): the file may be damaged; "
        "open and re-save (or re-export) it, or remove it",
    )


def test_a_parse_past_the_time_limit_is_stopped_and_the_worker_replaced(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path, {"slow.pdf": slow_pdf(), "after.txt": "Parsed by a fresh worker."})
    # One worker: the file after the slow one can only be parsed if the killed worker was replaced.
    results = parse(corpus, ["slow.pdf", "after.txt"], workers=1, timeout_s=0.5)
    assert results[0][1] == SkippedFile(
        "slow.pdf",
        "parsing took longer than 0.5 s (RAG_PARSE_TIMEOUT_S), so it was stopped: the file may be damaged or "
        "very large; re-export or split it, or raise RAG_PARSE_TIMEOUT_S",
    )
    assert results[1][1].pages[0].text == "Parsed by a fresh worker."


def test_a_parse_past_the_memory_bound_is_stopped(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path, {"poster.pdf": huge_blank_pdf()})
    results = parse(corpus, ["poster.pdf"], memory_mb=512)
    assert results == [("poster.pdf", SkippedFile(
        "poster.pdf",
        "parsing needed more memory than the 512 MB a parser may use (RAG_PARSE_MEMORY_MB), so it was stopped: "
        "split the file, or raise RAG_PARSE_MEMORY_MB",
    ))]


def test_ingest_indexes_the_rest_and_lists_each_bad_file(tmp_path: Path, embedder) -> None:
    corpus = write_corpus(tmp_path / "corpus", {
        "good.txt": "Typhoons arrive mostly in August.",
        "bad.pdf": broken_page_pdf(),
        "slow.pdf": slow_pdf(),
    })
    settings = Settings(corpus_dir=corpus, index_dir=tmp_path / "index", parse_timeout_s=0.5, parse_workers=2)
    report = ingest(settings, embedder=embedder)
    assert report.added == ["good.txt"]
    assert [(s.path, s.reason.split(" (")[0]) for s in report.skipped] == [
        ("bad.pdf", "the PDF file parser failed unexpectedly"),
        ("slow.pdf", "parsing took longer than 0.5 s"),
    ]


def test_symlinks_and_special_files_are_listed_never_opened(tmp_path: Path) -> None:
    outside = write_corpus(tmp_path / "outside", {"secret.txt": "Not for the index."})
    corpus = write_corpus(tmp_path / "corpus", {"a.txt": "Alpha.", "sub/b.md": "Beta.", ".hidden/c.txt": "Gamma."})
    (corpus / "to-a.txt").symlink_to(corpus / "a.txt")  # inside, target indexed: would index a.txt twice
    (corpus / "to-hidden.txt").symlink_to(corpus / ".hidden" / "c.txt")  # inside, target not listed: indexed once
    (corpus / "escape.txt").symlink_to(outside / "secret.txt")
    (corpus / "dangling.txt").symlink_to(corpus / "missing.txt")
    (corpus / "linked-dir").symlink_to(outside, target_is_directory=True)
    os.mkfifo(corpus / "pipe.txt")  # opening it would block the scan forever
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(corpus / "sock.txt"))
    try:
        files, skipped = scan_corpus(corpus)
    finally:
        server.close()
    assert [f.relative_to(corpus).as_posix() for f in files] == ["a.txt", "sub/b.md", "to-hidden.txt"]
    assert {s.path: s.reason for s in skipped} == {
        "dangling.txt": "a symbolic link whose target does not exist: fix or remove the link",
        "escape.txt": f"a symbolic link to {outside.resolve() / 'secret.txt'}, outside the corpus folder: copy the "
                      "file into the corpus instead (links out of the corpus are not followed)",
        "linked-dir": "a symbolic link to a folder: linked folders are not followed; copy or move the files into "
                      "the corpus instead",
        "pipe.txt": "a named pipe (FIFO), not a document: remove it from the corpus folder",
        "sock.txt": "a socket, not a document: remove it from the corpus folder",
        "to-a.txt": "a symbolic link to a.txt, which is indexed already",
    }
