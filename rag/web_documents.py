"""The Documents tab: what is indexed, what was skipped, upload, delete, re-index, and the index's health.

The tab only renders and routes: validation lives in rag/uploads.py, indexing in rag/ingest.py. Every
change to corpus/ made here is followed by an ingest in the event's worker thread with a Gradio progress
bar; the chat's Assistant re-reads index/CURRENT before each question, so it answers from the new
version without a restart.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import gradio as gr
import pandas as pd

from rag import backends, store
from rag.render import code, escape
from rag.embedding import Embedder, load_embedder
from rag.ingest import IngestError, IngestReport, check, ingest
from rag.loaders import SUPPORTED_SUFFIXES
from rag.settings import Settings
from rag.uploads import REPLACE_LABEL, UploadOutcome, UploadRejected, corpus_files, delete_document, store_uploads

log = logging.getLogger(__name__)

DOCUMENT_COLUMNS = ["Document", "Pages", "Chunks", "Indexed"]
SKIPPED_COLUMNS = ["File", "Reason"]


class Reindexer:
    """Runs ingest for the app one at a time (the tab and the corpus watcher share it).

    ingest's lock file guards against other processes; this lock orders the threads of this one, and an
    upload or delete holds it from the first file written to the end of its re-index, so the watcher's
    re-index (on_change=`update`) runs before or after it, never splitting it. The embedder is the
    chat's when it has one, else loaded once here, so a re-index does not reload the model.
    """

    def __init__(self, settings: Settings, embedder: Callable[[], Embedder | None] = lambda: None,
                 public: Callable[[str], str] = lambda message: message) -> None:
        self.settings = settings
        self.public = public  # an error message as the browser may see it (rag.web: no server paths)
        self._embedder_source = embedder
        self._embedder: Embedder | None = None
        self._lock = threading.RLock()
        self._depth = 0
        self._owner: int | None = None  # thread holding the lock
        self.last_message: str | None = None

    @property
    def busy(self) -> bool:
        """Another thread of this app is re-indexing (or writing uploads before its re-index)."""
        owner = self._owner
        return owner is not None and owner != threading.get_ident()

    @contextmanager
    def hold(self) -> Iterator[None]:
        with self._lock:
            self._owner = threading.get_ident()
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self._owner = None

    def embedder(self) -> Embedder:
        shared = self._embedder_source()
        if shared is not None:
            return shared
        if self._embedder is None:
            self._embedder = load_embedder(self.settings.embed_model)
        return self._embedder

    def update(self, *, rebuild: bool = False, progress: Callable[[float, str], None] | None = None) -> IngestReport:
        """One ingest, after any other of this app; raises IngestError (the watcher retries a busy lock)."""
        if progress and self.busy:
            progress(0.0, "waiting for the re-index in progress")
        with self.hold():
            return ingest(self.settings, rebuild=rebuild, embedder=self.embedder(), progress=progress)

    def run(self, *, rebuild: bool = False, progress: Callable[[float, str], None] | None = None) -> str:
        """`update` for a person: the summary, or why the index could not be brought up to date."""
        try:
            report = self.update(rebuild=rebuild, progress=progress)
        except IngestError as err:
            log.warning("re-index failed: %s", err)
            self.last_message = self.public(f"Re-index failed: {err}")
        else:
            skipped = f"; skipped {', '.join(s.path for s in report.skipped)}" if report.skipped else ""
            self.last_message = f"Index {report.version}: {report.summary()}{skipped}"
        log.info("%s", self.last_message)
        return self.last_message


@dataclass
class IndexStatus:
    """What the tab shows about index/: from the live manifest, plus drift against corpus/."""

    version: str | None = None
    documents: list[list] = field(default_factory=list)  # rows of DOCUMENT_COLUMNS
    skipped: list[list] = field(default_factory=list)  # rows of SKIPPED_COLUMNS
    chunks: int = 0
    built_at: float | None = None
    drift: list[str] = field(default_factory=list)
    problem: str | None = None  # the index cannot be used as it is
    damaged: bool = False  # a rebuild is the fix

    def markdown(self, busy: bool = False, public: Callable[[str], str] = lambda message: message) -> str:
        """The status as Markdown; `public` rewrites messages for the browser (no server paths)."""
        lines = []
        if self.version:
            lines.append(
                f"**Index** `{self.version}` · {len(self.documents)} documents · {self.chunks} chunks · "
                f"{len(self.skipped)} skipped · built {_when(self.built_at)}"
            )
        if self.problem:
            lines.append(f"**Index problem:** {escape(public(self.problem))}")
        elif self.drift:
            lines.append("**Out of date with the corpus folder** (press Re-index): "
                         + "; ".join(escape(public(d)) for d in self.drift))
        elif self.version:
            lines.append("In sync with the corpus folder.")
        if busy:
            lines.append("*A re-index is running.*")
        return "\n\n".join(lines)


def _when(timestamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp)) if timestamp else "-"


def index_status(settings: Settings) -> IndexStatus:
    """Open the live index the way the chat does (checksums included) and describe it."""
    status = IndexStatus()
    try:
        snapshot = backends.open_index(settings)
    except store.IndexNotFound as err:
        status.problem = f"{err} (or press Re-index)"
        return status
    except store.IndexProblem as err:  # damaged, or built with other settings: the chat cannot use it
        status.problem = f"{err}. Press Rebuild index to build it again from the corpus folder."
        status.damaged = True
        return status
    manifest = snapshot.manifest
    status.version = snapshot.version
    status.chunks = manifest.chunk_count
    status.built_at = manifest.created_at
    status.documents = [[doc_id, entry.pages, len(entry.chunk_ids), _when(entry.indexed_at)]
                        for doc_id, entry in sorted(manifest.documents.items())]
    status.skipped = [[s["path"], s["reason"]] for s in manifest.skipped]
    try:
        status.drift = check(settings)
    except store.IndexProblem as err:  # changed under us between load and check
        status.problem = str(err)
    return status


def outcomes_markdown(outcomes: list[UploadOutcome]) -> str:
    """One line per file; a refused one is shown as an error (red box, ⚠), not as a plain bullet."""
    return "\n".join(f"- {escape(o.message)}" if o.ok else
                     f"<div class='refused' role='alert'>⚠ {escape(o.message)}</div>\n" for o in outcomes)


def upload_hint(max_mb: float) -> str:
    """The upload instructions, from the one list of types the loaders read."""
    return (f"**Upload** {', '.join(SUPPORTED_SUFFIXES)} files, up to {max_mb:g} MB each. "
            "Each file is checked on its own; a file that is refused changes nothing.")


def documents_tab(settings: Settings, reindexer: Reindexer) -> gr.Tab:
    """Build the Documents tab inside the current gr.Blocks / gr.Tabs context."""

    def refresh():
        status = index_status(settings)
        files = corpus_files(settings)
        return (
            status.markdown(reindexer.busy, reindexer.public),
            pd.DataFrame(status.documents, columns=DOCUMENT_COLUMNS),
            gr.update(value=pd.DataFrame(status.skipped, columns=SKIPPED_COLUMNS), visible=bool(status.skipped)),
            gr.update(choices=files, value=None),
            gr.update(visible=status.damaged),
        )

    def reindex_with(progress: gr.Progress, rebuild: bool = False) -> str:
        return reindexer.run(rebuild=rebuild, progress=lambda fraction, message: progress(fraction, desc=message))

    def on_upload(paths: list[str] | None, replace: bool, progress=gr.Progress()):
        if not paths:
            return ("Choose one or more files first.", None, *refresh())
        with reindexer.hold():
            outcomes = store_uploads(settings, paths, replace=replace)
            message = outcomes_markdown([dataclasses.replace(o, message=reindexer.public(o.message)) for o in outcomes])
            if any(o.status in ("added", "replaced") for o in outcomes):
                message += "\n\n" + escape(reindex_with(progress))
        return (message, None, *refresh())

    def on_delete_ask(doc_id: str | None):
        if not doc_id:
            return "Pick a document to delete first.", gr.update(visible=False), "", None
        question = (f"Delete {code(doc_id)}? The file is removed from the corpus folder and from the index; "
                    "this cannot be undone here.")
        return "", gr.update(visible=True), question, doc_id

    def on_delete_confirm(doc_id: str | None, progress=gr.Progress()):
        with reindexer.hold():
            try:
                message = escape(reindexer.public(delete_document(settings, doc_id or "")))
            except UploadRejected as err:
                message = escape(reindexer.public(str(err)))
            else:
                message += "\n\n" + escape(reindex_with(progress))
        return (message, gr.update(visible=False), *refresh())

    def on_reindex(progress=gr.Progress()):
        return (escape(reindex_with(progress)), *refresh())

    def on_rebuild(progress=gr.Progress()):
        return (escape(reindex_with(progress, rebuild=True)), *refresh())

    initial = index_status(settings)
    with gr.Tab("Documents", id="documents", elem_id="documents-tab") as tab:
        status_md = gr.Markdown(initial.markdown(public=reindexer.public), elem_id="index-status")
        with gr.Row():
            reindex = gr.Button("Re-index", elem_id="reindex", scale=0)
            rebuild = gr.Button("Rebuild index", variant="stop", visible=initial.damaged, elem_id="rebuild", scale=0)
            reload_ = gr.Button("Refresh", elem_id="refresh-documents", scale=0)
        message = gr.Markdown(elem_id="documents-message")
        documents = gr.Dataframe(pd.DataFrame(initial.documents, columns=DOCUMENT_COLUMNS), label="Indexed documents",
                                 interactive=False, elem_id="documents-table")
        # Shown only when a file was skipped (bare headers say nothing); the status line gives the count.
        skipped = gr.Dataframe(pd.DataFrame(initial.skipped, columns=SKIPPED_COLUMNS),
                               label="Skipped at the last ingest", interactive=False, elem_id="skipped-table",
                               visible=bool(initial.skipped))
        with gr.Row():
            with gr.Column():
                gr.Markdown(upload_hint(settings.max_upload_mb))
                files = gr.File(file_count="multiple", label="Files to add", elem_id="upload-files")
                replace = gr.Checkbox(label=REPLACE_LABEL, value=False, elem_id="upload-replace")
                upload = gr.Button("Upload and index", variant="primary", elem_id="upload")
            with gr.Column():
                gr.Markdown("**Delete** a file from the corpus folder.")
                # Choices are filled when the page loads (after the login, if any), not written into the app's
                # config and API description, which the login page carried.
                choice = gr.Dropdown(choices=[], value=None, label="Document", elem_id="delete-choice")
                delete = gr.Button("Delete…", elem_id="delete")
                pending = gr.State(None)  # the document the confirmation is about
                with gr.Group(visible=False, elem_id="delete-confirm") as confirm:
                    question = gr.Markdown()
                    with gr.Row():
                        yes = gr.Button("Yes, delete", variant="stop", elem_id="delete-yes")
                        cancel = gr.Button("Cancel", elem_id="delete-cancel")

    shown = [status_md, documents, skipped, choice, rebuild]
    gr.on(None, refresh, None, shown)  # no trigger: on page load
    tab.select(refresh, None, shown)
    reload_.click(refresh, None, shown)
    # One progress bar, over the documents table, instead of one over every output.
    upload.click(on_upload, [files, replace], [message, files, *shown], show_progress_on=documents)
    delete.click(on_delete_ask, choice, [message, confirm, question, pending])
    cancel.click(lambda: gr.update(visible=False), None, confirm)
    yes.click(on_delete_confirm, pending, [message, confirm, *shown], show_progress_on=documents)
    reindex.click(on_reindex, None, [message, *shown], show_progress_on=documents)
    rebuild.click(on_rebuild, None, [message, *shown], show_progress_on=documents)
    return tab
