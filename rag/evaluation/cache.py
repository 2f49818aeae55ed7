"""The index an eval runs on: built once per corpus contents, index settings and indexing code, under
~/.cache/rag-eval, and reused by every later run (the repo's index/ is never touched)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from rag.evaluation.datasets import EvalError, Progress
from rag.settings import Settings

CACHE_KEEP = 10  # cached eval indexes kept (least recently used are removed)



def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rag-eval"


def index_key(corpus_dir: Path, settings: Settings) -> str:
    """Hash of what an index is built from: every corpus file (path and bytes), the index settings, and
    the source of the modules that turn files into index entries (a code change must not reuse a stale
    index)."""
    import inspect

    from rag import chunking, embedding, ingest, loaders, parsing, pdf_tables, store
    from rag.language import get_language

    digest = hashlib.sha256()
    digest.update(json.dumps(settings.index_signature(), sort_keys=True, default=str).encode())
    modules = [loaders, parsing, pdf_tables, chunking, embedding, ingest, store]
    if settings.store_backend == "milvus":  # its index lives beside the local one, in the same folder
        from rag.backends import milvus

        modules.append(milvus)
    for module in modules:
        digest.update(Path(module.__file__).read_bytes())
    # Of the language pack, only sentence splitting and the vocabulary's words shape the index; its question
    # rules do not, so editing them must not force a re-embedding.
    pack = type(get_language(settings.language))
    for method in (pack.split_sentences, pack._blocks, pack.corpus_words, pack.words):
        digest.update(inspect.getsource(method).encode())
    digest.update(pack.word.pattern.encode())
    for path in sorted(p for p in corpus_dir.rglob("*") if p.is_file()):
        digest.update(path.relative_to(corpus_dir).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:20]


@contextlib.contextmanager
def _locked(folder: Path, blocking: bool = True) -> Iterator[bool]:
    """An advisory lock on a cache entry: two evals share one build, and pruning skips entries in use."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "eval.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cached_index(settings: Settings, corpus_dir: Path, cache_dir: Path, embedder, progress: Progress | None = None) -> Settings:
    """Settings pointing at an index of `corpus_dir` under `cache_dir`, built on first use and reused by
    every later run with the same corpus contents, index settings and indexing code."""
    from rag.ingest import IngestError, ingest

    if not corpus_dir.is_dir():
        raise EvalError(f"corpus {corpus_dir} is not a folder: pass --corpus DIR with the documents the questions are about")
    folder = cache_dir / index_key(corpus_dir, settings)
    settings = settings.model_copy(update={"corpus_dir": corpus_dir, "index_dir": folder / "index"})
    tell = (lambda fraction, message: progress(f"indexing {corpus_dir.name}: {message}", round(fraction * 100), 100)) if progress else None
    with _locked(folder):
        try:
            ingest(settings, embedder=embedder, progress=tell)
        except IngestError as err:
            raise EvalError(f"cannot index {corpus_dir}: {err}") from None
        os.utime(folder)
    _prune(cache_dir, keep=CACHE_KEEP)
    return settings


def _prune(cache_dir: Path, keep: int) -> None:
    entries = sorted((p for p in cache_dir.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[keep:]:
        with _locked(old, blocking=False) as free:
            if free:
                shutil.rmtree(old, ignore_errors=True)


