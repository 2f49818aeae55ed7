"""The passage behind a citation, for the web chat's evidence pane: a PDF page rendered by PDFium with the
quote's lines boxed, or the text around the quote with the heading it sits under.

Files are reached only through the live index manifest: a citation names a source id, the id must be a
document of the index, and its path must stay inside the corpus folder. Nothing the browser sends is ever
used as a path.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

from rag.loaders import (HTML_SUFFIXES, PDF_HYPHENATION, TEXT_SUFFIXES, LoadError, LoadOptions, SourceDocument,
                         hash_bytes, load_document)
from rag.schema import Citation
from rag.store import Manifest


class EvidenceError(Exception):
    """The passage cannot be shown; the message says why and what to do."""


@dataclass(frozen=True)
class Box:
    """One highlighted line on a page, as fractions of the page's width and height from its top-left corner."""

    left: float
    top: float
    width: float
    height: float


@dataclass(frozen=True)
class PdfPageView:
    source: str
    page: int  # 1-based
    pages: int  # how many the PDF has
    png: bytes  # the page rendered by PDFium
    boxes: tuple[Box, ...]  # one per line of the quote; empty when the quote is not on this page
    highlighted: str | None  # the page's own text under the boxes (PDFium's), None when not found
    quote: str


@dataclass(frozen=True)
class TextView:
    source: str
    before: str  # the text around the quote, as the index read it
    quote: str
    after: str
    heading: str | None  # the heading (or slide, sheet, section) the quote sits under, when the format has one
    clipped_start: bool  # `before` does not start at the beginning of the text
    clipped_end: bool
    note: str | None = None  # e.g. the file changed since it was indexed


def source_path(corpus_dir: Path, manifest: Manifest, source: str) -> Path:
    """The file of an indexed document. Only ids of the live manifest are looked up, and the resolved path
    must lie inside the corpus folder (a symlink or a crafted id cannot reach anything else)."""
    if source not in manifest.documents:
        raise EvidenceError(f"'{source}' is not a document of the live index: it was deleted or renamed since "
                            "this answer; ask again to get current sources")
    root = corpus_dir.resolve()
    path = (root / source).resolve()
    if not path.is_relative_to(root):
        raise EvidenceError(f"'{source}' points outside the corpus folder {corpus_dir}; it is not shown")
    if not path.is_file():
        raise EvidenceError(f"'{source}' is no longer in {corpus_dir}: re-index (Documents tab) and ask again")
    return path


def find_quote(text: str, quote: str, near: int | None = None) -> tuple[int, int] | None:
    """The span of `quote` in `text`, comparing with every run of whitespace as one space (a PDF's text breaks
    lines where the quote has spaces, and PDFium ends lines with CRLF) and without PDFium's hyphenation marks;
    of several matches, the one nearest `near`. None when the quote is not there."""
    wanted = " ".join(quote.split())
    if not wanted:
        return None
    flat: list[str] = []
    origin: list[int] = []  # index in `text` of each character of `flat`
    for i, char in enumerate(text):
        if char in PDF_HYPHENATION:  # the loader dropped it from the indexed text, so quotes lack it
            continue
        if char.isspace():
            if flat and flat[-1] != " ":
                flat.append(" ")
                origin.append(i)
            continue
        flat.append(char)
        origin.append(i)
    haystack = "".join(flat)
    starts = [m.start() for m in re.finditer(re.escape(wanted), haystack)]
    if not starts:
        return None
    best = min(starts, key=lambda s: abs(origin[s] - near)) if near is not None else starts[0]
    return origin[best], origin[best + len(wanted) - 1] + 1


def _line_boxes(textpage, start: int, end: int, width: float, height: float) -> list[Box]:
    """One box per line of the characters start..end. PDFium gives a box per character; characters whose
    boxes overlap vertically and move rightwards form a line (a wrapped quote gives two or more)."""
    lines: list[list[float]] = []  # [left, bottom, right, top] in PDF points
    for index in range(start, end):
        left, bottom, right, top = textpage.get_charbox(index, loose=True)
        if right <= left or top <= bottom:
            continue  # spaces and PDFium's generated line breaks have no box
        if lines:
            line = lines[-1]
            middle = (bottom + top) / 2
            if line[1] <= middle <= line[3] and left >= line[0]:
                line[0], line[1], line[2], line[3] = min(line[0], left), min(line[1], bottom), max(line[2], right), max(line[3], top)
                continue
        lines.append([left, bottom, right, top])
    return [Box(left / width, (height - top) / height, (right - left) / width, (top - bottom) / height)
            for left, bottom, right, top in lines]


