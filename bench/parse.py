"""PDF parsing speed: pages per second for pypdf against PDFium (pypdfium2) over one folder, in one run.

The folder (default: built in a temp dir) holds the public PDFs that ship on this machine (Debian's
libtasn1 and shared-mime-info manuals, the BlockchainSolana PDF of the shared eval data, when present)
plus PDFs generated here with matplotlib (a 20-page report with a table on every page). Pass --folder to
measure your own PDFs. Each engine extracts the text of every page of every file, --repeat times
(the median is shown); the engines alternate so that machine load hits them alike. Both wall-clock and
this process's CPU time are shown: all three engines run on one thread, so on an idle machine they agree,
and on a machine shared with other jobs CPU time is the steadier measure.

    .venv/bin/python bench/parse.py [--folder DIR] [--repeat 3]

Columns: pypdf (`PdfReader(...).pages[i].extract_text()`), PDFium text (`get_text_range`, what
`rag.loaders` reads), and rag's PDF loader with table extraction on (the default: `rag.pdf_tables` on
pages that look tabular, from PDFium's character boxes), all in this one process (no worker pool).
"""

from __future__ import annotations

import argparse
import io
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SHIPPED = [
    Path("/usr/share/doc/libtasn1-doc/libtasn1.pdf"),
    Path("/usr/share/doc/shared-mime-info/shared-mime-info-spec.pdf"),
    REPO / "eval" / "datasets" / "blockchain_solana" / "source_files" / "BlockchainSolana.pdf",
    REPO.parent / "shared" / "datasets" / "blockchain_solana" / "source_files" / "BlockchainSolana.pdf",
]


def generated_report(pages: int = 20) -> bytes:
    """A report of `pages` pages, each a paragraph and a ruled table of figures (matplotlib's PDF backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    buffer = io.BytesIO()
    with PdfPages(buffer) as pdf:
        for page in range(pages):
            fig, ax = plt.subplots(figsize=(8.5, 11))
            ax.axis("off")
            fig.text(0.1, 0.9, f"Segment results, part {page + 1}. Net sales by category and region are shown "
                     "below in millions of dollars.", wrap=True)
            rows = [["", "Q1", "Q2", "Q3", "Q4"]] + [
                [f"Line item {r}", *(f"{(page + 1) * (r + 1) * (q + 3) * 97:,}" for q in range(4))] for r in range(25)
            ]
            ax.table(cellText=rows, loc="center")
            pdf.savefig(fig)
            plt.close(fig)
    return buffer.getvalue()


def build_folder(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    seen = set()
    for path in SHIPPED:
        if path.is_file() and path.name not in seen:
            seen.add(path.name)
            shutil.copy(path, folder / path.name)
    (folder / "generated-report.pdf").write_bytes(generated_report())


def with_pypdf(data: bytes) -> tuple[int, int]:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    if reader.is_encrypted:
        reader.decrypt("")
    texts = [page.extract_text() or "" for page in reader.pages]
    return len(texts), sum(len(t) for t in texts)


def with_pdfium(data: bytes) -> tuple[int, int]:
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(data)
    chars = 0
    for index in range(len(pdf)):
        page = pdf[index]
        textpage = page.get_textpage()
        chars += len(textpage.get_text_range())
        textpage.close()
        page.close()
    pages = len(pdf)
    pdf.close()
    return pages, chars


def with_loader(data: bytes) -> tuple[int, int]:
    from rag.loaders import LoadOptions, _load_pdf

    pages = _load_pdf(data, LoadOptions(ocr=False, pdf_tables=True))
    return len(pages), sum(len(p.text) for p in pages)


ENGINES = {"pypdf": with_pypdf, "pdfium": with_pdfium, "rag loader (pdfium + tables)": with_loader}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, help="a folder of PDFs (default: built in a temp dir)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each engine; the median is shown")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.folder or Path(tmp) / "pdfs"
        if args.folder is None:
            build_folder(folder)
        files = sorted(folder.glob("*.pdf"))
        if not files:
            print(f"no PDFs in {folder}", file=sys.stderr)
            return 1
        blobs = [f.read_bytes() for f in files]
        wall: dict[str, list[float]] = {name: [] for name in ENGINES}
        cpu: dict[str, list[float]] = {name: [] for name in ENGINES}
        counts: dict[str, tuple[int, int]] = {}
        for _ in range(args.repeat):
            for name, engine in ENGINES.items():
                started, started_cpu = time.perf_counter(), time.process_time()
                results = [engine(blob) for blob in blobs]
                cpu[name].append(time.process_time() - started_cpu)
                wall[name].append(time.perf_counter() - started)
                counts[name] = (sum(p for p, _ in results), sum(c for _, c in results))
    print(f"{len(files)} PDFs: " + ", ".join(f.name for f in files))
    print(f"{'engine':32} {'pages':>6} {'chars':>9} {'wall s':>8} {'pages/s':>8} {'CPU s':>8} {'pages/CPU s':>11}")
    rate, cpu_rate = {}, {}
    for name in ENGINES:
        seconds, cpu_seconds = statistics.median(wall[name]), statistics.median(cpu[name])
        pages, chars = counts[name]
        rate[name], cpu_rate[name] = pages / seconds, pages / cpu_seconds
        print(f"{name:32} {pages:6d} {chars:9d} {seconds:8.3f} {rate[name]:8.1f} {cpu_seconds:8.3f} "
              f"{cpu_rate[name]:11.1f}")
    loader = "rag loader (pdfium + tables)"
    for label, r in (("wall clock", rate), ("CPU time", cpu_rate)):
        print(f"{label}: PDFium / pypdf {r['pdfium'] / r['pypdf']:.1f}x pages per second; "
              f"rag loader with tables / pypdf {r[loader] / r['pypdf']:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
