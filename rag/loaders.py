"""Files -> documents. A document's id is its path relative to the corpus; its hash is of the raw bytes.

Each loader turns one file's bytes into pages of plain text: a text file is one page with number None;
a PDF has one page per PDF page, a slide deck one per slide, a workbook one per sheet, a Word or
OpenDocument file one per heading-led section. `Page.label` names the slide, sheet or section for
citations. A table becomes one line per figure that keeps its row label and column header
("Total net sales | Three Months Ended June 25, 2022 | 82,959."), and `Page.tables` marks those lines
so the chunker never tears a row apart. Pages without a text layer (scans, images) are read with
Tesseract OCR and marked `ocr`.

A file that cannot be read raises `LoadError` with a reason a person can act on. Parsers of real-world
files fail in many more ways than they declare, so callers run `load_document` in a worker process
(`rag.parsing`), which turns any exception, a time-out or a crash into a skip with a reason.

This module imports no heavy library at the top: worker processes import it, and each parser is
imported only when a file of its type arrives.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path

# Bump when a loader extracts different text from the same bytes: indexes built before are rebuilt
# (it is part of Settings.index_signature), so an incremental build always equals a fresh one.
PARSER_VERSION = 4  # 4: PDFium's hyphenation marks (U+FFFE) dropped, rejoining the words they split

TEXT_SUFFIXES = (".txt", ".md", ".markdown")
HTML_SUFFIXES = (".html", ".htm")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
OFFICE_SUFFIXES = (".docx", ".pptx", ".xlsx", ".odt", ".csv")
# The one list of readable types: scan_corpus, uploads and the README's "Formats" section use it.
SUPPORTED_SUFFIXES = TEXT_SUFFIXES + (".pdf",) + HTML_SUFFIXES + OFFICE_SUFFIXES + IMAGE_SUFFIXES


class LoadError(Exception):
    """A file that cannot become a document; the message names the reason and the fix."""


@dataclass(frozen=True)
class LoadOptions:
    """What the loaders may do; built from Settings (`from_settings`) and sent to worker processes."""

    ocr: bool = True  # read scans and images with Tesseract
    ocr_language: str = "eng"  # Tesseract language(s), e.g. "eng+deu"
    ocr_dpi: int = 300  # resolution a PDF page without text is rendered at for OCR
    pdf_tables: bool = True  # look for tables on PDF pages and add them as labelled lines
    pdf_table_gap: float = 1.5  # a wider gap between words (in character widths) separates two table cells

    @classmethod
    def from_settings(cls, settings) -> LoadOptions:
        return cls(settings.ocr, settings.ocr_language, settings.ocr_dpi, settings.pdf_tables,
                   settings.pdf_table_gap)


@dataclass(frozen=True)
class Page:
    text: str
    number: int | None  # 1-based PDF page, slide, sheet or section; None for single-part formats
    label: str | None = None  # how a citation names the part: "slide 3", "sheet Revenue", "section Results"
    ocr: bool = False  # the text came from OCR and may hold recognition errors
    tables: tuple[tuple[int, int], ...] = ()  # character spans of table lines in `text`

    def where(self) -> str:
        """'slide 3' / 'p. 2' / '' for messages."""
        return self.label or (f"p. {self.number}" if self.number is not None else "")


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
    """All visible regular files below `corpus_dir`, sorted; the rest that a person may expect indexed
    (unknown types, symlinks leaving the corpus or pointing nowhere, FIFOs, sockets, devices) are
    reported as skipped. Nothing is opened here: opening a FIFO blocks.

    A symlink to a file inside the corpus is skipped when its target is itself listed (it would be
    indexed twice), and listed under its own name when the target is hidden or outside the scan.
    """
    if not corpus_dir.exists():
        raise LoadError(f"corpus folder {corpus_dir} does not exist: create it and put documents in it")
    if not corpus_dir.is_dir():
        raise LoadError(f"corpus path {corpus_dir} is not a folder: point --corpus at a folder of documents")
    root = corpus_dir.resolve()
    files: list[Path] = []
    skipped: list[SkippedFile] = []
    links: list[tuple[Path, Path]] = []  # (link, resolved target) of in-corpus symlinks to regular files
    seen: set[Path] = set()
    for path in _walk(corpus_dir, root, skipped):
        rel = path.relative_to(corpus_dir).as_posix()
        if path.is_symlink():
            try:
                target = path.resolve(strict=True)
            except (OSError, RuntimeError):
                skipped.append(SkippedFile(rel, "a symbolic link whose target does not exist: fix or remove the link"))
                continue
            if not target.is_relative_to(root):
                skipped.append(SkippedFile(
                    rel, f"a symbolic link to {target}, outside the corpus folder: copy the file into the corpus "
                    "instead (links out of the corpus are not followed)"))
                continue
            if not _is_regular(target, rel, skipped):
                continue
            links.append((path, target))
            continue
        if not _is_regular(path, rel, skipped):
            continue
        if _supported(path, rel, skipped):
            files.append(path)
            seen.add(path.resolve())
    for link, target in links:
        rel = link.relative_to(corpus_dir).as_posix()
        if target in seen:
            skipped.append(SkippedFile(
                rel, f"a symbolic link to {target.relative_to(root).as_posix()}, which is indexed already"))
        elif _supported(link, rel, skipped):
            files.append(link)
            seen.add(target)
    skipped.sort(key=lambda s: s.path)
    return sorted(files), skipped


def _walk(corpus_dir: Path, root: Path, skipped: list[SkippedFile]) -> Iterator[Path]:
    """Visible entries below the corpus; symlinked folders are not descended (they could loop or leave)."""
    for dirpath, dirnames, filenames in os.walk(corpus_dir, followlinks=False):
        base = Path(dirpath)
        for name in sorted(dirnames):
            if name.startswith("."):
                continue
            entry = base / name
            if entry.is_symlink():
                skipped.append(SkippedFile(
                    entry.relative_to(corpus_dir).as_posix(),
                    "a symbolic link to a folder: linked folders are not followed; copy or move the files into "
                    "the corpus instead"))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and not (base / d).is_symlink())
        for name in sorted(filenames):
            if not name.startswith("."):
                yield base / name


def _is_regular(path: Path, rel: str, skipped: list[SkippedFile]) -> bool:
    """True for a regular file; FIFOs, sockets and devices are listed as skipped (never opened)."""
    try:
        mode = path.stat().st_mode
    except OSError as err:
        skipped.append(SkippedFile(rel, f"cannot read the file ({err.strerror}): check it exists and is readable"))
        return False
    if stat.S_ISREG(mode):
        return True
    kind = ("a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")
    skipped.append(SkippedFile(rel, f"{kind}, not a document: remove it from the corpus folder"))
    return False


def _supported(path: Path, rel: str, skipped: list[SkippedFile]) -> bool:
    if path.suffix.lower() in SUPPORTED_SUFFIXES:
        return True
    skipped.append(SkippedFile(
        rel, f"unsupported file type '{path.suffix or '(none)'}': convert it to one of " + ", ".join(SUPPORTED_SUFFIXES)))
    return False


def doc_id_for(path: Path, corpus_dir: Path) -> str:
    return path.relative_to(corpus_dir).as_posix()


def load_document(
    path: Path, corpus_dir: Path, data: bytes | None = None, options: LoadOptions | None = None
) -> SourceDocument:
    """Read one file into a document. `data` lets the caller pass bytes it already read for hashing.

    Runs the parser in this process: use `rag.parsing` to bound its time and memory.
    """
    options = options or LoadOptions()
    if data is None:
        try:
            data = path.read_bytes()
        except OSError as err:
            raise LoadError(f"cannot read the file ({err.strerror}): check it exists and is readable") from err
    if not data.strip():
        raise LoadError("the file is empty: add text to it or remove it")
    loader = _LOADERS[path.suffix.lower()]
    pages = tuple(p for p in loader(data, options) if p.text.strip())
    if not pages:
        hint = ("it may be a scan: OCR is off (RAG_OCR=false), turn it on to read it" if not options.ocr
                else "it has no text layer and OCR found no text in it; check that it holds text")
        raise LoadError(f"no text could be extracted: {hint}")
    return SourceDocument(doc_id_for(path, corpus_dir), hash_bytes(data), pages)


# ---------------------------------------------------------------------------------------------- text


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


def _load_text(data: bytes, options: LoadOptions) -> list[Page]:
    return [Page(_decode_text(data), None)]


# -------------------------------------------------------------------------------------------- tables

_NUMBER = re.compile(r"^[\s$€£¥(+-]*\d[\d,.\s]*%?\)?$")
Rows = list[list[str | None]]  # None: a cell covered by the merged cell to its left (spans forward-fill)


def is_figure(cell: str | None) -> bool:
    """A cell that is a number: "82,959", "$ 1.2", "(3,104)", "12.5%"."""
    return bool(cell) and bool(_NUMBER.match(cell))


def table_lines(rows: Rows) -> list[str]:
    """One line per figure: "row label | column header | value." (the header rows joined).

    The leading row is the header; up to two more rows count as header rows while they hold no figure and
    no row label (the "Three Months Ended" / "June 25, 2022" pattern of financial statements). A row's
    label is its first cell.
    """
    rows = [[(c or "").strip() if c is not None else None for c in row] for row in rows]
    rows = [r for r in rows if any(r)]
    if not rows:
        return []
    width = max(len(r) for r in rows)
    rows = [r + [""] * (width - len(r)) for r in rows]
    n_header = 1
    while (n_header < min(3, len(rows) - 1) and not rows[n_header][0]
           and not any(is_figure(c) for c in rows[n_header])):
        n_header += 1
    headers = [""] * width
    for row in rows[:n_header]:
        filled, last = [], ""
        for cell in row:  # a merged header cell spans the columns after it
            last = last if cell is None else cell
            filled.append(last)
        headers = [" ".join(p for p in (h, c) if p) for h, c in zip(headers, filled)]
    lines = labelled_lines(headers, [[c or "" for c in row] for row in rows[n_header:]])
    if width == 1 or not lines:  # a one-column table is a list: keep its header as a line too
        lines = [_line([c or ""]) for r in rows for c in r if c]
    return lines


def labelled_lines(headers: list[str], body: list[list[str]]) -> list[str]:
    """Body rows under their column headers -> "row label | column header | value." lines.

    A row's label is its first cell; `headers[j]` names column j (`headers[0]` the label column). Every
    line is self-contained, so any run of lines still says what each figure is; the trailing full stop
    ends the sentence for the answerer's sentence splitter.
    """
    lines: list[str] = []
    for cells in body:
        label = cells[0]
        values = [(headers[j] if j < len(headers) else "", cells[j]) for j in range(1, len(cells)) if cells[j]]
        if not values:  # a label-only row (a sub-heading inside the table)
            if label:
                lines.append(_line([headers[0], label] if headers[0] else [label]))
            continue
        for header, value in values:
            lines.append(_line([label, header, value]))
    return lines


def _line(parts: Iterable[str]) -> str:
    text = " | ".join(" ".join(p.split()) for p in parts if p and p.strip())
    return text if text[-1:] in ".!?" else text + "."


class _PageText:
    """Builds one page's text from paragraphs and tables, recording where the tables' lines are."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.length = 0
        self.tables: list[tuple[int, int]] = []

    def add(self, text: str) -> None:
        text = text.strip()
        if not text:
            return
        if self.parts:
            self.parts.append("\n")
            self.length += 1
        self.parts.append(text)
        self.length += len(text)

    def table(self, rows: Rows) -> None:
        self.table_lines(table_lines(rows))

    def table_lines(self, lines: list[str]) -> None:
        """Add a table already turned into labelled lines (`table_lines`, `labelled_lines`)."""
        text = "\n".join(lines)
        if text:
            self.add(text)
            self.tables.append((self.length - len(text), self.length))

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def page(self, number: int | None, label: str | None = None, ocr: bool = False) -> Page:
        return Page(self.text, number, label, ocr, tuple(self.tables))


