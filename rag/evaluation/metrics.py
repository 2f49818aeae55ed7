"""The one metric registry: every metric `rag eval` reports, with its key (the `--json` key and the name
in thresholds files), what it means, which file kinds it applies to, which way is better, and how it is
computed from the scored rows.

A metric is null (None) for a file kind it does not apply to, when it has nothing to average over (e.g.
`refusal_recall` on a set without unanswerable questions), and, for the LLM-only metrics, in a run
without an LLM. README.md ("Evaluation") has the same definitions for users.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from rag.evaluation.datasets import FILE_KINDS, FileKind

if TYPE_CHECKING:
    from rag.evaluation.runner import Row

HIT_KS = (1, 2, 3, 5)


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


def _answerable(rows: list[Row]) -> list[Row]:
    return [r for r in rows if r.case.answerable]


def _retrieval(rows: list[Row]) -> list[Row]:
    """Questions whose evidence can be recognised: answerable, with answers or reference contexts."""
    return [r for r in _answerable(rows) if r.case.answers is not None or r.case.reference_contexts]


def _hit_at(k: int) -> Callable[[list[Row]], float | None]:
    return lambda rows: _mean([r.rank is not None and r.rank <= k for r in _retrieval(rows)])


def _percentile(q: float) -> Callable[[list[Row]], float | None]:
    return lambda rows: float(np.percentile([r.latency_ms for r in rows], q)) if rows else None


@dataclass(frozen=True)
class Metric:
    key: str
    description: str
    kinds: frozenset[FileKind]  # the file kinds it applies to; null for the others
    compute: Callable[[list[Row]], float | None]
    lower_is_better: bool = False  # a threshold on it is then a maximum, otherwise a minimum
    llm_only: bool = False  # null in a run without an LLM


ALL = frozenset(FILE_KINDS)
REGISTRY: tuple[Metric, ...] = (
    Metric("answer_accuracy", "share of answerable questions (turns) answered right",
           frozenset({"questions", "conversations"}), lambda rows: _mean([r.passed for r in _answerable(rows)])),
    Metric("refusal_recall", "share of unanswerable questions (answers: []) the assistant refused",
           ALL, lambda rows: _mean([r.answer.refused for r in rows if not r.case.answerable])),
    Metric("false_refusals", "share of answerable questions the assistant refused",
           ALL, lambda rows: _mean([r.answer.refused for r in _answerable(rows)]), lower_is_better=True),
    Metric("turn_accuracy", "share of all turns passed (answered right, or refused when they must be)",
           frozenset({"conversations"}), lambda rows: _mean([r.passed for r in rows])),
    Metric("decision_accuracy", "share of all questions answered right or refused rightly (refusing "
           "everything scores the share of unanswerable questions)",
           frozenset({"questions"}), lambda rows: _mean([r.passed for r in rows])),
    *(Metric(f"hit_at_{k}", f"share of answerable questions whose evidence is among the top {k} fused chunks",
             ALL, _hit_at(k)) for k in HIT_KS),
    Metric("mrr_at_10", "mean of 1/rank of the first evidence chunk in the top 10 (0 when absent)",
           ALL, lambda rows: _mean([1 / r.rank if r.rank else 0.0 for r in _retrieval(rows)])),
    Metric("answer_similarity", "mean cosine (the configured embedder) of the answer and reference_answer",
           frozenset({"labelled"}), lambda rows: _mean([r.similarity for r in rows if r.similarity is not None])),
    Metric("token_f1", "mean SQuAD-style token F1 of the answer and reference_answer",
           frozenset({"labelled"}), lambda rows: _mean([r.f1 for r in rows if r.f1 is not None])),
    Metric("citation_support", "share of all cited passages whose quote occurs verbatim in the cited chunk",
           ALL, lambda rows: _mean([s for r in rows for s in r.supported])),
    Metric("citation_in_context", "share of questions with reference contexts whose answer's first cited "
           "sentence lies inside one of them (a refusal counts as a miss)",
           frozenset({"labelled"}),
           lambda rows: _mean([bool(r.in_context) for r in rows if r.case.reference_contexts])),
    Metric("verified_sentences", "share of all sentences the model wrote that the verifier accepted",
           ALL, lambda rows: _mean([s.verified for r in rows for s in r.answer.sentences]), llm_only=True),
    Metric("llm_answers", "share of answers whose text is the model's rather than the extractive fallback",
           ALL, lambda rows: _mean([r.answer.written_by == "llm" for r in rows]), llm_only=True),
    Metric("latency_p50_ms", "median time per question (Answer.timings_ms['total'])",
           ALL, _percentile(50), lower_is_better=True),
    Metric("latency_p95_ms", "95th percentile of the time per question",
           ALL, _percentile(95), lower_is_better=True),
)
BY_KEY = {m.key: m for m in REGISTRY}
METRICS = tuple(BY_KEY)  # the keys, in report order
LOWER_IS_BETTER = frozenset(m.key for m in REGISTRY if m.lower_is_better)


def compute_metrics(rows: list[Row], kind: FileKind, llm: bool = False) -> dict[str, float | None]:
    """Every metric of the registry; None where it does not apply to this file kind, or (LLM-only
    metrics) to a run without an LLM."""
    return {
        m.key: m.compute(rows) if kind in m.kinds and (llm or not m.llm_only) else None for m in REGISTRY
    }


def format_value(name: str, value: float | None) -> str:
    """A metric as printed: milliseconds whole, rates with three decimals, "—" for null."""
    if value is None:
        return "—"
    return f"{value:.0f}" if name.endswith("_ms") else f"{value:.3f}"
