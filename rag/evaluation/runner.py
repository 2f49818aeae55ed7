"""Running an eval: ask every question of a set through a system, score each answer (a `Row`), and
compute the metrics of the registry for the product and the baseline."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rag.evaluation.cache import cached_index, default_cache_dir
from rag.evaluation.datasets import Case, EvalError, EvalSet, EvalSpec, Progress, load_eval_file
from rag.evaluation.matching import (
    answer_is_correct,
    contains_answer,
    contexts_overlap,
    lies_in_context,
    normalise,
    scoring_text,
    token_f1,
)
from rag.evaluation.metrics import METRICS, compute_metrics
from rag.evaluation.systems import RANK_DEPTH, Baseline, _open_ours
from rag.schema import Answer, Turn
from rag.settings import Settings

PASS_DEPTH = 5  # a LabelledRagDataset question passes when a reference context is in this many chunks


@dataclass
class Row:
    """One question (one turn of a conversation) as scored."""

    case: Case
    answer: Answer
    passed: bool
    rank: int | None  # 1-based rank of the first evidence chunk in the top RANK_DEPTH; None if absent
    latency_ms: float
    supported: list[bool] = field(default_factory=list)  # per citation: quote found verbatim
    similarity: float | None = None
    f1: float | None = None
    in_context: bool | None = None  # LabelledRagDataset: the first cited sentence lies in a reference context

    def to_json(self) -> dict:
        data = self.answer.to_json()
        return {
            "id": self.case.id,
            "question": self.case.question,
            "query": self.answer.query,
            "answer": self.answer.text,
            "refused": self.answer.refused,
            "citations": data["citations"],
            "passed": self.passed,
            "kind": self.case.kind,
            "expected": list(self.case.answers) if self.case.answers is not None else self.case.reference_answer,
            "rank": self.rank,
            "latency_ms": round(self.latency_ms, 1),
            "citations_supported": self.supported,
            "answer_similarity": None if self.similarity is None else round(self.similarity, 4),
            "token_f1": None if self.f1 is None else round(self.f1, 4),
            "citation_in_context": self.in_context,
            "written_by": self.answer.written_by,
            "sentences": data.get("sentences", []),
            "note": self.answer.note,
        }


def is_evidence(case: Case, chunk_text: str) -> bool:
    """Questions: the chunk contains an accepted answer. LabelledRagDataset: it overlaps a reference context."""
    if case.answers is None:
        return any(contexts_overlap(chunk_text, context) for context in case.reference_contexts)
    return any(contains_answer(chunk_text, a) for a in case.answers)


def first_evidence_rank(case: Case, ranking: Sequence[str]) -> int | None:
    for rank, text in enumerate(ranking[:RANK_DEPTH], start=1):
        if is_evidence(case, text):
            return rank
    return None


def _first_citation_in_context(case: Case, answer: Answer) -> bool | None:
    """LabelledRagDataset questions with reference contexts: whether the answer's first citation (the
    sentence it leads with) lies inside one; a refusal or an answer without citations is False."""
    if not case.reference_contexts:
        return None
    if answer.refused or not answer.citations:
        return False
    return lies_in_context(answer.citations[0].text, case.reference_contexts)


def run_system(system, eval_set: EvalSet, progress: Progress | None = None) -> list[Row]:
    """Ask every question; a conversation's turns share a history as in `rag chat`."""
    from rag.chat import record_turn

    rows: list[Row] = []
    total = len(eval_set.cases)
    for conversation in eval_set.conversations:
        history: list[Turn] = []
        for case in conversation:
            reply = system.ask(case.question, history)
            history = record_turn(history, case.question, reply.answer)  # as the web chat and `rag chat` keep it
            rank = first_evidence_rank(case, reply.ranking) if case.answerable else None
            if case.answers is None:  # LabelledRagDataset: no short answer to check
                found = rank is not None and rank <= PASS_DEPTH
                passed = not reply.answer.refused and (found or not case.reference_contexts)
            elif case.answers:
                passed = answer_is_correct(reply.answer, case.answers)
            else:
                passed = reply.answer.refused
            supported = [system.citation_supported(c) for c in reply.answer.citations]
            rows.append(Row(case, reply.answer, passed, rank, reply.latency_ms, supported,
                            in_context=_first_citation_in_context(case, reply.answer)))
            if progress:
                progress(f"asking ({system.name})", len(rows), total)
    return rows


def score_references(rows: list[Row], embedder) -> None:
    """LabelledRagDataset: cosine of answer and reference answer (our embedder), and token F1."""
    labelled = [r for r in rows if r.case.reference_answer is not None]
    if not labelled:
        return
    answers = [scoring_text(r.answer.text) for r in labelled]
    references = [r.case.reference_answer or "" for r in labelled]
    vectors = embedder.embed(answers + references)
    for n, row in enumerate(labelled):
        row.similarity = float(vectors[n] @ vectors[len(labelled) + n])
        row.f1 = token_f1(answers[n], references[n])


