"""Embedding at ingest on Ray (embed_backend='ray') against a real local Ray (ray.init in this process, one CPU),
never a mock: the actors' vectors equal the local embedder's, and an ingest on Ray into Milvus answers as the
local build does and re-embeds only what changed."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from rag.chat import Assistant
from rag.embedding import Embedder
from rag.ingest import ingest
from rag.settings import Settings
from tests.conftest import SHIPPED_CORPUS, TINY_CORPUS, write_corpus

if os.environ.get("CI"):
    import ray  # noqa: F401  (CI installs the `scale` extra: its absence fails there, never skips)
else:
    pytest.importorskip("ray")
from rag import ray_embed  # noqa: E402
from rag.backends import milvus  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module (it takes seconds to start): one CPU, a small object store."""
    import ray

    ray.init(num_cpus=1, object_store_memory=100 * 1024 * 1024, include_dashboard=False, log_to_driver=False)
    yield
    ray_embed.shutdown()
    milvus.close_clients()


def test_ray_actors_embed_exactly_as_the_local_embedder(local_ray, embedder: Embedder) -> None:
    text = (SHIPPED_CORPUS / "dongguan-hong-kong-cooperation.txt").read_text(encoding="utf-8")
    texts = [t.strip() for t in text.split(".") if t.strip()][:70] + list(TINY_CORPUS.values())
    remote = ray_embed.ray_embedder(Settings(embed_backend="ray"), embedder)

    ours, theirs = embedder.embed(texts, batch_size=16), remote.embed(texts, batch_size=16)

    assert theirs.shape == ours.shape == (len(texts), embedder.dimension)
    assert float(np.min(np.sum(ours * theirs, axis=1))) >= 0.9999
    assert remote.embed([], batch_size=16).shape == (0, embedder.dimension)


def test_an_ingest_on_ray_into_milvus_equals_the_local_build(local_ray, tmp_path: Path, embedder: Embedder) -> None:
    corpus = write_corpus(tmp_path / "corpus", TINY_CORPUS)
    local = Settings(corpus_dir=corpus, index_dir=tmp_path / "local")
    scaled = Settings(corpus_dir=corpus, index_dir=tmp_path / "scaled", store_backend="milvus", embed_backend="ray")
    ingest(local, embedder=embedder)
    report = ingest(scaled, embedder=embedder)
    assert report.embedded_chunks == 3 and report.embedded_sentences > 0

    ours, theirs = Assistant(local, embedder=embedder), Assistant(scaled, embedder=embedder)
    for cid, chunk in ours.snapshot.iter_chunks():
        assert theirs.snapshot.chunk(cid) == chunk
        assert float(ours.snapshot.vector(cid) @ theirs.snapshot.vector(cid)) >= 0.9999
        for (a, b, u), (c, d, v) in zip(ours.snapshot.sentence_rows(cid), theirs.snapshot.sentence_rows(cid), strict=True):
            assert (a, b) == (c, d) and float(u @ v) >= 0.9999
    question = "How many agreements were signed?"
    assert theirs.ask(question).text == ours.ask(question).text

    (corpus / "weather.md").write_text("# Weather\n\nSnow falls in Dongguan in January, rarely.")
    report = ingest(scaled, embedder=embedder)
    assert (report.updated, report.embedded_chunks) == (["weather.md"], 1)