Block = tuple[str, object]  # ("heading", str) | ("text", str) | ("table", Rows)


def _sections(blocks: Iterable[Block]) -> list[Page]:
    """Word-processor blocks -> one page per heading-led section, labelled "section <heading>".

    A document without headings is one page with number None, like a text file.
    """
    pages: list[tuple[str | None, _PageText]] = [(None, _PageText())]
    for kind, value in blocks:
        if kind == "heading" and str(value).strip():
            heading = " ".join(str(value).split())
            pages.append((heading, _PageText()))
            pages[-1][1].add(heading)
        elif kind == "table":
            pages[-1][1].table(value)  # type: ignore[arg-type]
        else:
            pages[-1][1].add(str(value))
    pages = [(h, b) for h, b in pages if b.text.strip()]
    if len(pages) == 1 and pages[0][0] is None:
        return [pages[0][1].page(None)]
    return [body.page(n, f"section {heading}" if heading else None) for n, (heading, body) in enumerate(pages, 1)]


# --------------------------------------------------------------------------------------------- HTML


def _load_html(data: bytes, options: LoadOptions) -> list[Page]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(_decode_text(data), "html.parser")
    for tag in soup(["script", "style", "noscript", "template"]):
        tag.decompose()
    tables: dict[str, Rows] = {}
    for table in reversed(soup.find_all("table")):  # inner tables first: an outer cell then holds its lines
        key = f"\x00table{len(tables)}\x00"
        tables[key] = _html_rows(table)
        table.replace_with(soup.new_string(f"\n{key}\n"))
    body = _PageText()
    for line in soup.get_text("\n").splitlines():
        line = line.strip()
        if line in tables:
            body.table(tables[line])
        elif line:
            body.add(line)
    return [body.page(None)]


