"""The Gradio web chat. Thin: it renders what `Assistant.ask` returns and nothing else decides here.

Nothing leaves the machine: Gradio's analytics and version check (look-ups of huggingface.co and
api.gradio.app at every launch) are off, set before gradio is imported and again on the Blocks.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # read by gradio at import and launch
# Gradio's queue summarises its event log (up to 10,000 events) in a pandas DataFrame after every event, for a
# monitoring page this app never enables: 2 ms per event at 300 logged events, 10 ms at 10,000, on the cores that
# answer. Recomputed only every this many events (read when the queue is made; the summary is never read here).
os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", str(10**9))

import gradio as gr  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402

from rag import backends, render  # noqa: E402
from rag.chat import Assistant, record_turn  # noqa: E402
from rag.evidence import EvidenceError, pdf_page, source_path, text_passage  # noqa: E402
from rag.ingest import IngestError, ingest  # noqa: E402
from rag.render import conversation_markdown  # noqa: E402
from rag.schema import Answer, Turn  # noqa: E402
from rag.settings import Settings  # noqa: E402
from rag.store import IndexProblem  # noqa: E402
from rag.uploads import max_upload_bytes  # noqa: E402
from rag.watch import CorpusWatcher  # noqa: E402
from rag.web_documents import Reindexer, documents_tab  # noqa: E402
from rag.web_guard import LoginGuard  # noqa: E402
from rag.web_text import public_text  # noqa: E402

log = logging.getLogger(__name__)


def answer_messages(answer: Answer, question: str | None = None, turn: int | None = None) -> list[dict]:
    """The chat messages of one answer (rendered by rag.render): the answer, then collapsed ones with the
    sentences left out and with its sources. `turn` is the answer's index in the conversation, for the
    citation links that open the evidence pane."""
    messages = [{"role": "assistant", "content": render.answer_markdown(answer, question, turn)}]
    left_out = render.unverified_markdown(answer)
    if left_out:
        title, body = left_out
        messages.append({"role": "assistant", "content": body, "metadata": {"title": title, "status": "done"}})
    if answer.citations:
        messages.append({"role": "assistant", "content": render.sources_markdown(answer, turn),
                         "metadata": {"title": render.sources_title(answer), "status": "done"}})
    return messages


class ChatExports:
    """The "Export chat as Markdown" files: one per browser session, overwritten after each answer, deleted
    once untouched for `max_age_s` and with the whole folder when the app exits (it wrote a new file per
    answer and never removed one). Gradio's own copies of them expire with its cache (`delete_cache`).
    Not deleted on `unload`: Gradio fired it while the page was still open (the export went missing)."""

    def __init__(self, max_age_s: float) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="rag-chat-"))
        self.max_age_s = max_age_s
        atexit.register(shutil.rmtree, self.folder, ignore_errors=True)

    def _session_folder(self, request: gr.Request | None) -> Path:
        # The session hash comes from the browser: hashed again, it cannot name a path outside the folder.
        session = getattr(request, "session_hash", None) or "no-session"
        return self.folder / hashlib.sha256(session.encode()).hexdigest()[:32]

    def write(self, history: list[Turn], request: gr.Request = None) -> str | None:
        """The session's export file, rewritten with the conversation so far, for the download button."""
        if not history:
            return None
        self._forget_old()
        path = self._session_folder(request) / "chat.md"
        path.parent.mkdir(exist_ok=True)
        path.write_text(conversation_markdown(history), encoding="utf-8")
        return str(path)

    def _forget_old(self) -> None:
        """Delete the exports of sessions that have not answered for max_age_s."""
        cutoff = time.time() - self.max_age_s
        for session in self.folder.iterdir():
            try:
                if session.stat().st_mtime < cutoff:
                    shutil.rmtree(session, ignore_errors=True)
            except FileNotFoundError:
                pass  # removed by another session's call meanwhile


