"""Fit the extractive answerer's answer-or-refuse thresholds on every public eval set, with one set left out.

The answerer answers from a sentence only when it covers enough of the question's words (`min_support`) and
lies close enough to the question in embedding space (`min_similarity`). Those two numbers decide between an
answer and "the documents do not say", so they are fitted on data rather than set by hand: every pair of a
grid is run through the product on every set of eval/sets.toml (default sets), and each set is scored by the
share of its questions decided right (a right answer, a right refusal, or for a LabelledRagDataset an answer
citing its reference context). Sets weigh the same, whatever their size; the machinery, shared with
`rag eval --leave-one-out`, is rag/evaluation/fitting.py.

Leave-one-set-out: for each set, the pair fitted on the others is scored on it, beside the settings'
current pair. The shipped article's questions and conversations share a corpus, so they are left out
together. The thresholds change no retrieval and no evidence score, only the choice among the scored
sentences, so each question's retrieval and evidence are computed once and reused at every grid point.
Run (indexes cached by `rag eval`):

    .venv/bin/python eval/fit_thresholds.py [--support 0.1,0.2,0.3] [--similarity 0.15,0.25,0.35] [--json OUT]
    .venv/bin/python eval/fit_thresholds.py --scores OUT    # refit from a saved grid
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rag.evaluation import resolve_sets  # noqa: E402
from rag.evaluation.fitting import SIMILARITIES, SUPPORTS, fit_thresholds, fitting_script, floats  # noqa: E402
from rag.settings import Settings  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--support", type=floats, default=SUPPORTS)
    parser.add_argument("--similarity", type=floats, default=SIMILARITIES)
    return fitting_script(parser, lambda args: fit_thresholds(
        resolve_sets([str(ROOT / "eval" / "sets.toml")]), Settings(),
        list(itertools.product(args.support, args.similarity)), report=lambda line: print(line, flush=True)), argv)


if __name__ == "__main__":
    raise SystemExit(main())
