"""The one renderer of an `Answer`: Markdown for the web chat and the conversation export, rich text for the
terminal (JSON is `Answer.to_json`). Front ends call these and add no wording of their own, so the chat, the
export and `rag ask` say the same things the same way.

Document text and file names come from the user's files, so they are never trusted: every piece that goes
into Markdown or HTML passes through `escape` (HTML in it is shown, not run; Markdown syntax in it is shown,
not applied), and every piece printed to a terminal through `printable` (no control sequences).
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

from rich.text import Text

from rag.schema import Answer, Citation, Turn

# Backslash-escaped in Markdown: the characters that start emphasis, code, links, tables and strikethrough.
# Not "." or "-", which would make "3.28" read "3\.28" in an exported file, and only start a list at the
# beginning of a line (quotes are joined into one line).
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]|~])")
# Escape sequences a file could smuggle into a terminal, removed whole so no residue ("]0;PWNED") is printed:
# OSC ("ESC ] ... BEL" retitles the window), CSI ("ESC [2J" clears it; also its one-byte form 0x9b), and
# two-character ones; then any other C0/C1 control character except tab and newline, and the bidirectional
# overrides that make text read differently from what it is.
_ESCAPE_SEQUENCE = re.compile(r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b\[[0-?]*[ -/]*[@-~]?|\x1b[@-_]?|\x9b[0-?]*[ -/]*[@-~]?")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_ESCAPED_CITATION = re.compile(r"\\\[(\d{1,3})\\\]")  # "[1]" after `escape`

CITE_PREFIX = "#cite-"  # link target of a citation in the web chat: #cite-<turn>-<n>; the page script reads it


def escape(text: str, *, markdown: bool = True) -> str:
    """Text from a document (or a file name) made inert: HTML-escaped, and for Markdown, with the characters
    that would format it backslash-escaped. `markdown=False` for text placed in HTML (the evidence pane)."""
    escaped = html.escape(text, quote=not markdown)
    return _MARKDOWN_SPECIAL.sub(r"\\\1", escaped) if markdown else escaped


def code(text: str) -> str:
    """A Markdown code span around `text` (a file name), fenced with more backticks than it contains."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def printable(text: str) -> str:
    """Text from a document made safe for a terminal: control characters (escape sequences) removed."""
    return _CONTROL.sub("", _ESCAPE_SEQUENCE.sub("", text))


def one_line(text: str) -> str:
    """A passage on one line (PDF text wraps mid-sentence)."""
    return " ".join(text.split())


def cite_href(turn: int, n: int) -> str:
    return f"{CITE_PREFIX}{turn}-{n}"


def parse_cite(target: str) -> tuple[int, int] | None:
    """(turn, n) from a citation link target as the page sends it, or None when it is not one."""
    match = re.fullmatch(rf"{CITE_PREFIX}(\d{{1,6}})-(\d{{1,3}})", (target or "").strip())
    return (int(match.group(1)), int(match.group(2))) if match else None


def rank_label(rank: int, of: int) -> str:
    """" · relevance rank 2 of 3" (nothing for a single passage, which has no one to be ranked against)."""
    return f" · relevance rank {rank} of {of}" if of > 1 else ""


def relevance_ranks(citations: Sequence[Citation]) -> list[int]:
    """Each citation's rank by relevance (1 = the most relevant). The raw scores are not shown: extractive
    scores add support and similarity (they exceed 1) and LLM citations carry fused retrieval scores, so
    only their order means something to a reader."""
    order = sorted(range(len(citations)), key=lambda i: -citations[i].score)
    ranks = [0] * len(citations)
    for rank, i in enumerate(order, start=1):
        ranks[i] = rank
    return ranks


def where(citation: Citation) -> str:
    """", page 3, chars 304–445" (", slide 2, ..." where the format names its parts): the place of a quote,
    after its file name."""
    page = f", {citation.label}" if citation.label else f", page {citation.page}" if citation.page is not None else ""
    ocr = " (read by OCR)" if citation.ocr else ""
    return f"{page}, chars {citation.start}–{citation.end}{ocr}"


def sources_title(answer: Answer) -> str:
    return "Closest passages" if answer.refused else "Sources"


def searched_for(question: str | None, answer: Answer) -> str | None:
    """The standalone query, only when it differs from what was asked (a rewritten follow-up)."""
    if not answer.query or question is None or one_line(answer.query) == one_line(question):
        return None
    return answer.query


def unverified(answer: Answer) -> list:
    return [s for s in answer.sentences if not s.verified]


def _with_citations(text: str, answer: Answer, turn: int | None = None) -> str:
    """`text` escaped, its citation marks "[n]" kept as they are, or made links to the evidence pane when
    `turn` (the answer's index in the conversation) is given."""
    def mark(match: re.Match) -> str:
        n = int(match.group(1))
        if not 1 <= n <= len(answer.citations):
            return match.group(0)
        return f"[\\[{n}\\]]({cite_href(turn, n)})" if turn is not None else f"[{n}]"

    return _ESCAPED_CITATION.sub(mark, escape(text))


