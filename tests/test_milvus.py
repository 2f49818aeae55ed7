"""The Milvus store back end (store_backend='milvus') against a real Milvus Lite file, never a mock: ingest, ask,
incremental changes (only changed files re-embedded, their rows gone from Milvus), rows a writer has not
published yet never answered from, a writer killed mid-write, and the same rankings and answers as the local
store on the shipped corpus."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rag import store
from rag.chat import Assistant
from rag.embedding import Embedder
from rag.ingest import check, ingest
from rag.settings import Settings
from tests.conftest import REPO, SHIPPED_CORPUS, TINY_CORPUS, write_corpus

if os.environ.get("CI"):
    import pymilvus  # noqa: F401  (CI installs the `scale` extra: its absence fails there, never skips)
else:
    pytest.importorskip("pymilvus")
from rag.backends import milvus  # noqa: E402
from rag.chunking import Chunk  # noqa: E402

QUESTIONS = [json.loads(line) for line in (REPO / "eval" / "questions.jsonl").read_text().splitlines() if line.strip()]


@pytest.fixture(autouse=True)
def _close_milvus():
    """Milvus Lite lets one process open a file: release every file a test opened."""
    yield
    milvus.close_clients()


def milvus_settings(root: Path, corpus: Path) -> Settings:
    return Settings(corpus_dir=corpus, index_dir=root / "index", store_backend="milvus")


def rows(settings: Settings, kind: str, fields: list[str]) -> list[dict]:
    reader = milvus.open_reader(settings)
    name = getattr(reader.names, kind)
    key = "word" if kind == "words" else "id"
    return sorted(milvus.client(settings).query(name, filter="", output_fields=[key, *fields], limit=16384),
                  key=lambda r: r[key])


def kill_writer_at(settings: Settings, stage: str) -> None:
    """`rag ingest` with store_backend=milvus in a child process, killed with SIGKILL once paused at `stage`."""
    from tests.test_faults import PausedWriter

    milvus.close_clients()  # the writer's process must open the Milvus Lite file
    os.environ["RAG_STORE_BACKEND"] = "milvus"
    try:
        writer = PausedWriter(settings, stage)
    finally:
        del os.environ["RAG_STORE_BACKEND"]
    writer.wait_paused()
    writer.kill()


def test_ingest_and_ask_read_everything_from_milvus(tmp_path: Path, embedder: Embedder) -> None:
    settings = milvus_settings(tmp_path, write_corpus(tmp_path / "corpus", TINY_CORPUS))
    report = ingest(settings, embedder=embedder)
    assert report.added == ["cats.html", "conference.txt", "weather.md"] and report.published

    assistant = Assistant(settings, embedder=embedder)
    assert isinstance(assistant.snapshot, milvus.MilvusReader)
    assert assistant.snapshot.version == (settings.index_dir / "milvus" / "CURRENT").read_text().strip()
    answer = assistant.ask("How many agreements were signed?")
    assert answer.text.startswith("33")
    assert [c.chunk_id for c in answer.citations] == ["conference.txt#0"]
    # Nothing of the local store was written: the vectors and texts are in Milvus only.
    assert not list(settings.index_dir.rglob("*.faiss")) and not list(settings.index_dir.rglob("chunks.jsonl"))
    chunk_rows = rows(settings, "chunks", ["meta"])
    manifest = assistant.snapshot.manifest
    assert {r["id"]: r["meta"]["chunk_id"] for r in chunk_rows} == {
        entry.chunk_ids[0]: f"{doc}#0" for doc, entry in manifest.documents.items()}
    assert list(assistant.snapshot.word_vectors(["typhoons", "zeppelin"])) == ["typhoons"]
    assert check(settings) == []  # rag ingest --check: the state file's checksum, the corpus's hashes
    state = settings.index_dir / "milvus" / "versions" / assistant.snapshot.version / "backend.json"
    state.write_text(state.read_text().replace('"chunks"', '"chunkz"', 1))
    assert check(settings) == [f"index file {state} is damaged (checksum mismatch): run `rag ingest --rebuild`"]


def test_a_change_rewrites_only_its_rows(tmp_path: Path, embedder: Embedder) -> None:
    corpus = write_corpus(tmp_path / "corpus", TINY_CORPUS)
    settings = milvus_settings(tmp_path, corpus)
    ingest(settings, embedder=embedder)
    before = milvus.open_reader(settings).manifest.documents
    (corpus / "weather.md").write_text("# Weather\n\nSnow falls in Dongguan in January, rarely.")
    (corpus / "cats.html").unlink()

    report = ingest(settings, embedder=embedder)

    assert (report.updated, report.removed, report.unchanged) == (["weather.md"], ["cats.html"], ["conference.txt"])
    assert report.embedded_chunks == 1
    after = milvus.open_reader(settings).manifest.documents
    assert after["conference.txt"].chunk_ids == before["conference.txt"].chunk_ids  # kept, not rewritten
    assert after["weather.md"].chunk_ids == [3]  # ids only grow: 0-2 were the first build's
    assert [r["id"] for r in rows(settings, "chunks", [])] == sorted([*after["conference.txt"].chunk_ids, 3])
    assert {r["chunk_id"] for r in rows(settings, "sentences", ["chunk_id"])} == {1, 3}
    words = {r["word"] for r in rows(settings, "words", [])}
    assert "snow" in words and "typhoons" not in words and "cats" not in words
    hits = Assistant(settings, embedder=embedder)._refresh().search("snow in Dongguan")
    assert [h.chunk.chunk_id for h in hits] == ["weather.md#0", "conference.txt#0"]
    assert "Snow falls" in hits[0].chunk.text


def test_a_renamed_file_reuses_its_vectors_under_new_ids(tmp_path: Path, embedder: Embedder) -> None:
    """As in the local segment store, a renamed file's chunks move to new ids (a new segment there, new rows here)
    with the vectors and sentences found by their text, nothing re-embedded; the old ids' rows are deleted."""
    corpus = write_corpus(tmp_path / "corpus", TINY_CORPUS)
    settings = milvus_settings(tmp_path, corpus)
    ingest(settings, embedder=embedder)
    before = milvus.open_reader(settings)
    old_id = before.manifest.documents["conference.txt"].chunk_ids
    old_vector, old_sentences = before.vector(old_id[0]), before.sentence_rows(old_id[0])
    (corpus / "conference.txt").rename(corpus / "meeting.txt")

    report = ingest(settings, embedder=embedder)

    assert report.renamed == [("conference.txt", "meeting.txt")] and report.embedded_chunks == 0
    assert report.embedded_sentences == 0
    reader = milvus.open_reader(settings)
    assert reader.manifest.documents["meeting.txt"].chunk_ids == [3]  # ids only grow: 0-2 were the first build's
    assert reader.chunk(3).chunk_id == "meeting.txt#0" and reader.chunk(3).source == "meeting.txt"
    assert np.array_equal(reader.vector(3), old_vector)
    assert [(s, e) for s, e, _ in reader.sentence_rows(3)] == [(s, e) for s, e, _ in old_sentences]
    assert old_id[0] not in [r["id"] for r in rows(settings, "chunks", [])]
    assert old_id[0] not in {r["chunk_id"] for r in rows(settings, "sentences", ["chunk_id"])}


