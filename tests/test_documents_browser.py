"""The Documents tab in a real browser (Debian's chromium via Playwright) against `rag serve` on localhost:
upload, re-index, an answer citing the new file, delete; and the RAG_AUTH login."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from rag.loaders import SUPPORTED_SUFFIXES
from rag.settings import Settings
from tests.conftest import TINY_CORPUS, Server, write_corpus
from tests.test_browser import ask, browser  # noqa: F401  (the module-scoped chromium fixture)

pytestmark = pytest.mark.browser

NEW_DOC = "harbour-library.txt"
NEW_TEXT = "The Harbour Library lends 12 telescopes to its members. Each loan lasts two weeks."
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"


USER, PASSWORD = "alice", "s3cret"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`rag serve` on a tiny corpus with RAG_AUTH set: one server start shared by the login and tab tests."""
    root = tmp_path_factory.mktemp("documents")
    settings = Settings(corpus_dir=write_corpus(root / "corpus", TINY_CORPUS), index_dir=root / "index")
    server = Server(settings, env={"RAG_AUTH": f"{USER}:{PASSWORD}"})
    try:
        server.wait()
        yield server, settings
    finally:
        server.stop()


def login(page, url: str, password: str = PASSWORD) -> None:
    page.goto(url)
    page.get_by_label("username").fill(USER)
    page.get_by_label("password").fill(password)
    page.get_by_role("button", name="Login").click()


def table_text(page) -> str:
    return page.locator("#documents-table").inner_text()


def wait_for_text(page, selector: str, text: str, present: bool = True, timeout: float = 30_000) -> None:
    """Wait until the visible text of `selector` does (or no longer does) contain `text`."""
    page.wait_for_function(
        "([sel, text, present]) => { const el = document.querySelector(sel);"
        " return !!el && el.innerText.includes(text) === present; }",
        arg=[selector, text, present], timeout=timeout,
    )


def test_upload_answer_and_delete_in_the_documents_tab(browser, served, tmp_path) -> None:  # noqa: F811
    server, settings = served
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    try:
        login(page, server.url)
        page.get_by_role("tab", name="Documents").click()
        wait_for_text(page, "#documents-table", "conference.txt")
        assert all(name in table_text(page) for name in ("cats.html", "conference.txt", "weather.md"))
        assert NEW_DOC not in table_text(page)
        assert "In sync with the corpus folder." in page.locator("#index-status").inner_text()
        assert f"Upload {', '.join(SUPPORTED_SUFFIXES)} files" in page.locator("#documents-tab").inner_text()
        assert page.locator("#skipped-table").is_hidden()  # nothing skipped: no table of bare headers

        # Two files in one upload: the good one is added and indexed, the PNG renamed .txt is refused.
        uploads = write_corpus(tmp_path / "to-upload", {NEW_DOC: NEW_TEXT, "photo.txt": PNG})
        page.locator("#upload-files input[type=file]").set_input_files([uploads / NEW_DOC, uploads / "photo.txt"])
        wait_for_text(page, "#upload-files", "photo", timeout=10_000)  # the picked files are listed
        page.locator("#upload").click()
        message = page.locator("#documents-message")
        wait_for_text(page, "#documents-message", "Index v", timeout=60_000)
        text = message.inner_text()
        assert f"'{NEW_DOC}' added (82 bytes)" in text
        assert ("'photo.txt' rejected: binary content (NUL bytes) in a text file (the content looks like image/png)"
                in text)
        refused = message.locator(".refused[role=alert]")  # shown as an error, not as a plain bullet
        assert refused.count() == 1 and "'photo.txt' rejected" in refused.inner_text()
        assert "added 1, updated 0, removed 0," in text and "unchanged 3" in text  # ingest's summary
        wait_for_text(page, "#documents-table", NEW_DOC, timeout=10_000)
        assert sorted(p.name for p in settings.corpus_dir.iterdir()) == [
            "cats.html", "conference.txt", NEW_DOC, "weather.md"]  # no photo.txt, no temporary file

        page.get_by_role("tab", name="Chat").click()
        ask(page, "How many telescopes does the library lend?")
        chat = page.locator("#chat")
        chat.get_by_text("12 —").first.wait_for(timeout=30_000)
        assert '12 — "The Harbour Library lends 12 telescopes to its members."' in chat.inner_text()
        chat.get_by_text("Sources").first.click()
        chat.get_by_text(f"corpus/{NEW_DOC}").first.wait_for(timeout=10_000)

        page.get_by_role("tab", name="Documents").click()
        page.locator("#delete-choice input").click()
        page.get_by_role("option", name="weather.md").click()
        page.locator("#delete").click()
        confirm = page.locator("#delete-confirm")
        wait_for_text(page, "#delete-confirm", "Delete weather.md?", timeout=10_000)
        page.locator("#delete-yes").click()
        wait_for_text(page, "#documents-message", "'weather.md' deleted from the corpus", timeout=60_000)
        assert "added 0, updated 0, removed 1," in message.inner_text()
        wait_for_text(page, "#documents-table", "weather.md", present=False, timeout=10_000)
        assert NEW_DOC in table_text(page) and "conference.txt" in table_text(page)
        assert not (settings.corpus_dir / "weather.md").exists()
        assert not confirm.is_visible()
        page.screenshot(path=str(tmp_path / "documents-tab.png"), full_page=True)

        # The app follows corpus/ (rag/watch.py): a file copied in by hand is indexed without a click.
        (settings.corpus_dir / "by-hand.md").write_text("# By hand\n\nThis note was copied into the folder.")
        deadline = time.monotonic() + 30
        while "by-hand.md" not in table_text(page) and time.monotonic() < deadline:
            time.sleep(0.5)
            page.locator("#refresh-documents").click()
        assert "by-hand.md" in table_text(page)
    finally:
        page.close()


