"""Every format beyond plain text, from real files written here with each format's own library:
Office files, tables (each figure with its row and column), scans read by Tesseract, and `rag ask`
answering from a PDF table and from a scanned page."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from rag.chunking import Chunker
from rag.loaders import Page, SourceDocument, load_document
from tests.conftest import run_rag, write_corpus

SCANNED_SENTENCE = "The harbour bridge opened to traffic in March 1932."


def load(tmp_path: Path, name: str, content: bytes | str):
    corpus = write_corpus(tmp_path, {name: content})
    return load_document(corpus / name, corpus)


def pages(document) -> list[tuple]:
    return [(p.number, p.label, p.ocr, p.text) for p in document.pages]


def docx_bytes() -> bytes:
    import docx

    document = docx.Document()
    document.add_paragraph("Prepared for the board.")
    document.add_heading("Results", 1)
    document.add_paragraph("Revenue grew in both quarters.")
    table = document.add_table(rows=3, cols=3)
    for r, row in enumerate([["", "Q1 2024", "Q2 2024"], ["Revenue", "1,200", "1,350"], ["Cost", "800", "900"]]):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def pptx_bytes() -> bytes:
    from pptx import Presentation
    from pptx.util import Inches

    deck = Presentation()
    first = deck.slides.add_slide(deck.slide_layouts[1])
    first.shapes.title.text = "Roadmap"
    first.placeholders[1].text = "Launch in March"
    second = deck.slides.add_slide(deck.slide_layouts[5])
    second.shapes.title.text = "Figures"
    table = second.shapes.add_table(2, 2, Inches(1), Inches(2), Inches(4), Inches(1)).table
    for (r, c), value in {(0, 0): "Region", (0, 1): "Sales", (1, 0): "North", (1, 1): "42"}.items():
        table.cell(r, c).text = value
    second.notes_slide.notes_text_frame.text = "Mention the northern stores."
    buffer = io.BytesIO()
    deck.save(buffer)
    return buffer.getvalue()


def xlsx_bytes() -> bytes:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Revenue"
    for row in [["Product", "2023", "2024"], ["Widgets", 10.0, 12.5], ["Gadgets", 7, None]]:
        sheet.append(row)
    book.create_sheet("Notes").append(["Figures in thousands of euros."])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def odt_bytes() -> bytes:
    from odf.opendocument import OpenDocumentText
    from odf.text import H, P

    document = OpenDocumentText()
    document.text.addElement(H(outlinelevel=1, text="Summary"))
    document.text.addElement(P(text="The pilot ran for six weeks."))
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def test_docx_sections_and_table(tmp_path: Path) -> None:
    document = load(tmp_path, "report.docx", docx_bytes())
    assert pages(document) == [
        (1, None, False, "Prepared for the board."),
        (2, "section Results", False, "Results\nRevenue grew in both quarters.\nRevenue | Q1 2024 | 1,200.\n"
         "Revenue | Q2 2024 | 1,350.\nCost | Q1 2024 | 800.\nCost | Q2 2024 | 900."),
    ]
    assert document.pages[1].tables == ((39, 136),)


def test_pptx_one_page_per_slide_with_tables_and_notes(tmp_path: Path) -> None:
    assert pages(load(tmp_path, "deck.pptx", pptx_bytes())) == [
        (1, "slide 1", False, "Roadmap\nLaunch in March"),
        (2, "slide 2", False, "Figures\nNorth | Sales | 42.\nNotes: Mention the northern stores."),
    ]


def test_xlsx_one_page_per_sheet(tmp_path: Path) -> None:
    assert pages(load(tmp_path, "book.xlsx", xlsx_bytes())) == [
        (1, "sheet Revenue", False, "Widgets | 2023 | 10.\nWidgets | 2024 | 12.5.\nGadgets | 2023 | 7."),
        (2, "sheet Notes", False, "Figures in thousands of euros."),
    ]


def test_csv_and_odt(tmp_path: Path) -> None:
    assert pages(load(tmp_path, "people.csv", "name;age\nAda;36\nBob;41\n")) == [
        (None, None, False, "Ada | age | 36.\nBob | age | 41."),
    ]
    assert pages(load(tmp_path, "notes.odt", odt_bytes())) == [
        (1, "section Summary", False, "Summary\nThe pilot ran for six weeks."),
    ]


def test_html_table_keeps_row_and_merged_column_headers(tmp_path: Path) -> None:
    html = ("<h1>Results</h1><p>Sales rose.</p><table>"
            "<tr><th></th><th colspan=2>Three Months Ended</th></tr>"
            "<tr><th></th><th>June 25, 2022</th><th>June 26, 2021</th></tr>"
            "<tr><td>Total net sales</td><td>82,959</td><td>81,434</td></tr></table><p>After.</p>")
    assert pages(load(tmp_path, "q3.html", html)) == [(None, None, False, (
        "Results\nSales rose.\nTotal net sales | Three Months Ended June 25, 2022 | 82,959.\n"
        "Total net sales | Three Months Ended June 26, 2021 | 81,434.\nAfter."))]


def test_table_lines_are_never_split_across_chunks(embedder) -> None:
    lines = [f"Product {n} | Three Months Ended June 25, 2022 | {n},000." for n in range(60)]
    text = "Intro sentence.\n" + "\n".join(lines)
    page = Page(text, 1, tables=((16, len(text)),))
    chunks = Chunker(embedder.tokenize, 64, 8, embedder.max_tokens).chunk(SourceDocument("t.pdf", "h", (page,)))
    table_chunks = [c for c in chunks if c.start >= 16]
    assert len(table_chunks) > 1
    assert [line for c in table_chunks for line in c.text.split("\n")] == lines  # whole lines, each once
    assert all(text[c.start : c.end] == c.text for c in chunks)


def table_pdf() -> bytes:
    """A statement of operations drawn by matplotlib: real PDF text and cell borders, like a filing's table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.5, 4))
    ax.axis("off")
    ax.set_title("Condensed consolidated statements of operations (in millions)")
    rows = [["", "Three Months Ended June 25, 2022", "Three Months Ended June 26, 2021"],
            ["Products", "63,355", "63,948"], ["Services", "19,604", "17,486"],
            ["Total net sales", "82,959", "81,434"]]
    table = ax.table(cellText=rows, loc="center", cellLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(9)
    table.scale(1, 1.6)
    for (_, column), cell in table.get_celld().items():
        cell.set_width([0.25, 0.37, 0.37][column])
    buffer = io.BytesIO()
    fig.savefig(buffer, format="pdf")
    plt.close(fig)
    return buffer.getvalue()


def text_image(sentence: str, fmt: str) -> bytes:
    """The sentence rendered black on white at about 300 dpi, as a scanner would produce it."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (2550, 600), "white")
    ImageDraw.Draw(image).text((150, 250), sentence, fill="black", font=ImageFont.load_default(size=64))
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, resolution=300.0)
    return buffer.getvalue()


def test_pdf_table_rows_keep_their_labels(tmp_path: Path) -> None:
    page = load(tmp_path, "ops.pdf", table_pdf()).pages[0]
    table = page.text[page.tables[0][0] : page.tables[0][1]]
    assert table.split("\n") == [
        "Products | Three Months Ended June 25, 2022 | 63,355.",
        "Products | Three Months Ended June 26, 2021 | 63,948.",
        "Services | Three Months Ended June 25, 2022 | 19,604.",
        "Services | Three Months Ended June 26, 2021 | 17,486.",
        "Total net sales | Three Months Ended June 25, 2022 | 82,959.",
        "Total net sales | Three Months Ended June 26, 2021 | 81,434.",
    ]


@pytest.mark.parametrize("fmt,name", [("PNG", "letter.png"), ("JPEG", "letter.jpg"), ("TIFF", "letter.tiff"),
                                      ("PDF", "scanned.pdf")])
def test_scans_are_read_with_ocr(tmp_path: Path, fmt: str, name: str) -> None:
    # PIL's PDF writer embeds the image only: a page without a text layer, as a scanner writes it.
    document = load(tmp_path, name, text_image(SCANNED_SENTENCE, fmt))
    assert [(p.ocr, p.text) for p in document.pages] == [(True, SCANNED_SENTENCE)]


def test_ocr_off_skips_images_with_the_setting_named(tmp_path: Path) -> None:
    from rag.loaders import LoadError, LoadOptions

    corpus = write_corpus(tmp_path, {"letter.png": text_image(SCANNED_SENTENCE, "PNG")})
    with pytest.raises(LoadError, match=r"^images are read with OCR, which is off: set RAG_OCR=true to index them$"):
        load_document(corpus / "letter.png", corpus, options=LoadOptions(ocr=False))


@pytest.mark.slow
def test_rag_ask_answers_from_a_pdf_table_and_a_scan(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus", {
        "ops.pdf": table_pdf(),
        "scanned.pdf": text_image(SCANNED_SENTENCE, "PDF"),
        "deck.pptx": pptx_bytes(),
    })
    index = tmp_path / "index"
    result = run_rag("ingest", "--corpus", str(corpus), "--index", str(index))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("added 3, updated 0, removed 0, unchanged 0 in "), result.stdout

    def ask(question: str) -> dict:
        result = run_rag("ask", question, "--json", "--corpus", str(corpus), "--index", str(index))
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    scan = ask("When did the harbour bridge open to traffic?")
    assert scan["refused"] is False
    assert "March 1932" in scan["answer"]
    assert (scan["citations"][0]["source"], scan["citations"][0]["page"]) == ("scanned.pdf", 1)
    assert SCANNED_SENTENCE in scan["citations"][0]["text"]

    sales = ask("What were total net sales in the three months ended June 25, 2022?")
    assert sales["refused"] is False
    assert "82,959" in sales["answer"]
    assert sales["citations"][0]["source"] == "ops.pdf"
    assert "Total net sales | Three Months Ended June 25, 2022 | 82,959." in sales["citations"][0]["text"]

    chunks = _chunks(index)
    assert {(c.source, c.page, c.label, c.ocr) for c in chunks} == {
        ("ops.pdf", 1, None, False), ("scanned.pdf", 1, None, True),
        ("deck.pptx", 1, "slide 1", False), ("deck.pptx", 2, "slide 2", False),
    }


def _chunks(index: Path) -> list:
    from rag import store
    from rag.settings import Settings

    snapshot = store.load(index, Settings(index_dir=index).index_signature())
    return [chunk for _, chunk in snapshot.iter_chunks()]


# PDF tables are read from PDFium's character boxes (rag.pdf_tables). Besides matplotlib's ruled table
# above, statements drawn text by text as filings are: no borders, multi-line and spanning headers.


def statement_pdf() -> bytes:
    """A filing-style statement drawn text by text (matplotlib), as a 10-Q's is: no cell borders, a
    three-line header ("Three Months Ended" centred over two date columns, "June 25," over "2022"),
    "$" apart from right-aligned figures, a sub-heading, a label wrapped onto two lines, a dash for
    "none", and prose with figures above and below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(8.5, 11))
    put = lambda x, y, s, ha="left": fig.text(x / 612, 1 - y / 792, s, ha=ha, fontsize=8.5)
    put(72, 80, "Net sales were 82,959 in the quarter, up 2% from 81,434 a year earlier, and operating")
    put(72, 92, "expenses rose 11% to 12,809. The statement below is in millions of dollars, except where noted.")
    columns = [330, 400, 470, 540]  # right edges of the four figure columns
    put(339, 120, "Three Months Ended", "center")
    put(479, 120, "Nine Months Ended", "center")
    for x, (day, year) in zip(columns, [("June 25,", "2022"), ("June 26,", "2021")] * 2):
        put(x, 132, day, "right")
        put(x, 144, year, "right")
    rows = [("Products", ["63,355", "63,948", "245,241", "232,309"], True),
            ("Services", ["19,604", "17,486", "58,941", "50,148"], False),
            ("Total net sales", ["82,959", "81,434", "304,182", "282,457"], True),
            ("Operating expenses:", None, False),
            ("Research and development", ["6,797", "5,717", "19,490", "16,142"], False),
            ("Selling, general and", None, False),
            ("administrative", ["6,012", "5,412", "18,644", "16,357"], False),
            ("Restructuring", ["\u2014", "(83)", "\u2014", "(127)"], False)]
    y = 160
    for label, figures, dollars in rows:
        put(72 if figures is not None or label.endswith(":") else 72, y, label)
        if label == "administrative":
            fig.texts[-1].set_x(82 / 612)  # a wrapped label continues indented
        for x, figure in zip(columns, figures or []):
            put(x, y, figure, "right")
            if dollars:
                put(x - 52, y, "$")
        y += 12
    put(72, y + 14, "Research and development expense grew 19% to 6,797 in the quarter as headcount rose by")
    put(72, y + 26, "2,100 and 1,400 engineers joined from acquisitions, 3,500 in all.")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="pdf")
    plt.close(fig)
    return buffer.getvalue()


