"""Fit the weight of the best-sentence ranking in retrieval's fusion on every public eval set, with one corpus
left out.

Retrieval fuses three rankings by reciprocal rank: dense (chunk vectors), BM25, and the candidates ordered by
their best sentence's cosine to the query (`Settings.sentence_weight`; dense and BM25 weigh 1). The weight
is fitted on data: each value of a grid is run through the product on every default set of eval/sets.toml,
each set is scored by its MRR@10 (the rank of the first chunk holding the evidence, as `rag eval` finds
it), the sets weigh the same whatever their size, and the value with the highest mean wins; among equal
means, the settings' current value. Leave-one-corpus-out: for each corpus, the value fitted on the others
is scored on it, beside the settings' value (the shipped questions and conversations share a corpus, so
they are left out together). The machinery, shared with `rag eval --leave-one-out`, is
rag/evaluation/fitting.py. Run (indexes cached by `rag eval`):

    .venv/bin/python eval/fit_fusion.py [--weights 0,0.5,1,2,3] [--json OUT]
    .venv/bin/python eval/fit_fusion.py --scores OUT    # refit from a saved grid
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rag.evaluation import resolve_sets  # noqa: E402
from rag.evaluation.fitting import SENTENCE_WEIGHTS, fit_sentence_weight, fitting_script, floats  # noqa: E402
from rag.settings import Settings  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=floats, default=SENTENCE_WEIGHTS)
    return fitting_script(parser, lambda args: fit_sentence_weight(
        resolve_sets([str(ROOT / "eval" / "sets.toml")]), Settings(), [(w,) for w in args.weights],
        report=lambda line: print(line, flush=True)), argv)


if __name__ == "__main__":
    raise SystemExit(main())
