"""Settings fitted on the eval sets, each corpus left out in turn.

Two decisions are fitted rather than set by hand: the refusal thresholds (`min_support`, `min_similarity`: the
share of questions decided right, a right answer or a right refusal) and the weight of the best-sentence
ranking in retrieval (`sentence_weight`: MRR@10 of the evidence chunk). For each point of a grid the product
answers every set; the sets weigh the same whatever their size, and the point with the highest mean wins
(among equal means the settings' current point, so nothing changes without a measured gain). Leave-one-out:
for each corpus, the point fitted on the other corpora is scored on it, beside the settings' point. Sets that
share a corpus (the shipped questions and conversations) are left out together.

`rag eval SETS --leave-one-out` prints both fits' left-out figures after the metrics table;
eval/fit_thresholds.py and eval/fit_fusion.py run one fit each and keep its grid in a JSON file.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rag.evaluation.datasets import EvalSpec, Progress
from rag.evaluation.runner import question_rows
from rag.evaluation.systems import RANK_DEPTH
from rag.settings import Settings

# Sets that share a corpus are one group: leaving one out must leave out the other.
GROUPS = {"questions": "shipped", "conversations": "shipped"}

Point = tuple[float, ...]


def decided_right(rows: list[dict]) -> float:
    """Share of a set's questions passed: answered right or refused rightly (or, for a LabelledRagDataset,
    answered citing its reference context in the top chunks)."""
    return sum(row["passed"] for row in rows) / len(rows) if rows else 0.0


def mrr_at_10(rows: list[dict]) -> float:
    """Mean reciprocal rank of the first evidence chunk over a set's answerable questions (0 beyond 10)."""
    ranks = [row["rank"] for row in rows if row["answerable"]]
    return sum(1 / r for r in ranks if r is not None and r <= RANK_DEPTH) / len(ranks) if ranks else 0.0


@dataclass
class Fit:
    """A grid of settings points, each scored on every set, and the choice among them."""

    parameters: tuple[str, ...]  # Settings fields fitted together
    metric: str  # what each set is scored by
    scores: dict[Point, dict[str, float]]  # point -> set name -> score
    current: Point  # the settings' point

    @property
    def sets(self) -> list[str]:
        return list(next(iter(self.scores.values())))

    def best(self, sets: Sequence[str]) -> Point:
        """The point with the highest mean over `sets`; ties keep the current point, then the first."""
        def mean(point: Point) -> float:
            return round(sum(self.scores[point][s] for s in sets) / len(sets), 9)

        return max(self.scores, key=lambda point: (mean(point), point == self.current))

    def leave_one_out(self) -> dict[str, dict]:
        """Per set: the point fitted without its corpus, its score there, and the settings' point's score."""
        result = {}
        for group in dict.fromkeys(GROUPS.get(s, s) for s in self.sets):
            held = [s for s in self.sets if GROUPS.get(s, s) == group]
            point = self.best([s for s in self.sets if s not in held])
            for name in held:
                result[name] = {"point": point, "held_out": self.scores[point][name],
                                "settings": self.scores[self.current][name]}
        return result


@contextmanager
def retrieval_and_evidence_reused() -> Iterator[None]:
    """Memoise `Retriever.search` and `ExtractiveAnswerer.rank_evidence` while fitting settings that neither
    reads (the refusal thresholds): a grid then costs one retrieval and one evidence scoring per question."""
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
    try:
        yield
    finally:
        Retriever.search = search  # type: ignore[method-assign]
        ExtractiveAnswerer.rank_evidence = rank  # type: ignore[method-assign]


def run_grid(specs: Sequence[EvalSpec], settings: Settings, parameters: tuple[str, ...], points: Sequence[Point],
             metric: Callable[[list[dict]], float], *, cache_dir: Path | None = None,
             progress: Progress | None = None, report: Callable[[str], None] | None = None) -> Fit:
    """Every set answered at every point (the settings' point added), scored by `metric`."""
    current = tuple(float(getattr(settings, p)) for p in parameters)
    scores: dict[Point, dict[str, float]] = {}
    for point in sorted(set(points) | {current}):
        chosen = settings.model_copy(update=dict(zip(parameters, point)))
        scores[point] = {spec.name: metric(question_rows(spec, chosen, cache_dir=cache_dir, progress=progress))
                         for spec in specs}
        if report:
            report(" ".join(f"{p} {v:g}" for p, v in zip(parameters, point)) + ": "
                   + "  ".join(f"{name} {value:.3f}" for name, value in scores[point].items()))
    return Fit(parameters, metric.__name__, scores, current)


