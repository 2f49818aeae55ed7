"""Probe: does a sentence ranker fitted on the answerer's own evidence features pick the answering sentence
more often than its hand-built score (support + similarity_weight x cosine) on a corpus left out of fitting?

The extractive answerer ranks the sentences of the top chunks by `Evidence.score`; issue 10 asks for a fitted
model instead. This script runs the product on every default set of eval/sets.toml, records for each answerable
question the evidence list the answerer ranked (`ExtractiveAnswerer.rank_evidence`) with FEATURES per sentence,
and labels a sentence positive when it holds an accepted answer (`contains_answer`) or, for a LabelledRagDataset,
lies inside a reference context (`lies_in_context`, as `citation_in_context` scores it). Questions with no
positive sentence in their evidence are left out (retrieval missed them; no ranker can help).

A logistic regression over FEATURES is fitted with one corpus left out (the shipped questions and conversations
are one corpus; each corpus weighs the same in fitting, whatever its size) and scored on the left-out corpus by
top-1: the share of its questions whose highest-scored sentence is positive, beside the hand-built score's.
Nothing here changes the product; the README ("Evaluation") has the figures. Run (indexes cached by `rag eval`):

    .venv/bin/python eval/fit_ranker.py [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rag.evaluation import question_rows, resolve_sets  # noqa: E402
from rag.evaluation.datasets import load_eval_file  # noqa: E402
from rag.evaluation.fitting import GROUPS  # noqa: E402  (the corpus groups left out together)
from rag.evaluation.matching import contains_answer, lies_in_context  # noqa: E402
from rag.settings import Settings  # noqa: E402

FEATURES = (
    "support",  # weighted share of the question's words the sentence covers
    "similarity",  # its cosine with the question
    "chunk_rank",  # 1 / the rank of its chunk in the fused retrieval
    "names_near",  # the question's names are in it or the sentence before
    "has_candidate",  # it holds an answer of the kind asked for (1 for untyped questions)
    "sentence_rank",  # 1 / its chunk's rank by best sentence
    "similarity_gap",  # its cosine minus the best one in the list
    "support_gap",  # its support minus the best one in the list
)


@dataclass
class Question:
    corpus: str
    features: np.ndarray  # (sentences, len(FEATURES)), in the answerer's order
    positive: np.ndarray  # (sentences,) bool
    hand: np.ndarray  # (sentences,) the answerer's own score


def evidence_features(evidence: list, hits: list, asked, language) -> tuple[np.ndarray, np.ndarray]:
    """FEATURES and the hand-built score of each evidence sentence (a `rag.answer.Evidence`)."""
    order = {hit.chunk_id: rank for rank, hit in enumerate(hits, start=1)}
    best_similarity = max(e.similarity for e in evidence)
    best_support = max(e.support for e in evidence)
    rows = []
    for e in evidence:
        kinds = language.candidate_passes[asked.answer_type] if asked.answer_type else ()
        candidate = any(language.candidates(kind, e.sentence.text, asked.text) for kind in kinds) if kinds else True
        rank = e.sentence.hit.sentence_rank
        rows.append([e.support, e.similarity, 1 / order[e.sentence.hit.chunk_id], float(e.names_near),
                     float(candidate), 1 / rank if rank else 0.0, e.similarity - best_similarity,
                     e.support - best_support])
    return np.array(rows, dtype=float), np.array([e.score for e in evidence])


def collect() -> list[Question]:
    """Every answerable question of the default sets, with its evidence list's features and labels."""
    from rag.answer import ExtractiveAnswerer
    from rag.language import get_language

    language = get_language(Settings().language)
    rank_evidence = ExtractiveAnswerer.rank_evidence
    seen: dict[str, tuple] = {}

    def recording(self, asked, query, hits):  # type: ignore[no-untyped-def]
        evidence = rank_evidence(self, asked, query, hits)
        if evidence:
            seen[asked.text] = evidence_features(evidence, hits, asked, language) + ([e.sentence.text for e in evidence],)
        return evidence

    ExtractiveAnswerer.rank_evidence = recording  # type: ignore[method-assign]
    questions: list[Question] = []
    try:
        for spec in resolve_sets([str(ROOT / "eval" / "sets.toml")]):
            seen.clear()
            cases = {case.id: case for case in load_eval_file(spec.file).cases}
            for row in question_rows(spec, Settings()):
                case = cases[row["id"]]
                recorded = seen.get(case.question.strip())
                if not row["answerable"] or recorded is None:
                    continue
                features, hand, texts = recorded
                if case.answers is None:
                    positive = [lies_in_context(text, case.reference_contexts) for text in texts]
                else:
                    positive = [any(contains_answer(text, a) for a in case.answers) for text in texts]
                if any(positive):
                    questions.append(Question(GROUPS.get(spec.name, spec.name), features, np.array(positive), hand))
    finally:
        ExtractiveAnswerer.rank_evidence = rank_evidence  # type: ignore[method-assign]
    return questions


def top1(questions: list[Question], scores: list[np.ndarray]) -> float:
    """Share of questions whose highest-scored sentence is positive (ties: the answerer's order)."""
    return float(np.mean([q.positive[int(np.argmax(s))] for q, s in zip(questions, scores)]))


def fit(questions: list[Question]):
    """Logistic regression over FEATURES; every corpus weighs the same."""
    from sklearn.linear_model import LogisticRegression

    sizes = {c: sum(len(q.positive) for q in questions if q.corpus == c) for c in {q.corpus for q in questions}}
    x = np.vstack([q.features for q in questions])
    y = np.concatenate([q.positive for q in questions])
    weight = np.concatenate([np.full(len(q.positive), 1000.0 / sizes[q.corpus]) for q in questions])
    return LogisticRegression(max_iter=5000).fit(x, y, sample_weight=weight)


def leave_one_corpus_out(questions: list[Question]) -> dict[str, dict]:
    result = {}
    for corpus in dict.fromkeys(q.corpus for q in questions):
        held = [q for q in questions if q.corpus == corpus]
        model = fit([q for q in questions if q.corpus != corpus])
        result[corpus] = {
            "questions": len(held),
            "hand": round(top1(held, [q.hand for q in held]), 4),
            "fitted": round(top1(held, [model.decision_function(q.features) for q in held]), 4),
        }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the left-out scores and the model fitted on all here")
    args = parser.parse_args(argv)
    questions = collect()
    loco = leave_one_corpus_out(questions)
    print("top-1 on the corpus left out: the hand-built score and the ranker fitted on the other corpora")
    print(f"{'held out':18s} {'questions':>9s} {'hand':>6s} {'fitted':>7s}")
    for corpus, scores in loco.items():
        print(f"{corpus:18s} {scores['questions']:9d} {scores['hand']:6.3f} {scores['fitted']:7.3f}")
    model = fit(questions)
    if args.json:
        args.json.write_text(json.dumps({
            "features": list(FEATURES),
            "leave_one_out": loco,
            "fitted_on_all": {"coefficients": dict(zip(FEATURES, np.round(model.coef_[0], 4).tolist())),
                              "intercept": round(float(model.intercept_[0]), 4)},
        }, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
