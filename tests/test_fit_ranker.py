"""eval/fit_ranker.py, the sentence-ranker probe: top-1 scoring and fitting with one corpus left out, on
questions built here (the full run reads every eval set and is reported in the README)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "eval"))
import fit_ranker  # noqa: E402


def question(corpus: str, positive_at: int, rng: np.random.Generator, sentences: int = 5) -> fit_ranker.Question:
    """Noise features, except the first, which is high on the positive sentence; the hand score prefers the
    first sentence whatever it is."""
    features = rng.normal(0, 0.1, (sentences, len(fit_ranker.FEATURES)))
    features[positive_at, 0] += 1.0
    positive = np.zeros(sentences, bool)
    positive[positive_at] = True
    return fit_ranker.Question(corpus, features, positive, hand=np.linspace(1, 0, sentences))


def test_top1_reads_the_highest_score_and_keeps_the_first_on_ties() -> None:
    rng = np.random.default_rng(0)
    q = question("a", 2, rng)
    assert fit_ranker.top1([q], [np.array([0, 0, 5, 0, 0])]) == 1.0
    assert fit_ranker.top1([q], [np.array([1, 1, 1, 1, 1])]) == 0.0  # a tie: the answerer's first sentence


def test_each_corpus_is_scored_by_a_model_fitted_without_it() -> None:
    rng = np.random.default_rng(7)
    questions = [question(corpus, int(rng.integers(1, 5)), rng) for corpus in ("a", "b", "c") for _ in range(20)]
    loco = fit_ranker.leave_one_corpus_out(questions)
    assert list(loco) == ["a", "b", "c"]
    for scores in loco.values():
        assert scores["questions"] == 20
        assert scores["hand"] == 0.0  # the positive is never first
        assert scores["fitted"] == 1.0  # the first feature marks it in every corpus
