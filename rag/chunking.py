"""Documents -> chunks: sentence-aware, bounded in the embedder's own word pieces.

all-MiniLM-L6-v2 reads only its first 256 word pieces, so a longer chunk would be embedded from its
start alone. llama-index's SentenceSplitter does the splitting with the embedder's tokenizer; each chunk
keeps its source, page (and its label: slide, sheet, section; whether it came from OCR) and exact character
span in that page's text. Table lines (`Page.tables`) are packed whole instead, so a figure never lands in
a chunk without its row label and column header.

Bounds for any document. The splitter holds every split of the text it is given, and on a text without
sentence ends it falls back to one tokenizer call per word: a 50 MB single-line file took 5.8 GB and
more than 7 minutes. So (1) a document with more than `Settings.max_document_chars` characters of text
is refused before any splitting (ingest skips it with the reason), and (2) prose is cut into pieces of
at most PIECE_CHUNKS chunks' worth of characters, at a paragraph break, else a sentence end, else a
space, else anywhere, and each piece is split on its own: the splitter's memory is bounded by one piece
and its time is linear in the text. Chunks never cross a piece boundary.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rag.loaders import Page, SourceDocument

# A piece holds at most this many chunks' worth of characters (CHARS_PER_TOKEN each word piece). Not a
# setting: it decides chunk boundaries in long texts, so it is fixed for an index's chunk settings.
PIECE_CHUNKS = 16
CHARS_PER_TOKEN = 4
SENTENCE_END = re.compile(r"[.!?;:。！？]['\")\]]*\s")


class DocumentTooLong(Exception):
    """The document holds more text than one document may (Settings.max_document_chars); ingest skips it
    with this message as the reason. Not a LoadError: rag.loaders stays off the readers' import path."""


def pieces(text: str, size: int) -> Iterator[tuple[int, str]]:
    """(offset, piece) of consecutive pieces of `text`, each at most `size` characters, cut at the last
    paragraph break, else sentence end, else whitespace in a piece's second half, else at `size`."""
    start = 0
    while len(text) - start > size:
        low, high = start + size // 2, start + size
        cut = text.rfind("\n\n", low, high - 1) + 2
        if cut < 2:
            ends = [m.end() for m in SENTENCE_END.finditer(text, low, high)]
            cut = ends[-1] if ends else max(text.rfind(" ", low, high), text.rfind("\n", low, high)) + 1
        if cut <= start:
            cut = high  # no break anywhere: a hard cut
        yield start, text[start:cut]
        start = cut
    if start < len(text):
        yield start, text[start:]


@dataclass(frozen=True)
class Chunk:
    chunk_id: str  # "<doc_id>#<n>", stable for a given document version
    source: str  # doc_id: path relative to the corpus
    page: int | None  # 1-based PDF page, slide, sheet or section (see loaders.Page.number)
    start: int  # character span in the page text
    end: int
    text: str
    label: str | None = None  # "slide 3", "sheet Revenue", "section Results": how citations name the page
    ocr: bool = False  # the text came from OCR

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Chunk:
        return cls(**data)


class Chunker:
    def __init__(self, tokenize: Callable[[str], list], chunk_tokens: int, chunk_overlap: int, max_tokens: int,
                 max_document_chars: int | None = None):
        # Two word pieces go to the model's [CLS] and [SEP].
        if chunk_tokens > max_tokens - 2:
            raise ValueError(
                f"chunk_tokens={chunk_tokens} exceeds what the embedder reads ({max_tokens} word pieces, "
                f"2 of them special): set RAG_CHUNK_TOKENS to at most {max_tokens - 2}"
            )
        self._tokenize = tokenize
        self._chunk_tokens = chunk_tokens
        # Imported here: llama-index costs seconds to import, and readers (`rag ask`) need only `Chunk`.
        from llama_index.core.node_parser import SentenceSplitter

        self._splitter = SentenceSplitter(
            chunk_size=chunk_tokens,
            chunk_overlap=chunk_overlap,
            tokenizer=tokenize,
            include_metadata=False,
            include_prev_next_rel=False,
        )
        self.piece_chars = PIECE_CHUNKS * chunk_tokens * CHARS_PER_TOKEN
        self.max_document_chars = max_document_chars

    def chunk(self, document: SourceDocument) -> list[Chunk]:
        """Raises DocumentTooLong when the text exceeds max_document_chars."""
        length = sum(len(page.text) for page in document.pages)
        if self.max_document_chars is not None and length > self.max_document_chars:
            raise DocumentTooLong(
                f"its text is {length:,} characters, more than the {self.max_document_chars:,} one document may "
                "hold (RAG_MAX_DOCUMENT_CHARS): split the file into smaller ones or raise the limit"
            )
        chunks: list[Chunk] = []
        for page in document.pages:
            for start, end in self._page_spans(page):
                chunks.append(Chunk(f"{document.doc_id}#{len(chunks)}", document.doc_id, page.number, start, end,
                                    page.text[start:end], page.label, page.ocr))
        return chunks

    def _page_spans(self, page: Page) -> list[tuple[int, int]]:
        """Chunk spans in the page's text: prose through the sentence splitter, tables by whole lines."""
        spans: list[tuple[int, int]] = []
        cursor = 0
        for table_start, table_end in sorted(page.tables):
            spans += self._prose_spans(page.text, cursor, table_start)
            spans += self._table_spans(page.text, table_start, table_end)
            cursor = table_end
        return spans + self._prose_spans(page.text, cursor, len(page.text))

    def _prose_spans(self, text: str, begin: int, finish: int) -> list[tuple[int, int]]:
        """Spans of text[begin:finish], each of its pieces (see `pieces`) through the splitter on its own."""
        from llama_index.core.schema import Document  # see __init__: not on the readers' import path

        spans: list[tuple[int, int]] = []
        for offset, piece in pieces(text[begin:finish], self.piece_chars):
            if not piece.strip():
                continue
            base, first = begin + offset, len(spans)
            for node in self._splitter.get_nodes_from_documents([Document(text=piece)]):
                start, end = node.start_char_idx, node.end_char_idx
                if start is None or end is None or piece[start:end] != node.text:
                    # The splitter strips whitespace; find the text to keep spans exact.
                    start = piece.find(node.text, spans[-1][0] - base if len(spans) > first else 0)
                    end = start + len(node.text)
                spans.append((base + start, base + end))
        return spans

    def _table_spans(self, text: str, begin: int, finish: int) -> list[tuple[int, int]]:
        """Whole table lines packed up to chunk_tokens; every line names its row and column, so a chunk
        never holds a figure without its labels. A line longer than a chunk goes through the splitter."""
        spans: list[tuple[int, int]] = []
        open_start, used = None, 0
        position = begin
        for line in text[begin:finish].split("\n"):
            line_start, line_end = position, position + len(line)
            position = line_end + 1
            tokens = len(self._tokenize(line))
            if open_start is not None and used + tokens > self._chunk_tokens:
                spans.append((open_start, last_end))
                open_start, used = None, 0
            if tokens > self._chunk_tokens:
                spans += self._prose_spans(text, line_start, line_end)
                continue
            if open_start is None:
                open_start = line_start
            used += tokens
            last_end = line_end
        if open_start is not None:
            spans.append((open_start, last_end))
        return spans