def _html_rows(table) -> Rows:
    rows: Rows = []
    for tr in table.find_all("tr"):
        if tr.find_parent("table") is not table:
            continue
        row: list[str | None] = []
        for cell in tr.find_all(["th", "td"], recursive=False):
            row.append(cell.get_text(" ", strip=True))
            span = cell.get("colspan", "1")
            row.extend([None] * (min(int(span), 50) - 1 if str(span).isdigit() else 0))
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------- PDF


def _load_pdf(data: bytes, options: LoadOptions) -> list[Page]:
    """PDFium (pypdfium2) for text: 13x faster than pypdf on real reports and it opens owner-password
    PDFs directly. Tables come from PDFium's character boxes (`rag.pdf_tables`) on pages whose text
    looks like one, while the page is open."""
    import pypdfium2 as pdfium

    if not data.lstrip()[:5] == b"%PDF-":
        raise LoadError("not a PDF (no %PDF- header): the content does not match the .pdf extension")
    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as err:
        if getattr(err, "err_code", None) == pdfium.raw.FPDF_ERR_PASSWORD:
            raise LoadError(
                "the PDF needs a password to open: save a copy without the password and put that in the corpus"
            ) from err
        raise LoadError(f"the PDF could not be parsed ({str(err).rstrip('.')}): re-export it or remove it") from err
    pages: list[Page] = []
    try:
        for index in range(len(pdf)):
            page = pdf[index]
            textpage = page.get_textpage()
            raw_text = textpage.get_text_range()
            text = _clean_pdf_text(raw_text)
            if not text.strip() and options.ocr:
                pages.append(Page(_ocr_pdf_page(page, options), index + 1, ocr=True))
            elif options.pdf_tables and _looks_tabular(text):
                pages.append(_with_tables(text, index + 1, textpage, raw_text, options))
            else:
                pages.append(Page(text, index + 1))
            textpage.close()
            page.close()
    finally:
        pdf.close()
    return pages


