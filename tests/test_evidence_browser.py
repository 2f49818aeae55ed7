"""The evidence pane in a real browser (Debian's chromium via Playwright) against `rag serve` on localhost:
ask, click [1], and see the cited PDF page with the quote's lines boxed, or the text around the quote with
the quote marked. A screenshot of each state is saved under tests/artifacts/ (git-ignored)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rag.settings import Settings
from tests.conftest import TINY_CORPUS, make_pdf, running_server, write_corpus
from tests.test_browser import ask, browser  # noqa: F401  (the module-scoped chromium fixture)

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"

# The quote wraps from one line of page 2 to the next; pages 1 and 3 are about something else.
PDF_PAGES = [
    "Harbour report for the spring season.\nThe offices moved to the east pier in January.",
    "Cargo handling improved during the spring.\nThe new harbour crane at the container terminal lifted 42\n"
    "containers before noon on its first day. Visitors watched from the quay.",
    "Appendix: opening hours of the harbour museum.\nThe museum opens at nine every morning.",
]
PDF_QUOTE = "The new harbour crane at the container terminal lifted 42 containers before noon on its first day."
GUIDE = ("# Harbour guide\n\nA short guide for visitors to the harbour.\n\n## Ferries\n\n"
         "The ferry company runs 14 boats across the harbour every day. Tickets are sold at the pier.\n\n"
         "## Museum\n\nThe museum shows old maps of the coast.\n")
TEXT_QUOTE = "The ferry company runs 14 boats across the harbour every day."


@pytest.fixture(scope="module")
def evidence_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("evidence")
    corpus = write_corpus(root / "corpus", {**TINY_CORPUS, "harbour-report.pdf": make_pdf(PDF_PAGES),
                                                 "harbour-guide.md": GUIDE})
    with running_server(Settings(corpus_dir=corpus, index_dir=root / "index")) as server:
        yield server


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def pane(page):
    return page.locator("#evidence-pane")


def wait_for_pane(page, text: str) -> None:
    page.wait_for_function("t => document.querySelector('#evidence-pane').innerText.includes(t)", arg=text,
                           timeout=30_000)


def asked_about_the_crane(browser, url: str):
    """A fresh page that asked the PDF's question and shows its answer's first citation (page 2)."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url)
    page.locator("#question textarea").wait_for(timeout=60_000)
    ask(page, "How many containers did the new harbour crane lift?")
    page.locator("#chat").get_by_text("42 —", exact=False).first.wait_for(timeout=30_000)
    wait_for_pane(page, "page 2 of 3")
    return page


def test_clicking_a_pdf_citation_shows_its_page_with_the_wrapped_quote_boxed(browser, evidence_server) -> None:
    page = asked_about_the_crane(browser, evidence_server.url)
    chat = page.locator("#chat")
    # The newest answer's first citation is in the pane by default; clicking [1] shows the same.
    chat.locator("a[href$='#cite-0-1']").first.click()
    wait_for_pane(page, "corpus/harbour-report.pdf")
    assert pane(page).locator(".evidence-page-number").inner_text() == "2"
    assert pane(page).locator("img").evaluate("img => img.naturalWidth") > 500
    assert " ".join(pane(page).locator("mark").inner_text().split()) == PDF_QUOTE
    boxes = pane(page).locator(".evidence-box")
    assert boxes.count() == 2  # the quote wraps: one box per line
    first, second = boxes.nth(0).bounding_box(), boxes.nth(1).bounding_box()
    assert second["y"] > first["y"] + first["height"] / 2 and first["width"] > second["width"]
    shot(page, "evidence-pdf")

    # Next page: page 3, no highlight there; previous twice: page 1 (previous is then disabled).
    page.locator("#evidence-next").click()
    wait_for_pane(page, "page 3 of 3")
    assert pane(page).locator(".evidence-box").count() == 0
    assert "The quote is on page 2." in pane(page).inner_text()
    assert page.locator("#evidence-next").is_disabled()
    page.locator("#evidence-prev").click()
    wait_for_pane(page, "page 2 of 3")
    page.locator("#evidence-prev").click()
    wait_for_pane(page, "page 1 of 3")
    assert page.locator("#evidence-prev").is_disabled()
    page.close()


def test_clicking_a_text_citation_shows_the_passage_marked_under_its_heading(browser, evidence_server) -> None:
    page = asked_about_the_crane(browser, evidence_server.url)
    ask(page, "How many boats does the ferry company run?")
    chat = page.locator("#chat")
    chat.get_by_text("14 —", exact=False).first.wait_for(timeout=30_000)
    wait_for_pane(page, "corpus/harbour-guide.md")
    # Back to the first answer's citation, then to the second's from its source list.
    chat.locator("a[href$='#cite-0-1']").first.click()
    wait_for_pane(page, "corpus/harbour-report.pdf")
    chat.get_by_text("Sources").last.click()
    chat.locator("a[href$='#cite-1-1']").last.click()
    wait_for_pane(page, "corpus/harbour-guide.md")
    assert pane(page).locator("mark").inner_text() == TEXT_QUOTE
    assert pane(page).locator(".evidence-heading").inner_text() == "under Ferries"
    assert pane(page).locator("img").count() == 0
    assert page.locator("#evidence-next").is_hidden() and page.locator("#evidence-prev").is_hidden()
    shot(page, "evidence-text")

    # A refusal shows the closest passages; clicking one opens it.
    ask(page, "What is the population of Dongguan?")
    chat.get_by_text("The documents do not say.").first.wait_for(timeout=30_000)
    wait_for_pane(page, "Closest passages")
    items = pane(page).locator("li")
    assert items.count() >= 1
    source = re.search(r"corpus/(\S+?)(,| ·)", items.first.inner_text()).group(1)
    items.first.locator("a").click()
    page.locator("#evidence-pane .evidence[data-kind='text'], #evidence-pane .evidence[data-kind='pdf']").wait_for(
        timeout=30_000)
    assert f"corpus/{source}" in pane(page).inner_text()
    assert pane(page).locator("mark").count() == 1
    shot(page, "evidence-refusal")
    page.close()


def test_narrow_screens_stack_the_pane_below_the_chat(browser, evidence_server) -> None:
    page = browser.new_page(viewport={"width": 600, "height": 900})
    page.goto(evidence_server.url)
    page.locator("#question textarea").wait_for(timeout=60_000)
    chat, evidence = page.locator("#chat").bounding_box(), page.locator("#evidence-pane").bounding_box()
    assert evidence["y"] >= chat["y"] + chat["height"]
    page.close()


def test_an_answer_that_arrives_on_another_tab_is_in_view_back_on_the_chat(browser, evidence_server) -> None:
    page = asked_about_the_crane(browser, evidence_server.url)
    for question in ("How many boats does the ferry company run?", "What is the population of Dongguan?"):
        ask(page, question)
    page.locator("#question textarea").fill("How many containers did the new harbour crane lift?")
    page.locator("#ask").click()
    page.get_by_role("tab", name="Documents").click()  # the answer arrives while the Documents tab is open
    page.wait_for_function("() => document.querySelector('#chat').innerHTML.includes('#cite-3-1')", timeout=120_000)
    page.get_by_role("tab", name="Chat").click()
    page.wait_for_function(
        """() => { const messages = document.querySelectorAll('#chat .message');
                   const last = messages[messages.length - 1].getBoundingClientRect();
                   const box = document.querySelector('#chat').getBoundingClientRect();
                   return last.bottom <= box.bottom + 1 && last.top >= box.top; }""", timeout=10_000)
    shot(page, "chat-back-from-documents")
    page.close()
