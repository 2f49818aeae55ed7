"""The dense index: exact below `ann_min_vectors`, IVF-Flat at or above it, on real FAISS files and real embedded text."""

from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np
import pytest

from rag import dense, store
from rag.embedding import Embedder
from rag.ingest import ingest
from rag.language import get_language
from rag.settings import Settings
from tests.conftest import REPO, write_corpus

SQUAD = REPO / "eval/datasets/squad2_wikipedia"
ARTICLES = ("Frédéric_Chopin.txt", "IPod.txt", "2008_Sichuan_earthquake.txt")


def squad_questions(count: int) -> list[str]:
    """The first questions about ARTICLES in the SQuAD file: real questions on the real text."""
    rows = [json.loads(line) for line in (SQUAD / "questions.jsonl").read_text(encoding="utf-8").splitlines()]
    wanted = {name.removesuffix(".txt").replace("_", " ") for name in ARTICLES}
    return [r["question"] for r in rows if r.get("article", "").replace("_", " ") in wanted][:count]


@pytest.fixture(scope="module")
def sentences(embedder: Embedder) -> tuple[list[str], np.ndarray]:
    """120 real sentences from each of ARTICLES, embedded by the real model."""
    texts: list[str] = []
    for name in ARTICLES:
        text = (SQUAD / "source_files" / name).read_text(encoding="utf-8")
        texts += [text[a:b] for a, b in get_language().split_sentences(text)[:120]]
    return texts, embedder.embed(texts)


def params(threshold: int) -> dense.DenseParams:
    return dense.DenseParams.from_settings(Settings(ann_min_vectors=threshold))


def id_map(index: faiss.Index) -> list[int]:
    return sorted(faiss.vector_to_array(faiss.downcast_index(index).id_map).tolist())


def mapped_files() -> str:
    return Path("/proc/self/maps").read_text()


def test_ivf_above_the_threshold_finds_the_exact_top_hits_and_keeps_ids(
    sentences: tuple[list[str], np.ndarray], embedder: Embedder, tmp_path: Path
) -> None:
    texts, vectors = sentences
    ids = np.arange(len(texts), dtype=np.int64) * 7 + 1000  # store ids: sparse, not row numbers
    questions = embedder.embed(squad_questions(40))
    assert len(questions) == 40

    written = {}
    for name, threshold in (("exact", len(texts) + 1), ("ivf", len(texts))):
        path = tmp_path / f"{name}.faiss"
        path.write_bytes(faiss.serialize_index(dense.build(384, ids, vectors, params(threshold))).tobytes())
        written[name] = dense.read(path)
        assert dense.kind_of(written[name]) == name
        assert str(path) in mapped_files()  # the vectors are read in place, not copied
        assert id_map(written[name]) == ids.tolist()
        assert np.allclose(written[name].reconstruct(int(ids[5])), vectors[5], atol=1e-6)

    settings = Settings()
    _, exact = dense.search(written["exact"], questions, 10, settings.ivf_nprobe)
    _, approximate = dense.search(written["ivf"], questions, 10, settings.ivf_nprobe)
    assert faiss.downcast_index(written["ivf"].index).nlist == 64  # 4 x sqrt(360) rounded to a power of two
    assert approximate[:, 0].tolist() == exact[:, 0].tolist()
    assert approximate.tolist() == exact.tolist()
    assert set(exact.ravel()) <= set(ids.tolist())


def test_nprobe_is_read_at_search_time(sentences: tuple[list[str], np.ndarray], embedder: Embedder) -> None:
    """nprobe comes from the call (the setting), not only from the file: scanning every list is exact search,
    scanning one list misses some of the exact top 10."""
    texts, vectors = sentences
    ids = np.arange(len(texts))
    index = dense.build(384, ids, vectors, params(1))
    lists = faiss.downcast_index(index.index).nlist
    questions = embedder.embed(squad_questions(40))
    _, exact = dense.search(dense.build(384, ids, vectors, params(len(ids) + 1)), questions, 10)
    _, everything = dense.search(index, questions, 10, nprobe=lists)
    _, one = dense.search(index, questions, 10, nprobe=1)
    assert everything.tolist() == exact.tolist()
    assert one.tolist() != exact.tolist()


def write_articles(folder: Path, parts: int) -> list[str]:
    """Each article cut into `parts` real text files of 6,000 characters (about six chunks each)."""
    files = {}
    for name in ARTICLES:
        text = (SQUAD / "source_files" / name).read_text(encoding="utf-8")
        for n in range(parts):
            files[f"{name.removesuffix('.txt')}-{n}.txt"] = text[n * 6000 : (n + 1) * 6000]
    write_corpus(folder, files)
    return sorted(files)


def test_the_store_writes_and_loads_ivf_above_the_threshold_and_exact_below(
    tmp_path: Path, embedder: Embedder
) -> None:
    names = write_articles(tmp_path / "corpus", parts=2)
    settings = Settings(corpus_dir=tmp_path / "corpus", index_dir=tmp_path / "index", ann_min_vectors=20)
    ingest(settings, embedder=embedder)
    first = store.load(settings.index_dir, settings.index_signature())
    count = first.chunk_count()
    assert count >= 20, f"the corpus gave {count} chunks, too few to cross ann_min_vectors=20"
    [segment] = first.segments
    assert dense.kind_of(segment.dense) == "ivf"
    vectors_file = segment.root / "vectors.faiss"
    assert str(vectors_file) in mapped_files()
    all_ids = sorted(i for i, _ in first.iter_chunks())
    assert id_map(segment.dense) == all_ids
    exact = dense.build(384, np.array(all_ids), np.stack([first.vector(i) for i in all_ids]), params(count + 1))
    questions = embedder.embed(squad_questions(20))
    scores, expected = dense.search(exact, questions, 10)
    found = [[i for i, _ in first.dense_search(q, 10, settings.ivf_nprobe)] for q in questions]
    assert found == expected.tolist()

    # Deleting a file writes no vectors: the IVF segment stays as it is, its chunks are deleted ids that no
    # search returns, and every other chunk keeps its id and its vector.
    removed = names[0]
    gone = set(first.manifest.documents[removed].chunk_ids)
    (settings.corpus_dir / removed).unlink()
    report = ingest(settings, embedder=embedder)
    assert report.embedded_chunks == 0 and report.merged == []
    second = store.load(settings.index_dir, settings.index_signature())
    [entry] = second.manifest.segments
    assert (entry.name, entry.deleted) == (segment.entry.name, sorted(gone))
    kept = sorted(i for i, _ in second.iter_chunks())
    assert kept == sorted(set(all_ids) - gone) and second.chunk_count() == len(kept)
    assert np.array_equal(np.stack([second.vector(i) for i in kept]), np.stack([first.vector(i) for i in kept]))
    rest = dense.build(384, np.array(kept), np.stack([first.vector(i) for i in kept]), params(count + 1))
    _, expected = dense.search(rest, questions, 10)
    assert [[i for i, _ in second.dense_search(q, 10, None)] for q in questions] == expected.tolist()