# --- Markdown: the web chat -------------------------------------------------------------------------------


def answer_markdown(answer: Answer, question: str | None = None, turn: int | None = None) -> str:
    """The answer's message in the web chat: short answer in bold, `[n]` as links that open the evidence pane
    (when `turn`, the answer's index in the conversation, is given), the note, and the rewritten query."""
    text = answer.text
    body = ""
    if answer.short_answer and text.startswith(answer.short_answer):
        body, text = f"**{escape(answer.short_answer)}**", text[len(answer.short_answer):]
    body += "  \n".join(_with_citations(line, answer, turn) for line in text.split("\n"))
    if answer.note:
        body += f"\n\n*{escape(answer.note)}*"
    query = searched_for(question, answer)
    if query:
        body += f"\n\n<sub>searched for: {escape(query)}</sub>"
    return body


def sources_markdown(answer: Answer, turn: int | None = None) -> str:
    """The Sources (or Closest passages) list: number (a link to the evidence pane), file, page, span,
    relevance rank, the quote."""
    lines = []
    ranks = relevance_ranks(answer.citations)
    for n, (c, rank) in enumerate(zip(answer.citations, ranks), start=1):
        number = f"[\\[{n}\\]]({cite_href(turn, n)})" if turn is not None else f"\\[{n}\\]"
        flag = "" if c.verified else f" — **not verified**: {escape(c.reason or '')}"
        lines.append(
            f"**{number}** {code('corpus/' + c.source)}{where(c)}{rank_label(rank, len(ranks))}{flag}"
            f"\n\n> {escape(one_line(c.text))}"
        )
    return "\n\n".join(lines)


def unverified_markdown(answer: Answer) -> tuple[str, str] | None:
    """(title, Markdown) of the model's sentences that were left out, or None when there are none."""
    left_out = unverified(answer)
    if not left_out:
        return None
    total = len(answer.sentences)
    title = f"Not verified, left out: {len(left_out)} of the model's {total} sentence{'s' * (total > 1)}"
    return title, "\n".join(f"- ⚠ ~~{escape(s.text)}~~ — {escape(s.reason or '')}" for s in left_out)


# --- Markdown: the conversation export --------------------------------------------------------------------


def conversation_markdown(history: Sequence[Turn], title: str = "Conversation") -> str:
    """The conversation as a Markdown file: each question, its standalone query, the answer, its note, the
    sentences left out, and its sources (file, page, character span, quoted text)."""
    out = [f"# {title}", ""]
    for turn in history:
        answer = turn.answer
        out += [f"**You:** {escape(turn.question)}", ""]
        query = searched_for(turn.question, answer)
        if query:
            out += [f"*searched for: {escape(query)}*", ""]
        out += [f"**Assistant:** {_with_citations(answer.text, answer)}", ""]
        if answer.note:
            out += [f"> {escape(answer.note)}", ""]
        left_out = unverified(answer)
        if left_out:
            out += ["Not verified (left out of the answer):", ""]
            out += [f"- {escape(s.text)} — {escape(s.reason or '')}" for s in left_out] + [""]
        if answer.citations:
            out += [f"{sources_title(answer)}:", ""]
        for n, c in enumerate(answer.citations, start=1):
            flag = "" if c.verified else f" (not verified: {escape(c.reason or '')})"
            out += [f"{n}. {code(c.source)} ({where(c).removeprefix(', ')}){flag}", f"   > {escape(one_line(c.text))}"]
        out.append("")
    return "\n".join(out).rstrip() + "\n"


# --- Rich text: the terminal ------------------------------------------------------------------------------


def answer_text(answer: Answer, question: str | None = None) -> Text:
    """The answer for `rag ask` / `rag chat`: the text, each source with its rank and quote, the sentences
    left out, the note, and the rewritten query. Styled when printed to a terminal, plain otherwise."""
    out = Text()
    if answer.short_answer and answer.text.startswith(answer.short_answer):
        out.append(printable(answer.short_answer), style="bold")
        out.append(printable(answer.text[len(answer.short_answer):]))
    else:
        out.append(printable(answer.text), style="yellow" if answer.refused else "")
    ranks = relevance_ranks(answer.citations)
    if answer.citations and answer.refused:
        out.append("\n  closest passages:", style="dim")
    for n, (c, rank) in enumerate(zip(answer.citations, ranks), start=1):
        out.append(f"\n  [{n}] ", style="bold cyan")
        out.append(printable(c.location))
        out.append(rank_label(rank, len(ranks)), style="dim")
        if not c.verified:
            out.append(f" (not verified: {printable(c.reason or '')})", style="red")
        out.append(f"\n      \"{printable(one_line(c.text))}\"", style="italic")
    for s in unverified(answer):
        out.append(f"\n  not verified, left out: {printable(s.text)} — {printable(s.reason or '')}", style="red")
    if answer.note:
        out.append(f"\n  note: {printable(answer.note)}", style="dim")
    query = searched_for(question, answer)
    if query:
        out.append(f"\n  (searched for: {printable(query)})", style="dim")
    return out


