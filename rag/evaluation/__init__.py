"""`rag eval`: ask a question set, score the answers and the retrieval, compare with a plain LlamaIndex
baseline on the same corpus, and gate CI on thresholds.

The eval calls the same public API as every front end (`Assistant.ask`), so it measures what users get.
Three file formats are read (detected from the content, see `load_eval_file`):

- questions (JSON Lines): `{"id": "q01", "question": "...", "answers": ["33"], "kind": "fact"}`;
  an empty `answers` list means the documents do not answer and the assistant must refuse;
- conversations (JSON Lines): `{"id": "c01", "turns": [{"question": ..., "answers": [...]}, ...]}`;
- a LlamaIndex `LabelledRagDataset` (JSON): `{"examples": [{"query", "reference_answer",
  "reference_contexts"}]}`.

One module per part: `matching` (answer matching), `datasets` (eval files), `cache` (the index an eval
runs on), `systems` (ours and the baseline), `metrics` (the metric registry), `runner`, `gate`, `report`, `fitting` (settings fitted with each corpus left out).
Metric definitions are in `metrics.REGISTRY` and README.md ("Evaluation"); `METRICS` lists their keys,
the keys of `--json`. This package re-exports the public names, so `from rag.evaluation import X` works.
"""

from rag.evaluation.cache import CACHE_KEEP, cached_index, default_cache_dir, index_key
from rag.evaluation.datasets import (
    FILE_KINDS,
    Case,
    EvalError,
    EvalSet,
    EvalSpec,
    FileKind,
    Progress,
    load_eval_file,
    load_manifest,
    resolve_sets,
)
from rag.evaluation.gate import check_gate, load_thresholds
from rag.evaluation.matching import (
    MAX_ANSWER_CHARS,
    NGRAM,
    answer_is_correct,
    contains_answer,
    contexts_overlap,
    lies_in_context,
    normalise,
    scoring_text,
    token_f1,
    word_ngrams,
)
from rag.evaluation.metrics import HIT_KS, LOWER_IS_BETTER, METRICS, REGISTRY, Metric, compute_metrics
from rag.evaluation.report import sets_markdown, sets_table, write_chart, write_report
from rag.evaluation.runner import (
    PASS_DEPTH,
    EvalResult,
    Row,
    first_evidence_rank,
    is_evidence,
    question_rows,
    run_eval,
    run_set,
    run_system,
    score_references,
)
from rag.evaluation.systems import BASELINE_CHUNK_TOKENS, BASELINE_TOP_K, RANK_DEPTH, Baseline, Ours, Reply

__all__ = [
    "BASELINE_CHUNK_TOKENS", "BASELINE_TOP_K", "CACHE_KEEP", "FILE_KINDS", "HIT_KS", "LOWER_IS_BETTER",
    "MAX_ANSWER_CHARS", "METRICS", "NGRAM", "PASS_DEPTH", "RANK_DEPTH", "REGISTRY", "Baseline", "Case",
    "EvalError", "EvalResult", "EvalSet", "EvalSpec", "FileKind", "Metric", "Ours", "Progress", "Reply", "Row",
    "answer_is_correct", "cached_index", "check_gate", "compute_metrics", "contains_answer", "contexts_overlap",
    "default_cache_dir", "first_evidence_rank", "index_key", "is_evidence", "lies_in_context", "load_eval_file",
    "load_manifest", "load_thresholds", "normalise", "question_rows", "resolve_sets", "run_eval", "run_set",
    "run_system", "score_references", "scoring_text", "sets_markdown", "sets_table", "token_f1", "word_ngrams",
    "write_chart", "write_report",
]
