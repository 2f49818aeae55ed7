"""Uploads (rag/uploads.py): each bad file is rejected with its reason and the corpus folder is left as it was."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from rag.loaders import SUPPORTED_SUFFIXES
from rag.settings import Settings
from rag.uploads import REPLACE_LABEL, corpus_files, delete_document, store_upload, store_uploads, UploadRejected
from tests.conftest import TINY_CORPUS, make_pdf, write_corpus

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
ZIP = b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(range(256)) * 4


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    corpus = write_corpus(tmp_path / "corpus", TINY_CORPUS)
    return Settings(corpus_dir=corpus, index_dir=tmp_path / "index", max_upload_mb=0.001)  # 1048 bytes


def listing(root: Path) -> dict[str, str]:
    """Every entry below `root` (hidden ones too) with the sha256 of each file: what 'unchanged' means."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


def folder_outside(settings: Settings) -> dict[str, str]:
    return listing(settings.corpus_dir.parent)


REJECTIONS = [
    ("../../x.txt", b"traversal",
     "'../../x.txt' rejected: the name contains a folder path ('/' or '\\'); uploads go straight into the corpus "
     "folder, so rename the file to a plain name such as 'x.txt'"),
    ("/etc/passwd.txt", b"absolute",
     "'/etc/passwd.txt' rejected: the name contains a folder path ('/' or '\\'); uploads go straight into the "
     "corpus folder, so rename the file to a plain name such as 'passwd.txt'"),
    ("..\\..\\x.txt", b"backslashes",
     "'..\\..\\x.txt' rejected: the name contains a folder path ('/' or '\\'); uploads go straight into the corpus "
     "folder, so rename the file to a plain name such as 'x.txt'"),
    (".env.txt", b"SECRET=1",
     "'.env.txt' rejected: names starting with '.' are hidden files, which the index ignores; rename it to 'env.txt'"),
    ("", b"no name", "(no name) rejected: the file has no name; give it a name such as 'notes.txt'"),
    ("a\nb.txt", b"newline", "'a\nb.txt' rejected: the name contains control characters; rename the file"),
    ("tool.exe", b"MZ\x90\x00",
     "'tool.exe' rejected: unsupported file type '.exe'; upload one of " + ", ".join(SUPPORTED_SUFFIXES)),
    ("README", b"no extension",
     "'README' rejected: unsupported file type '(none)'; upload one of " + ", ".join(SUPPORTED_SUFFIXES)),
    ("report.pdf", ZIP,
     "'report.pdf' rejected: not a PDF (no %PDF- header): the content does not match the .pdf extension "
     "(the content looks like application/zip)"),
    ("broken.pdf", b"%PDF-1.4\n" + bytes(range(256)),
     "'broken.pdf' rejected: the PDF could not be parsed (Failed to load document (PDFium: Data format error)): "
     "re-export it or remove it"),
    ("scan.pdf", make_pdf([""]),
     "'scan.pdf' rejected: no text could be extracted: it has no text layer and OCR found no text in it; check "
     "that it holds text"),
    ("photo.txt", PNG,
     "'photo.txt' rejected: binary content (NUL bytes) in a text file (the content looks like image/png)"),
    ("late-nul.md", b"# Title\n" + b"text " * 200 + b"\x00",
     "'late-nul.md' rejected: binary content (NUL bytes) in a text file"),
    ("latin1.txt", "café".encode("latin-1"),
     "'latin1.txt' rejected: not valid UTF-8 (byte 3): re-save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)"),
    ("plain.html", b"just words, no markup",
     "'plain.html' rejected: no HTML markup found; if it is plain text, upload it as .txt"),
    ("empty.txt", b"", "'empty.txt' rejected: the file is empty (0 bytes); upload a file with text in it"),
    ("blank.md", b"  \n\n ", "'blank.md' rejected: the file is empty: add text to it or remove it"),
    ("big.txt", b"a" * 2048,
     "'big.txt' rejected: the file is 2.0 KB; the limit is 1.0 KB a file (setting RAG_MAX_UPLOAD_MB); "
     "split the file or raise the limit"),
    ("conference.txt", b"Different content under an existing name.",
     f"'conference.txt' rejected: a different document with this name is already in the corpus; delete it "
     f"first, upload under another name, or tick '{REPLACE_LABEL}'"),
]