class ChatSession:
    """Owns the Assistant for the web app; builds or updates the index on start."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.assistant: Assistant | None = None
        self.problem: str | None = None

    def start(self) -> None:
        try:
            report = ingest(self.settings)
            log.info("index ready: %s", report.summary())
        except IngestError as err:
            self.problem = f"No index could be built: {err}"
        problem = self._open_assistant()
        if problem:
            self.problem = (self.problem or "") + f" {problem}".rstrip()

    def _open_assistant(self) -> IndexProblem | None:
        """Open the index; on success there is no problem left to show, on failure the reason is returned."""
        try:
            self.assistant = Assistant(self.settings)
        except IndexProblem as err:
            return err
        self.problem = None
        return None

    def banner_text(self) -> str:
        """The index problem shown above the tabs ("" when there is none). Rechecked on each page load and
        after each answer: a document uploaded in the Documents tab fixes "No index could be built", and the
        warning must not linger."""
        if self.assistant is None and self.problem:
            self._open_assistant()  # the Documents tab's re-index may have built one
        return f"**{render.escape(self.public(self.problem))}**" if self.problem else ""

    def public(self, message: str) -> str:
        """An error message as the browser may see it: folders by name, no absolute server path."""
        return public_text(message, [self.settings.index_dir, self.settings.corpus_dir])

    def banner(self) -> gr.Markdown:
        text = self.banner_text()
        return gr.Markdown(text, visible=bool(text))

    def respond(self, question: str, chat: list[dict], history: list[Turn]):
        """A generator: the question at once while a model writes or the index is built, the model's words as
        they arrive (with a cursor), then the verified answer. An extractive answer follows within
        milliseconds, so it comes with the question in one message: each message is another step through
        Gradio's queue, and the separate one cost 7-9% of the answers/s to 8 clients (rag bench --only serve)."""
        question = (question or "").strip()
        if not question:
            yield "", chat, history
            return
        chat = chat + [{"role": "user", "content": render.escape(question)}]
        if self.assistant is None or self.assistant.llm is not None:
            yield "", chat, history
        if self.assistant is None:
            self.start()
        if self.assistant is None:
            yield "", chat + [{"role": "assistant", "content": self.banner_text() or "No index."}], history
            return
        written = ""
        try:
            for item in self.assistant.stream(question, history):
                if isinstance(item, str):
                    written += item
                    yield "", chat + [{"role": "assistant", "content": render.escape(written) + " ▌"}], history
                else:
                    answer = item
        except IndexProblem as err:
            message = render.escape(self.public(f"The index cannot be used: {err}"))
            yield "", chat + [{"role": "assistant", "content": message}], history
            return
        yield "", chat + answer_messages(answer, question, turn=len(history)), record_turn(history, question, answer)

    # --- the evidence pane ---------------------------------------------------------------------------------

    def evidence(self, history: list[Turn], turn: int, n: int, page: int | None = None) -> tuple[str, int | None, int]:
        """The pane's HTML for citation `n` of answer `turn`, at `page` for a PDF (default: the cited page);
        also the page shown and the PDF's page count (None and 0 for other formats)."""
        if not 0 <= turn < len(history) or not 1 <= n <= len(history[turn].answer.citations):
            return render.evidence_error_html(None, None, f"There is no citation [{n}] in answer {turn + 1} of this "
                                              "conversation (a new chat was started?)."), None, 0
        citation = history[turn].answer.citations[n - 1]
        try:
            manifest = backends.read_manifest(self.settings)
            if manifest is None:
                raise EvidenceError("there is no index: build one (Documents tab, Re-index)")
            path = source_path(self.settings.corpus_dir, manifest, citation.source)
            if path.suffix.lower() == ".pdf":
                view = pdf_page(path, citation.source, page or citation.page or 1, citation.text,
                                self.settings.evidence_pdf_scale)
                return render.pdf_page_html(view, n, citation), view.page, view.pages
            passage = text_passage(path, self.settings.corpus_dir, citation,
                                   manifest.documents[citation.source].content_hash,
                                   self.settings.evidence_context_chars, self.settings)
            return render.text_passage_html(passage, n, citation), None, 0
        except (EvidenceError, IndexProblem) as err:
            return render.evidence_error_html(n, citation, self.public(str(err))), None, 0

    def open_evidence(self, target: str, history: list[Turn]):
        """A citation link was clicked: `target` is its link target ("#cite-<turn>-<n>", then a click count
        so that clicking the same link again is a change too)."""
        parsed = render.parse_cite((target or "").split(" ")[0])
        if parsed is None:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        turn, n = parsed
        return self._shown(history, turn, n)

    def turn_page(self, shown: tuple | None, history: list[Turn], step: int):
        """Previous (-1) or next (+1) page of the PDF in the pane."""
        if not shown or shown[2] is None:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        turn, n, page = shown
        return self._shown(history, turn, n, page + step)

    def newest_evidence(self, history: list[Turn]):
        """After an answer: its first citation, or after a refusal, the passages that came closest."""
        if not history or not history[-1].answer.citations:
            return render.PANE_EMPTY, None, *PAGER_HIDDEN
        if history[-1].answer.refused:
            html_ = render.closest_passages_html(history[-1].answer, len(history) - 1)
            return html_, None, *PAGER_HIDDEN
        return self._shown(history, len(history) - 1, 1)

    def _shown(self, history: list[Turn], turn: int, n: int, page: int | None = None):
        html_, page, pages = self.evidence(history, turn, n, page)
        if page is None:
            return html_, (turn, n, None), *PAGER_HIDDEN
        return (html_, (turn, n, page), gr.update(visible=True, interactive=page > 1),
                gr.update(visible=True, interactive=page < pages))


