"""The one result shape every front end consumes: an `Answer` with its `Citation`s, and a conversation's `Turn`s."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal


@dataclass(frozen=True)
class Citation:
    source: str  # path relative to the corpus
    page: int | None  # 1-based PDF page, slide, sheet or section; None for single-page formats
    start: int  # character span of `text` in that page's text
    end: int
    text: str  # the quoted passage, verbatim from the corpus
    score: float
    chunk_id: str = ""
    verified: bool = True  # the quote was found verbatim in the source chunk
    reason: str | None = None  # why verified is False
    label: str | None = None  # the page's name where the format has one: "slide 3", "sheet Revenue", "section Results"
    ocr: bool = False  # the passage was read by OCR and may hold recognition errors

    @property
    def location(self) -> str:
        """'report.pdf (p. 2, chars 10-80)', 'deck.pptx (slide 3, chars 0-40)', '(..., OCR)' for scanned text."""
        where = f"{self.label}, " if self.label else f"p. {self.page}, " if self.page is not None else ""
        ocr = ", OCR" if self.ocr else ""
        return f"{self.source} ({where}chars {self.start}-{self.end}{ocr})"


@dataclass(frozen=True)
class SentenceCheck:
    """One sentence of a generated answer and whether its cited passages support it."""

    text: str
    citations: tuple[int, ...]  # 1-based numbers into Answer.citations
    verified: bool
    reason: str | None = None


@dataclass
class Answer:
    text: str
    citations: list[Citation]
    refused: bool
    query: str  # the standalone query used for retrieval
    timings_ms: dict[str, float] = field(default_factory=dict)
    short_answer: str | None = None  # the number, date or name the question asks for, when found
    sentences: list[SentenceCheck] = field(default_factory=list)  # LLM answers only
    note: str | None = None  # e.g. why an LLM answer fell back to the extractive one
    index_version: str | None = None  # the index version (index/versions/<name>) that answered
    written_by: Literal["extractive", "llm"] = "extractive"  # "llm": the text is the model's verified sentences

    def to_json(self) -> dict:
        """The `rag ask --json` contract: answer, refused, query, citations, timings_ms (plus extras)."""
        data = {
            "answer": self.text,
            "refused": self.refused,
            "query": self.query,
            "citations": [
                {k: v for k, v in asdict(c).items()} for c in self.citations
            ],
            "timings_ms": {k: round(v, 1) for k, v in self.timings_ms.items()},
            "short_answer": self.short_answer,
            "index_version": self.index_version,
            "written_by": self.written_by,
        }
        if self.sentences:
            data["sentences"] = [asdict(s) for s in self.sentences]
        if self.note:
            data["note"] = self.note
        return data


@dataclass(frozen=True)
class Turn:
    """One exchange of a conversation: the question as asked and the whole Answer it got.

    A conversation is a list of turns; follow-up rewriting reads the questions and short answers, the
    export and the evidence pane read the answers' citations.
    """

    question: str
    answer: Answer

    @property
    def query(self) -> str:
        """The standalone query the question was answered with (the question itself when not rewritten)."""
        return self.answer.query or self.question
