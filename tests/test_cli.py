"""The terminal front end run as a user runs it: `rag ingest`, `rag ask --json` (a contract), errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.conftest import SHIPPED_CORPUS, run_rag, write_corpus


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


def test_ingest_reports_and_fails_when_nothing_indexable(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus", {"a.txt": "Typhoons arrive mostly in August.", "b.bin": "x"})
    result = run_rag("ingest", "--corpus", str(corpus), "--index", str(tmp_path / "index"))
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"added 1, updated 0, removed 0, unchanged 0 in \d+\.\d s "
                        r"\(renamed 0, skipped 1, 1 chunks embedded\)\n", result.stdout), result.stdout
    assert "skipped b.bin: unsupported file type '.bin'" in result.stderr

    empty = write_corpus(tmp_path / "empty", {"e.txt": ""})
    result = run_rag("ingest", "--corpus", str(empty), "--index", str(tmp_path / "index2"))
    assert result.returncode == 1
    assert "nothing could be indexed" in result.stderr and "e.txt: the file is empty" in result.stderr


def test_ask_without_an_index_says_how_to_build_one(tmp_path: Path) -> None:
    result = run_rag("ask", "anything", "--index", str(tmp_path / "none"))
    assert result.returncode == 1
    assert "no index in" in result.stderr and "run `rag ingest`" in result.stderr
