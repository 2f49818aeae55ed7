"""The Documents tab's logic without a browser: index status and rebuild, the app's re-index ordering, RAG_AUTH."""

from __future__ import annotations

import threading

import pytest
from pydantic import ValidationError

from rag import store
from rag.settings import Settings
from rag.uploads import store_upload
from rag.web_documents import Reindexer, index_status
from tests.conftest import segment_file


@pytest.mark.parametrize("value", ["alice", ":s3cret", "alice:", " :x"])
def test_malformed_rag_auth_is_refused_with_the_fix(value, monkeypatch) -> None:
    monkeypatch.setenv("RAG_AUTH", value)
    with pytest.raises(ValidationError) as err:
        Settings()
    assert ("RAG_AUTH must be 'user:password' with a non-empty user and password (e.g. RAG_AUTH=alice:s3cret); "
            "unset it to run the web app without a login") in str(err.value)


def test_rag_auth_splits_at_the_first_colon(monkeypatch) -> None:
    monkeypatch.setenv("RAG_AUTH", "alice:pa:ss")
    assert Settings().auth_pair() == ("alice", "pa:ss")
    monkeypatch.delenv("RAG_AUTH")
    assert Settings().auth_pair() is None


def test_index_status_shows_drift_and_offers_a_rebuild_when_damaged(tiny_index, embedder) -> None:
    """The tab's status without a browser: in sync, then drift, then a damaged file and the rebuild."""
    settings = tiny_index
    status = index_status(settings)
    assert (status.damaged, status.problem, status.drift) == (False, None, [])
    assert [row[:3] for row in status.documents] == [["cats.html", 1, 1], ["conference.txt", 1, 1], ["weather.md", 1, 1]]
    assert "In sync with the corpus folder." in status.markdown()

    (settings.corpus_dir / "new.txt").write_text("A new note.")
    status = index_status(settings)
    assert [line for line in status.drift if "new.txt" in line] and not status.damaged
    assert "**Out of date with the corpus folder** (press Re-index)" in status.markdown()

    vectors = segment_file(settings.index_dir, store.VECTORS)
    vectors.write_bytes(vectors.read_bytes()[:-100])  # truncated
    status = index_status(settings)
    assert status.damaged and status.version is None
    assert status.problem.startswith(f"index file {vectors} is damaged")
    assert status.problem.endswith(". Press Rebuild index to build it again from the corpus folder.")

    message = Reindexer(settings, embedder=lambda: embedder).run(rebuild=True)
    assert message.startswith(f"Index {store.current_version(settings.index_dir)}: added ")
    status = index_status(settings)
    assert (status.damaged, status.problem, status.drift) == (False, None, [])
    assert [row[0] for row in status.documents] == ["cats.html", "conference.txt", "new.txt", "weather.md"]


def test_an_upload_holding_the_reindexer_is_not_split_by_the_watcher(tiny_index, embedder) -> None:
    """The watcher's re-index (Reindexer.update in another thread) waits until an upload has finished."""
    settings = tiny_index
    reindexer = Reindexer(settings, embedder=lambda: embedder)
    reports = []
    watcher = threading.Thread(target=lambda: reports.append(reindexer.update()))
    with reindexer.hold():
        assert store_upload(settings, "one.txt", b"The first note.").status == "added"
        watcher.start()
        watcher.join(0.5)
        assert watcher.is_alive() and reindexer.busy is False  # held by this thread: not busy for it
        assert store_upload(settings, "two.txt", b"The second note.").status == "added"
        message = reindexer.run()
    watcher.join(30)
    assert "added 2, updated 0, removed 0," in message  # both files in one re-index
    assert reports[0].added == [] and not reports[0].changed  # the watcher found nothing left to do
