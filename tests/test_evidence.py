"""The evidence behind a citation (rag/evidence.py) and the one renderer (rag/render.py), without a browser:
real PDFs rendered by PDFium, a real index and the real embedder."""

from __future__ import annotations

import html
from pathlib import Path

import pytest

from rag.evidence import EvidenceError, find_quote, pdf_page, source_path, text_passage
from rag.render import answer_markdown, conversation_markdown, escape, parse_cite, sources_markdown
from rag.schema import Answer, Citation, Turn
from rag.settings import Settings
from rag.store import read_manifest
from rag.web import ChatSession
from tests.conftest import make_pdf

WRAPPED = ("Cargo handling improved during the spring.\nThe new harbour crane at the container terminal lifted 42\n"
           "containers before noon on its first day. Visitors watched from the quay.")
QUOTE = "The new harbour crane at the container terminal lifted 42 containers before noon on its first day."


def test_find_quote_ignores_how_whitespace_breaks_lines_and_prefers_the_nearest_match() -> None:
    text = "Alpha beta.\r\nGamma  delta\nepsilon. Gamma delta epsilon."
    assert find_quote(text, "Gamma delta epsilon.") == (13, 34)
    assert text[13:34] == "Gamma  delta\nepsilon."
    assert find_quote(text, "Gamma delta epsilon.", near=30) == (35, 55)
    assert find_quote(text, "Zeta") is None and find_quote(text, "   ") is None


def test_a_quote_of_a_hyphenated_pdf_word_is_found_and_boxed_on_its_page(tmp_path: Path) -> None:
    path = tmp_path / "ledger.pdf"
    path.write_bytes(make_pdf(["The ledger protects the in-\ntegrity of every record."]))
    quote = "The ledger protects the integrity of every record."
    view = pdf_page(path, "ledger.pdf", 1, quote, scale=1.0)
    assert len(view.boxes) == 2  # the quote spans both lines
    assert find_quote("the in\ufffetegrity of", "the integrity of") == (0, 17)


def test_a_wrapped_pdf_quote_gets_one_box_per_line_on_its_page(tmp_path: Path) -> None:
    path = tmp_path / "report.pdf"
    path.write_bytes(make_pdf(["Nothing here.", WRAPPED]))
    view = pdf_page(path, "report.pdf", 2, QUOTE, scale=1.0)
    assert (view.page, view.pages) == (2, 2)
    assert " ".join(view.highlighted.split()) == QUOTE
    assert view.png.startswith(b"\x89PNG")
    assert len(view.boxes) == 2
    first, second = view.boxes
    # The second line starts where the first does (left margin, 72 pt of 612), 14 pt lower, and is shorter.
    assert first.left == pytest.approx(72 / 612, abs=0.01) and second.left == pytest.approx(72 / 612, abs=0.01)
    assert second.top - first.top == pytest.approx(14 / 792, abs=0.003)
    assert first.width > second.width > 0
    assert pdf_page(path, "report.pdf", 1, QUOTE, scale=1.0).boxes == ()  # not on page 1
    with pytest.raises(EvidenceError, match="'report.pdf' has 2 pages; there is no page 3"):
        pdf_page(path, "report.pdf", 3, QUOTE, scale=1.0)


def test_only_documents_of_the_live_index_are_opened(tiny_index: Settings) -> None:
    manifest = read_manifest(tiny_index.index_dir, list(tiny_index.index_signature()))
    assert source_path(tiny_index.corpus_dir, manifest, "weather.md") == (tiny_index.corpus_dir / "weather.md").resolve()
    with pytest.raises(EvidenceError, match="'../secret.txt' is not a document of the live index"):
        source_path(tiny_index.corpus_dir, manifest, "../secret.txt")
    # Even an id the manifest holds may not lead out of the corpus folder.
    (tiny_index.corpus_dir.parent / "secret.txt").write_text("x")
    manifest.documents["../secret.txt"] = manifest.documents["weather.md"]
    with pytest.raises(EvidenceError, match="'../secret.txt' points outside the corpus folder"):
        source_path(tiny_index.corpus_dir, manifest, "../secret.txt")


def test_text_passages_mark_the_quote_under_its_heading(tiny_index: Settings) -> None:
    manifest = read_manifest(tiny_index.index_dir, list(tiny_index.index_signature()))
    quote = "Domestic cats sleep for about 15 hours a day."
    html_text = "Cats\n" + quote
    start = html_text.index(quote)
    cats = Citation("cats.html", None, start, start + len(quote), quote, 1.0)
    view = text_passage(tiny_index.corpus_dir / "cats.html", tiny_index.corpus_dir, cats,
                        manifest.documents["cats.html"].content_hash, context=400, settings=tiny_index)
    assert (view.before, view.quote, view.after, view.heading, view.note) == ("Cats\n", quote, "", "Cats", None)

    quote = "Typhoons arrive mostly in August."
    text = (tiny_index.corpus_dir / "weather.md").read_text()
    start = text.index(quote)
    weather = Citation("weather.md", None, start, start + len(quote), quote, 1.0)
    view = text_passage(tiny_index.corpus_dir / "weather.md", tiny_index.corpus_dir, weather,
                        manifest.documents["weather.md"].content_hash, context=20, settings=tiny_index)
    assert view.heading == "Weather" and view.quote == quote
    assert view.before == "April to September. " and view.clipped_start and not view.clipped_end

    # The file changed since indexing: the quote is found where it is now, and the pane says so.
    (tiny_index.corpus_dir / "weather.md").write_text("# Weather\n\nAdded first.\n\n" + text.split("\n\n", 1)[1])
    view = text_passage(tiny_index.corpus_dir / "weather.md", tiny_index.corpus_dir, weather,
                        manifest.documents["weather.md"].content_hash, context=20, settings=tiny_index)
    assert view.quote == quote and view.note == "'weather.md' changed since it was indexed; the passage is shown where it is now."


