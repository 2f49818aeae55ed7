"""Fit the weight of the best-sentence ranking in retrieval's fusion on every public eval set, with one corpus
left out.

Retrieval fuses three rankings by reciprocal rank: dense (chunk vectors), BM25, and the candidates ordered by
their best sentence's cosine to the query (`Settings.sentence_weight`; dense and BM25 weigh 1). The weight
is fitted on data: each value of a grid is run through the product on every default set of eval/sets.toml,
each set is scored by its MRR@10 (the rank of the first chunk holding the evidence, as `rag eval` finds
it), the sets weigh the same whatever their size, and the value with the highest mean wins; among equal
means, the settings' current value. Leave-one-corpus-out: for each corpus, the value fitted on the others
is scored on it, beside the settings' value (the shipped questions and conversations share a corpus, so
they are left out together). Run (indexes cached by `rag eval`):

    .venv/bin/python eval/fit_fusion.py [--weights 0,0.5,1,2,3] [--json OUT]
    .venv/bin/python eval/fit_fusion.py --scores OUT    # refit from a saved grid
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fit_thresholds import GROUPS, floats  # noqa: E402  (the corpus groups left out together; grid parsing)

from rag.evaluation import question_rows, resolve_sets  # noqa: E402
from rag.evaluation.systems import RANK_DEPTH  # noqa: E402
from rag.settings import Settings  # noqa: E402


def retrieval_scores(rows: list[dict]) -> dict[str, float]:
    """MRR@10 and hit@2 over a set's answerable questions."""
    ranks = [row["rank"] for row in rows if row["answerable"]]
    if not ranks:
        return {"mrr_at_10": 0.0, "hit_at_2": 0.0}
    return {
        "mrr_at_10": sum(1 / r for r in ranks if r is not None and r <= RANK_DEPTH) / len(ranks),
        "hit_at_2": sum(r is not None and r <= 2 for r in ranks) / len(ranks),
    }


def score_grid(weights: list[float]) -> dict[float, dict[str, dict[str, float]]]:
    """Per weight, per set: MRR@10 and hit@2."""
    specs = resolve_sets([str(ROOT / "eval" / "sets.toml")])
    base = Settings()
    scores: dict[float, dict[str, dict[str, float]]] = {}
    for weight in weights:
        settings = base.model_copy(update={"sentence_weight": weight})
        scores[weight] = {spec.name: retrieval_scores(question_rows(spec, settings)) for spec in specs}
        print(f"sentence_weight {weight:.2f}: " + "  ".join(
            f"{name} MRR {s['mrr_at_10']:.3f} hit@2 {s['hit_at_2']:.3f}" for name, s in scores[weight].items()),
            flush=True)
    return scores


def best_weight(scores: dict[float, dict[str, dict[str, float]]], sets: list[str], current: float) -> float:
    """The weight with the highest mean MRR@10 over `sets`; among equal means the current one, then the first."""
    def mean(weight: float) -> float:
        return round(sum(scores[weight][s]["mrr_at_10"] for s in sets) / len(sets), 9)

    return max(scores, key=lambda weight: (mean(weight), weight == current))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=floats, default=[0.0, 0.5, 1.0, 2.0, 3.0])
    parser.add_argument("--json", type=Path, help="write the grid scores and the fit here")
    parser.add_argument("--scores", type=Path, help="refit from the grid a previous --json wrote (no eval)")
    args = parser.parse_args(argv)
    current = Settings().sentence_weight
    if args.scores:
        scores = {g["sentence_weight"]: g["sets"] for g in json.loads(args.scores.read_text())["grid"]}
    else:
        scores = score_grid(sorted(set(args.weights) | {current}))
    sets = list(next(iter(scores.values())))
    fitted = best_weight(scores, sets, current)
    print(f"\nfitted on all sets: sentence_weight {fitted:.2f} (settings today: {current:.2f})")
    print("\nleave one corpus out: the weight fitted without it, its MRR@10 there")
    print(f"{'held out':18s} {'fitted':>7s} {'held-out MRR':>13s} {'settings value':>15s} {'weight 0':>9s}")
    loco = {}
    for group in dict.fromkeys(GROUPS.get(s, s) for s in sets):
        held = [s for s in sets if GROUPS.get(s, s) == group]
        weight = best_weight(scores, [s for s in sets if s not in held], current)
        for name in held:
            loco[name] = {"weight": weight, "held_out": scores[weight][name]["mrr_at_10"],
                          "settings": scores[current][name]["mrr_at_10"],
                          "without": scores[min(scores)][name]["mrr_at_10"]}
            print(f"{name:18s} {weight:7.2f} {loco[name]['held_out']:13.3f} {loco[name]['settings']:15.3f} "
                  f"{loco[name]['without']:9.3f}")
    if args.json:
        args.json.write_text(json.dumps({
            "grid": [{"sentence_weight": w, "sets": s} for w, s in scores.items()],
            "fitted": {"sentence_weight": fitted},
            "leave_one_out": loco,
        }, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