def test_rows_no_published_version_holds_are_never_answered_and_are_deleted(tmp_path: Path, embedder: Embedder) -> None:
    """What a writer in flight (or killed) leaves: rows whose ids no manifest lists."""
    settings = milvus_settings(tmp_path, write_corpus(tmp_path / "corpus", TINY_CORPUS))
    ingest(settings, embedder=embedder)
    reader = milvus.open_reader(settings)
    query = "How long do cats sleep?"
    vector = embedder.embed([query])[0]
    cats = reader.manifest.documents["cats.html"].chunk_ids[0]
    stray = milvus._chunk_row(99, Chunk("ghost.txt#0", "ghost.txt", None, 0, 20, "cats sleep cats sleep"),
                              vector, store.bm25_tokens(["cats sleep cats sleep"])[0], reader.stats)
    milvus.client(settings).insert(reader.names.chunks, [stray])

    assert [cid for cid, _ in reader.dense_search(vector, 2, None)][0] == cats  # 99 is the nearest, but not live
    assert 99 not in [cid for cid, _ in reader.keyword_search(store.bm25_tokens([query])[0], 3)]
    assert ingest(settings, embedder=embedder).published is False  # nothing changed in the folder ...
    assert 99 not in [r["id"] for r in rows(settings, "chunks", [])]  # ... but the stray row was deleted


