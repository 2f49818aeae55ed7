"""The Gradio web chat. Thin: it renders what `Assistant.ask` returns and nothing else decides here."""

from __future__ import annotations

import html
import logging
import tempfile
import time
from pathlib import Path

import gradio as gr

from rag.chat import Assistant, conversation_markdown, record_turn
from rag.ingest import IngestError, ingest
from rag.schema import Answer
from rag.settings import Settings
from rag.store import IndexProblem
from rag.watch import CorpusWatcher
from rag.web_documents import Reindexer, documents_tab

log = logging.getLogger(__name__)


def format_sources(answer: Answer) -> str:
    """Markdown for the Sources panel: file, page, quoted passage, score."""
    lines = []
    for n, c in enumerate(answer.citations, start=1):
        page = f", page {c.page}" if c.page is not None else ""
        flag = "" if c.verified else f" — **not verified**: {html.escape(c.reason or '')}"
        lines.append(
            f"**[{n}]** `corpus/{c.source}`{page}, chars {c.start}–{c.end}, score {c.score:.3f}{flag}\n\n"
            f"> {html.escape(c.text)}"
        )
    return "\n\n".join(lines)


def answer_messages(answer: Answer) -> list[dict]:
    """One assistant message with the answer, then a collapsible one with its sources."""
    body = html.escape(answer.text).replace("\n", "  \n")
    if answer.short_answer and answer.text.startswith(answer.short_answer):
        body = f"**{html.escape(answer.short_answer)}**" + body[len(html.escape(answer.short_answer)):]
    if answer.note:
        body += f"\n\n*{html.escape(answer.note)}*"
    if answer.query:
        body += f"\n\n<sub>searched for: {html.escape(answer.query)}</sub>"
    messages = [{"role": "assistant", "content": body}]
    unverified = [s for s in answer.sentences if not s.verified]
    if unverified:
        lines = [f"- ⚠ ~~{html.escape(s.text)}~~ — {html.escape(s.reason or '')}" for s in unverified]
        messages.append({"role": "assistant", "content": "\n".join(lines),
                         "metadata": {"title": f"Not verified, left out: {len(unverified)} of the model's "
                                               f"{len(answer.sentences)} sentence{'s' * (len(answer.sentences) > 1)}"}})
    if answer.citations:
        title = "Closest passages" if answer.refused else "Sources"
        messages.append({"role": "assistant", "content": format_sources(answer), "metadata": {"title": title}})
    return messages


def export_chat(history: list[dict]) -> str | None:
    """Write the conversation as Markdown to a fresh temporary file for the download button."""
    if not history:
        return None
    folder = Path(tempfile.mkdtemp(prefix="rag-chat-"))
    path = folder / f"chat-{time.strftime('%Y%m%d-%H%M%S')}.md"
    path.write_text(conversation_markdown(history), encoding="utf-8")
    return str(path)


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
        return f"**{html.escape(self.problem)}**" if self.problem else ""

    def banner(self) -> gr.Markdown:
        text = self.banner_text()
        return gr.Markdown(text, visible=bool(text))

    def respond(self, question: str, chat: list[dict], history: list[dict]):
        """A generator: the model's words as they arrive (with a cursor), then the verified answer."""
        question = (question or "").strip()
        if not question:
            yield "", chat, history
            return
        chat = chat + [{"role": "user", "content": html.escape(question)}]
        yield "", chat, history
        if self.assistant is None:
            self.start()
        if self.assistant is None:
            yield "", chat + [{"role": "assistant", "content": html.escape(self.problem or "No index.")}], history
            return
        written = ""
        try:
            for item in self.assistant.stream(question, history):
                if isinstance(item, str):
                    written += item
                    yield "", chat + [{"role": "assistant", "content": html.escape(written) + " ▌"}], history
                else:
                    answer = item
        except IndexProblem as err:
            yield "", chat + [{"role": "assistant", "content": html.escape(f"The index cannot be used: {err}")}], history
            return
        yield "", chat + answer_messages(answer), record_turn(history, question, answer)


def build_app(settings: Settings) -> gr.Blocks:
    session = ChatSession(settings)
    session.start()
    reindexer = Reindexer(settings, embedder=lambda: session.assistant.embedder if session.assistant else None)
    CorpusWatcher(settings, on_change=reindexer.update).start()  # the app follows corpus/ (see rag/watch.py)
    with gr.Blocks(title="Ask your documents") as app:
        gr.Markdown(
            f"### Ask your documents\nAnswers come only from the files in `{settings.corpus_dir}`, "
            "with the passages they quote."
        )
        problem = session.banner_text()
        banner = gr.Markdown(problem, visible=bool(problem), elem_id="index-problem")
        with gr.Tabs():
            with gr.Tab("Chat", id="chat-tab"):
                chatbot = gr.Chatbot(label="Chat", height=520, elem_id="chat")
                history = gr.State([])  # per browser session: [{role, content, query}]
                with gr.Row():
                    question = gr.Textbox(placeholder="Ask a question about your documents", show_label=False,
                                          scale=8, elem_id="question", autofocus=True)
                    send = gr.Button("Ask", variant="primary", scale=1, elem_id="ask")
                    new_chat = gr.Button("New chat", scale=1, elem_id="new-chat")
                export = gr.DownloadButton("Export chat as Markdown", value=None, size="sm", elem_id="export-chat")
                for trigger in (question.submit, send.click):
                    trigger(session.respond, [question, chatbot, history], [question, chatbot, history]).then(
                        export_chat, history, export).then(session.banner, None, banner)
                new_chat.click(lambda: ([], [], None), None, [chatbot, history, export])
            documents_tab(settings, reindexer)
        app.load(session.banner, None, banner)  # a reloaded page shows the index as it is now
    return app


def serve(settings: Settings) -> int:
    app = build_app(settings)
    app.queue(default_concurrency_limit=4).launch(server_name=settings.host, server_port=settings.port,
                                                 show_error=True, auth=settings.auth_pair())
    return 0
