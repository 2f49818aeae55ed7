"""Files -> documents: every supported type, and every kind of bad input skipped with a reason."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pypdf import PdfReader, PdfWriter

from rag.loaders import LoadError, load_document, scan_corpus
from tests.conftest import make_pdf, write_corpus


def load(tmp_path: Path, name: str, content: str | bytes):
    corpus = write_corpus(tmp_path / "c", {name: content})
    return load_document(corpus / name, corpus)


def test_text_markdown_and_html_become_one_page(tmp_path: Path) -> None:
    assert load(tmp_path, "a.txt", "Hello world.\r\n").pages[0].text == "Hello world.\n"
    assert load(tmp_path, "b.md", "# Title\n\nBody.").pages[0].text == "# Title\n\nBody."
    html = load(tmp_path, "c.html", "<style>x{}</style><h1>Cats</h1><p>Cats sleep.</p><script>1</script>")
    assert html.pages[0].text == "Cats\nCats sleep."
    assert html.pages[0].number is None


def test_pdf_keeps_page_numbers(tmp_path: Path) -> None:
    document = load(tmp_path, "d/report.pdf", make_pdf(["First page text.", "Second page text."]))
    assert document.doc_id == "d/report.pdf"
    assert [(p.number, p.text.strip()) for p in document.pages] == [(1, "First page text."), (2, "Second page text.")]


def test_a_word_the_pdf_hyphenated_at_a_line_end_is_whole_again(tmp_path: Path) -> None:
    """PDFium gives "in\ufffetegrity" for "in-" ending a line and "tegrity" opening the next: the indexed text
    has "integrity", which BM25, the embedder and a question's "integrity" can match."""
    document = load(tmp_path, "ledger.pdf", make_pdf(["The ledger protects the in-\ntegrity of every record."]))
    assert document.pages[0].text.strip() == "The ledger protects the integrity of every record."


def test_content_hash_is_of_the_bytes(tmp_path: Path) -> None:
    first = load(tmp_path, "a.txt", "same text")
    second = load(tmp_path / "other", "b.txt", "same text")
    assert first.content_hash == second.content_hash
    assert len(first.content_hash) == 64


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.txt", "", "the file is empty"),
        ("blank.md", "  \n\n ", "the file is empty"),
        ("binary.txt", b"\x00\x01\x02binary\x00", "binary content in a text file"),
        ("latin1.txt", "caf\u00e9 cr\u00e8me".encode("latin-1"), "not valid UTF-8 (byte 3): re-save the file as UTF-8"),
        ("fake.pdf", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "not a PDF (no %PDF- header)"),
        ("broken.pdf", b"%PDF-1.4\n1 0 obj garbage", "the PDF could not be parsed"),
        ("blank.pdf", make_pdf([""]), "no text could be extracted"),
    ],
)
def test_bad_files_raise_a_reason(tmp_path: Path, name: str, content: bytes | str, reason: str) -> None:
    with pytest.raises(LoadError) as err:
        load(tmp_path, name, content)
    assert reason in str(err.value)


def encrypted_pdf(text: str, user_password: str, owner_password: str) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf([text]))))
    writer.encrypt(user_password=user_password, owner_password=owner_password, algorithm="AES-256")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def test_pdf_needing_a_user_password_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LoadError) as err:
        load(tmp_path, "secret.pdf", encrypted_pdf("Secret text.", "pw", "owner"))
    assert str(err.value) == ("the PDF needs a password to open: save a copy without the password and put that "
                              "in the corpus")


def test_pdf_with_only_an_owner_password_opens(tmp_path: Path) -> None:
    # The norm for filings: viewers open them without asking; only editing is restricted.
    document = load(tmp_path, "filing.pdf", encrypted_pdf("Quarterly revenue rose.", "", "owner-secret"))
    assert [(p.number, p.text.strip()) for p in document.pages] == [(1, "Quarterly revenue rose.")]


def test_scan_reports_unknown_types_and_ignores_hidden_files(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path, {"a.txt": "x", "b.exe": "x", ".hidden.txt": "x", ".git/c.txt": "x", "sub/d.md": "y"})
    files, skipped = scan_corpus(corpus)
    assert [f.relative_to(corpus).as_posix() for f in files] == ["a.txt", "sub/d.md"]
    assert [(s.path, s.reason.split(":")[0]) for s in skipped] == [("b.exe", "unsupported file type '.exe'")]


def test_missing_corpus_folder_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match=r"corpus folder .*nope does not exist: create it"):
        scan_corpus(tmp_path / "nope")