def test_milvus_lite_file_held_by_another_process_is_named_with_the_fix(tmp_path: Path) -> None:
    settings = milvus_settings(tmp_path, tmp_path)
    settings.index_dir.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pymilvus import MilvusClient; c = MilvusClient(sys.argv[1]); "
         "print('open', flush=True); sys.stdin.read()", milvus.resolve_uri(settings)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(store.IndexProblem) as err:
            milvus.client(settings)
        message = str(err.value)
        assert str(settings.index_dir / "milvus.db") in message
        assert "one process at a time" in message and "RAG_MILVUS_URI=http://host:19530" in message
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


def test_a_writer_killed_after_writing_rows_leaves_the_old_version_answering(tmp_path: Path, embedder: Embedder) -> None:
    """kill -9 between (1) new rows written and (2) the manifest published: readers keep the old version and
    never see the new rows; the next ingest publishes the change and leaves no stray rows."""
    corpus = write_corpus(tmp_path / "corpus", TINY_CORPUS)
    settings = milvus_settings(tmp_path, corpus)
    ingest(settings, embedder=embedder)
    old = milvus.open_reader(settings).version
    (corpus / "ferries.txt").write_text("Ferries to Shenzhen leave every forty minutes from the pier.")
    kill_writer_at(settings, "written")

    reader = milvus.open_reader(settings)
    assert reader.version == old and "ferries.txt" not in reader.manifest.documents
    assert len(rows(settings, "chunks", [])) == 4  # the killed writer's row is there ...
    vector = embedder.embed(["How often do ferries leave?"])[0]
    assert 3 not in [cid for cid, _ in reader.dense_search(vector, 3, None)]  # ... and never answered from

    report = ingest(settings, embedder=embedder)
    assert report.added == ["ferries.txt"] and report.published
    reader = milvus.open_reader(settings)
    assert [r["id"] for r in rows(settings, "chunks", [])] == sorted(reader.live)
    assert "forty minutes" in Assistant(settings, embedder=embedder).ask("How often do ferries leave?").text


def test_a_changed_chunk_reuses_the_vectors_of_its_known_sentences_as_the_local_store_does(
        tmp_path: Path, embedder: Embedder) -> None:
    """seg's ingest looks known sentence texts up in the previous version (sentence_vectors): through Milvus's text_key
    field it finds the same ones as through the local store's, so the same sentences are embedded."""
    corpus = write_corpus(tmp_path / "corpus", TINY_CORPUS)
    local = Settings(corpus_dir=corpus, index_dir=tmp_path / "local")
    settings = milvus_settings(tmp_path, corpus)
    ingest(local, embedder=embedder)
    ingest(settings, embedder=embedder)
    (corpus / "weather.md").write_text(TINY_CORPUS["weather.md"] + " Snow has not fallen there since 1893.")

    ours, theirs = ingest(local, embedder=embedder), ingest(settings, embedder=embedder)

    assert ours.embedded_sentences == theirs.embedded_sentences == 1 and theirs.embedded_chunks == 1
    snapshot, reader = store.load(local.index_dir, local.index_signature()), milvus.open_reader(settings)
    new_id = reader.manifest.documents["weather.md"].chunk_ids[0]
    assert new_id == snapshot.manifest.documents["weather.md"].chunk_ids[0] == 3
    mine, remote = snapshot.sentence_rows(new_id), reader.sentence_rows(new_id)
    assert [(s, e) for s, e, _ in remote] == [(s, e) for s, e, _ in mine] and len(remote) >= 2
    assert all(np.allclose(a, b, atol=1e-6) for (_, _, a), (_, _, b) in zip(remote, mine))
    new_text = snapshot.chunk(new_id).text
    # The old text's row was deleted: only the new text is found, with the local store's vector.
    found = reader.indexed_vectors([new_text, TINY_CORPUS["weather.md"]])
    assert list(found) == [new_text] and np.allclose(found[new_text], snapshot.vector(new_id), atol=1e-6)
    sentences = ["Snow has not fallen there since 1893.", "A sentence no document has."]
    assert list(reader.sentence_vectors(sentences)) == list(snapshot.sentence_vectors(sentences)) == sentences[:1]
    rows = reader.indexed_sentence_rows([new_text])
    assert list(rows) == [new_text] and [(s, e) for s, e, _ in rows[new_text]] == [(s, e) for s, e, _ in mine]


