"""Tables on a PDF page, read from PDFium's own character boxes, as "row | column header | figure" lines.

Hand-written because no permissively licensed library extracts tables on top of PDFium: pdfplumber (MIT)
re-parses every page with pdfminer in pure Python, which made rag's PDF loader slower than pypdf (0.8x on
bench/parse.py) although PDFium reads the text 18x faster; camelot needs Ghostscript and OpenCV, and
PyMuPDF is AGPL. Here the page PDFium has already opened gives two character boxes per word, and the rest
is a little geometry:

1. words (runs of non-space characters of the page text) get their box from their first and last
   characters; words on one baseline form a line;
2. a line splits into cells where the gap between words is wider than `gap` average character widths
   (a lone "$" joins the figure after it, a lone ")" or "%" the one before; dot leaders are dropped);
3. a line with a figure in a cell after its label is a table row; rows close together, with at most a few
   label-only lines (sub-headings) between them, form a table; their figure cells, overlapped across
   rows, are the columns (figures are right-, left- or centre-aligned: overlapping covers all three);
4. the lines just above the first row whose cells stand over the columns (no figures but years) are the
   header; a header cell names every column whose centre it spans, so "Three Months Ended" centred over
   two date columns heads both, and header lines are joined top to bottom per column.

Only pages whose text already looks tabular (`rag.loaders._looks_tabular`) come here.
"""

from __future__ import annotations

import ctypes
import re
from dataclasses import dataclass, field

from rag.loaders import is_figure, labelled_lines

_WORD = re.compile(r"\S+")
_YEAR = re.compile(r"^(?:19|20)\d\d$")
_DASHES = {"-", "\u2013", "\u2014", "\u2012", "\u2212", "--", "n/a", "N/A", "nm", "NM", "*"}  # "no figure" in a cell
_CURRENCY = {"$", "\u20ac", "\u00a3", "\u00a5", "US$", "C$"}
_CLOSERS = {")", "%", ")%", "%)", "pts", "bps"}
_LEADER_CHARS = ".\u2026_\u00b7"
_LEADER = re.compile(r"(?:\s*[.\u2026_\u00b7]){2,}\s*$")  # trailing dot leaders: "Total net sales . . . ."

MAX_ROW_GAP = 3.0  # lines further apart than this many line heights are not one table
MAX_TEXT_LINES = 3  # label-only lines (sub-headings) a table may hold between two rows of figures
MAX_HEADER_LINES = 4  # header lines taken above a table's first row of figures
SAME_LINE = 0.3  # words whose vertical centres differ by less than this many line heights share a line


@dataclass
class _Cell:
    text: str
    x0: float
    x1: float
    char_width: float  # average character width of its last word: the unit gaps are measured in

    @property
    def centre(self) -> float:
        return (self.x0 + self.x1) / 2


@dataclass
class _Line:
    centre: float  # vertical centre, PDF points (y grows upwards)
    height: float
    words: list[tuple[str, float, float]] = field(default_factory=list)  # (text, x0, x1)
    cells: list[_Cell] = field(default_factory=list)
    label: _Cell | None = None  # the first cell when it is text; None when the row starts with a figure
    values: list[_Cell] = field(default_factory=list)  # the cells after the label
    figures: int = 0  # figures among `values`; a row without a label needs two (one is a stray number)

    def split(self, gap: float) -> None:
        self.cells = _cells(self.words, gap)
        first = self.cells[0] if self.cells else None
        self.label = first if first is not None and not _is_value(first.text) else None
        self.values = self.cells[1:] if self.label is not None else self.cells
        count = sum(1 for c in self.values if is_figure(c.text))
        self.figures = count if self.label is not None or count >= 2 else 0


def _is_value(text: str) -> bool:
    return is_figure(text) or text in _DASHES


def page_tables(textpage, text: str, gap: float) -> list[list[str]]:
    """The labelled lines of each table on a page; `text` is PDFium's raw text of `textpage`
    (`get_text_range()`, whose i-th character is PDFium's character i)."""
    if textpage.count_chars() != len(text):  # no index mapping to trust: leave the page as text
        return []
    lines = _lines(textpage, text)
    for line in lines:
        line.split(gap)
    tables = []
    start = 0
    while start < len(lines):
        if not lines[start].figures:
            start += 1
            continue
        end = last = start
        while end + 1 < len(lines) and _close(lines[end], lines[end + 1]) and end + 1 - last <= MAX_TEXT_LINES:
            end += 1
            if lines[end].figures:
                last = end
        table, last = _table(lines, start, last)
        if table:
            tables.append(table)
        start = last + 1
    return tables


