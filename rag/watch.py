"""Follow corpus/ and re-index in the background: watchdog events, debounced, one re-index at a time.

An event only pushes a deadline back; one worker thread re-indexes once no event has arrived for
`watch_debounce_s` seconds, so copying a hundred files costs one ingest, not a hundred. Ingest diffs by
content hash, so an event that changed nothing (a touch, an editor's backup file) costs a hash pass and
publishes nothing. Events that arrive during a re-index schedule another one after it. Readers are never
involved: they pick up the published version on their next question.

`rag watch` runs this in the foreground; the web app starts the same `CorpusWatcher`.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from watchdog.events import (
    EVENT_TYPE_CLOSED,
    EVENT_TYPE_CREATED,
    EVENT_TYPE_DELETED,
    EVENT_TYPE_MODIFIED,
    EVENT_TYPE_MOVED,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from rag.embedding import Embedder
from rag.ingest import IngestError, LockBusy, ingest
from rag.settings import Settings

log = logging.getLogger(__name__)

# Reading a file (as ingest does) raises "opened" and "closed_no_write": reacting to those would loop.
_CHANGES = {EVENT_TYPE_CREATED, EVENT_TYPE_DELETED, EVENT_TYPE_MODIFIED, EVENT_TYPE_MOVED, EVENT_TYPE_CLOSED}


class _Events(FileSystemEventHandler):
    def __init__(self, watcher: CorpusWatcher) -> None:
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in _CHANGES or (event.is_directory and event.event_type == EVENT_TYPE_MODIFIED):
            return
        paths = [event.src_path, getattr(event, "dest_path", "") or ""]
        if any(p and self.watcher.visible(Path(str(p))) for p in paths):
            self.watcher.changed()


class CorpusWatcher:
    """Watch settings.corpus_dir and re-index after each burst of changes, in a background thread.

    `on_change()` is what runs after a burst settles; by default `ingest(settings, embedder=embedder)`.
    The web app passes its own (which shares the chat's embedder and orders re-indexes with its
    buttons). If it raises `LockBusy` (another process is writing the index) the watcher tries again
    after the debounce interval; any other error is logged, kept in `last_error`, and the watcher goes on.
    """

    def __init__(
        self,
        settings: Settings,
        on_change: Callable[[], object] | None = None,
        *,
        embedder: Embedder | None = None,
    ) -> None:
        self.settings = settings
        self.debounce = settings.watch_debounce_s
        self._reindex = on_change or (lambda: ingest(settings, embedder=embedder))
        self._cond = threading.Condition()
        self._due: float | None = None  # monotonic time of the next re-index; None: nothing pending
        self._running = False
        self._stopping = False
        self._observer: Observer | None = None
        self._thread: threading.Thread | None = None
        self.runs = 0  # re-indexes attempted
        self.last_result: object = None
        self.last_error: BaseException | None = None

    def visible(self, path: Path) -> bool:
        """A path ingest would look at: inside the corpus and not hidden (uploads are staged as dot-files)."""
        try:
            rel = path.resolve().relative_to(self.settings.corpus_dir.resolve())
        except ValueError:
            return False
        return not any(part.startswith(".") for part in rel.parts)

    def start(self, sync: bool = True) -> CorpusWatcher:
        """Start watching; with `sync`, re-index once right away (changes made while nobody watched)."""
        corpus = self.settings.corpus_dir
        if not corpus.is_dir():
            raise IngestError(f"corpus folder {corpus} does not exist: create it and put documents in it")
        self._observer = Observer()
        self._observer.schedule(_Events(self), str(corpus), recursive=True)
        self._observer.start()
        self._thread = threading.Thread(target=self._work, name="corpus-watcher", daemon=True)
        self._thread.start()
        if sync:
            self.changed(delay=0.0)
        return self

    def changed(self, delay: float | None = None) -> None:
        """Note a change: re-index once nothing has changed for `delay` (default: the debounce interval)."""
        with self._cond:
            self._due = time.monotonic() + (self.debounce if delay is None else delay)
            self._cond.notify_all()

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and (self._due is None or time.monotonic() < self._due):
                    self._cond.wait(None if self._due is None else self._due - time.monotonic())
                if self._stopping:
                    return
                self._due = None
                self._running = True
            result, error = None, None
            try:
                result = self._reindex()
            except LockBusy as err:
                log.info("%s; the watcher tries again in %.1f s", err, self.debounce)
                error = err
                self.changed()
            except Exception as err:  # keep watching: the next change may fix it (e.g. a folder re-created)
                log.warning("re-index after a change in %s failed: %s", self.settings.corpus_dir, err)
                error = err
            with self._cond:
                self._running = False
                self.runs += 1
                self.last_result, self.last_error = result, error
                self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no re-index is pending or running; False if that took longer than `timeout`."""
        with self._cond:
            return self._cond.wait_for(lambda: self._due is None and not self._running, timeout)

    def stop(self, timeout: float = 60.0) -> None:
        """Stop watching; a re-index in progress is allowed to finish (up to `timeout`)."""
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> CorpusWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def follow(settings: Settings) -> int:
    """`rag watch`: re-index on every settled change, print each summary, until Ctrl-C or SIGTERM."""

    def reindex() -> object:
        report = ingest(settings)
        for skipped in report.skipped:
            print(f"skipped {skipped.path}: {skipped.reason}", file=sys.stderr, flush=True)
        print(report.summary(), flush=True)
        return report

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    try:
        watcher = CorpusWatcher(settings, reindex).start()
    except IngestError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"watching {settings.corpus_dir} (re-index {settings.watch_debounce_s:g} s after the last change); "
          "Ctrl-C stops", file=sys.stderr, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("stopping", file=sys.stderr, flush=True)
    finally:
        watcher.stop()
    return 0