@pytest.mark.parametrize("name,data,message", REJECTIONS, ids=[r[0] or "empty-name" for r in REJECTIONS])
def test_bad_upload_is_rejected_with_its_reason_and_nothing_changes(settings, name, data, message) -> None:
    before = folder_outside(settings)
    outcome = store_upload(settings, name, data)
    assert (outcome.status, outcome.message, outcome.stored_as) == ("rejected", message, None)
    assert not outcome.ok
    assert folder_outside(settings) == before


def test_valid_uploads_of_each_type_are_stored_under_their_name(settings) -> None:
    before = listing(settings.corpus_dir)
    files = {
        "notes.txt": "The library opens at nine.".encode(),
        "café menu.md": "# Menu\n\nSoup of the day: lentil.".encode(),
        "page.htm": b"<html><body><p>Parking is free on Sundays.</p></body></html>",
        "slides.pdf": make_pdf(["The quarterly review is on Friday."]),
    }
    outcomes = [store_upload(settings, name, data) for name, data in files.items()]
    assert [(o.status, o.stored_as, o.message) for o in outcomes] == [
        ("added", "notes.txt", "'notes.txt' added (26 bytes)"),
        ("added", "café menu.md", "'café menu.md' added (32 bytes)"),
        ("added", "page.htm", "'page.htm' added (60 bytes)"),
        ("added", "slides.pdf", f"'slides.pdf' added ({len(files['slides.pdf'])} bytes)"),
    ]
    after = listing(settings.corpus_dir)
    assert {k: v for k, v in after.items() if k not in before} == {
        name: hashlib.sha256(data).hexdigest() for name, data in files.items()
    }  # the four new files and nothing else: no temporary file is left behind
    assert {k: after[k] for k in before} == before


def test_same_name_same_content_is_a_no_op_and_replace_is_explicit(settings) -> None:
    original = TINY_CORPUS["conference.txt"].encode()
    outcome = store_upload(settings, "conference.txt", original)
    assert (outcome.status, outcome.message) == (
        "unchanged", "'conference.txt' is already in the corpus with the same content: nothing to do")
    new = b"The conference moved to Shenzhen."
    outcome = store_upload(settings, "conference.txt", new, replace=True)
    assert (outcome.status, outcome.message) == ("replaced", "'conference.txt' replaced (33 bytes)")
    assert (settings.corpus_dir / "conference.txt").read_bytes() == new


def test_several_files_are_judged_each_on_its_own(settings, tmp_path) -> None:
    """Gradio hands over temporary copies named like the user's files; one bad file does not stop the rest."""
    upload_dir = tmp_path / "gradio-tmp"
    good = write_corpus(upload_dir / "a", {"good.txt": "Bicycles may be parked in the courtyard."}) / "good.txt"
    png = write_corpus(upload_dir / "b", {"photo.txt": PNG}) / "photo.txt"
    big = write_corpus(upload_dir / "c", {"big.md": b"b" * 5000}) / "big.md"
    before = listing(settings.corpus_dir)
    outcomes = store_uploads(settings, [good, png, big])
    assert [(o.name, o.status) for o in outcomes] == [
        ("good.txt", "added"), ("photo.txt", "rejected"), ("big.md", "rejected")]
    assert outcomes[2].message == ("'big.md' rejected: the file is 4.9 KB; the limit is 1.0 KB a file "
                                   "(setting RAG_MAX_UPLOAD_MB); split the file or raise the limit")
    assert listing(settings.corpus_dir) == {**before, "good.txt": hashlib.sha256(good.read_bytes()).hexdigest()}


def test_delete_removes_only_a_listed_corpus_file(settings) -> None:
    (settings.corpus_dir / "sub").mkdir()
    (settings.corpus_dir / "sub" / "deep.txt").write_text("Deep file.")
    (settings.corpus_dir / "data.csv").write_text("a,b")
    assert corpus_files(settings) == ["cats.html", "conference.txt", "data.csv", "sub/deep.txt", "weather.md"]
    before = folder_outside(settings)
    for bad, message in [
        ("../index/x.txt", f"'../index/x.txt' is not a file in {settings.corpus_dir}: refresh the list and pick again"),
        ("sub", f"'sub' is not a file in {settings.corpus_dir}: refresh the list and pick again"),
        ("", "no document selected: pick one in the list first"),
    ]:
        with pytest.raises(UploadRejected) as err:
            delete_document(settings, bad)
        assert str(err.value) == message
    assert folder_outside(settings) == before
    assert delete_document(settings, "sub/deep.txt") == "'sub/deep.txt' deleted from the corpus"
    assert delete_document(settings, "data.csv") == "'data.csv' deleted from the corpus"
    assert corpus_files(settings) == ["cats.html", "conference.txt", "weather.md"]