def _lines(textpage, text: str) -> list[_Line]:
    """Words with their boxes, grouped into lines from the top of the page down.

    Raw FPDFText_GetLooseCharBox calls for a word's first and last characters only, not pypdfium2's
    `get_charbox` per character: on a table page that is most of the cost, and this is about 5x cheaper.
    Loose boxes span the font's ascent and descent, so words of one font size on one baseline share them.
    """
    import pypdfium2.raw as raw

    rect = raw.FS_RECTF()
    ref = ctypes.byref(rect)
    charbox = raw.FPDFText_GetLooseCharBox
    handle = textpage.raw
    words = []
    for match in _WORD.finditer(text):
        if not charbox(handle, match.start(), ref):
            continue
        x0, top, bottom = rect.left, rect.top, rect.bottom
        if match.end() - match.start() > 1 and not charbox(handle, match.end() - 1, ref):
            continue
        x1 = rect.right
        if x1 > x0 and top > bottom:  # rotated or degenerate text is left to the page's text
            words.append(((top + bottom) / 2, top - bottom, match.group(), x0, x1))
    words.sort(key=lambda w: -w[0])
    lines: list[_Line] = []
    for centre, height, word, x0, x1 in words:
        if lines and lines[-1].centre - centre <= SAME_LINE * lines[-1].height:
            lines[-1].words.append((word, x0, x1))
        else:
            lines.append(_Line(centre, height, [(word, x0, x1)]))
    return lines


def _cells(words: list[tuple[str, float, float]], gap: float) -> list[_Cell]:
    """Split a line's words into cells at gaps wider than `gap` average character widths."""
    cells: list[_Cell] = []
    for word, x0, x1 in sorted(words, key=lambda w: w[1]):
        width = (x1 - x0) / len(word)
        if cells and x0 - cells[-1].x1 <= gap * (cells[-1].char_width + width) / 2:
            cell = cells[-1]
            cell.text, cell.x1, cell.char_width = f"{cell.text} {word}", max(cell.x1, x1), width
        else:
            cells.append(_Cell(word, x0, x1, width))
    merged: list[_Cell] = []
    for cell in cells:
        if cell.text[-1] in _LEADER_CHARS and not is_figure(cell.text):
            cell.text = _LEADER.sub("", cell.text)
        if not cell.text.strip(_LEADER_CHARS + " "):
            continue  # a run of leader dots between a label and its figure
        if merged and merged[-1].text in _CURRENCY:  # "$" then "82,959": one cell "$ 82,959"
            currency = merged.pop()
            cell = _Cell(f"{currency.text} {cell.text}", currency.x0, cell.x1, cell.char_width)
        elif merged and cell.text in _CLOSERS:  # "(1,234" then ")": one cell
            previous = merged[-1]
            previous.text, previous.x1 = previous.text + cell.text, cell.x1
            continue
        merged.append(cell)
    return merged


def _close(upper: _Line, lower: _Line) -> bool:
    return upper.centre - lower.centre <= MAX_ROW_GAP * max(upper.height, lower.height)


def _columns(rows: list[_Line]) -> list[tuple[float, float]]:
    """Column extents: the figure cells of all rows, merged where they overlap."""
    spans = sorted((c.x0, c.x1) for row in rows for c in row.values if _is_value(c.text))
    columns: list[list[float]] = []
    for x0, x1 in spans:
        if columns and x0 <= columns[-1][1]:
            columns[-1][1] = max(columns[-1][1], x1)
        else:
            columns.append([x0, x1])
    return [(a, b) for a, b in columns]


def _column_of(cell: _Cell, columns: list[tuple[float, float]]) -> int:
    """The column a body cell falls in: most overlap, else the nearest centre."""
    overlaps = [min(cell.x1, b) - max(cell.x0, a) for a, b in columns]
    best = max(range(len(columns)), key=lambda j: overlaps[j])
    if overlaps[best] > 0:
        return best
    return min(range(len(columns)), key=lambda j: abs(cell.centre - (columns[j][0] + columns[j][1]) / 2))