# Where a PDF hyphenated a word at a line end, PDFium puts a mark in place of the hyphen and the line break
# ("in\ufffetegrity"): U+FFFE in page text (FPDFText_GetText), \x02 per character (FPDFText_GetUnicode).
# Dropped, the word is whole again for BM25, the embedder and quotes (rag/evidence.py skips them too).
PDF_HYPHENATION = frozenset("\ufffe\x02")
_HYPHENATION = re.compile("[" + "".join(sorted(PDF_HYPHENATION)) + "]")


def _clean_pdf_text(text: str) -> str:
    # PDFium ends lines with \r\n; NULs are never text.
    return _HYPHENATION.sub("", text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", ""))


# A line ending in two figures (or dashes), as a table row does after its label: "Products $ 63,355 $ 63,948".
_FIGURE_TOKEN = r"(?:[$€£¥]\s*)?(?:\(?\d[\d,]*(?:\.\d+)?\s?\)?%?|[\u2014\u2013-])"
_ROW_END = re.compile(rf"(?:^|\s){_FIGURE_TOKEN}\s+{_FIGURE_TOKEN}[ \t]*$", re.MULTILINE)


def _looks_tabular(text: str) -> bool:
    """At least three lines ending in two figures: worth looking for tables (prose lines with figures
    rarely end in two, so prose pages skip the table search)."""
    return len(_ROW_END.findall(text, 0)) >= 3 if text else False


def _with_tables(text: str, number: int, textpage, raw_text: str, options: LoadOptions) -> Page:
    """The page's text, then each table found on it as labelled lines."""
    from rag.pdf_tables import page_tables

    tables = page_tables(textpage, raw_text, options.pdf_table_gap)
    if not tables:
        return Page(text, number)
    body = _PageText()
    body.add(text)
    for lines in tables:
        body.table_lines(lines)
    return body.page(number)


# ---------------------------------------------------------------------------------------------- OCR


def _ocr(image, options: LoadOptions) -> str:
    import pytesseract

    try:
        text = pytesseract.image_to_string(image, lang=options.ocr_language)
    except pytesseract.TesseractNotFoundError as err:
        raise LoadError(
            "it needs OCR and Tesseract is not installed: run `apt-get install tesseract-ocr tesseract-ocr-eng` "
            "(or `make install`), or set RAG_OCR=false to skip such files"
        ) from err
    except pytesseract.TesseractError as err:
        raise LoadError(
            f"OCR failed ({err.message.strip() or err.status}): check RAG_OCR_LANGUAGE={options.ocr_language!r} "
            "names installed Tesseract languages (`tesseract --list-langs`)"
        ) from err
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def _ocr_pdf_page(page, options: LoadOptions) -> str:
    image = page.render(scale=options.ocr_dpi / 72).to_pil()
    return _ocr(image, options)


def _load_image(data: bytes, options: LoadOptions) -> list[Page]:
    from PIL import Image, ImageSequence, UnidentifiedImageError

    if not options.ocr:
        raise LoadError("images are read with OCR, which is off: set RAG_OCR=true to index them")
    try:
        image = Image.open(io.BytesIO(data))
        frames = [frame.convert("RGB") for frame in ImageSequence.Iterator(image)]
    except (UnidentifiedImageError, OSError) as err:
        raise LoadError(f"not a readable image ({err}): re-save it as PNG, JPEG or TIFF") from err
    if len(frames) == 1:
        return [Page(_ocr(frames[0], options), None, ocr=True)]
    return [Page(_ocr(frame, options), n, f"page {n}", True) for n, frame in enumerate(frames, start=1)]


# ------------------------------------------------------------------------------------------- Office


def _office_error(kind: str, err: Exception) -> LoadError:
    return LoadError(f"not a readable {kind} file ({type(err).__name__}: {err}): open and re-save it, or remove it")


def _load_docx(data: bytes, options: LoadOptions) -> list[Page]:
    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as err:  # python-docx raises zipfile, lxml and KeyError errors for damaged files
        raise _office_error("Word (.docx)", err) from err

    def blocks() -> Iterator[Block]:
        for item in document.iter_inner_content():
            if isinstance(item, Table):
                yield "table", _docx_rows(item)
            elif isinstance(item, Paragraph):
                style = (item.style.name if item.style is not None else "") or ""
                heading = style.startswith("Heading") or style == "Title"
                yield ("heading" if heading else "text"), item.text

    return _sections(blocks())


def _docx_rows(table) -> Rows:
    rows: Rows = []
    for row in table.rows:
        cells: list[str | None] = []
        previous = None
        for cell in row.cells:  # a merged cell comes back once per grid column it covers
            cells.append(None if cell._tc is previous else cell.text)
            previous = cell._tc
        rows.append(cells)
    return rows


def _load_pptx(data: bytes, options: LoadOptions) -> list[Page]:
    from pptx import Presentation

    try:
        deck = Presentation(io.BytesIO(data))
    except Exception as err:  # python-pptx raises zipfile, lxml and KeyError errors for damaged files
        raise _office_error("PowerPoint (.pptx)", err) from err
    pages = []
    for number, slide in enumerate(deck.slides, start=1):
        body = _PageText()
        _pptx_shapes(slide.shapes, body)
        if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
            notes = slide.notes_slide.notes_text_frame.text.strip()
            if notes:
                body.add(f"Notes: {notes}")
        pages.append(body.page(number, f"slide {number}"))
    return pages


def _pptx_shapes(shapes, body: _PageText) -> None:
    from pptx.enum.shapes import MSO_SHAPE_TYPE

    for shape in shapes:
        if shape.shape_type == MSO_SHAPE_TYPE.GROUP:
            _pptx_shapes(shape.shapes, body)
        elif getattr(shape, "has_table", False) and shape.has_table:
            body.table([[cell.text for cell in row.cells] for row in shape.table.rows])
        elif getattr(shape, "has_text_frame", False) and shape.has_text_frame:
            body.add(shape.text_frame.text)


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime) and value.time() == time(0):
        return value.date().isoformat()
    if isinstance(value, (date, datetime, time)):
        return value.isoformat()
    return str(value)