PAGER_HIDDEN = (gr.update(visible=False), gr.update(visible=False))  # previous/next page: PDFs only

# Citation links in the chat and the pane (href "#cite-<turn>-<n>") open the passage in the evidence pane: the
# page script puts the target into the hidden #evidence-target box, whose change asks the server. Gradio's
# Markdown cannot call Python from a link, hence this one listener on the document.
PAGE_JS = """
() => {
  let clicks = 0;
  document.addEventListener('click', (event) => {
    const link = event.target.closest ? event.target.closest('a[href*="#cite-"]') : null;
    if (!link) return;
    event.preventDefault();
    event.stopPropagation();
    const href = link.getAttribute('href');
    const box = document.querySelector('#evidence-target textarea');
    if (!box) return;
    box.value = href.slice(href.indexOf('#cite-')) + ' ' + (++clicks);
    box.dispatchEvent(new Event('input', {bubbles: true}));
  }, true);
}
"""

# Keep the newest message in view when the Chat tab is shown again (an answer that arrived while another tab
# was open is below the fold otherwise).
SCROLL_CHAT_JS = """
() => { requestAnimationFrame(() => { document.querySelectorAll('#chat .bubble-wrap, #chat [role=log]')
  .forEach(el => { el.scrollTop = el.scrollHeight; }); }); }
"""

CSS = """
#evidence-pane .evidence-head { margin-bottom: 0.5em; }
#evidence-pane .evidence-page { position: relative; line-height: 0; border: 1px solid var(--border-color-primary); }
#evidence-pane .evidence-page img { width: 100%; display: block; }
#evidence-pane .evidence-box { position: absolute; background: rgba(255, 213, 0, 0.38);
  outline: 2px solid rgba(230, 160, 0, 0.9); mix-blend-mode: multiply; }
#evidence-pane .evidence-text { white-space: pre-wrap; max-height: 60vh; overflow: auto; padding: 0.5em;
  border: 1px solid var(--border-color-primary); border-radius: 4px; }
#evidence-pane mark { background: #ffe066; color: #000; padding: 0 1px; }
#evidence-pane .evidence-heading { color: var(--body-text-color-subdued); margin-bottom: 0.3em; }
.evidence-error, #documents-message .refused { color: var(--error-text-color, #b91c1c);
  background: var(--error-background-fill, #fef2f2); border: 1px solid var(--error-border-color, #fca5a5);
  border-radius: 4px; padding: 0.4em 0.6em; }
"""