def _header_columns(cell: _Cell, columns: list[tuple[float, float]]) -> range:
    """The columns a header cell names: of the runs of adjacent columns it overlaps, the one it is centred
    over ("Three Months Ended" over two date columns, "June 25," over one); else the nearest column."""
    over = [j for j, (a, b) in enumerate(columns) if min(cell.x1, b) > max(cell.x0, a)]
    if not over:
        nearest = _column_of(cell, columns)
        return range(nearest, nearest + 1)
    runs = [(j, k) for j in over for k in over if k >= j]
    first, last = min(runs, key=lambda r: (abs(cell.centre - (columns[r[0]][0] + columns[r[1]][1]) / 2), r[1] - r[0]))
    return range(first, last + 1)


def _is_year_row(line: _Line) -> bool:
    values = line.values
    return bool(values) and all(_YEAR.match(c.text) for c in values)


class _Layout:
    """Where a table's columns are, and where its labels end."""

    def __init__(self, rows: list[_Line]) -> None:
        self.columns = _columns(rows)
        self.first = self.columns[0][0]  # left edge of the first column of figures
        table_left = min((row.label.x0 for row in rows if row.label is not None), default=self.first)
        self.boundary = (table_left + self.first) / 2  # a cell starting left of this and reaching the columns is prose

    def spans_prose(self, line: _Line) -> bool:
        return any(c.x0 < self.boundary and c.x1 > self.first for c in line.cells)


def _table(lines: list[_Line], start: int, last: int) -> tuple[list[str], int]:
    """Labelled lines for the table whose rows of figures run from lines[start] to lines[last], and the
    index of the last line it took (a paragraph inside ends the table there)."""
    body = lines[start : last + 1]
    year_headers = 0
    while year_headers < len(body) - 1 and _is_year_row(body[year_headers]):  # "2022  2021" over the figures
        year_headers += 1
    headers_below, body = body[:year_headers], body[year_headers:]
    whole = _Layout([row for row in body if row.figures])
    for n, row in enumerate(body):  # a paragraph between two tables ends the first
        if not row.figures and whole.spans_prose(row):
            body = body[:n]
            break
    while body and not body[-1].figures:
        body.pop()
    last = max(start, start + year_headers + len(body) - 1)
    if sum(1 for row in body if row.figures) < 2:
        return [], last
    layout = _Layout([row for row in body if row.figures])
    columns, first = layout.columns, layout.first
    header_lines = list(headers_below)
    above = start - 1
    while above >= 0 and len(header_lines) < MAX_HEADER_LINES:
        line = lines[above]
        if (not _close(line, lines[above + 1]) or layout.spans_prose(line) or not any(c.x1 > first for c in line.cells)
                or any(is_figure(c.text) and not _YEAR.match(c.text) for c in line.cells)):
            break
        header_lines.insert(0, line)
        above -= 1
    headers = [""] * (len(columns) + 1)
    for line in sorted(header_lines, key=lambda ln: -ln.centre):
        for cell in line.cells:
            if cell.x1 <= first:
                continue  # a stub over the labels ("(in millions)"): the page text keeps it
            for j in _header_columns(cell, columns):
                headers[j + 1] = f"{headers[j + 1]} {cell.text}".strip()
    if not any(headers) and len(columns) < 2:
        return [], last  # one column of numbers without a header is a list (a table of contents), not a table
    rows: list[list[str]] = []
    pending_label = ""
    for row in body:
        cells = [""] * (len(columns) + 1)
        for cell in row.cells:
            if cell is row.label and (cell.x1 <= first or cell.x0 < layout.boundary):
                cells[0] = cell.text
            else:
                j = _column_of(cell, columns) + 1
                cells[j] = f"{cells[j]} {cell.text}".strip()
        if pending_label and cells[0][:1].islower():  # a label wrapped onto the next line
            rows.pop()
            cells[0] = f"{pending_label} {cells[0]}"
        rows.append(cells)
        only_label = cells[0] and not any(cells[1:])
        pending_label = cells[0] if only_label and not cells[0].endswith(":") else ""
    return labelled_lines(headers, rows), last
