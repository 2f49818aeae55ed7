"""Documents -> chunks: sentence-aware, bounded in the embedder's own word pieces.

all-MiniLM-L6-v2 reads only its first 256 word pieces, so a longer chunk would be embedded from its
start alone. llama-index's SentenceSplitter does the splitting with the embedder's tokenizer; each chunk
keeps its source, page and exact character span in that page's text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.schema import Document

from rag.loaders import SourceDocument


@dataclass(frozen=True)
class Chunk:
    chunk_id: str  # "<doc_id>#<n>", stable for a given document version
    source: str  # doc_id: path relative to the corpus
    page: int | None
    start: int  # character span in the page text
    end: int
    text: str

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Chunk:
        return cls(**data)


class Chunker:
    def __init__(self, tokenize: Callable[[str], list], chunk_tokens: int, chunk_overlap: int, max_tokens: int):
        # Two word pieces go to the model's [CLS] and [SEP].
        if chunk_tokens > max_tokens - 2:
            raise ValueError(
                f"chunk_tokens={chunk_tokens} exceeds what the embedder reads ({max_tokens} word pieces, "
                f"2 of them special): set RAG_CHUNK_TOKENS to at most {max_tokens - 2}"
            )
        self._splitter = SentenceSplitter(
            chunk_size=chunk_tokens,
            chunk_overlap=chunk_overlap,
            tokenizer=tokenize,
            include_metadata=False,
            include_prev_next_rel=False,
        )

    def chunk(self, document: SourceDocument) -> list[Chunk]:
        chunks: list[Chunk] = []
        for page in document.pages:
            nodes = self._splitter.get_nodes_from_documents([Document(text=page.text)])
            for node in nodes:
                start, end = node.start_char_idx, node.end_char_idx
                if start is None or end is None or page.text[start:end] != node.text:
                    # The splitter strips whitespace; find the text to keep spans exact.
                    start = page.text.find(node.text, chunks[-1].start if chunks and chunks[-1].page == page.number else 0)
                    end = start + len(node.text)
                chunks.append(
                    Chunk(f"{document.doc_id}#{len(chunks)}", document.doc_id, page.number, start, end, node.text)
                )
        return chunks