def test_rag_auth_requires_the_password(browser, served) -> None:  # noqa: F811
    server, _ = served
    with pytest.raises(urllib.error.HTTPError) as err:  # without logging in, the app's API refuses
        urllib.request.urlopen(f"{server.url}/config", timeout=10)
    assert err.value.code == 401
    wrong = urllib.parse.urlencode({"username": USER, "password": "wrong"}).encode()
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{server.url}/login", data=wrong, timeout=10)
    assert err.value.code == 400
    assert json.loads(err.value.read())["detail"] == "Incorrect credentials."

    page = browser.new_page()
    try:
        login(page, server.url, password="wrong")
        page.get_by_text("Incorrect Credentials").wait_for(timeout=10_000)
        assert page.locator("#question").count() == 0
        login(page, server.url)
        page.get_by_role("tab", name="Documents").wait_for(timeout=30_000)
        page.locator("#question textarea").wait_for(timeout=10_000)
    finally:
        page.close()


def test_the_no_index_warning_goes_once_a_document_is_uploaded(browser, tmp_path) -> None:  # noqa: F811
    settings = Settings(corpus_dir=write_corpus(tmp_path / "corpus", {}), index_dir=tmp_path / "index")
    server = Server(settings)
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    try:
        server.wait()
        page.goto(server.url)
        wait_for_text(page, "#index-problem", "No index could be built: ")
        page.get_by_role("tab", name="Documents").click()
        upload = write_corpus(tmp_path / "to-upload", {NEW_DOC: NEW_TEXT}) / NEW_DOC
        page.locator("#upload-files input[type=file]").set_input_files([upload])
        wait_for_text(page, "#upload-files", NEW_DOC, timeout=10_000)
        page.locator("#upload").click()
        wait_for_text(page, "#documents-message", "Index v", timeout=60_000)
        assert "added 1, updated 0, removed 0," in page.locator("#documents-message").inner_text()

        page.get_by_role("tab", name="Chat").click()
        ask(page, "How many telescopes does the library lend?")
        page.locator("#chat").get_by_text("12 —").first.wait_for(timeout=30_000)
        page.locator("#index-problem").wait_for(state="hidden", timeout=10_000)  # gone after the answer

        fresh = browser.new_page()  # and a page opened now never shows it
        fresh.goto(server.url)
        fresh.locator("#question textarea").wait_for(timeout=30_000)
        fresh.locator("#index-problem").wait_for(state="hidden", timeout=10_000)
        fresh.close()
    finally:
        page.close()
        server.stop()
