"""The eval runner: answer matching, file formats and their errors, metrics, baseline, report, CI gate.

The integration tests run the real Assistant on the shipped-corpus index (session fixture) with tiny
question files written here, and the real LlamaIndex baseline with the bundled embedder.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from rag import cli, evaluation
from rag.evaluation import (
    METRICS,
    Case,
    EvalError,
    Row,
    answer_is_correct,
    check_gate,
    compute_metrics,
    contains_answer,
    contexts_overlap,
    lies_in_context,
    load_eval_file,
    load_thresholds,
    normalise,
    token_f1,
)
from rag.schema import Answer, Citation, SentenceCheck
from rag.settings import Settings
from tests.conftest import REPO, SHIPPED_CORPUS, write_corpus

THRESHOLDS = REPO / "eval" / "thresholds.toml"


def write_lines(path: Path, objects: list) -> Path:
    path.write_text("".join(json.dumps(o) + "\n" for o in objects), encoding="utf-8")
    return path


# --- answer matching ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accepted", "text"),
    [
        ("5-billion-yuan", "5 billion yuan — \"a dedicated 5-billion-yuan AI investment pool\" [1]"),
        ("8,102", "8102 enterprises"),
        ("8102", "It has attracted 8,102 Hong Kong-invested enterprises."),
        ("18.47 billion", "18.47 billion RMB — \"... value of 18.47 billion RMB.\" [1]"),
        ("front shop, back factory", 'the "front shop, back factory" model'),
        ("8+8+4", "the 8+8+4 modern industrial system"),
        ("OPPO", "OPPO's partnership"),
        ("HONG KONG", "in hong\u00a0kong"),
    ],
)
def test_accepted_answer_is_found_after_normalising(accepted: str, text: str) -> None:
    assert contains_answer(text, accepted)


@pytest.mark.parametrize(
    ("accepted", "text"),
    [
        ("300", "3000 representatives"),  # whole words only
        ("33", "1933"),
        ("18.47 billion", "1847 billion"),  # a decimal point is not a thousands separator
        ("18.47", "18 47"),
        ("six months", "six"),
    ],
)
def test_near_misses_do_not_match(accepted: str, text: str) -> None:
    assert not contains_answer(text, accepted)


def test_normalise_exact_forms() -> None:
    assert normalise("5-billion-yuan") == "5 billion yuan"
    assert normalise("8,102") == "8102"
    assert normalise("1,234,567.89 RMB") == "1234567.89 rmb"
    assert normalise("18.47 billion RMB.") == "18.47 billion rmb"
    assert normalise("  Tech100+  Plan ") == "tech100 plan"
    assert normalise("ends here. 5 more") == "ends here 5 more"
    assert normalise("“Three-plus-one”") == "3 plus one"  # "one" stays a word: mostly a pronoun


def test_a_word_hyphenated_at_a_line_end_is_one_word() -> None:
    # Reference contexts extracted from PDFs keep the line-end hyphen; the loader joins the word.
    assert normalise("the in-\ntegrity of each rec- \n ord") == "the integrity of each record"
    assert normalise("peer-to-peer, 5-billion") == "peer to peer 5 billion"


def test_small_numbers_match_as_words_or_digits() -> None:
    assert answer_is_correct(_answer("Three [1]"), ["3"])
    assert answer_is_correct(_answer("12 games"), ["twelve"])
    assert not answer_is_correct(_answer("Thirteen"), ["3"])
    assert not answer_is_correct(_answer("one of the first"), ["1"])


def _answer(text: str, refused: bool = False) -> Answer:
    return Answer(text, [], refused=refused, query="q")


def test_refusals_and_paragraph_dumps_are_wrong() -> None:
    assert answer_is_correct(_answer("33 — signed [1]"), ["33"])
    assert not answer_is_correct(_answer("33 — signed", refused=True), ["33"])
    padded = "33 " + "x" * 397
    assert len(padded) == 400 and answer_is_correct(_answer(padded), ["33"])
    assert not answer_is_correct(_answer(padded + "x"), ["33"])
    assert not answer_is_correct(_answer("34 agreements"), ["33", "thirty-three"])


def test_token_f1_is_squad_style() -> None:
    assert token_f1("The cat sat.", "a cat sat down") == pytest.approx(0.8)  # P 2/2, R 2/3
    assert token_f1("dog", "cat") == 0.0
    assert token_f1("8,102 firms", "8102 Firms") == 1.0


def test_context_overlap_needs_half_the_5grams_of_either_side() -> None:
    context = " ".join(f"w{i}" for i in range(40))  # 36 five-grams
    inside = " ".join(f"w{i}" for i in range(10, 20)) + " other words here"  # 6 of its 9 five-grams shared
    assert contexts_overlap(inside, context)
    weak = " ".join(f"w{i}" for i in range(10, 15)) + " a b c d e f"  # 1 of 7
    assert not contexts_overlap(weak, context)
    assert contexts_overlap("Proof of History orders events.", "proof of history orders events")  # short texts


# --- files and their errors -----------------------------------------------------------------------


def test_formats_are_detected(tmp_path: Path) -> None:
    questions = write_lines(tmp_path / "q.jsonl", [{"id": "a", "question": "Q?", "answers": ["1"], "kind": "fact"},
                                                   {"id": "b", "question": "R?", "answers": [], "kind": "unanswerable"}])
    loaded = load_eval_file(questions)
    assert loaded.kind == "questions" and [c.id for c in loaded.cases] == ["a", "b"]
    assert [c.answerable for c in loaded.cases] == [True, False]

    talks = write_lines(tmp_path / "c.jsonl", [{"id": "c1", "turns": [{"question": "A?", "answers": ["x"]},
                                                                      {"question": "And B?", "answers": []}]}])
    loaded = load_eval_file(talks)
    assert loaded.kind == "conversations" and [[c.id for c in conv] for conv in loaded.conversations] == [["c1.t1", "c1.t2"]]

    dataset = tmp_path / "rag_dataset.json"
    dataset.write_text(json.dumps({"examples": [{"query": "Q?", "reference_answer": "A.", "reference_contexts": ["ctx"],
                                                 "query_by": None}]}))
    loaded = load_eval_file(dataset)
    assert loaded.kind == "labelled"
    assert loaded.cases == [Case("ex1", "Q?", None, None, "A.", ("ctx",))]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"id": "a", "question": "Q?", "answers": ["1"]}', '{"id": "b", "question": "Q?" "answers": []}'],
         "line 2: not valid JSON (Expecting ',' delimiter at column 30)"),
        (['{"id": "a", "question": "Q?", "answer": ["1"]}'], 'line 1: missing "answers"'),
        (['{"id": "a", "question": "Q?", "answers": "33"}'], 'line 1: "answers" must be a list, got "33"'),
        (['{"id": "a", "question": "", "answers": []}'], 'line 1: "question" must be a non-empty string'),
        (['{"id": "a", "question": "Q?", "answers": ["-"]}'], "line 1: every answer must be a string with a letter or digit"),
        (['{"id": "a", "question": "Q?", "answers": []}', "", '{"id": "a", "question": "R?", "answers": []}'],
         "line 3: id 'a' is already used on line 1"),
        (['{"id": "a", "question": "Q?", "answers": ["1"], "kind": "unanswerable"}'], 'kind "unanswerable" but answers'),
        (['{"id": "a", "question": "Q?", "answers": [], "kind": "fact"}'], "answers is [] (must refuse) but kind is 'fact'"),
        (['{"id": "a", "question": "Q?", "answers": []}', '{"id": "c", "turns": [{"question": "Q", "answers": []}]}'],
         "line 2: this line is a conversation but line 1 is a question"),
        (['{"id": "c", "turns": [{"question": "Q", "answers": []}, {"answers": ["x"]}]}'], 'line 1 turn 2: missing "question"'),
        (['["a", "b"]'], "line 1: expected a JSON object"),
    ],
)
def test_malformed_lines_name_file_line_and_problem(tmp_path: Path, lines: list[str], message: str) -> None:
    path = tmp_path / "mine.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(EvalError) as err:
        load_eval_file(path)
    assert str(err.value).startswith(f"{path} ")
    assert message in str(err.value)


def test_malformed_dataset_names_the_example(tmp_path: Path) -> None:
    path = tmp_path / "rag_dataset.json"
    path.write_text(json.dumps({"examples": [{"query": "Q?", "reference_answer": "A", "reference_contexts": []},
                                             {"query": "R?", "reference_contexts": ["c"]}]}))
    with pytest.raises(EvalError, match=r"rag_dataset.json examples\[1\]: \"reference_answer\" must be a non-empty string"):
        load_eval_file(path)
    path.write_text('{"examples": [\n  {"query": "Q?",}\n]}')
    with pytest.raises(EvalError, match=r"rag_dataset.json line 2 column 18: not valid JSON \(Expecting property name"):
        load_eval_file(path)
    path.write_text('[{"query": "Q?"}]')
    with pytest.raises(EvalError, match="must be a LlamaIndex LabelledRagDataset"):
        load_eval_file(path)


def test_shipped_question_sets_meet_the_issue() -> None:
    questions = load_eval_file(REPO / "eval" / "questions.jsonl")
    kinds = [c.kind for c in questions.cases]
    assert questions.kind == "questions" and len(questions.cases) >= 50
    assert kinds.count("unanswerable") >= 10 and "paraphrase" in kinds
    conversations = load_eval_file(REPO / "eval" / "conversations.jsonl")
    assert conversations.kind == "conversations" and len(conversations.conversations) >= 10
    assert all(len(c) >= 2 for c in conversations.conversations)


# --- metrics and gate ------------------------------------------------------------------------------


def _row(case: Case, text: str, refused: bool, rank: int | None, latency: float, supported=()) -> Row:
    answer = _answer(text, refused)
    passed = refused if not case.answerable else answer_is_correct(answer, case.answers or ())
    return Row(case, answer, passed, rank, latency, list(supported))


def test_metrics_from_rows() -> None:
    rows = [
        _row(Case("a", "A?", ("33",)), "33 [1]", False, 1, 10.0, [True]),
        _row(Case("b", "B?", ("300",)), "3000", False, 3, 20.0, [True, False]),
        _row(Case("c", "C?", ("x",)), "The documents do not say.", True, None, 30.0),
        _row(Case("d", "D?", ()), "The documents do not say.", True, None, 40.0),
        _row(Case("e", "E?", ()), "Paris", False, None, 50.0),
    ]
    m = compute_metrics(rows, "questions")
    assert list(m) == list(METRICS)
    assert m["answer_accuracy"] == pytest.approx(1 / 3)
    assert m["refusal_recall"] == 0.5 and m["false_refusals"] == pytest.approx(1 / 3)
    assert m["turn_accuracy"] is None and m["answer_similarity"] is None and m["token_f1"] is None
    assert (m["hit_at_1"], m["hit_at_2"], m["hit_at_3"], m["hit_at_5"]) == pytest.approx((1 / 3, 1 / 3, 2 / 3, 2 / 3))
    assert m["mrr_at_10"] == pytest.approx((1 + 1 / 3) / 3)
    assert m["citation_support"] == pytest.approx(2 / 3)
    assert (m["latency_p50_ms"], m["latency_p95_ms"]) == (30.0, 48.0)
    assert compute_metrics(rows, "conversations")["turn_accuracy"] == 0.4


def test_llm_metrics_count_verified_sentences_and_model_written_answers() -> None:
    def llm_row(text: str, verified: list[bool], written_by: str) -> Row:
        checks = [SentenceCheck(f"s{n}", (1,), ok, None if ok else "no cited passage contains 7") for n, ok in enumerate(verified)]
        answer = Answer(text, [], refused=False, query="q", sentences=checks, written_by=written_by)
        return Row(Case("a", "A?", ("33",)), answer, answer_is_correct(answer, ["33"]), 1, 10.0)

    rows = [llm_row("33 [1].", [True, False], "llm"), llm_row("33 (extractive)", [False, False], "extractive"),
            llm_row("33 [1].", [True], "llm")]
    m = compute_metrics(rows, "questions", llm=True)
    assert m["verified_sentences"] == pytest.approx(2 / 5) and m["llm_answers"] == pytest.approx(2 / 3)
    assert m["answer_accuracy"] == 1.0
    extractive = compute_metrics(rows, "questions")
    assert extractive["verified_sentences"] is None and extractive["llm_answers"] is None
    assert [r.to_json()["written_by"] for r in rows] == ["llm", "extractive", "llm"]
    assert rows[0].to_json()["sentences"][1] == {"text": "s1", "citations": (1,), "verified": False,
                                                 "reason": "no cited passage contains 7"}


def test_gate_names_metric_value_and_threshold(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text("[questions]\nanswer_accuracy = 0.95\nfalse_refusals = 0.05\nturn_accuracy = 0.9\n")
    thresholds = load_thresholds(path, "questions")
    failures, notes = check_gate({"answer_accuracy": 0.9, "false_refusals": 0.0625, "turn_accuracy": None}, thresholds)
    assert failures == ["answer_accuracy = 0.900 is below its threshold 0.950",
                        "false_refusals = 0.062 is above its threshold 0.050"]
    assert notes == ["turn_accuracy does not apply to this file: not gated"]
    assert check_gate({"answer_accuracy": 0.95, "false_refusals": 0.05}, thresholds) == ([], notes)

    path.write_text("[questions]\nanswer_acuracy = 0.9\n")
    with pytest.raises(EvalError, match=r"t.toml \[questions\]: unknown metric 'answer_acuracy'; known: answer_accuracy"):
        load_thresholds(path, "questions")
    with pytest.raises(EvalError, match=r"has no \[labelled\] section"):
        load_thresholds(path, "labelled")


def test_repo_thresholds_cover_every_file_kind_and_none_is_zero() -> None:
    for kind in ("questions", "conversations", "labelled"):
        thresholds = load_thresholds(THRESHOLDS, kind)
        assert thresholds and all(v > 0 for v in thresholds.values()), kind
    assert "answer_accuracy" not in load_thresholds(THRESHOLDS, "labelled")  # null for that file
    assert {"hit_at_2", "hit_at_5", "answer_similarity"} <= set(load_thresholds(THRESHOLDS, "labelled"))


# --- the runner on the real index -------------------------------------------------------------------


@pytest.mark.slow
def test_questions_file_against_shipped_index_with_baseline_and_report(tmp_path: Path, shipped_index: Settings) -> None:
    path = write_lines(tmp_path / "mine.jsonl", [
        {"id": "agreements", "question": "How many agreements were signed at the conference?", "answers": ["33"], "kind": "fact"},
        {"id": "france", "question": "What is the capital of France?", "answers": [], "kind": "unanswerable"},
        {"id": "z1", "question": "Which animal is the mascot of the conference?", "answers": ["zebra"], "kind": "fact"},
    ])
    result = evaluation.run_eval(path, shipped_index, index=shipped_index.index_dir, corpus=SHIPPED_CORPUS)
    data = result.to_json()
    assert list(data) == [*METRICS, "questions", "baseline"]
    assert [r["id"] for r in data["questions"]] == ["agreements", "france", "z1"]
    first, second, third = data["questions"]
    assert {"id", "question", "query", "answer", "refused", "citations", "passed"} <= set(first)
    assert first["passed"] and not first["refused"] and first["rank"] is not None and first["citations"]
    assert second["passed"] and second["refused"] and second["rank"] is None
    assert not third["passed"] and third["rank"] is None
    assert result.warnings == ["z1: no chunk of the index contains any accepted answer ['zebra']; check the answer strings"]
    assert data["answer_accuracy"] == 0.5 and data["refusal_recall"] == 1.0
    assert data["hit_at_5"] == 0.5 and data["citation_support"] == 1.0
    assert data["turn_accuracy"] is None and data["answer_similarity"] is None and data["token_f1"] is None
    base = data["baseline"]
    assert list(base) == list(METRICS)
    # Retrieved text is a paragraph dump (over 400 characters) and the baseline never refuses.
    assert (base["answer_accuracy"], base["refusal_recall"], base["false_refusals"]) == (0.0, 0.0, 0.0)
    assert base["hit_at_5"] == 0.5 and base["citation_support"] is None

    report = evaluation.write_report(result, tmp_path / "report").read_text()
    assert "| metric | ours | baseline |" in report
    assert "| answer_accuracy | 0.500 | 0.000 |" in report
    assert "| turn_accuracy |" not in report  # null for both: left out
    assert "![metrics](metrics.png)" in report and "## Failures (1)" in report
    assert "| z1 | Which animal is the mascot of the conference? | zebra |" in report
    assert "| france |" not in report  # refused as it must: not a failure
    png = (tmp_path / "report" / "metrics.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000


@pytest.mark.slow
def test_conversation_turns_share_history(tmp_path: Path, shipped_index: Settings) -> None:
    path = write_lines(tmp_path / "talk.jsonl", [{"id": "c1", "turns": [
        {"question": "How many agreements were signed at the March 17 conference?", "answers": ["33"]},
        {"question": "What was their total investment and trade cooperation value?", "answers": ["18.47 billion"]},
    ]}])
    result = evaluation.run_eval(path, shipped_index, index=shipped_index.index_dir, baseline=False)
    rows = result.to_json()["questions"]
    assert [r["id"] for r in rows] == ["c1.t1", "c1.t2"]
    # The follow-up was rewritten from the history as the chat keeps it, the last short answer included.
    assert rows[1]["query"] == ("What was their total investment and trade cooperation value? "
                                "(33 agreements signed March 17 conference)")
    assert result.metrics["turn_accuracy"] == sum(r["passed"] for r in rows) / 2
    assert result.baseline_metrics is None and result.to_json()["baseline"] is None


@pytest.mark.slow
def test_labelled_dataset_metrics(tmp_path: Path, shipped_index: Settings, embedder) -> None:
    article = (SHIPPED_CORPUS / "dongguan-hong-kong-cooperation.txt").read_text()
    paragraph = next(p for p in article.split("\n") if "33 signed agreements" in p)
    path = tmp_path / "rag_dataset.json"
    path.write_text(json.dumps({"examples": [
        {"query": "How many agreements were signed at the conference?",
         "reference_answer": "33 agreements were signed, worth 18.47 billion RMB.", "reference_contexts": [paragraph]},
    ]}))
    result = evaluation.run_eval(path, shipped_index, index=shipped_index.index_dir, corpus=SHIPPED_CORPUS)
    m, row = result.metrics, result.rows[0]
    assert row.case.id == "ex1" and row.passed
    assert m["answer_accuracy"] is None and m["refusal_recall"] is None and m["turn_accuracy"] is None
    assert m["hit_at_5"] == 1.0 and m["false_refusals"] == 0.0
    assert m["token_f1"] == pytest.approx(token_f1(evaluation.scoring_text(row.answer.text), row.case.reference_answer))
    vectors = embedder.embed([evaluation.scoring_text(row.answer.text), row.case.reference_answer])
    assert m["answer_similarity"] == pytest.approx(float(vectors[0] @ vectors[1]), abs=1e-5)
    assert 0.5 < m["answer_similarity"] <= 1.0
    assert result.baseline_metrics["answer_similarity"] is not None and result.baseline_metrics["answer_accuracy"] is None


@pytest.mark.slow
def test_corpus_without_index_builds_a_cached_index_outside_the_repo(tmp_path: Path, embedder) -> None:
    corpus = write_corpus(tmp_path / "docs", {"a.txt": "The lighthouse was built in 1874 by Jane Okafor."})
    settings = Settings()
    first = evaluation.cached_index(settings, corpus, tmp_path / "cache", embedder)
    assert first.index_dir.parent.parent == tmp_path / "cache"
    assert first.index_dir.parent.name == evaluation.index_key(corpus, settings)
    assert (first.index_dir / "CURRENT").is_file()
    again = evaluation.cached_index(settings, corpus, tmp_path / "cache", embedder)
    assert again.index_dir == first.index_dir
    (corpus / "a.txt").write_text("The lighthouse was built in 1875 by Jane Okafor.")
    changed = evaluation.cached_index(settings, corpus, tmp_path / "cache", embedder)
    assert changed.index_dir != first.index_dir
    other = settings.model_copy(update={"chunk_tokens": settings.chunk_tokens - 8})
    assert evaluation.index_key(corpus, other) != evaluation.index_key(corpus, settings)


def test_cli_reports_a_bad_file_and_exits_1(tmp_path: Path, capsys) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "a", "question": "Q?", "answers": ["1"]}\n{"id": "b", "question": \n')
    assert cli.main(["eval", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"error: {path} line 2: not valid JSON" in " ".join(captured.err.split())


@pytest.mark.slow
def test_cli_json_and_gate(tmp_path: Path, shipped_index: Settings, capsys) -> None:
    path = write_lines(tmp_path / "mine.jsonl", [
        {"id": "z1", "question": "Which animal is the mascot of the conference?", "answers": ["zebra"], "kind": "fact"},
        {"id": "r1", "question": "Who wrote the novel Pride and Prejudice?", "answers": [], "kind": "unanswerable"},
    ])
    gate = tmp_path / "gate.toml"
    gate.write_text("[questions]\nanswer_accuracy = 0.5\nrefusal_recall = 1.0\nturn_accuracy = 0.9\n")
    # In-process (the console entry point itself is run as a child process in test_cli.py): it shares the
    # warm assistant with the tests above, and capsys sees every Python-level print, llama-index's included.
    code = cli.main(["eval", str(path), "--index", str(shipped_index.index_dir), "--corpus", str(SHIPPED_CORPUS),
                     "--json", "--gate", str(gate)])
    captured = capsys.readouterr()
    assert code == 1, captured.err
    data = json.loads(captured.out)  # stdout holds only the JSON object
    assert list(data) == [*METRICS, "questions", "baseline"]
    assert data["answer_accuracy"] == 0.0 and data["refusal_recall"] == 1.0 and data["baseline"]["refusal_recall"] == 0.0
    err = " ".join(captured.err.split())
    assert f"gate failed: answer_accuracy = 0.000 is below its threshold 0.500 ({gate} [questions])" in err
    assert err.count("gate failed:") == 1
    assert "gate: turn_accuracy does not apply to this file: not gated" in err
    assert "warning: z1: no chunk of the index contains any accepted answer ['zebra']" in err
    assert f"evaluated 2 questions of {path} in " in err


# --- the metric registry, the new metrics -------------------------------------------------------------


def test_registry_is_the_one_list_of_metrics() -> None:
    assert METRICS == tuple(m.key for m in evaluation.REGISTRY) and len(set(METRICS)) == len(METRICS)
    assert evaluation.LOWER_IS_BETTER == {"false_refusals", "latency_p50_ms", "latency_p95_ms"}
    assert all(m.description and m.kinds <= set(evaluation.FILE_KINDS) for m in evaluation.REGISTRY)
    by_key = {m.key: m for m in evaluation.REGISTRY}
    assert by_key["decision_accuracy"].kinds == {"questions"}
    assert by_key["citation_in_context"].kinds == {"labelled"}
    assert {m.key for m in evaluation.REGISTRY if m.llm_only} == {"verified_sentences", "llm_answers"}


def test_decision_accuracy_counts_right_answers_and_right_refusals_over_all_questions() -> None:
    rows = [
        _row(Case("a", "A?", ("33",)), "33 [1]", False, 1, 10.0),  # right answer
        _row(Case("b", "B?", ("300",)), "The documents do not say.", True, None, 10.0),  # false refusal
        _row(Case("c", "C?", ()), "The documents do not say.", True, None, 10.0),  # right refusal
        _row(Case("d", "D?", ()), "Paris", False, None, 10.0),  # answered what it must refuse
    ]
    m = compute_metrics(rows, "questions")
    assert m["decision_accuracy"] == 0.5 and m["answer_accuracy"] == 0.5 and m["refusal_recall"] == 0.5
    assert compute_metrics(rows, "conversations")["decision_accuracy"] is None  # turn_accuracy says it there
    assert compute_metrics(rows, "conversations")["turn_accuracy"] == 0.5


def test_a_cited_sentence_lies_in_a_context_by_containment_or_half_its_5grams() -> None:
    context = ("Solana uses Proof of History to order events. Validators vote on the order of blocks, "
               "and leaders rotate every four slots.")
    assert lies_in_context("Validators vote on the order of blocks,", [context])  # contained, punctuation aside
    assert lies_in_context("validators  VOTE on the order-of blocks", [context])  # normalised
    # Hyphenation across a PDF line split the last word: 8 of its 10 five-grams still match.
    assert lies_in_context("Validators vote on the order of blocks, and leaders rotate every four sl- ots.", ["x", context])
    assert not lies_in_context("Solana uses Proof of His- tory to order events.", [context])  # 0 of 5 match
    assert not lies_in_context("Bitcoin uses proof of work to order its blocks.", [context])
    assert not lies_in_context("order", [])  # no context
    assert not lies_in_context("...", [context])


def test_citation_in_context_reads_the_first_citation_and_counts_refusals_as_misses() -> None:
    context = "Proof of History orders events before consensus. It is a verifiable delay function."

    def labelled_row(cited: list[str], refused: bool = False, contexts: tuple[str, ...] = (context,)) -> Row:
        citations = [Citation("paper.pdf", 3, 0, len(t), t, 0.9) for t in cited]
        answer = Answer("answer [1]", citations, refused=refused, query="q")
        case = Case("ex1", "Q?", None, None, "ref", contexts)
        return Row(case, answer, True, 1, 10.0, in_context=evaluation.runner._first_citation_in_context(case, answer))

    rows = [
        labelled_row(["It is a verifiable delay function.", "Unrelated sentence about fees here."]),
        labelled_row(["Unrelated sentence about fees here.", "It is a verifiable delay function."]),  # first is outside
        labelled_row(["It is a verifiable delay function."], refused=True),
        labelled_row([]),
        labelled_row(["It is a verifiable delay function."], contexts=()),  # no reference context: left out
    ]
    assert [r.in_context for r in rows] == [True, False, False, False, None]
    assert [r.to_json()["citation_in_context"] for r in rows] == [True, False, False, False, None]
    assert compute_metrics(rows, "labelled")["citation_in_context"] == 0.25
    assert compute_metrics(rows, "questions")["citation_in_context"] is None


# --- eval sets: manifest, folders, several files ------------------------------------------------------


def _manifest(folder: Path, body: str) -> Path:
    path = folder / "sets.toml"
    path.write_text(body, encoding="utf-8")
    return path


def test_manifest_names_sets_with_their_corpus_and_gate(tmp_path: Path) -> None:
    write_corpus(tmp_path / "docs", {"a.txt": "text"})
    write_lines(tmp_path / "q.jsonl", [{"id": "a", "question": "Q?", "answers": ["1"]}])
    path = _manifest(tmp_path, '[[sets]]\nname = "one"\nquestions = "q.jsonl"\ncorpus = "docs"\ngate = "questions"\n\n'
                               '[[sets]]\nname = "all"\nquestions = "q.jsonl"\ncorpus = "docs"\ndefault = false\n')
    one = evaluation.EvalSpec("one", tmp_path / "q.jsonl", tmp_path / "docs", "questions")
    full = evaluation.EvalSpec("all", tmp_path / "q.jsonl", tmp_path / "docs", None, default=False)
    assert evaluation.load_manifest(path) == [one, full]
    assert evaluation.resolve_sets([path]) == [one]  # default = false: only by name
    assert evaluation.resolve_sets([tmp_path], ["all"]) == [full]  # a folder with a sets.toml
    with pytest.raises(EvalError, match=r"no eval set named 'none'; the sets are: one, all"):
        evaluation.resolve_sets([path], ["none"])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('[[sets]]\nname = "a"\nquestions = "missing.jsonl"\ncorpus = "docs"\n',
         "[[sets]] #1: questions file {tmp}/missing.jsonl does not exist: fix the path (relative to {tmp})"),
        ('[[sets]]\nname = "a"\nquestions = "q.jsonl"\ncorpus = "nope"\n', "[[sets]] #1: corpus {tmp}/nope is not a folder"),
        ('[[sets]]\nname = "a"\nquestions = "q.jsonl"\ncorpus = "docs"\n\n[[sets]]\nname = "a"\nquestions = "q.jsonl"\ncorpus = "docs"\n',
         "[[sets]] #2: name 'a' is already used by an earlier set"),
        ('[[sets]]\nname = "a"\nquestions = "q.jsonl"\ncorpus = "docs"\nthreshold = 1\n', "[[sets]] #1: unknown key(s) ['threshold']"),
        ('[[sets]]\nname = "a b"\nquestions = "q.jsonl"\ncorpus = "docs"\n', "[[sets]] #1: name 'a b' may hold only letters"),
        ('[[sets]]\nquestions = "q.jsonl"\ncorpus = "docs"\n', '[[sets]] #1: missing "name"'),
        ('[set]\nname = "a"\n', "a sets manifest holds only [[sets]] tables"),
    ],
)
def test_bad_manifest_names_the_set_and_the_problem(tmp_path: Path, body: str, message: str) -> None:
    write_corpus(tmp_path / "docs", {"a.txt": "text"})
    write_lines(tmp_path / "q.jsonl", [{"id": "a", "question": "Q?", "answers": ["1"]}])
    with pytest.raises(EvalError) as err:
        evaluation.load_manifest(_manifest(tmp_path, body))
    assert str(err.value).startswith(f"{tmp_path}/sets.toml")
    assert message.format(tmp=tmp_path) in str(err.value)


def test_a_folder_of_dataset_folders_and_several_files(tmp_path: Path) -> None:
    write_corpus(tmp_path / "sets" / "alpha" / "source_files", {"a.txt": "text"})
    write_lines(tmp_path / "sets" / "alpha" / "questions.jsonl", [{"id": "a", "question": "Q?", "answers": ["1"]}])
    write_lines(tmp_path / "sets" / "alpha" / "sample.jsonl", [{"id": "a", "question": "Q?", "answers": ["1"]}])
    (tmp_path / "sets" / "notes").mkdir()  # no eval file: not a set
    assert evaluation.resolve_sets([tmp_path / "sets"]) == [
        evaluation.EvalSpec("alpha", tmp_path / "sets" / "alpha" / "sample.jsonl", tmp_path / "sets" / "alpha" / "source_files")]
    with pytest.raises(EvalError, match="no eval sets: give a folder with a sets.toml"):
        evaluation.resolve_sets([tmp_path / "sets" / "notes"])
    (tmp_path / "x").mkdir()
    first = write_lines(tmp_path / "questions.jsonl", [{"id": "a", "question": "Q?", "answers": ["1"]}])
    second = write_lines(tmp_path / "x" / "questions.jsonl", [{"id": "c", "turns": [{"question": "Q?", "answers": []}]}])
    assert [(s.name, s.gate, s.corpus) for s in evaluation.resolve_sets([first, second])] == [
        ("questions", "questions", None), ("questions-2", "conversations", None)]


def test_repo_sets_are_in_the_repo_and_each_gate_table_exists() -> None:
    specs = evaluation.resolve_sets([REPO / "eval" / "sets.toml"])
    assert [s.name for s in specs] == ["questions", "conversations", "blockchain_solana", "squad2_sample"]
    every = evaluation.load_manifest(REPO / "eval" / "sets.toml")
    for spec in every:
        assert REPO in spec.file.resolve().parents and REPO in spec.corpus.resolve().parents, spec
        if spec.gate:
            assert load_thresholds(THRESHOLDS, spec.gate), spec.gate
    assert {s.name: s.gate for s in every}["squad2_full"] is None
    assert {s.name: s.gate for s in every}["blockchain_solana"] == "labelled"
    assert {s.name: s.gate for s in every}["squad2_sample"] == "squad2_sample"
    assert len(load_eval_file(REPO / "eval" / "datasets" / "squad2_wikipedia" / "questions.jsonl").cases) == 5137
    ci = (REPO / ".ci" / "run").read_text()
    assert "shared" not in ci and "eval/sets.toml" in ci


def test_squad_sample_is_the_one_the_script_draws_and_stratified() -> None:
    import subprocess
    import sys

    check = subprocess.run([sys.executable, str(REPO / "eval" / "squad_sample.py"), "--check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    lines = (REPO / "eval" / "datasets" / "squad2_wikipedia" / "sample.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    strata = Counter((r["article"], bool(r["answers"])) for r in rows)
    assert len(strata) == 14 and set(strata.values()) == {24, 32}  # 11 articles answerable, 3 unanswerable
    assert sum(not r["answers"] for r in rows) == 96 and len(rows) == 360
    full = (REPO / "eval" / "datasets" / "squad2_wikipedia" / "questions.jsonl").read_text().splitlines()
    assert [line for line in full if line in set(lines)] == lines  # a subset, in file order


def two_sets(folder: Path, light_gate: str | None = None) -> Path:
    """A manifest of two small sets on two corpora: "light" (an answerable and an unanswerable question) and
    "harbour" (one answerable question)."""
    write_corpus(folder / "lighthouse", {"a.txt": "The lighthouse was built in 1874 by Jane Okafor. It is 31 metres tall."})
    write_corpus(folder / "harbour", {"b.txt": "The harbour opened in 1901. It handles 4,500 ships a year."})
    write_lines(folder / "light.jsonl", [
        {"id": "l1", "question": "When was the lighthouse built?", "answers": ["1874"], "kind": "fact"},
        {"id": "l2", "question": "What is the capital of France?", "answers": [], "kind": "unanswerable"},
    ])
    write_lines(folder / "harbour.jsonl", [
        {"id": "h1", "question": "How many ships does the harbour handle a year?", "answers": ["4,500"], "kind": "fact"},
    ])
    gate = f'gate = "{light_gate}"\n' if light_gate else ""
    return _manifest(folder, f'[[sets]]\nname = "light"\nquestions = "light.jsonl"\ncorpus = "lighthouse"\n{gate}\n'
                             '[[sets]]\nname = "harbour"\nquestions = "harbour.jsonl"\ncorpus = "harbour"\n')


@pytest.mark.slow
def test_several_sets_give_one_table_one_json_key_per_set_and_a_gate_each(tmp_path: Path, capsys) -> None:
    manifest = two_sets(tmp_path, light_gate="strict")
    gate = tmp_path / "gate.toml"
    gate.write_text("[strict]\ndecision_accuracy = 1.01\nhit_at_5 = 1.0\n")
    code = cli.main(["eval", str(manifest), "--json", "--no-baseline", "--gate", str(gate), "--cache", str(tmp_path / "cache")])
    captured = capsys.readouterr()
    assert code == 1, captured.err
    data = json.loads(captured.out)
    assert list(data) == ["light", "harbour"]
    assert [r["id"] for r in data["light"]["questions"]] == ["l1", "l2"] and data["harbour"]["questions"][0]["id"] == "h1"
    assert list(data["light"])[: len(METRICS)] == list(METRICS) and data["light"]["hit_at_5"] == 1.0
    err = " ".join(captured.err.split())
    assert f"gate failed: decision_accuracy = {data['light']['decision_accuracy']:.3f} is below its threshold 1.010 ({gate} [strict])" in err
    assert "gate: set harbour names no thresholds table: not gated" in err
    assert f"evaluated 2 questions of {tmp_path}/light.jsonl in " in err
    assert len(list((tmp_path / "cache").iterdir())) == 2  # one cached index per corpus

    report = tmp_path / "report"
    assert cli.main(["eval", str(manifest), "--no-baseline", "--set", "harbour", "--report", str(report),
                     "--cache", str(tmp_path / "cache")]) == 0
    table = capsys.readouterr().out
    assert "harbour" in table and "light" not in table and "decision" in table
    summary = (report / "summary.md").read_text()
    assert summary.startswith("| set | kind, questions | answer_accuracy |") and "\n| harbour | questions, 1 |" in summary
    assert (report / "harbour" / "report.md").is_file()

    with pytest.raises(SystemExit):
        cli.main(["eval"])  # at least one file, manifest or folder
    assert cli.main(["eval", str(manifest), "--corpus", str(tmp_path / "harbour"), "--cache", str(tmp_path / "cache")]) == 1
    assert "eval set 'light' names its own corpus" in " ".join(capsys.readouterr().err.split())


@pytest.mark.slow
def test_question_rows_give_a_plain_dict_per_question(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "docs", {"a.txt": "The lighthouse was built in 1874 by Jane Okafor."})
    path = write_lines(tmp_path / "q.jsonl", [
        {"id": "l1", "question": "When was the lighthouse built?", "answers": ["1874"], "kind": "fact"},
        {"id": "l2", "question": "What is the capital of France?", "answers": [], "kind": "unanswerable"},
    ])
    spec = evaluation.EvalSpec("mine", path, corpus)
    rows = evaluation.question_rows(spec, Settings(), cache_dir=tmp_path / "cache")
    assert [(r["set"], r["id"], r["expected"], r["kind"], r["answerable"]) for r in rows] == [
        ("mine", "l1", ["1874"], "fact", True), ("mine", "l2", [], "unanswerable", False)]
    assert set(rows[0]) == {"set", "id", "question", "expected", "kind", "answerable", "answer", "passed", "rank"}
    assert rows[0]["answer"]["refused"] is False and "1874" in rows[0]["answer"]["answer"] and rows[0]["passed"]
    assert rows[1]["answer"]["refused"] is True and rows[1]["passed"] and rows[1]["rank"] is None
    json.dumps(rows)  # plain data