# --- HTML: the evidence pane ------------------------------------------------------------------------------

PANE_EMPTY = ("<div class='evidence-empty'>Click a citation such as <b>[1]</b> in an answer, or a source under "
              "it, to see the passage on its page.</div>")


def _pane_head(n: int, citation: Citation, detail: str) -> str:
    return (f"<div class='evidence-head'><b>[{n}]</b> <code>{escape('corpus/' + citation.source, markdown=False)}"
            f"</code> · {detail}</div>")


def evidence_error_html(n: int | None, citation: Citation | None, reason: str) -> str:
    """The pane when a passage cannot be shown: what was asked for and why not."""
    head = _pane_head(n, citation, "cannot be shown") if n is not None and citation is not None else ""
    return f"<div class='evidence'>{head}<div class='evidence-error' role='alert'>⚠ {escape(reason, markdown=False)}</div></div>"


def pdf_page_html(view, n: int, citation: Citation) -> str:
    """A rendered PDF page (rag.evidence.PdfPageView) with a box over each line of the quote, and the boxed
    text itself below it (what PDFium reads there)."""
    import base64

    boxes = "".join(
        f"<div class='evidence-box' style='left:{b.left:.3%};top:{b.top:.3%};width:{b.width:.3%};"
        f"height:{b.height:.3%}'></div>" for b in view.boxes
    )
    if view.highlighted is not None:
        found = f"<p class='evidence-found'>Highlighted: <mark>{escape(one_line(view.highlighted), markdown=False)}</mark></p>"
    elif view.page == citation.page and citation.ocr:
        found = ("<p class='evidence-note'>This page was read by OCR: it has no text of its own to highlight. The "
                 f"quote reads: “{escape(one_line(citation.text), markdown=False)}”</p>")
    elif view.page == citation.page:
        found = ("<p class='evidence-error' role='alert'>⚠ The quote could not be located in PDFium's text of this "
                 f"page; it reads: “{escape(one_line(citation.text), markdown=False)}”</p>")
    else:
        found = f"<p class='evidence-note'>The quote is on page {citation.page}.</p>"
    image = base64.b64encode(view.png).decode("ascii")
    name = escape(citation.source, markdown=False)
    return (
        f"<div class='evidence' data-kind='pdf' data-page='{view.page}'>"
        + _pane_head(n, citation, f"page <span class='evidence-page-number'>{view.page}</span> of {view.pages}")
        + f"<div class='evidence-page'><img src='data:image/png;base64,{image}' alt='page {view.page} of {name}'>"
        + boxes + "</div>" + found + "</div>"
    )


def text_passage_html(view, n: int, citation: Citation) -> str:
    """The text around a quote (rag.evidence.TextView) with the quote marked and the heading above it."""
    heading = (f"<div class='evidence-heading'>under <b>{escape(view.heading, markdown=False)}</b></div>"
               if view.heading else "")
    note = f"<p class='evidence-note'>{escape(view.note, markdown=False)}</p>" if view.note else ""
    return (
        f"<div class='evidence' data-kind='text'>"
        + _pane_head(n, citation, f"chars {citation.start}–{citation.end}")
        + heading + note
        + "<div class='evidence-text'>" + ("…" if view.clipped_start else "")
        + escape(view.before, markdown=False) + f"<mark>{escape(view.quote, markdown=False)}</mark>"
        + escape(view.after, markdown=False) + ("…" if view.clipped_end else "") + "</div></div>"
    )


def closest_passages_html(answer: Answer, turn: int) -> str:
    """The pane after a refusal: the passages that came closest, each opening in the pane when clicked."""
    ranks = relevance_ranks(answer.citations)
    items = "".join(
        f"<li><a href='{cite_href(turn, n)}'>[{n}]</a> <code>{escape('corpus/' + c.source, markdown=False)}</code>"
        f"{escape(where(c), markdown=False)}{rank_label(rank, len(ranks))}"
        f"<blockquote>{escape(one_line(c.text), markdown=False)}</blockquote></li>"
        for n, (c, rank) in enumerate(zip(answer.citations, ranks), start=1)
    )
    return (f"<div class='evidence' data-kind='closest'><div class='evidence-head'>The documents do not say. "
            f"Closest passages:</div><ol class='evidence-closest'>{items}</ol></div>")