SUPPORTS = [0.1, 0.2, 0.3, 0.4]  # the min_support values tried
SIMILARITIES = [0.15, 0.25, 0.35, 0.45]  # the min_similarity values tried
THRESHOLD_GRID = list(itertools.product(SUPPORTS, SIMILARITIES))
SENTENCE_WEIGHTS = [0.0, 0.5, 1.0, 2.0, 3.0]  # the sentence_weight values tried (dense and BM25 weigh 1)
SENTENCE_WEIGHT_GRID = [(w,) for w in SENTENCE_WEIGHTS]


def fit_thresholds(specs: Sequence[EvalSpec], settings: Settings, points: Sequence[Point] = THRESHOLD_GRID,
                   **kwargs) -> Fit:
    with retrieval_and_evidence_reused():
        return run_grid(specs, settings, ("min_support", "min_similarity"), points, decided_right, **kwargs)


def fit_sentence_weight(specs: Sequence[EvalSpec], settings: Settings,
                        points: Sequence[Point] = SENTENCE_WEIGHT_GRID, **kwargs) -> Fit:
    return run_grid(specs, settings, ("sentence_weight",), points, mrr_at_10, **kwargs)


def corpus_count(specs: Sequence[EvalSpec]) -> int:
    """How many corpora the sets cover (sets sharing one count once): leaving one out needs two."""
    return len({GROUPS.get(spec.name, spec.name) for spec in specs})


def leave_one_out_table(fits: Sequence[Fit]) -> tuple[list[str], list[list[str]]]:
    """One row per set: for each fit, the point fitted without the set's corpus, the set's score at it and at
    the settings' point."""
    header = ["held out"]
    for fit in fits:
        name = " / ".join(fit.parameters)
        current = " / ".join(f"{v:g}" for v in fit.current)
        header += [f"{name} fitted without it", f"{fit.metric} there", f"{fit.metric} at the settings' {current}"]
    rows = []
    for name in fits[0].sets:
        row = [name]
        for fit in fits:
            left = fit.leave_one_out()[name]
            row += [" / ".join(f"{v:g}" for v in left["point"]), f"{left['held_out']:.3f}", f"{left['settings']:.3f}"]
        rows.append(row)
    return header, rows


def fit_to_json(fit: Fit) -> dict:
    """The grid, the fit on all sets and the left-out figures, as eval/fit_*.json keep them."""
    return {
        "parameters": list(fit.parameters),
        "metric": fit.metric,
        "grid": [{"point": list(point), "sets": sets} for point, sets in fit.scores.items()],
        "settings": list(fit.current),
        "fitted": list(fit.best(fit.sets)),
        "leave_one_out": {name: {**left, "point": list(left["point"])} for name, left in fit.leave_one_out().items()},
    }


def fit_from_json(data: dict, settings: Settings) -> Fit:
    """A saved grid, refitted against the settings' current point (which must be on the grid)."""
    parameters = tuple(data["parameters"])
    return Fit(parameters, data["metric"], {tuple(g["point"]): g["sets"] for g in data["grid"]},
               tuple(float(getattr(settings, p)) for p in parameters))


def print_fit(fit: Fit, write: Callable[[str], None] = print) -> None:
    """The fit on all sets and the left-out table, for the fitting scripts."""
    fitted, name = fit.best(fit.sets), " / ".join(fit.parameters)
    write(f"\nfitted on all sets: {name} = {' / '.join(f'{v:g}' for v in fitted)} "
          f"(settings today: {' / '.join(f'{v:g}' for v in fit.current)})")
    write(f"\nleave one corpus out: the value fitted without it, scored on it ({fit.metric})")
    header, rows = leave_one_out_table([fit])
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        write("  ".join(cell.rjust(width) if i else cell.ljust(width) for i, (cell, width) in enumerate(zip(row, widths))))


def floats(text: str) -> list[float]:
    """A grid given on a command line: "0.1,0.2,0.3"."""
    return [float(x) for x in text.split(",") if x.strip()]


def fitting_script(parser: argparse.ArgumentParser, fit_grid: Callable[[argparse.Namespace], Fit],
                   argv: list[str] | None = None) -> int:
    """The eval/fit_*.py scripts: fit a grid (or, with --scores, refit a grid kept by --json), print the fit
    and the left-out table, keep the grid."""
    parser.add_argument("--json", type=Path, help="write the grid scores and the fit here")
    parser.add_argument("--scores", type=Path, help="refit from the grid a previous --json wrote (no eval)")
    args = parser.parse_args(argv)
    fit = fit_from_json(json.loads(args.scores.read_text()), Settings()) if args.scores else fit_grid(args)
    print_fit(fit)
    if args.json:
        args.json.write_text(json.dumps(fit_to_json(fit), indent=1))
    return 0