def test_a_writer_killed_after_publishing_leaves_rows_the_next_ingest_deletes(tmp_path: Path, embedder: Embedder) -> None:
    """kill -9 between (2) the manifest published and (3) the removed rows deleted: readers answer from the new
    version (its words only), and the next ingest, with nothing to change, deletes the rows the state names."""
    corpus = write_corpus(tmp_path / "corpus", TINY_CORPUS)
    settings = milvus_settings(tmp_path, corpus)
    ingest(settings, embedder=embedder)
    cats = milvus.open_reader(settings).manifest.documents["cats.html"].chunk_ids
    (corpus / "cats.html").unlink()
    kill_writer_at(settings, "published")

    reader = milvus.open_reader(settings)
    assert "cats.html" not in reader.manifest.documents and reader.chunk_count() == 2
    assert cats[0] in [r["id"] for r in rows(settings, "chunks", [])]  # not yet deleted ...
    assert "cats" in {r["word"] for r in rows(settings, "words", [])}
    assert reader.word_vectors(["cats"]) == {}  # ... but not this version's
    vector = embedder.embed(["How long do cats sleep?"])[0]
    assert cats[0] not in [cid for cid, _ in reader.dense_search(vector, 2, None)]

    report = ingest(settings, embedder=embedder)
    assert report.published is False
    old_version = report.cleaned[0]  # the version the killed writer's publish had not yet removed
    assert old_version.startswith("v") and report.cleaned[1:] == [
        "1 Milvus chunk rows no published version holds", "7 Milvus word rows no live chunk has"]
    assert [r["id"] for r in rows(settings, "chunks", [])] == sorted(milvus.open_reader(settings).live)
    assert cats[0] not in {r["chunk_id"] for r in rows(settings, "sentences", ["chunk_id"])}
    assert "cats" not in {r["word"] for r in rows(settings, "words", [])}