def build_app(settings: Settings) -> gr.Blocks:
    session = ChatSession(settings)
    session.start()
    reindexer = Reindexer(settings, embedder=lambda: session.assistant.embedder if session.assistant else None,
                          public=session.public)
    CorpusWatcher(settings, on_change=reindexer.update).start()  # the app follows corpus/ (see rag/watch.py)
    exports = ChatExports(settings.web_cache_max_age_s)
    age = settings.web_cache_max_age_s
    with gr.Blocks(title="Ask your documents", analytics_enabled=False, delete_cache=(age, age)) as app:
        gr.Markdown(
            f"### Ask your documents\nAnswers come only from the files in "
            f"{render.code(settings.corpus_dir.resolve().name)}, "
            "with the passages they quote. Click a citation to see it on its page."
        )
        problem = session.banner_text()
        banner = gr.Markdown(problem, visible=bool(problem), elem_id="index-problem")
        with gr.Tabs():
            with gr.Tab("Chat", id="chat-tab") as chat_tab:
                with gr.Row(equal_height=False):
                    with gr.Column(scale=3, min_width=420):
                        chatbot = gr.Chatbot(label="Chat", height="62vh", elem_id="chat")
                        history = gr.State([])  # per browser session: list[Turn]
                        with gr.Row():
                            question = gr.Textbox(placeholder="Ask a question about your documents",
                                                  show_label=False, scale=8, elem_id="question", autofocus=True)
                            send = gr.Button("Ask", variant="primary", scale=1, elem_id="ask")
                            new_chat = gr.Button("New chat", scale=1, elem_id="new-chat")
                        export = gr.DownloadButton("Export chat as Markdown", value=None, size="sm",
                                                   elem_id="export-chat")
                    with gr.Column(scale=2, min_width=360, elem_id="evidence-column"):
                        gr.Markdown("**Evidence**")
                        pane = gr.HTML(render.PANE_EMPTY, elem_id="evidence-pane")
                        with gr.Row():
                            prev_page = gr.Button("◀ Previous page", size="sm", visible=False, elem_id="evidence-prev")
                            next_page = gr.Button("Next page ▶", size="sm", visible=False, elem_id="evidence-next")
                        target = gr.Textbox(elem_id="evidence-target", visible="hidden", show_label=False,
                                            container=False)
                        shown = gr.State(None)  # (turn, n, page) in the pane
                pane_outputs = [pane, shown, prev_page, next_page]
                for trigger in (question.submit, send.click):
                    trigger(session.respond, [question, chatbot, history], [question, chatbot, history]).then(
                        session.newest_evidence, history, pane_outputs).then(
                        exports.write, history, export).then(session.banner, None, banner)
                new_chat.click(lambda: ([], [], None, render.PANE_EMPTY, None, *PAGER_HIDDEN),
                               None, [chatbot, history, export, *pane_outputs])
                target.change(session.open_evidence, [target, history], pane_outputs)
                prev_page.click(lambda s, h: session.turn_page(s, h, -1), [shown, history], pane_outputs)
                next_page.click(lambda s, h: session.turn_page(s, h, +1), [shown, history], pane_outputs)
            chat_tab.select(None, None, None, js=SCROLL_CHAT_JS)
            documents_tab(settings, reindexer)
        app.load(session.banner, None, banner)  # a reloaded page shows the index as it is now
    for fn in app.fns.values():
        # Callable (the tests' gradio_client uses them) but not listed: the login page embeds the listing of
        # "public" endpoints, with the Delete dropdown's choices, before anyone has logged in.
        if fn.api_visibility == "public":
            fn.api_visibility = "undocumented"
    return app


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # Gradio's launch() closes its server on this; then atexit removes the chat exports


def serve(settings: Settings) -> int:
    signal.signal(signal.SIGTERM, _stop)  # `kill`, systemd, docker stop: shut down as on Ctrl-C
    app = build_app(settings)
    guard = Middleware(LoginGuard, max_failures=settings.login_max_failures, lockout_s=settings.login_lockout_s)
    app.queue(default_concurrency_limit=settings.web_concurrency).launch(
        server_name=settings.host, server_port=settings.port, show_error=True, auth=settings.auth_pair(),
        js=PAGE_JS, css=CSS,
        max_file_size=max_upload_bytes(settings),  # refused by Gradio while it streams, before it is kept
        footer_links=["settings"],  # no API page, no link off the machine
        app_kwargs={"openapi_url": None, "middleware": [guard]},  # FastAPI's /openapi.json lists every route
    )
    return 0
