"""Parse files in worker processes, so that no single file can stop, hang or exhaust an ingest.

Real-world files break parsers in ways their authors never declared (pypdf's LimitReachedError, a
segfault in a C library, a PDF that takes an hour). Each file is parsed by `rag.loaders.load_document`
in a worker of a pebble `ProcessPool`:
  - any exception becomes a `SkippedFile` whose reason says what went wrong and what to do;
  - a parse running past `Settings.parse_timeout_s` is stopped (pebble kills that worker and starts a
    fresh one) and skipped;
  - each worker runs under RLIMIT_AS (`Settings.parse_memory_mb` more than it maps when it starts): a file
    needing more raises MemoryError
    or kills its worker, and is skipped; a worker that dies for any reason is replaced.
Results come back in the order the files were given, so a parallel run equals a serial one.

pebble (not concurrent.futures) because ProcessPoolExecutor can neither time out nor kill one task, and
it breaks the whole pool when a worker dies. Workers start from a forkserver: forking the ingest process
itself would copy torch's threads and address space (which RLIMIT_AS would then count).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import resource
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

from rag.loaders import LoadError, LoadOptions, SkippedFile, SourceDocument, load_document

log = logging.getLogger(__name__)

Outcome = SourceDocument | SkippedFile
Job = tuple[str, Path, bytes]  # (doc_id, path, the file's bytes)

_KINDS = {".pdf": "PDF", ".docx": "Word", ".pptx": "PowerPoint", ".xlsx": "Excel", ".odt": "OpenDocument",
          ".csv": "CSV", ".html": "HTML", ".htm": "HTML"}


def worker_count(workers: int, jobs: int) -> int:
    """`workers` (0: one per CPU core), never more than there are files."""
    return max(1, min(workers or os.cpu_count() or 1, jobs))


def _limit_memory(memory_mb: int) -> None:
    """Pool initializer: cap this worker's address space so one file cannot exhaust the machine.

    The cap is `memory_mb` on top of what the worker already maps: a worker starts with whatever the
    main module imported (torch and gradio map gigabytes of address space), which is not the parser's.
    """
    limit = (_mapped_bytes() + memory_mb * 1024 * 1024)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _mapped_bytes() -> int:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[0]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return 0


def _parse(doc_id: str, path: Path, data: bytes, corpus_dir: Path, options: LoadOptions, memory_mb: int) -> Outcome:
    """Runs in a worker: the document, or a SkippedFile whatever the parser raised."""
    try:
        return load_document(path, corpus_dir, data, options)
    except LoadError as err:
        return SkippedFile(doc_id, str(err))
    except MemoryError:
        return SkippedFile(doc_id, _memory_reason(memory_mb))
    except RecursionError:
        return SkippedFile(doc_id, f"the {_kind(path)} is nested too deeply to parse: re-save or re-export it, "
                                   "or remove it")
    except Exception as err:  # noqa: BLE001 - any parser bug must skip this file, never stop the ingest
        message = " ".join(str(err).split())[:200]
        return SkippedFile(
            doc_id,
            f"the {_kind(path)} parser failed unexpectedly ({type(err).__name__}: {message}): the file may be "
            "damaged; open and re-save (or re-export) it, or remove it",
        )


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    return f"{_KINDS[suffix]} file" if suffix in _KINDS else "file"


def _memory_reason(memory_mb: int) -> str:
    return (f"parsing needed more memory than the {memory_mb} MB a parser may use (RAG_PARSE_MEMORY_MB), so it "
            "was stopped: split the file, or raise RAG_PARSE_MEMORY_MB")


def _timeout_reason(timeout_s: float) -> str:
    return (f"parsing took longer than {timeout_s:g} s (RAG_PARSE_TIMEOUT_S), so it was stopped: the file may be "
            "damaged or very large; re-export or split it, or raise RAG_PARSE_TIMEOUT_S")


def parse_files(
    jobs: Iterable[Job],
    corpus_dir: Path,
    options: LoadOptions,
    *,
    workers: int,
    timeout_s: float,
    memory_mb: int,
    total: int | None = None,
) -> Iterator[tuple[str, Outcome]]:
    """(doc_id, document or SkippedFile) for each job, in the jobs' order, parsed in parallel.

    `jobs` is consumed lazily, a few files ahead of the results, so file bytes are not all held at once.
    """
    import pebble  # here, so that `rag` commands that parse nothing do not import it

    jobs = iter(jobs)
    count = worker_count(workers, total if total is not None else workers or os.cpu_count() or 1)
    context = multiprocessing.get_context("forkserver")
    pending: deque[tuple[str, Path, object]] = deque()
    with pebble.ProcessPool(max_workers=count, initializer=_limit_memory, initargs=(memory_mb,),
                            context=context) as pool:
        try:
            while True:
                while len(pending) < 2 * count:
                    job = next(jobs, None)
                    if job is None:
                        break
                    doc_id, path, data = job
                    future = pool.submit(_parse, timeout_s, doc_id, path, data, corpus_dir, options, memory_mb)
                    pending.append((doc_id, path, future))
                if not pending:
                    break
                doc_id, path, future = pending.popleft()
                yield doc_id, _outcome(doc_id, path, future, timeout_s, memory_mb)
        finally:
            pool.stop()  # a consumer that stops early (an exception, Ctrl-C) leaves no worker behind
            pool.join()


def _outcome(doc_id: str, path: Path, future, timeout_s: float, memory_mb: int) -> Outcome:
    import pebble

    try:
        outcome = future.result()
    except FutureTimeout:
        outcome = SkippedFile(doc_id, _timeout_reason(timeout_s))
    except pebble.ProcessExpired as err:
        signal = -err.exitcode if err.exitcode and err.exitcode < 0 else None
        how = f"was killed by signal {signal}" if signal else f"exited with code {err.exitcode}"
        outcome = SkippedFile(
            doc_id,
            f"the {_kind(path)} parser crashed (its process {how}; it may have hit the {memory_mb} MB memory bound, "
            "RAG_PARSE_MEMORY_MB): the file may be damaged; open and re-save (or re-export) it, or remove it",
        )
    except Exception as err:  # noqa: BLE001 - e.g. a result that cannot be sent back; skip, never stop
        outcome = SkippedFile(doc_id, f"parsing failed ({type(err).__name__}: {err}): re-save the file or remove it")
    if isinstance(outcome, SkippedFile):
        log.warning("skipped %s: %s", doc_id, outcome.reason)
    return outcome


def parse_one(path: Path, corpus_dir: Path, data: bytes, settings) -> Outcome:
    """One file under the same time and memory bounds as ingest (uploads use this)."""
    doc_id = path.relative_to(corpus_dir).as_posix() if path.is_relative_to(corpus_dir) else path.name
    results = parse_files([(doc_id, path, data)], corpus_dir, LoadOptions.from_settings(settings), workers=1,
                          timeout_s=settings.parse_timeout_s, memory_mb=settings.parse_memory_mb, total=1)
    return list(results)[0][1]