def test_the_web_session_shows_the_cited_passage_of_a_real_answer(tiny_index: Settings, embedder) -> None:
    session = ChatSession(tiny_index)
    session.start()
    *_, (_, chat, history) = session.respond("How many agreements were signed at the trade conference?", [], [])
    assert [t.question for t in history] == ["How many agreements were signed at the trade conference?"]
    assert "[\\[1\\]](#cite-0-1)" in chat[1]["content"]
    html_, page, pages = session.evidence(history, 0, 1)
    assert (page, pages) == (None, 0)
    assert "<mark>The event resulted in 33 signed agreements worth 18.47 billion RMB.</mark>" in html_
    assert "corpus/conference.txt" in html_
    html_, _, _ = session.evidence(history, 0, 2)
    assert "There is no citation [2] in answer 1 of this conversation" in html_
    (tiny_index.corpus_dir / "conference.txt").unlink()
    html_, _, _ = session.evidence(history, 0, 1)
    assert "'conference.txt' is no longer in" in html.unescape(html_) and "role='alert'" in html_
    assert parse_cite("#cite-0-1") == (0, 1) and parse_cite("/etc/passwd") is None


def test_an_extractive_answer_comes_with_the_question_in_one_message(tiny_index: Settings, embedder) -> None:
    session = ChatSession(tiny_index)
    session.start()
    steps = list(session.respond("  How many agreements were signed at the trade conference? ", [], []))
    assert len(steps) == 1
    box, chat, history = steps[0]
    assert box == "" and chat[0] == {"role": "user", "content": "How many agreements were signed at the trade conference?"}
    assert chat[1]["role"] == "assistant" and "33" in chat[1]["content"] and len(history) == 1


def test_without_an_index_the_question_shows_before_the_reason(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    session = ChatSession(Settings(corpus_dir=corpus, index_dir=tmp_path / "index"))
    steps = list(session.respond("Anyone there?", [], []))
    assert [len(chat) for _, chat, _ in steps] == [1, 2]
    assert steps[0][1] == [{"role": "user", "content": "Anyone there?"}]
    assert steps[1][1][1]["content"].startswith("**No index could be built:") and steps[1][2] == []


def test_document_text_and_file_names_are_shown_not_run() -> None:
    citation = Citation("<img src=x onerror=alert(1)>.txt", 2, 0, 30, "Say *hi* <script>alert(1)</script> [2]", 1.5)
    answer = Answer('7 — "Say *hi*" [1]', [citation], refused=False, query="q", short_answer="7")
    assert escape("a <b> *c* [d] `e` _f_ | ~g~") == r"a &lt;b&gt; \*c\* \[d\] \`e\` \_f\_ \| \~g\~"
    assert escape("<a href='x'>", markdown=False) == "&lt;a href=&#x27;x&#x27;&gt;"
    chat = answer_markdown(answer, "q", turn=3)
    assert chat == '**7** — "Say \\*hi\\*" [\\[1\\]](#cite-3-1)'  # no "searched for": the query is the question
    assert "searched for: q (rewritten)" in answer_markdown(
        Answer("x", [], refused=True, query="q (rewritten)"), "q")
    sources = sources_markdown(answer, turn=3)
    assert sources == ("**[\\[1\\]](#cite-3-1)** `corpus/<img src=x onerror=alert(1)>.txt`, page 2, chars 0–30\n\n"
                       "> Say \\*hi\\* &lt;script&gt;alert(1)&lt;/script&gt; \\[2\\]")
    export = conversation_markdown([Turn("q", answer)])
    assert '**Assistant:** 7 — "Say \\*hi\\*" [1]' in export and "<script>" not in export


def test_an_office_passage_sits_under_its_section(tmp_path: Path) -> None:
    """A Word file, parsed in a bounded worker as ingest does: the pane names the section of the quote."""
    import docx

    from rag.loaders import hash_bytes, load_document

    document = docx.Document()
    document.add_heading("Results", level=1)
    document.add_paragraph("The pilot served 120 households in its first year.")
    path = tmp_path / "report.docx"
    document.save(path)
    page = load_document(path, tmp_path).pages[0]
    quote = "The pilot served 120 households in its first year."
    start = page.text.index(quote)
    citation = Citation("report.docx", page.number, start, start + len(quote), quote, 1.0, label=page.label)
    view = text_passage(path, tmp_path, citation, hash_bytes(path.read_bytes()), context=100,
                        settings=Settings(corpus_dir=tmp_path))
    assert (view.before, view.quote, view.heading, view.note) == ("Results\n", quote, "section Results", None)
