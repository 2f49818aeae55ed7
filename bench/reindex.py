"""Re-index time for a one-document change next to a full build, measured in one run.

Corpus: the shared BlockchainSolana PDF (../shared/datasets/... beside the repo, or --pdf) plus the
shipped article. Prints a table of timings (median of --repeat runs each) and the ratio.

    .venv/bin/python bench/reindex.py [--pdf PATH] [--repeat 3]

The model is loaded once before timing (as in the app or `rag watch`, which keep it loaded); the
import-and-load cost a one-shot `rag ingest` adds is printed separately.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_PDF = REPO.parent / "shared" / "datasets" / "blockchain_solana" / "source_files" / "BlockchainSolana.pdf"
ARTICLE = REPO / "corpus" / "dongguan-hong-kong-cooperation.txt"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pdf", type=Path, default=DEFAULT_PDF, help=f"the PDF (default {DEFAULT_PDF})")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measurement; the median is shown")
    args = parser.parse_args(argv)
    if not args.pdf.is_file():
        print(f"error: {args.pdf} not found: pass --pdf PATH", file=sys.stderr)
        return 1

    started = time.perf_counter()
    from rag.embedding import load_embedder
    from rag.ingest import ingest
    from rag.settings import Settings

    embedder = load_embedder(Settings().embed_model)
    load_s = time.perf_counter() - started

    with tempfile.TemporaryDirectory(prefix="rag-bench-") as tmp:
        root = Path(tmp)
        corpus = root / "corpus"
        corpus.mkdir()
        shutil.copy(args.pdf, corpus / args.pdf.name)
        shutil.copy(ARTICLE, corpus / ARTICLE.name)
        article = corpus / ARTICLE.name
        original = article.read_text(encoding="utf-8")

        full, chunks = [], 0
        for n in range(args.repeat):
            report = ingest(Settings(corpus_dir=corpus, index_dir=root / f"full-{n}"), embedder=embedder)
            full.append(report.seconds)
            chunks = report.embedded_chunks
        settings = Settings(corpus_dir=corpus, index_dir=root / "full-0")

        def timed(change, undo=None) -> tuple[float, str]:
            runs, summary = [], ""
            for n in range(args.repeat):
                change(n)
                report = ingest(settings, embedder=embedder)
                runs.append(report.seconds)
                summary = report.summary()
                if undo:
                    undo()
                    ingest(settings, embedder=embedder)
            return statistics.median(runs), summary

        def edit(n: int) -> None:
            article.write_text(original + f"\nEdit {n}: the cooperation fund grew by {n + 1} percent.\n", encoding="utf-8")

        edited = timed(edit)
        article.write_text(original, encoding="utf-8")
        ingest(settings, embedder=embedder)
        added = timed(lambda n: (corpus / "note.txt").write_text(f"Note {n}: ferries leave twice a day."),
                      lambda: (corpus / "note.txt").unlink())
        removed = timed(lambda n: article.unlink(), lambda: article.write_text(original, encoding="utf-8"))
        pdf = corpus / args.pdf.name
        pdf_bytes = pdf.read_bytes()
        resaved = timed(lambda n: pdf.write_bytes(pdf_bytes + f"\n% re-saved {n}\n".encode()),
                        lambda: pdf.write_bytes(pdf_bytes))
        unchanged = timed(lambda n: None)

    full_s = statistics.median(full)
    rows = [
        ("full build (PDF + article)", full_s, f"{chunks} chunks embedded"),
        ("one document edited (article)", *edited),
        ("one document added", *added),
        ("one document removed", *removed),
        ("PDF re-saved (new bytes, same text)", *resaved),
        ("nothing changed", *unchanged),
    ]
    print(f"corpus: {args.pdf.name} ({args.pdf.stat().st_size // 1024} KB) + {ARTICLE.name}; "
          f"median of {args.repeat} runs; model loaded once before timing ({load_s:.1f} s incl. imports)")
    print(f"{'':36} {'seconds':>8} {'x faster':>9}  summary (of the last run)")
    for name, seconds, summary in rows:
        print(f"{name:36} {seconds:8.2f} {full_s / seconds if seconds else float('inf'):9.0f}  {summary}")
    print(f"re-index after a one-document edit: {edited[0]:.2f} s vs full build {full_s:.2f} s "
          f"(ratio {full_s / edited[0]:.0f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
