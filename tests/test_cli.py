"""The terminal front end: `rag ingest`, `rag ask --json` (a contract), errors.

One test per command runs the real console entry point in a child process, as a user runs it; the others
call `rag.cli.main` in this process (same code, same output streams, seconds less per test)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from rag import cli
from tests.conftest import REPO, SHIPPED_CORPUS, run_rag, write_corpus


def test_ask_json_contract_on_the_shipped_corpus(shipped_index) -> None:
    result = run_rag("ask", "How many agreements were signed at the conference?", "--json",
                     "--corpus", str(SHIPPED_CORPUS), "--index", str(shipped_index.index_dir))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert isinstance(data["answer"], str) and "33" in data["answer"]
    assert data["refused"] is False
    assert data["query"] == "How many agreements were signed at the conference?"
    assert isinstance(data["timings_ms"], dict) and data["timings_ms"]["total"] > 0
    citation = data["citations"][0]
    assert citation["source"] == "dongguan-hong-kong-cooperation.txt"
    assert citation["page"] is None
    assert isinstance(citation["score"], float)
    article = (SHIPPED_CORPUS / citation["source"]).read_text(encoding="utf-8")
    assert article[citation["start"] : citation["end"]] == citation["text"]
    assert "33 signed agreements" in citation["text"]


@pytest.mark.slow
def test_the_default_folders_are_relative_to_where_rag_runs(tmp_path: Path) -> None:
    """`corpus` and `index`, the defaults `make run` uses, are relative paths: the index must open from them."""
    write_corpus(tmp_path / "corpus", {"notes.md": "The lighthouse was built in 1874 by Jane Okafor."})
    env = {"RAG_CORPUS_DIR": "corpus", "RAG_INDEX_DIR": "index"}  # the defaults, whatever the caller's environment
    built = run_rag("ingest", cwd=tmp_path, env=env)
    assert built.returncode == 0, built.stderr
    asked = run_rag("ask", "When was the lighthouse built?", cwd=tmp_path, env=env)
    assert asked.returncode == 0, asked.stderr
    assert asked.stdout.startswith('1874 — "The lighthouse was built in 1874 by Jane Okafor." [1]'), asked.stdout


def test_ingest_reports_and_fails_when_nothing_indexable(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus", {"a.txt": "Typhoons arrive mostly in August.", "b.bin": "x"})
    result = run_rag("ingest", "--corpus", str(corpus), "--index", str(tmp_path / "index"))
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"added 1, updated 0, removed 0, unchanged 0 in \d+\.\d s "
                        r"\(renamed 0, skipped 1, 1 chunks embedded\)\n", result.stdout), result.stdout
    assert "skipped b.bin: unsupported file type '.bin'" in result.stderr


def test_ingest_fails_when_nothing_is_indexable(tmp_path: Path, capsys) -> None:
    empty = write_corpus(tmp_path / "empty", {"e.txt": ""})
    assert cli.main(["ingest", "--corpus", str(empty), "--index", str(tmp_path / "index2")]) == 1
    out = capsys.readouterr()
    assert out.out == ""
    assert "nothing could be indexed" in out.err and "e.txt: the file is empty" in out.err


def test_ask_without_an_index_says_how_to_build_one(tmp_path: Path, capsys) -> None:
    assert cli.main(["ask", "anything", "--index", str(tmp_path / "none")]) == 1
    out = capsys.readouterr()
    assert out.out == ""
    assert "no index in" in out.err and "run `rag ingest`" in out.err


def test_bench_only_names_an_unknown_part_and_the_choices(capsys) -> None:
    questions = str(REPO / "eval" / "questions.jsonl")
    assert cli.main(["bench", "--questions", questions, "--only", "serve,latency", "--only", "cold"]) == 1
    out = capsys.readouterr()
    assert out.out == ""
    assert "error: --only latency: no such part; choose from ingest, cold, query, serve" in out.err
