"""Shared fixtures: the real bundled embedder (loaded once) and tiny corpora built in tmp dirs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from rag.embedding import Embedder, load_embedder
from rag.ingest import ingest
from rag.settings import Settings

REPO = Path(__file__).resolve().parent.parent

# CI must pass or fail on the code, not on luck: the same examples on every run (derandomize) and no example
# database carried between runs. Locally ("dev") Hypothesis explores new examples each run and replays the
# failures it saved in .hypothesis/. HYPOTHESIS_PROFILE=ci reproduces a CI run.
hypothesis_settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
hypothesis_settings.register_profile("dev", print_blob=True)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))
SHIPPED_CORPUS = REPO / "corpus"

TINY_CORPUS = {
    "conference.txt": (
        "On March 17 the trade conference took place in Hong Kong. "
        "The event resulted in 33 signed agreements worth 18.47 billion RMB.\n"
        "Around 300 representatives attended."
    ),
    "weather.md": (
        "# Weather\n\nThe rainy season in Dongguan lasts from April to September. "
        "Typhoons arrive mostly in August."
    ),
    "cats.html": (
        "<html><head><style>p {color: red}</style></head><body><h1>Cats</h1>"
        "<p>Domestic cats sleep for about 15 hours a day.</p><script>alert(1)</script></body></html>"
    ),
}


def write_corpus(folder: Path, files: dict[str, str | bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return folder


def segment_file(index_dir: Path, name: str, segment: int = 0) -> Path:
    """A file of one segment (the first by default) of the live index version."""
    import json

    from rag import store

    version = store.current_version(index_dir)
    manifest = json.loads((index_dir / store.VERSIONS / version / store.MANIFEST).read_text())
    return index_dir / store.SEGMENTS / manifest["segments"][segment]["name"] / name


def make_pdf(pages: list[str]) -> bytes:
    """A minimal valid PDF of Helvetica text, one page per item; a newline in an item starts a new line 14 pt
    below (pypdf and PDFium extract the text)."""
    objects: list[bytes] = []
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(len(pages)))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode())
    font_id = 3 + 2 * len(pages)
    for i, text in enumerate(pages):
        content_id = 4 + 2 * i
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {content_id} 0 R "
            f"/Resources << /Font << /F1 {font_id} 0 R >> >> >>".encode()
        )
        lines = [line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") for line in text.split("\n")]
        shown = " T* ".join(f"({line}) Tj" for line in lines)
        leading = " 14 TL" if len(lines) > 1 else ""
        stream = f"BT /F1 12 Tf{leading} 72 720 Td {shown} ET".encode()
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return load_embedder(Settings().embed_model)


@pytest.fixture
def tiny_settings(tmp_path: Path) -> Settings:
    corpus = write_corpus(tmp_path / "corpus", TINY_CORPUS)
    return Settings(corpus_dir=corpus, index_dir=tmp_path / "index")


@pytest.fixture
def tiny_index(tiny_settings: Settings, embedder: Embedder) -> Settings:
    ingest(tiny_settings, embedder=embedder)
    return tiny_settings


@pytest.fixture(scope="session")
def shipped_index(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Settings:
    """The shipped corpus indexed into a temporary folder (the repo's index/ is left alone)."""
    settings = Settings(corpus_dir=SHIPPED_CORPUS, index_dir=tmp_path_factory.mktemp("shipped") / "index")
    ingest(settings, embedder=embedder)
    return settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_rag(*args: str, env: dict | None = None, timeout: float = 300, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """The real console entry point in a child process, as a user runs it (from the repo, unless `cwd`)."""
    return subprocess.run(
        [sys.executable, "-m", "rag.cli", *args],
        capture_output=True, text=True, timeout=timeout, cwd=cwd, env={**os.environ, **(env or {})},
    )


class Server:
    """`rag serve` in a child process on a free localhost port; stopped when the test ends."""

    def __init__(self, settings: Settings, env: dict | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = settings.index_dir.parent / f"server-{self.port}.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "rag.cli", "serve", "--corpus", str(settings.corpus_dir), "--index",
             str(settings.index_dir), "--port", str(self.port)],
            cwd=REPO, env={**os.environ, **(env or {})}, stdout=self.log.open("w"), stderr=subprocess.STDOUT,
        )

    def wait(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log.read_text()}")
            try:
                with urllib.request.urlopen(self.url, timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise TimeoutError(f"server did not answer on {self.url} within {timeout} s:\n{self.log.read_text()}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


@contextmanager
def running_server(settings: Settings, env: dict | None = None) -> Iterator[Server]:
    """`rag serve` started and answering for the body of the `with`, stopped after it."""
    server = Server(settings, env)
    try:
        server.wait()
        yield server
    finally:
        server.stop()
