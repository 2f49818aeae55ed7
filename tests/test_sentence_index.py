"""The sentence index: every sentence embedded once at ingest, kept exact across edits, never re-embedded
when asking."""

from __future__ import annotations

import numpy as np
import pytest

from rag import store
from rag.chat import Assistant
from rag.embedding import Embedder
from rag.ingest import ingest
from rag.language import get_language
from rag.retrieval import Retriever
from rag.settings import Settings
from tests.conftest import write_corpus


class RecordingEmbedder(Embedder):
    """The real embedder, recording every text it is asked to embed (a spy, not a stand-in)."""

    def __init__(self, real: Embedder) -> None:  # noqa: D107 - shares the loaded model, no second load
        self.__dict__.update(real.__dict__)
        self.texts: list[str] = []

    def embed(self, texts, batch_size=32, show_progress=False):
        self.texts += list(texts)
        return super().embed(texts, batch_size=batch_size, show_progress=show_progress)


def test_every_sentence_is_embedded_once_at_ingest(tiny_index: Settings, embedder: Embedder) -> None:
    snapshot = store.load(tiny_index.index_dir, tiny_index.index_signature())
    rows = [(chunk.text[a:b], vector) for cid, chunk in snapshot.iter_chunks() for a, b, vector in snapshot.sentence_rows(cid)]
    texts = [text for text, _ in rows]
    expected = [chunk.text[a:b] for _, chunk in snapshot.iter_chunks() for a, b in get_language().split_sentences(chunk.text)]
    assert texts == expected
    assert "The event resulted in 33 signed agreements worth 18.47 billion RMB." in texts
    assert np.allclose(np.stack([v for _, v in rows]), embedder.embed(texts), atol=1e-5)


def test_an_edit_embeds_only_the_new_sentences(tiny_index: Settings, embedder: Embedder) -> None:
    recorder = RecordingEmbedder(embedder)
    path = tiny_index.corpus_dir / "weather.md"
    path.write_text(path.read_text() + " Frost is rare in winter.")
    report = ingest(tiny_index, embedder=recorder)
    assert report.updated == ["weather.md"]
    # The changed chunk is embedded whole, plus its one sentence and its words never indexed before
    # (the vocabulary keeps every alphabetic word, stopwords too: choosing them is the answerer's job).
    assert report.embedded_sentences == 1
    assert recorder.texts == [(tiny_index.corpus_dir / "weather.md").read_text(), "Frost is rare in winter.",
                              "frost", "is", "rare", "winter"]
    fresh = tiny_index.model_copy(update={"index_dir": tiny_index.index_dir.parent / "fresh"})
    ingest(fresh, embedder=embedder)
    def sentences(settings: Settings) -> tuple[list, np.ndarray]:
        snapshot = store.load(settings.index_dir, settings.index_signature())
        rows = [(c.chunk_id, a, b, v) for cid, c in snapshot.iter_chunks() for a, b, v in snapshot.sentence_rows(cid)]
        return [row[:3] for row in rows], np.stack([row[3] for row in rows])

    (a_spans, a_vectors), (b_spans, b_vectors) = sentences(tiny_index), sentences(fresh)
    assert a_spans == b_spans
    assert np.allclose(a_vectors, b_vectors, atol=1e-6)


def test_asking_embeds_the_question_only(tiny_index: Settings, embedder: Embedder) -> None:
    recorder = RecordingEmbedder(embedder)
    answer = Assistant(tiny_index, recorder).ask("How many agreements were signed at the conference?")
    assert answer.short_answer == "33"
    assert recorder.texts == ["How many agreements were signed at the conference?"]


def test_a_chunk_is_ranked_again_by_its_best_sentence(tmp_path, embedder: Embedder) -> None:
    """A chunk about many things holding the one sentence that answers ranks first by that sentence, though
    the chunk as a whole lies farther from the question than a chunk about its subject throughout."""
    corpus = write_corpus(tmp_path / "corpus", {
        "harbour.md": "The harbour town grew up around its fishing fleet in the eighteenth century. Its market sold "
        "herring, cod and salt to inland villages. A stone church was built on the hill above the quay in 1790. "
        "The lighthouse keeper was paid twelve shillings a week. Storms in the winter of 1836 wrecked most of the "
        "boats. The railway reached the town in 1871 and brought summer visitors.",
        "lighthouses.md": "Lighthouses guide ships along dangerous coasts with a bright lamp. Early lighthouses "
        "burned wood or coal in an open fire on the tower. Later towers used oil lamps and mirrors, then Fresnel "
        "lenses. Automation in the twentieth century removed the need for resident staff at most towers.",
    })
    settings = Settings(corpus_dir=corpus, index_dir=tmp_path / "index")
    ingest(settings, embedder=embedder)
    snapshot = store.load(settings.index_dir, settings.index_signature())
    question = "How much did the person who looked after the light earn?"

    hits = {hit.chunk.source: hit for hit in Retriever(snapshot, embedder, settings).search(question)}
    assert (hits["lighthouses.md"].dense_rank, hits["lighthouses.md"].sentence_rank) == (1, 2)
    assert (hits["harbour.md"].dense_rank, hits["harbour.md"].sentence_rank) == (2, 1)
    k, weight = settings.rrf_k, settings.sentence_weight
    assert hits["harbour.md"].score == pytest.approx(1 / (k + 2) + weight / (k + 1))
    assert [hit.chunk.source for hit in hits.values()] == ["harbour.md", "lighthouses.md"]

    without = Retriever(snapshot, embedder, settings.model_copy(update={"sentence_weight": 0.0})).search(question)
    assert [(hit.chunk.source, hit.sentence_rank) for hit in without] == [("lighthouses.md", None), ("harbour.md", None)]
