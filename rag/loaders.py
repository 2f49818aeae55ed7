"""Files -> documents. A document's id is its path relative to the corpus; its hash is of the raw bytes.

Each loader turns one file into pages of plain text (a text file is one page with number None; a PDF
has one page per PDF page). A file that cannot be read raises `LoadError` with a reason a person can act
on; the caller skips it and goes on.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SUPPORTED_SUFFIXES = (".txt", ".md", ".markdown", ".pdf", ".html", ".htm")


class LoadError(Exception):
    """A file that cannot become a document; the message names the reason and the fix."""


@dataclass(frozen=True)
class Page:
    text: str
    number: int | None  # 1-based PDF page, None for single-page formats


@dataclass(frozen=True)
class SourceDocument:
    doc_id: str  # path relative to the corpus, with forward slashes
    content_hash: str  # sha256 of the file's bytes
    pages: tuple[Page, ...]


@dataclass(frozen=True)
class SkippedFile:
    path: str
    reason: str


def hash_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def scan_corpus(corpus_dir: Path) -> tuple[list[Path], list[SkippedFile]]:
    """All visible files below `corpus_dir`, sorted; files of unknown type are reported as skipped."""
    if not corpus_dir.exists():
        raise LoadError(f"corpus folder {corpus_dir} does not exist: create it and put documents in it")
    if not corpus_dir.is_dir():
        raise LoadError(f"corpus path {corpus_dir} is not a folder: point --corpus at a folder of documents")
    files: list[Path] = []
    skipped: list[SkippedFile] = []
    for path in sorted(corpus_dir.rglob("*")):
        rel = path.relative_to(corpus_dir)
        if any(part.startswith(".") for part in rel.parts) or not path.is_file():
            continue
        if path.suffix.lower() in SUPPORTED_SUFFIXES:
            files.append(path)
        else:
            skipped.append(
                SkippedFile(
                    rel.as_posix(),
                    f"unsupported file type '{path.suffix or '(none)'}': convert it to one of "
                    + ", ".join(SUPPORTED_SUFFIXES),
                )
            )
    return files, skipped


def doc_id_for(path: Path, corpus_dir: Path) -> str:
    return path.relative_to(corpus_dir).as_posix()


def load_document(path: Path, corpus_dir: Path, data: bytes | None = None) -> SourceDocument:
    """Read one file into a document. `data` lets the caller pass bytes it already read for hashing."""
    if data is None:
        try:
            data = path.read_bytes()
        except OSError as err:
            raise LoadError(f"cannot read the file ({err.strerror}): check it exists and is readable") from err
    if not data.strip():
        raise LoadError("the file is empty: add text to it or remove it")
    loader = _LOADERS[path.suffix.lower()]
    pages = tuple(p for p in loader(data) if p.text.strip())
    if not pages:
        raise LoadError("no text could be extracted: if it is a scanned PDF, run OCR on it first")
    return SourceDocument(doc_id_for(path, corpus_dir), hash_bytes(data), pages)


def _decode_text(data: bytes) -> str:
    if b"\x00" in data[:8192]:
        raise LoadError("binary content in a text file: it is not text, remove it or give it the right extension")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise LoadError(
            f"not valid UTF-8 (byte {err.start}): re-save the file as UTF-8 "
            "(e.g. `iconv -f latin1 -t utf-8`)"
        ) from err
    return text.replace("\r\n", "\n")


def _load_text(data: bytes) -> list[Page]:
    return [Page(_decode_text(data), None)]


def _load_html(data: bytes) -> list[Page]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(_decode_text(data), "html.parser")
    for tag in soup(["script", "style", "noscript", "template"]):
        tag.decompose()
    lines = (line.strip() for line in soup.get_text("\n").splitlines())
    return [Page("\n".join(line for line in lines if line), None)]


def _load_pdf(data: bytes) -> list[Page]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    if not data.lstrip()[:5] == b"%PDF-":
        raise LoadError("not a PDF (no %PDF- header): the content does not match the .pdf extension")
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise LoadError("the PDF is encrypted: save an unencrypted copy and put that in the corpus")
        return [Page(page.extract_text() or "", number) for number, page in enumerate(reader.pages, start=1)]
    except LoadError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as err:
        raise LoadError(f"the PDF could not be parsed ({err}): re-export it or remove it") from err


_LOADERS: dict[str, Callable[[bytes], list[Page]]] = {
    ".txt": _load_text,
    ".md": _load_text,
    ".markdown": _load_text,
    ".pdf": _load_pdf,
    ".html": _load_html,
    ".htm": _load_html,
}
