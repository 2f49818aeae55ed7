"""Fit the extractive answerer's answer-or-refuse thresholds on every public eval set, with one set left out.

The answerer answers from a sentence only when it covers enough of the question's words (`min_support`) and
lies close enough to the question in embedding space (`min_similarity`). Those two numbers decide between an
answer and "the documents do not say", so they are fitted on data rather than set by hand: every pair of a
grid is run through the product on every set of eval/sets.toml (default sets), and each set is scored by the
share of its questions decided right (a right answer, a right refusal, or for a LabelledRagDataset an answer
citing its reference context). Sets weigh the same, whatever their size.

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
import dataclasses
import itertools
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rag.evaluation import question_rows, resolve_sets  # noqa: E402
from rag.settings import Settings  # noqa: E402

# Sets that share a corpus are one group: leaving one out must leave out the other.
GROUPS = {"questions": "shipped", "conversations": "shipped"}


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def reuse_retrieval_and_evidence() -> None:
    """Memoise `Retriever.search` and `ExtractiveAnswerer.rank_evidence` for this process: neither reads the
    thresholds being fitted, so the grid costs one retrieval and one evidence scoring per question."""
    from rag.answer import ExtractiveAnswerer
    from rag.retrieval import Retriever

    search, rank = Retriever.search, ExtractiveAnswerer.rank_evidence
    searched: dict = {}
    ranked: dict = {}

    def cached_search(self, query, k=None):  # type: ignore[no-untyped-def]
        key = (self.snapshot.version, query, k)
        if key not in searched:
            searched[key] = search(self, query, k)
        return searched[key]

    def cached_rank(self, asked, query, hits):  # type: ignore[no-untyped-def]
        key = (self.retriever.snapshot.version, asked.text, query.text, tuple(h.chunk_id for h in hits))
        if key not in ranked:
            ranked[key] = rank(self, asked, query, hits)
        return [dataclasses.replace(e) for e in ranked[key]]  # `_choose` sets short_answer on its copies

    Retriever.search = cached_search  # type: ignore[method-assign]
    ExtractiveAnswerer.rank_evidence = cached_rank  # type: ignore[method-assign]


def score_grid(support: list[float], similarity: list[float]) -> dict[tuple[float, float], dict[str, float]]:
    """Share of questions decided right, per grid pair and per set."""
    specs = resolve_sets([str(ROOT / "eval" / "sets.toml")])
    base = Settings()
    scores: dict[tuple[float, float], dict[str, float]] = {}
    for pair in itertools.product(support, similarity):
        settings = base.model_copy(update={"min_support": pair[0], "min_similarity": pair[1]})
        scores[pair] = {}
        for spec in specs:
            rows = question_rows(spec, settings)
            scores[pair][spec.name] = sum(r["passed"] for r in rows) / len(rows)
        print(f"min_support {pair[0]:.2f} min_similarity {pair[1]:.2f}: "
              + "  ".join(f"{name} {value:.3f}" for name, value in scores[pair].items()), flush=True)
    return scores


def best_pair(scores: dict[tuple[float, float], dict[str, float]], sets: list[str],
              current: tuple[float, float]) -> tuple[float, float]:
    """The pair with the highest mean over `sets`. The grid is flat in places: among equal means the
    settings' current pair wins (no change without a measured gain), then the first in grid order."""
    def mean(pair: tuple[float, float]) -> float:
        return round(sum(scores[pair][s] for s in sets) / len(sets), 9)

    return max(scores, key=lambda pair: (mean(pair), pair == current))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--support", type=floats, default=[0.1, 0.2, 0.3, 0.4])
    parser.add_argument("--similarity", type=floats, default=[0.15, 0.25, 0.35, 0.45])
    parser.add_argument("--json", type=Path, help="write the grid scores and the fit here")
    parser.add_argument("--scores", type=Path, help="refit from the grid scores a previous --json wrote (no eval)")
    args = parser.parse_args(argv)
    current = (Settings().min_support, Settings().min_similarity)
    if args.scores:
        grid = json.loads(args.scores.read_text())["grid"]
        scores = {(g.pop("min_support"), g.pop("min_similarity")): g for g in grid}
    else:
        reuse_retrieval_and_evidence()
        support = sorted(set(args.support) | {current[0]})
        similarity = sorted(set(args.similarity) | {current[1]})
        scores = score_grid(support, similarity)
    sets = list(next(iter(scores.values())))
    fitted = best_pair(scores, sets, current)
    print(f"\nfitted on all sets: min_support {fitted[0]:.2f}, min_similarity {fitted[1]:.2f} "
          f"(settings today: {current[0]:.2f}, {current[1]:.2f})")
    print("\nleave one corpus out: the pair fitted without it, scored on it (decided right)")
    print(f"{'held out':18s} {'fitted pair':>14s} {'held-out score':>15s} {'settings pair':>14s}")
    loco = {}
    for group in dict.fromkeys(GROUPS.get(s, s) for s in sets):
        held = [s for s in sets if GROUPS.get(s, s) == group]
        pair = best_pair(scores, [s for s in sets if s not in held], current)
        for name in held:
            loco[name] = {"pair": pair, "held_out": scores[pair][name], "settings": scores[current][name]}
            print(f"{name:18s} {pair[0]:.2f} / {pair[1]:.2f}    {scores[pair][name]:15.3f} {scores[current][name]:14.3f}")
    if args.json:
        args.json.write_text(json.dumps({
            "grid": [{"min_support": p[0], "min_similarity": p[1], **s} for p, s in scores.items()],
            "fitted": {"min_support": fitted[0], "min_similarity": fitted[1]},
            "leave_one_out": loco,
        }, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
