"""Hardening probes of the running web app kept as tests (issue 11): real `rag serve` processes on
localhost, real HTTP requests, Debian's chromium through Playwright.

- nothing leaves the machine: ingest, ask, serve, a page load and a chat turn run under an audit hook
  (a sitecustomize on PYTHONPATH) that records and blocks any DNS look-up or connection off loopback;
- a file name (and a passage) holding HTML or Markdown shows as text and makes the browser fetch nothing;
- chat exports: one file per browser session, removed when the app stops;
- with RAG_AUTH: the login page and /openapi.json name no endpoint and no file, API routes need the
  login, failed logins lock the client address out, and an upload over the limit is refused (413)
  before Gradio keeps any of it.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import time
import urllib.parse
import uuid
from pathlib import Path

import pytest

from rag.settings import Settings
from tests.conftest import REPO, Server, free_port, run_rag, write_corpus
from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, ask, browser  # noqa: F401 - the browser fixture

AUDIT_HOOK = '''
"""Test hook (tests/test_web_hardening.py): record and block every DNS look-up or connection that is not
to this machine's loopback."""
import ipaddress, os, sys

_LOG = os.environ["RAG_TEST_NETWORK_LOG"]


def _local(host):
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    host = str(host).split("%")[0]
    if host in ("", "localhost") or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def _hook(event, args):
    if event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr"):
        host = args[0]
    elif event in ("socket.connect", "socket.sendto", "socket.sendmsg"):
        address = args[-1]
        if not isinstance(address, tuple):
            return  # a Unix socket
        host = address[0]
    else:
        return
    if not _local(host):
        with open(_LOG, "a") as log:
            log.write(f"{os.getpid()} {' '.join(sys.argv)}: {event} {host!r}\\n")
        raise OSError(f"blocked by the test's audit hook: {event} {host!r}")