def _page_text(textpage) -> str:
    """The page's text with exactly one character per PDFium char index (FPDFText_GetUnicode), so a span in
    it is a span of `get_charbox` indices. `get_text_range` is not used for this: it returns UTF-16 text in
    which a character outside the BMP takes two units and shifts every index after it."""
    import pypdfium2.raw as pdfium_c

    chars = []
    for index in range(textpage.count_chars()):
        code = pdfium_c.FPDFText_GetUnicode(textpage, index)
        chars.append(chr(code) if 0 < code < 0x110000 and not 0xD800 <= code <= 0xDFFF else "\ufffd")
    return "".join(chars)


def pdf_page(path: Path, source: str, page: int, quote: str, scale: float) -> PdfPageView:
    """Render page `page` (1-based) of the PDF at `scale` (1 = 72 dpi) and box the lines of `quote` on it."""
    import pypdfium2 as pdfium

    try:
        pdf = pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError as err:
        raise EvidenceError(f"PDFium cannot open '{source}' ({err}): re-export the PDF and re-index") from err
    try:
        count = len(pdf)
        if not 1 <= page <= count:
            raise EvidenceError(f"'{source}' has {count} page{'s' * (count != 1)}; there is no page {page}")
        pdf_page = pdf[page - 1]
        width, height = pdf_page.get_size()
        textpage = pdf_page.get_textpage()
        text = _page_text(textpage)
        span = find_quote(text, quote)
        boxes = _line_boxes(textpage, *span, width, height) if span else []
        image = pdf_page.render(scale=scale).to_pil()
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", optimize=True)
        return PdfPageView(source, page, count, buffer.getvalue(), tuple(boxes),
                           text[span[0]:span[1]] if span else None, quote)
    finally:
        pdf.close()


_MARKDOWN_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.+?)[ \t#]*$", re.MULTILINE)


def _heading_before(path: Path, data: bytes, text: str, position: int) -> str | None:
    """The heading the text at `position` sits under: the last Markdown `#` heading before it, or for HTML,
    the last line before it that is the text of an <h1>-<h6> (the loader keeps each heading on its own line)."""
    suffix = path.suffix.lower()
    before = text[:position]
    if suffix in (".md", ".markdown"):
        headings = _MARKDOWN_HEADING.findall(before)
        return headings[-1].strip() if headings else None
    if suffix in (".html", ".htm"):
        from bs4 import BeautifulSoup

        soup = BeautifulSoup(data.decode("utf-8", errors="replace"), "html.parser")
        titles = {" ".join(h.get_text(" ").split()) for h in soup.find_all(["h1", "h2", "h3", "h4", "h5", "h6"])}
        lines = [" ".join(line.split()) for line in before.splitlines()]
        return next((line for line in reversed(lines) if line and line in titles), None)
    return None


def parse(path: Path, corpus_dir: Path, data: bytes, settings) -> SourceDocument:
    """The document as ingest read it. Text and HTML are parsed here (cheap, and the pane waits on them);
    every other format (Office files, images read by OCR) in a worker under ingest's time and memory bounds,
    as uploads are, since a file that hangs or exhausts a parser must not take the web app with it."""
    if path.suffix.lower() in TEXT_SUFFIXES + HTML_SUFFIXES:
        return load_document(path, corpus_dir, data, LoadOptions.from_settings(settings))
    from rag.parsing import parse_one

    outcome = parse_one(path, corpus_dir, data, settings)
    if not isinstance(outcome, SourceDocument):
        raise LoadError(outcome.reason)
    return outcome


def text_passage(path: Path, corpus_dir: Path, citation: Citation, indexed_hash: str, context: int,
                 settings) -> TextView:
    """The text around the quote, as the index read the file (the same loader), with `context` characters on
    each side widened to whole words, and the heading (or slide, sheet, section) above it."""
    try:
        data = path.read_bytes()
        document = parse(path, corpus_dir, data, settings)
    except (OSError, LoadError) as err:
        raise EvidenceError(f"'{citation.source}' cannot be read now ({err}): re-index and ask again") from err
    pages = [p for p in document.pages if p.number == citation.page] or list(document.pages[:1])
    text = pages[0].text
    note = None
    if hash_bytes(data) != indexed_hash:
        note = f"'{citation.source}' changed since it was indexed; the passage is shown where it is now."
    if text[citation.start:citation.end] == citation.text:
        span: tuple[int, int] | None = (citation.start, citation.end)
    else:
        span = find_quote(text, citation.text, near=citation.start)
    if span is None:
        raise EvidenceError(f"the quoted passage is no longer in '{citation.source}': the file changed since it "
                            "was indexed; re-index and ask again")
    start, end = span
    low = max(0, start - context)
    high = min(len(text), end + context)
    if low > 0:  # widen to a word boundary so the context does not open mid-word
        space = text.rfind(" ", 0, low)
        low = space + 1 if space >= 0 else 0
    if high < len(text):
        space = text.find(" ", high)
        high = space if space >= 0 else len(text)
    heading = _heading_before(path, data, text, start) or pages[0].label
    return TextView(citation.source, text[low:start], text[start:end], text[end:high], heading, low > 0,
                    high < len(text), note)