def _load_xlsx(data: bytes, options: LoadOptions) -> list[Page]:
    import openpyxl

    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as err:  # openpyxl raises zipfile, KeyError and InvalidFileException for damaged files
        raise _office_error("Excel (.xlsx)", err) from err
    pages = []
    for number, sheet in enumerate(book.worksheets, start=1):
        rows: Rows = [[_cell(v) for v in row] for row in sheet.iter_rows(values_only=True)]
        body = _PageText()
        body.table(rows)
        pages.append(body.page(number, f"sheet {sheet.title}"))
    book.close()
    return pages


def _load_csv(data: bytes, options: LoadOptions) -> list[Page]:
    text = _decode_text(data)
    try:
        dialect = csv.Sniffer().sniff(text[:8192], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    try:
        rows: Rows = list(csv.reader(io.StringIO(text), dialect))
    except csv.Error as err:
        raise LoadError(f"not a readable CSV file ({err}): check its quoting, or save it as .txt") from err
    body = _PageText()
    body.table(rows)
    return [body.page(None)]


def _load_odt(data: bytes, options: LoadOptions) -> list[Page]:
    from odf import opendocument, teletype
    from odf.namespaces import TABLENS, TEXTNS

    try:
        document = opendocument.load(io.BytesIO(data))
    except Exception as err:  # odfpy raises zipfile, KeyError and XML errors for damaged files
        raise _office_error("OpenDocument text (.odt)", err) from err

    def rows(table) -> Rows:
        out: Rows = []
        for row in table.getElementsByType(_odf_type("table", "TableRow")):
            cells: list[str | None] = []
            for cell in row.childNodes:
                if cell.qname == (TABLENS, "table-cell"):
                    cells.append(teletype.extractText(cell))
                    span = cell.getAttribute("numbercolumnsspanned")
                    cells.extend([None] * (min(int(span), 50) - 1 if span and span.isdigit() else 0))
            out.append(cells)
        return out

    def blocks(node) -> Iterator[Block]:
        for child in node.childNodes:
            name = getattr(child, "qname", None)
            if name == (TEXTNS, "h"):
                yield "heading", teletype.extractText(child)
            elif name == (TEXTNS, "p"):
                yield "text", teletype.extractText(child)
            elif name == (TABLENS, "table"):
                yield "table", rows(child)
            elif name is not None:
                yield from blocks(child)  # lists, sections, frames

    return _sections(blocks(document.text))


def _odf_type(module: str, name: str):
    import importlib

    return getattr(importlib.import_module(f"odf.{module}"), name)


_LOADERS: dict[str, Callable[[bytes, LoadOptions], list[Page]]] = {
    **{suffix: _load_text for suffix in TEXT_SUFFIXES},
    ".pdf": _load_pdf,
    **{suffix: _load_html for suffix in HTML_SUFFIXES},
    ".docx": _load_docx,
    ".pptx": _load_pptx,
    ".xlsx": _load_xlsx,
    ".odt": _load_odt,
    ".csv": _load_csv,
    **{suffix: _load_image for suffix in IMAGE_SUFFIXES},
}
assert set(_LOADERS) == set(SUPPORTED_SUFFIXES)