def balance_sheet_pdf() -> bytes:
    """Two pages drawn text by text: a table of contents (figures after dot leaders, no table), then a
    balance sheet under a row of years with dot leaders, "$" and ")" apart from the figures, a line of
    prose, and a second table with a one-line header."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    buffer = io.BytesIO()
    with PdfPages(buffer) as pdf:
        fig = plt.figure(figsize=(8.5, 11))
        put = lambda x, y, s, ha="left": fig.text(x / 612, 1 - y / 792, s, ha=ha, fontsize=10)
        put(72, 80, "Contents")
        for n, (title, page) in enumerate([("Financial statements", "3"), ("Notes to the statements", "7"),
                                           ("Risk factors", "12"), ("Controls and procedures", "15")]):
            put(72, 100 + 14 * n, f"{n + 1} {title} " + ". " * (40 - len(title) // 2))
            put(540, 100 + 14 * n, page, "right")
        pdf.savefig(fig)
        plt.close(fig)

        fig = plt.figure(figsize=(8.5, 11))
        put = lambda x, y, s, ha="left": fig.text(x / 612, 1 - y / 792, s, ha=ha, fontsize=9)
        put(72, 80, "Condensed consolidated balance sheets (in millions)")
        put(430, 100, "2022", "right")
        put(530, 100, "2021", "right")
        rows = [("Cash and cash equivalents", "$", ["27,502", "34,940"]),
                ("Accounts receivable, net", "", ["21,803", "26,278"]),
                ("Total current assets", "$", ["112,292", "134,836"]),
                ("Accumulated other comprehensive loss", "", ["(1,234", "(927"])]
        for n, (label, dollar, figures) in enumerate(rows):
            y = 116 + 12 * n
            put(72, y, label + " " + ". " * (30 - len(label) // 2))
            for x, figure in zip([430, 530], figures):
                put(x, y, figure, "right")
                if dollar:
                    put(x - 60, y, dollar)
                if figure.startswith("("):
                    put(x + 1, y, ")")
        # One line of prose, close above the second table: it ends the first table, not its header.
        put(72, 190, "Segment operating income rose in 2022 in both regions, by 1,203 and by 512 (14 new stores).")
        put(400, 206, "Americas", "right")
        put(500, 206, "Europe", "right")
        for n, (label, figures) in enumerate([("Net sales", ["37,472", "19,287"]),
                                              ("Operating income", ["13,201", "7,117"])]):
            put(72, 220 + 12 * n, label)
            for x, figure in zip([400, 500], figures):
                put(x, 220 + 12 * n, figure, "right")
        pdf.savefig(fig)
        plt.close(fig)
    return buffer.getvalue()


def table_texts(page) -> list[list[str]]:
    return [page.text[start:end].split("\n") for start, end in page.tables]


def test_pdf_statement_with_multi_line_spanning_headers(tmp_path: Path) -> None:
    page = load(tmp_path, "statement.pdf", statement_pdf()).pages[0]
    three, nine = "Three Months Ended June 25, 2022", "Nine Months Ended June 26, 2021"
    (table,) = table_texts(page)
    assert len(table) == 25
    assert table[:4] == [
        f"Products | {three} | $ 63,355.",
        "Products | Three Months Ended June 26, 2021 | $ 63,948.",
        "Products | Nine Months Ended June 25, 2022 | $ 245,241.",
        f"Products | {nine} | $ 232,309.",
    ]
    assert f"Total net sales | {three} | $ 82,959." in table
    assert "Operating expenses:." in table  # a sub-heading stays a line of its own
    assert f"Selling, general and administrative | {three} | 6,012." in table  # the wrapped label joined
    assert table[-4:] == [
        f"Restructuring | {three} | \u2014.",
        "Restructuring | Three Months Ended June 26, 2021 | (83).",
        "Restructuring | Nine Months Ended June 25, 2022 | \u2014.",
        f"Restructuring | {nine} | (127).",
    ]
    assert not any("operating" in line or "headcount" in line for line in table)  # the prose stays prose
    assert page.text.startswith("Net sales were 82,959 in the quarter")


def test_pdf_year_headers_leaders_two_tables_and_no_table_in_contents(tmp_path: Path) -> None:
    contents, sheet = load(tmp_path, "annual.pdf", balance_sheet_pdf()).pages
    assert contents.tables == ()  # one column of page numbers after dot leaders is not a table
    assert table_texts(sheet) == [
        ["Cash and cash equivalents | 2022 | $ 27,502.", "Cash and cash equivalents | 2021 | $ 34,940.",
         "Accounts receivable, net | 2022 | 21,803.", "Accounts receivable, net | 2021 | 26,278.",
         "Total current assets | 2022 | $ 112,292.", "Total current assets | 2021 | $ 134,836.",
         "Accumulated other comprehensive loss | 2022 | (1,234).",
         "Accumulated other comprehensive loss | 2021 | (927)."],
        ["Net sales | Americas | 37,472.", "Net sales | Europe | 19,287.",
         "Operating income | Americas | 13,201.", "Operating income | Europe | 7,117."],
    ]


def test_pdf_tables_off_reads_text_only(tmp_path: Path) -> None:
    from rag.loaders import LoadOptions

    corpus = write_corpus(tmp_path, {"statement.pdf": statement_pdf()})
    document = load_document(corpus / "statement.pdf", corpus, options=LoadOptions(pdf_tables=False))
    assert document.pages[0].tables == ()
    assert "Total net sales $ 82,959 $ 81,434 $ 304,182 $ 282,457" in document.pages[0].text