sys.addaudithook(_hook)
'''

OWL_NAME = "owl`<img src=\\\\127.0.0.1:{port}\\beacon.png>`.txt"
OWL_TEXT = "Barn owls eat voles and mice <img src=http://127.0.0.1:{port}/img.png> about four a night.\n"


def hooked_env(tmp_path: Path) -> dict[str, str]:
    hook_dir = tmp_path / "hook"
    hook_dir.mkdir()
    (hook_dir / "sitecustomize.py").write_text(AUDIT_HOOK)
    log = tmp_path / "network.log"
    log.touch()
    temp = tmp_path / "server-tmp"
    temp.mkdir()
    return {"PYTHONPATH": os.pathsep.join([str(hook_dir), str(REPO)]), "RAG_TEST_NETWORK_LOG": str(log),
            "TMPDIR": str(temp)}


@pytest.mark.browser
@pytest.mark.slow
def test_nothing_leaves_the_machine_and_file_names_show_as_text(tmp_path: Path, browser) -> None:  # noqa: F811
    env = hooked_env(tmp_path)
    log = Path(env["RAG_TEST_NETWORK_LOG"])
    # The hook works: a look-up of a public name is recorded and refused.
    probe = run_rag_python(env, "import socket\ntry:\n    socket.getaddrinfo('example.org', 443)\n"
                                "except OSError as err:\n    print(err)")
    assert probe == "blocked by the test's audit hook: socket.getaddrinfo 'example.org'\n"
    assert "socket.getaddrinfo 'example.org'" in log.read_text()
    log.write_text("")

    beacon_port = free_port()  # nothing listens there; a request to it would still be seen by the browser
    owl_name = OWL_NAME.format(port=beacon_port)
    corpus = write_corpus(tmp_path / "corpus", {"conference.txt": "The trade conference ended with 33 signed "
                                                "agreements.", owl_name: OWL_TEXT.format(port=beacon_port)})
    settings = Settings(corpus_dir=corpus, index_dir=tmp_path / "index")
    paths = ["--corpus", str(corpus), "--index", str(settings.index_dir)]
    result = run_rag("ingest", *paths, env=env)
    assert result.returncode == 0, result.stderr
    result = run_rag("ask", "What do barn owls eat?", "--json", *paths, env=env)
    assert json.loads(result.stdout)["citations"][0]["source"] == owl_name

    server = Server(settings, env=env)
    try:
        server.wait()
        page = browser.new_page()
        requests: list[str] = []
        page.on("request", lambda request: requests.append(request.url))
        page.goto(server.url)
        page.locator("#question textarea").wait_for(timeout=60_000)
        ask(page, "What do barn owls eat?")
        chat = page.locator("#chat")
        chat.get_by_text("Sources").first.click()
        chat.get_by_text(f"corpus/{owl_name}").first.wait_for(timeout=10_000)
        assert f"<img src=http://127.0.0.1:{beacon_port}/img.png>" in chat.inner_text()
        ask(page, "How many agreements were signed?")
        chat.get_by_text("33 —", exact=False).first.wait_for(timeout=30_000)
        assert chat.locator("img").count() == 0
        deadline = time.monotonic() + 30  # the export is written just after the answer is shown
        while "How many agreements" not in "".join(p.read_text() for p in Path(env["TMPDIR"]).glob("rag-chat-*/*/*")):
            assert time.monotonic() < deadline, "the chat export was not rewritten after the last answer"
            time.sleep(0.2)
        exports = list(Path(env["TMPDIR"]).glob("rag-chat-*/*/*"))
        assert [p.name for p in exports] == ["chat.md"]  # one file for the session, rewritten after each answer
        assert "What do barn owls eat?" in exports[0].read_text()  # the whole conversation, in one file
        assert [url for url in requests if not url.startswith(server.url + "/") and not url.startswith("data:")
                and not url.startswith("blob:")] == []
        assert not [url for url in requests if str(beacon_port) in url]
        # Closed only now: the export is written by an event chained after the answer, which Gradio drops
        # when the page goes away first (on a busy machine the answer can arrive just before the close).
        page.close()
    finally:
        server.stop()
    assert server.process.returncode == 0, server.log.read_text()
    assert not list(Path(env["TMPDIR"]).glob("rag-chat-*"))  # removed when the app stopped
    assert log.read_text() == ""  # no look-up or connection off loopback, in any of the processes


def run_rag_python(env: dict[str, str], code: str) -> str:
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**os.environ, **env}, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


# --- with RAG_AUTH ------------------------------------------------------------------------------------


def request(server: Server, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
            source: str = "127.0.0.1") -> tuple[int, bytes, http.client.HTTPResponse]:
    """One HTTP request from the client address `source` (any 127.x address reaches the server)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60, source_address=(source, 0))
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read(), response
    finally:
        connection.close()


def login(server: Server, password: str, source: str = "127.0.0.1") -> tuple[int, bytes, str]:
    body = urllib.parse.urlencode({"username": "alice", "password": password}).encode()
    status, data, response = request(server, "POST", "/login", body,
                                     {"Content-Type": "application/x-www-form-urlencoded"}, source)
    cookies = "; ".join(c.split(";", 1)[0] for c in response.headers.get_all("set-cookie") or [])
    return status, data, cookies


def multipart(name: str, data: bytes) -> tuple[bytes, dict]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\n"
            "Content-Type: text/plain\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("auth")
    corpus = write_corpus(root / "corpus", {"2026-layoff-plan-CONFIDENTIAL.txt": "Ferries leave at 7 am."})
    gradio_temp = root / "gradio-temp"
    gradio_temp.mkdir()
    server = Server(Settings(corpus_dir=corpus, index_dir=root / "index"),
                    env={"RAG_AUTH": "alice:s3cret", "RAG_LOGIN_MAX_FAILURES": "3", "RAG_LOGIN_LOCKOUT_S": "4",
                         "RAG_MAX_UPLOAD_MB": "1", "GRADIO_TEMP_DIR": str(gradio_temp)})
    try:
        server.wait()
        server.gradio_temp = gradio_temp
        yield server
    finally:
        server.stop()


@pytest.mark.slow
def test_the_login_page_and_api_routes_name_nothing_before_a_login(auth_server: Server) -> None:
    status, page, _ = request(auth_server, "GET", "/")
    assert status == 200
    text = page.decode()
    info = json.loads(re.search(r"window\.gradio_api_info = (.*?);</script>", text).group(1))
    assert info["named_endpoints"] == {} and info["unnamed_endpoints"] == {}
    for secret in ("CONFIDENTIAL", "layoff", "respond", "on_upload", "delete_document"):
        assert secret not in text
    assert request(auth_server, "GET", "/openapi.json")[0] == 404
    for method, path in (("GET", "/gradio_api/openapi.json"), ("GET", "/gradio_api/info"), ("GET", "/config"),
                         ("POST", "/gradio_api/reset"), ("POST", "/gradio_api/cancel"),
                         ("POST", "/gradio_api/upload")):
        status, body, _ = request(auth_server, method, path, b"{}", {"Content-Type": "application/json"})
        assert status == 401, (path, status, body)
        assert b"CONFIDENTIAL" not in body

    status, _, cookies = login(auth_server, "s3cret")
    assert status == 200
    status, body, _ = request(auth_server, "GET", "/gradio_api/info", headers={"Cookie": cookies})
    assert status == 200 and json.loads(body)["named_endpoints"] == {}  # callable, but listed nowhere


@pytest.mark.slow
def test_failed_logins_lock_the_client_address_out(auth_server: Server) -> None:
    """RAG_LOGIN_MAX_FAILURES=3, RAG_LOGIN_LOCKOUT_S=4; the attacker is 127.0.0.2, the user 127.0.0.1."""
    for _ in range(3):
        assert login(auth_server, "guess", source="127.0.0.2")[:2] == (400, b'{"detail":"Incorrect credentials."}')
    status, body, cookies = login(auth_server, "s3cret", source="127.0.0.2")  # even the right password
    locked_at = time.monotonic()
    assert status == 429 and cookies == ""
    assert re.fullmatch(r'\{"detail": "Too many failed logins from this address: try again in [1-5] s\."\}',
                        body.decode()), body
    assert login(auth_server, "s3cret", source="127.0.0.1")[0] == 200  # another address is not affected
    deadline = locked_at + 30
    while login(auth_server, "s3cret", source="127.0.0.2")[0] == 429:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert time.monotonic() - locked_at >= 3  # the lock-out lasted (4 s from the third failure)


@pytest.mark.slow
def test_an_upload_over_the_limit_is_refused_before_it_is_kept(auth_server: Server) -> None:
    """RAG_MAX_UPLOAD_MB=1: 2 MB is refused by Gradio while it streams, and nothing stays in its temp folder."""
    body, headers = multipart("big.txt", b"ferry " * (2 * 1024 * 1024 // 6))
    status, reply, _ = request(auth_server, "POST", "/gradio_api/upload", body, headers)
    assert status == 401  # no login: refused before Gradio reads the body
    _, _, cookies = login(auth_server, "s3cret")
    status, reply, _ = request(auth_server, "POST", "/gradio_api/upload", body, {**headers, "Cookie": cookies})
    assert status == 413 and reply == b"File size exceeded maximum allowed size of 1048576 bytes."
    assert [p for p in auth_server.gradio_temp.rglob("*") if p.is_file()] == []
    small, headers = multipart("small.txt", b"Trams run all night.")
    status, reply, _ = request(auth_server, "POST", "/gradio_api/upload", small, {**headers, "Cookie": cookies})
    assert status == 200 and json.loads(reply)[0].endswith("/small.txt")