@dataclass
class EvalResult:
    eval_set: EvalSet
    rows: list[Row]
    metrics: dict[str, float | None]
    baseline_metrics: dict[str, float | None] | None
    baseline_rows: list[Row] | None
    index_dir: Path
    corpus_dir: Path | None
    seconds: float
    warnings: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[Row]:
        return [r for r in self.rows if not r.passed]

    def to_json(self) -> dict:
        """The `--json` object: the metrics, `questions` (one row per question or turn), `baseline`."""
        data: dict = {name: _round(self.metrics[name]) for name in METRICS}
        data["questions"] = [r.to_json() for r in self.rows]
        data["baseline"] = (
            {name: _round(self.baseline_metrics[name]) for name in METRICS} if self.baseline_metrics else None
        )
        return data


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def run_eval(
    path: Path | str,
    settings: Settings,
    *,
    corpus: Path | None = None,
    index: Path | None = None,
    baseline: bool = True,
    cache_dir: Path | None = None,
    progress: Progress | None = None,
) -> EvalResult:
    """Evaluate one file. With `index`, that index is used as is; otherwise an index of `corpus` (default
    settings.corpus_dir) is built in `cache_dir` and reused while nothing it depends on changes."""
    from rag.embedding import load_embedder
    from rag.store import IndexProblem

    started = time.perf_counter()
    eval_set = load_eval_file(path)
    embedder = load_embedder(settings.embed_model)
    if index is not None:
        settings = settings.model_copy(update={"index_dir": Path(index), **({"corpus_dir": Path(corpus)} if corpus else {})})
    else:
        settings = cached_index(settings, Path(corpus or settings.corpus_dir), cache_dir or default_cache_dir(), embedder, progress)
    try:
        ours = _open_ours(settings, embedder)
    except IndexProblem as err:
        raise EvalError(str(err)) from None
    if ours.assistant.llm_problem:  # an LLM eval without its model would measure the extractive answerer
        raise EvalError(f"cannot evaluate with llm_backend={settings.llm_backend}: {ours.assistant.llm_problem}")
    warnings = _unfindable_answers(eval_set, ours.chunk_texts())
    rows = run_system(ours, eval_set, progress)
    score_references(rows, embedder)
    baseline_rows = baseline_metrics = None
    if baseline:
        if progress:
            progress("building the LlamaIndex baseline", 0, 1)
        base = Baseline(settings.corpus_dir, settings.embed_model)
        indexed = sorted(ours.assistant.snapshot.manifest.documents)
        if base.doc_ids != indexed:
            raise EvalError(
                f"baseline: corpus {settings.corpus_dir} holds {base.doc_ids[:5]} but index {settings.index_dir} "
                f"holds {indexed[:5]}: pass --corpus with the folder the index was built from, or --no-baseline"
            )
        baseline_rows = run_system(base, eval_set, progress)
        score_references(baseline_rows, embedder)
        baseline_metrics = compute_metrics(baseline_rows, eval_set.kind)
    return EvalResult(
        eval_set,
        rows,
        compute_metrics(rows, eval_set.kind, llm=settings.llm_backend != "none"),
        baseline_metrics,
        baseline_rows,
        settings.index_dir,
        settings.corpus_dir,
        time.perf_counter() - started,
        warnings,
    )


def _unfindable_answers(eval_set: EvalSet, chunk_texts: list[str]) -> list[str]:
    """Answerable questions whose accepted answers occur in no chunk: a likely typo in the answer string."""
    normalised = [f" {normalise(t)} " for t in chunk_texts]
    warnings = []
    for case in eval_set.cases:
        if not case.answers:
            continue
        needles = [f" {normalise(a)} " for a in case.answers]
        if not any(n in text for n in needles for text in normalised):
            warnings.append(f"{case.id}: no chunk of the index contains any accepted answer {list(case.answers)}; check the answer strings")
    return warnings


def run_set(
    spec: EvalSpec,
    settings: Settings,
    *,
    corpus: Path | None = None,
    index: Path | None = None,
    baseline: bool = True,
    cache_dir: Path | None = None,
    progress: Progress | None = None,
) -> EvalResult:
    """Evaluate one eval set: on the corpus it names (a manifest's or a dataset folder's set, indexed in
    the cache), or else on `corpus` / `index` as `run_eval` takes them."""
    if spec.corpus is not None and (corpus is not None or index is not None):
        raise EvalError(
            f"eval set {spec.name!r} names its own corpus ({spec.corpus}): --corpus and --index apply only to "
            "eval files given on their own; leave them out"
        )
    told = (lambda stage, done, total: progress(f"{spec.name}: {stage}", done, total)) if progress else None
    return run_eval(spec.file, settings, corpus=spec.corpus or corpus, index=index, baseline=baseline,
                    cache_dir=cache_dir, progress=told)


def question_rows(
    spec: EvalSpec | Path | str,
    settings: Settings,
    *,
    cache_dir: Path | None = None,
    progress: Progress | None = None,
) -> list[dict]:
    """For a script (e.g. fitting the answerer with one corpus left out): every question of an eval set
    asked through the product, as one plain dict each: set, id, question, expected (the accepted answers,
    [] = must refuse, or a LabelledRagDataset's reference answer), kind, answerable, the Answer's JSON,
    passed and rank (of the first evidence chunk, None when absent). No baseline is run. A path is an
    eval file on `settings.corpus_dir`.

        for spec in resolve_sets(["eval/sets.toml"]):
            rows = question_rows(spec, Settings())
    """
    if not isinstance(spec, EvalSpec):
        spec = EvalSpec(Path(spec).stem, Path(spec), Path(settings.corpus_dir))
    result = run_set(spec, settings, baseline=False, cache_dir=cache_dir, progress=progress)
    return [
        {
            "set": spec.name,
            "id": row.case.id,
            "question": row.case.question,
            "expected": list(row.case.answers) if row.case.answers is not None else row.case.reference_answer,
            "kind": row.case.kind or result.eval_set.kind,
            "answerable": row.case.answerable,
            "answer": row.answer.to_json(),
            "passed": row.passed,
            "rank": row.rank,
        }
        for row in result.rows
    ]