@pytest.fixture(scope="module")
def shipped_both(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> tuple[Settings, Settings]:
    """The shipped corpus indexed by both back ends."""
    root = tmp_path_factory.mktemp("shipped-both")
    local = Settings(corpus_dir=SHIPPED_CORPUS, index_dir=root / "local")
    ingest(local, embedder=embedder)
    distributed = Settings(corpus_dir=SHIPPED_CORPUS, index_dir=root / "milvus", store_backend="milvus")
    ingest(distributed, embedder=embedder)
    yield local, distributed
    milvus.close_clients()


def test_both_back_ends_rank_every_shipped_question_alike(shipped_both, embedder: Embedder) -> None:
    """Dense and BM25 rankings, scores and term statistics equal the local store's for every question of
    eval/questions.jsonl (what makes the answers equal)."""
    local_settings, milvus_settings_ = shipped_both
    local = store.load(local_settings.index_dir, local_settings.index_signature())
    remote = milvus.open_reader(milvus_settings_)
    assert remote.chunk_count() == local.chunk_count()
    assert [c for _, c in remote.iter_chunks()] == [c for _, c in local.iter_chunks()]
    df, n = local.term_stats()
    assert remote.term_stats() == (dict(df), n)
    depth = local_settings.candidates
    for item in QUESTIONS:
        vector = embedder.embed([item["question"]])[0]
        theirs, ours = remote.dense_search(vector, depth, None), local.dense_search(vector, depth, None)
        assert [i for i, _ in theirs] == [i for i, _ in ours], item["id"]
        assert np.allclose([s for _, s in theirs], [s for _, s in ours], atol=1e-5), item["id"]
        tokens = store.bm25_tokens([item["question"]])[0]
        theirs, ours = remote.keyword_search(tokens, depth), local.keyword_search(tokens, depth)
        assert [i for i, _ in theirs] == [i for i, _ in ours], item["id"]
        assert np.allclose([s for _, s in theirs], [s for _, s in ours], rtol=1e-5), item["id"]


@pytest.mark.slow
def test_both_back_ends_answer_every_shipped_question_alike(shipped_both, embedder: Embedder) -> None:
    local_settings, milvus_settings_ = shipped_both
    local, remote = Assistant(local_settings, embedder=embedder), Assistant(milvus_settings_, embedder=embedder)
    for item in QUESTIONS:
        ours, theirs = local.ask(item["question"]), remote.ask(item["question"])
        assert (theirs.text, theirs.refused) == (ours.text, ours.refused), item["id"]
        assert [c.chunk_id for c in theirs.citations] == [c.chunk_id for c in ours.citations], item["id"]


def test_an_all_stopword_chunk_is_indexed_and_counted_as_bm25_does(tmp_path: Path, embedder: Embedder) -> None:
    """A chunk with no BM25 token still needs a sparse row (Milvus refuses an all-zero one) and counts in the
    chunk count and average length, as in the local store's bm25s index."""
    files = {**TINY_CORPUS, "filler.txt": "It is what it is, and that is that."}
    corpus = write_corpus(tmp_path / "corpus", files)
    local = Settings(corpus_dir=corpus, index_dir=tmp_path / "local")
    ingest(local, embedder=embedder)
    settings = milvus_settings(tmp_path, corpus)
    assert ingest(settings, embedder=embedder).added == sorted(files)

    reader, snapshot = milvus.open_reader(settings), store.load(local.index_dir, local.index_signature())
    assert reader.stats.chunks == 4 and reader.stats.total_length == sum(
        max(len(t), 1) for t in store.bm25_tokens([c.text for _, c in snapshot.iter_chunks()]))
    tokens = store.bm25_tokens(["How long do domestic cats sleep?"])[0]
    theirs, ours = reader.keyword_search(tokens, 4), snapshot.keyword_search(tokens, 4)
    assert [i for i, _ in theirs] == [i for i, _ in ours] == snapshot.manifest.documents["cats.html"].chunk_ids
    assert [s for _, s in theirs] == pytest.approx([s for _, s in ours], rel=1e-5)


def test_a_new_file_is_looked_up_in_a_few_batched_queries_not_one_per_text(
        tmp_path: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Milvus call costs milliseconds (a network round trip to a server): ingest asks whether the index holds
    a new file's chunk texts, sentences and words in batches. The real client's `query` is wrapped to count
    calls (a spy: every call still goes to Milvus Lite)."""
    corpus = write_corpus(tmp_path / "corpus", TINY_CORPUS)
    settings = milvus_settings(tmp_path, corpus)
    ingest(settings, embedder=embedder)
    sentences = [f"Report {n} says that the harbour of town {n} was rebuilt in {1900 + n}." for n in range(40)]
    (corpus / "harbours.txt").write_text(" ".join(sentences) + " Snow has not fallen there since 1893.")
    connection = milvus.client(settings)
    queries: list[str] = []
    real_query = connection.query

    def counted(collection: str, **kwargs):  # type: ignore[no-untyped-def]
        queries.append(kwargs.get("filter", ""))
        return real_query(collection, **kwargs)

    monkeypatch.setattr(connection, "query", counted)
    report = ingest(settings, embedder=embedder)

    assert report.added == ["harbours.txt"] and report.embedded_sentences == 41
    lookups = [q for q in queries if q.startswith(("text_key in", "key in"))]
    # The new file's chunk texts (for their vectors, then for their sentence rows), then its 41 sentences.
    assert [q.split(" in ")[0] for q in lookups] == ["text_key", "text_key", "key"], queries
    assert not [q for q in queries if "==" in q], queries  # no per-text query
    answer = Assistant(settings, embedder=embedder).ask("When was the harbour of town 7 rebuilt?")
    assert answer.text.startswith("1907"), answer.text
