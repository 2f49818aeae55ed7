"""The segment store: what a load verifies, merging (policy, and readers holding merged-away segments), and an
index of the previous format. Real files, the real embedder, real FAISS and SQLite files on disk."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from rag import store
from rag.chat import Assistant
from rag.embedding import Embedder
from rag.index_reader import IndexReader
from rag.ingest import ingest
from rag.settings import Settings
from tests.conftest import TINY_CORPUS

QUESTION = "How many agreements were signed at the trade conference?"


def entry(name: str, rows: int, deleted: int = 0) -> store.SegmentEntry:
    return store.SegmentEntry(name, rows, 0, rows - 1, {}, list(range(deleted)))


def test_the_merge_policy_merges_a_full_tier_smallest_first_and_rewrites_mostly_deleted_segments() -> None:
    policy = store.MergePolicy(factor=3, floor=10, max_deleted=0.5)
    assert [policy.tier(n) for n in (0, 9, 10, 29, 30, 89, 90)] == [0, 0, 1, 1, 2, 2, 3]
    assert policy.plan([entry("a", 5), entry("b", 50), entry("c", 5)]) == []
    assert policy.plan([entry("a", 5), entry("b", 50), entry("c", 4), entry("d", 6), entry("e", 8)]) == ["c", "a", "d"]
    assert policy.plan([entry("big", 40), entry("b", 50), entry("c", 60), entry("s", 5)]) == ["big", "b", "c"]
    # 60 of 100 rows deleted: 40 live (tier 2) is rewritten alone; 50 of 100 is not more than half.
    assert policy.plan([entry("x", 100, deleted=60), entry("y", 100, deleted=50)]) == ["x"]


def test_a_snapshot_keeps_reading_after_a_merge_deletes_its_segments(tiny_settings: Settings,
                                                                     embedder: Embedder) -> None:
    """POSIX keeps an open file readable after unlink: a reader that loaded before a merge answers from its
    snapshot (SQLite connection and memory maps opened at load) after the merged segments are deleted."""
    settings = tiny_settings.model_copy(update={"segment_merge_factor": 2})
    ingest(settings, embedder=embedder)
    old = store.load(settings.index_dir, settings.index_signature())  # nothing read from it before the merge
    same = store.load(settings.index_dir, settings.index_signature())
    [first] = same.manifest.segments
    conference = same.manifest.documents["conference.txt"].chunk_ids[0]
    tokens = store.bm25_tokens([QUESTION])[0]
    before = (same.chunk(conference), same.keyword_search(tokens, 3), same.sentence_rows(conference),
              same.word_vectors(["agreements"])["agreements"])
    assert before[1] and before[2]

    (settings.corpus_dir / "ferries.txt").write_text("Ferries leave twice a day from pier 7.", encoding="utf-8")
    report = ingest(settings, embedder=embedder)
    live = store.load(settings.index_dir, settings.index_signature())
    [merged] = live.manifest.segments
    assert len(report.merged) == 1 and len(report.merged[0]) == 2 and first.name in report.merged[0]
    assert report.version == live.version == store.current_version(settings.index_dir)
    assert (merged.rows, merged.deleted) == (4, [])
    assert sorted(p.name for p in (settings.index_dir / "segments").iterdir()) == [merged.name]
    assert sorted(p.name for p in (settings.index_dir / "versions").iterdir()) == [live.version]
    assert not (settings.index_dir / "segments" / first.name).exists()
    # The merge keeps ids and vectors.
    assert live.manifest.documents["conference.txt"].chunk_ids == [conference]
    np.testing.assert_array_equal(live.vector(conference), same.vector(conference))

    after = (old.chunk(conference), old.keyword_search(tokens, 3), old.sentence_rows(conference),
             old.word_vectors(["agreements"])["agreements"])
    assert after[0] == before[0] and after[1] == before[1]
    assert [(a, b) for a, b, _ in after[2]] == [(a, b) for a, b, _ in before[2]]
    np.testing.assert_array_equal(after[3], before[3])
    assert old.dense_search(old.vector(conference), 1, None) == [(conference, pytest.approx(1.0, abs=1e-5))]
    assert Assistant(settings, embedder).ask(QUESTION).short_answer == "33"


def test_a_load_hashes_only_a_file_whose_size_or_time_changed(tiny_index: Settings, monkeypatch) -> None:
    hashed: list[Path] = []
    real = store.sha256_file
    monkeypatch.setattr(store, "sha256_file", lambda path: hashed.append(path) or real(path))
    snapshot = store.load(tiny_index.index_dir, tiny_index.index_signature())
    assert isinstance(snapshot, IndexReader)  # the interface the Retriever is typed against
    snapshot.term_stats()  # terms.json is read whole on first use, and its checksum compared then
    assert hashed == []  # sizes and modification times as written: nothing hashed

    hashed.clear()
    vectors = snapshot.segments[0].root / "vectors.faiss"
    os.utime(vectors, ns=(vectors.stat().st_atime_ns, vectors.stat().st_mtime_ns + 1_000_000_000))  # e.g. `cp -r`
    store.load(tiny_index.index_dir, tiny_index.index_signature())
    assert hashed == [vectors]  # same bytes: loads
    assert store.load(tiny_index.index_dir, tiny_index.index_signature()).chunk_count() == 3


def test_an_index_of_the_previous_format_is_named_then_rebuilt(tiny_settings: Settings, embedder: Embedder) -> None:
    """A format-4 index, the last before segments: one folder per version (vectors.faiss, chunks.jsonl, ...)."""
    index = tiny_settings.index_dir
    old = index / "versions" / "v20250101-000000-1-000000001"
    old.mkdir(parents=True)
    documents = {name: {"hash": store.sha256_file(tiny_settings.corpus_dir / name), "chunk_ids": [n], "pages": 1,
                        "indexed_at": 0.0} for n, name in enumerate(sorted(TINY_CORPUS))}
    (old / "chunks.jsonl").write_text("")
    (old / "manifest.json").write_text(json.dumps({
        "format_version": 4, "created_at": 0.0, **tiny_settings.index_signature(), "dimension": 384,
        "counts": {"documents": 3, "chunks": 3, "skipped": 0}, "next_id": 3, "documents": documents,
        "skipped": [], "skipped_hashes": {}, "checksums": {"chunks.jsonl": store.sha256_file(old / "chunks.jsonl")},
    }))
    (index / "CURRENT").write_text(old.name + "\n")
    message = "the index was built with other settings (format_version: index has 4, this code reads 5): run `rag ingest`"
    with pytest.raises(store.IndexMismatch) as err:
        store.load(index, tiny_settings.index_signature())
    assert str(err.value) == message

    report = ingest(tiny_settings, embedder=embedder)
    assert report.rebuilt == message and report.published
    assert (report.unchanged, report.embedded_chunks) == (sorted(TINY_CORPUS), 3)
    assert sorted(p.name for p in (index / "versions").iterdir()) == [report.version]  # the old folder is gone
    assert min(report_ids for d in store.load(index, tiny_settings.index_signature()).manifest.documents.values()
               for report_ids in d.chunk_ids) == 3  # ids go on from the old index's next_id
    assert Assistant(tiny_settings, embedder).ask(QUESTION).short_answer == "33"
