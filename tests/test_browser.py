"""The web chat in a real browser: Debian's chromium driven by Playwright against `rag serve` on localhost."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rag.settings import Settings
from tests.conftest import SHIPPED_CORPUS, running_server

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync", "--disable-quic"]

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (make browser / apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def shipped_server(tmp_path_factory):
    """The app on the shipped corpus, building its index on first start as a user's first run does."""
    root = tmp_path_factory.mktemp("served")
    corpus = root / "corpus"
    shutil.copytree(SHIPPED_CORPUS, corpus)
    with running_server(Settings(corpus_dir=corpus, index_dir=root / "index")) as server:
        yield server


def ask(page, question: str) -> None:
    before = page.locator("#chat .message").count()
    page.locator("#question textarea").fill(question)
    page.locator("#ask").click()
    page.wait_for_function(
        "n => document.querySelectorAll('#chat .message').length >= n", arg=before + 2, timeout=60_000
    )


def test_chat_answers_with_sources_and_refuses(browser, shipped_server) -> None:
    page = browser.new_page()
    page.goto(shipped_server.url)
    page.locator("#question textarea").wait_for(timeout=60_000)

    ask(page, "How many agreements were signed at the conference?")
    chat = page.locator("#chat")
    chat.get_by_text("33 —", exact=False).first.wait_for(timeout=30_000)
    text = chat.inner_text()
    assert '33 — "The event proved highly fruitful, resulting in 33 signed agreements' in text
    chat.get_by_text("Sources").first.click()
    chat.get_by_text("corpus/dongguan-hong-kong-cooperation.txt").first.wait_for(timeout=10_000)

    ask(page, "What is the population of Dongguan?")
    chat.get_by_text("The documents do not say.").first.wait_for(timeout=30_000)
    assert "Closest passages" in chat.inner_text()
    page.screenshot(path=str(Path(shipped_server.log).with_suffix(".png")), full_page=True)
    page.close()
