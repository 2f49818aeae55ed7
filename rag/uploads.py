"""Uploaded files -> documents in corpus/, or a rejection with the reason; nothing else changes.

Every upload is judged on its own before anything touches the corpus folder:
  - the name: a plain file name (no folders, no absolute path, no backslash, no leading dot, no control
    characters, at most 255 bytes) with a supported extension;
  - the size: at most `Settings.max_upload_mb`;
  - the content: it must parse the way ingest will parse it (`rag.parsing.parse_one` on the bytes: the
    same loaders in a worker process under the same time and memory bounds), so a PNG renamed .txt or a
    ZIP renamed .pdf is turned away here instead of skipped later; .html must contain markup;
  - the same name with different content is refused unless the caller asks to replace it.
An accepted file is written to a hidden temporary file inside corpus/ (which scans and watchers ignore)
and moved into place with `os.replace`, so the folder never holds a half-written document.

No Gradio here: the web tab calls these functions, and tests call them directly.
"""

from __future__ import annotations

import os
import tempfile
import threading
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import filetype

from rag.loaders import HTML_SUFFIXES, SUPPORTED_SUFFIXES, TEXT_SUFFIXES, LoadError, SkippedFile, hash_bytes, scan_corpus
from rag.parsing import parse_one
from rag.settings import Settings

MAX_NAME_BYTES = 255  # what ext4, xfs and btrfs allow for one name
REPLACE_LABEL = "Replace documents with the same name"
TEMP_PREFIX = ".upload-"  # hidden: scan_corpus and the watcher skip dot-files

Status = Literal["added", "replaced", "unchanged", "rejected"]

_store_lock = threading.Lock()  # the exists-check and the move are one step for concurrent uploads


class UploadRejected(Exception):
    """A file that may not enter the corpus; the message names the file, the reason and the fix."""


@dataclass(frozen=True)
class UploadOutcome:
    name: str  # the name as uploaded
    status: Status
    message: str
    stored_as: str | None = None  # document id (name inside corpus/) when the file is in the corpus

    @property
    def ok(self) -> bool:
        return self.status != "rejected"


def human_size(size: float) -> str:
    if size < 1024:
        return f"{int(size)} bytes"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size / (1024 * 1024):.1f} MB"


def max_upload_bytes(settings: Settings) -> int:
    return int(settings.max_upload_mb * 1024 * 1024)


def safe_name(name: str) -> str:
    """The name the file will have in corpus/, or UploadRejected saying what is wrong with it."""
    shown = f"'{name}'" if name.strip() else "(no name)"
    name = unicodedata.normalize("NFC", name.strip())
    if not name:
        raise UploadRejected(f"{shown} rejected: the file has no name; give it a name such as 'notes.txt'")
    if "/" in name or "\\" in name:
        plain = name.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1].lstrip(".") or "notes.txt"
        raise UploadRejected(
            f"{shown} rejected: the name contains a folder path ('/' or '\\'); uploads go straight into the "
            f"corpus folder, so rename the file to a plain name such as '{plain}'"
        )
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in name):
        raise UploadRejected(f"{shown} rejected: the name contains control characters; rename the file")
    if name.startswith("."):
        raise UploadRejected(
            f"{shown} rejected: names starting with '.' are hidden files, which the index ignores; "
            f"rename it to '{name.lstrip('.')}'"
        )
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise UploadRejected(
            f"{shown[:60]}... rejected: the name is {len(name.encode('utf-8'))} bytes long; the limit is "
            f"{MAX_NAME_BYTES}; shorten it"
        )
    suffix = Path(name).suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise UploadRejected(
            f"{shown} rejected: unsupported file type '{suffix or '(none)'}'; upload one of "
            + ", ".join(SUPPORTED_SUFFIXES)
        )
    return name


def check_size(name: str, size: int, settings: Settings) -> None:
    if size == 0:
        raise UploadRejected(f"'{name}' rejected: the file is empty (0 bytes); upload a file with text in it")
    limit = max_upload_bytes(settings)
    if size > limit:
        raise UploadRejected(
            f"'{name}' rejected: the file is {human_size(size)}; the limit is {human_size(limit)} a file "
            f"(setting RAG_MAX_UPLOAD_MB); split the file or raise the limit"
        )


def check_content(name: str, data: bytes, settings: Settings) -> None:
    """Parse the bytes as ingest will; a file that would be skipped there is rejected here."""
    suffix = Path(name).suffix.lower()
    if suffix in TEXT_SUFFIXES + HTML_SUFFIXES + (".csv",) and b"\x00" in data:
        # the loader only looks at the first 8 KB; an upload is checked whole
        raise UploadRejected(f"'{name}' rejected: binary content (NUL bytes) in a text file{_looks_like(data, suffix)}")
    outcome = parse_one(settings.corpus_dir / name, settings.corpus_dir, data, settings)
    if isinstance(outcome, SkippedFile):
        raise UploadRejected(f"'{name}' rejected: {outcome.reason}{_looks_like(data, suffix)}")
    if suffix in HTML_SUFFIXES:
        from bs4 import BeautifulSoup

        if BeautifulSoup(data.decode("utf-8-sig"), "html.parser").find() is None:
            raise UploadRejected(
                f"'{name}' rejected: no HTML markup found; if it is plain text, upload it as .txt"
            )


def _looks_like(data: bytes, suffix: str) -> str:
    """' (the content looks like image/png)' when the bytes carry another type's binary signature."""
    kind = filetype.guess(data)
    return f" (the content looks like {kind.mime})" if kind and f".{kind.extension}" != suffix else ""


def validate(name: str, data: bytes, settings: Settings) -> str:
    """The checked name for these bytes, or UploadRejected; touches no file."""
    name = safe_name(name)
    check_size(name, len(data), settings)
    check_content(name, data, settings)
    return name


def store_upload(settings: Settings, name: str, data: bytes, *, replace: bool = False) -> UploadOutcome:
    """Validate one upload and move it into corpus/; a rejection leaves the folder exactly as it was."""
    try:
        clean = validate(name, data, settings)
    except UploadRejected as err:
        return UploadOutcome(name, "rejected", str(err))
    corpus = settings.corpus_dir
    target = corpus / clean
    with _store_lock:
        if target.is_dir():
            return UploadOutcome(name, "rejected", f"'{clean}' rejected: a folder with this name is in the corpus; "
                                 "upload under another name")
        existed = target.is_file()
        if existed:
            try:
                same = hash_bytes(target.read_bytes()) == hash_bytes(data)
            except OSError as err:
                return UploadOutcome(name, "rejected", f"'{clean}' rejected: the existing file cannot be read "
                                     f"({err.strerror}); check its permissions")
            if same:
                return UploadOutcome(name, "unchanged", f"'{clean}' is already in the corpus with the same "
                                     "content: nothing to do", clean)
            if not replace:
                return UploadOutcome(
                    name, "rejected",
                    f"'{clean}' rejected: a different document with this name is already in the corpus; "
                    f"delete it first, upload under another name, or tick '{REPLACE_LABEL}'",
                )
        try:
            _write_into_place(corpus, target, data)
        except OSError as err:
            return UploadOutcome(name, "rejected", f"'{clean}' rejected: it could not be written to {corpus} "
                                 f"({err.strerror}); check the folder's free space and permissions")
    verb = "replaced" if existed else "added"
    return UploadOutcome(name, verb, f"'{clean}' {verb} ({human_size(len(data))})", clean)


def _write_into_place(corpus: Path, target: Path, data: bytes) -> None:
    corpus.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=corpus, prefix=TEMP_PREFIX, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def store_uploads(settings: Settings, paths: list[Path], *, replace: bool = False) -> list[UploadOutcome]:
    """Several uploaded files (e.g. Gradio's temporary copies, named as the user's files), each on its own."""
    outcomes = []
    limit = max_upload_bytes(settings)
    for path in paths:
        path = Path(path)
        try:
            size = path.stat().st_size
            if size > limit:  # don't read a huge file just to refuse it
                check_size(path.name, size, settings)
            data = path.read_bytes()
        except UploadRejected as err:
            outcomes.append(UploadOutcome(path.name, "rejected", str(err)))
            continue
        except OSError as err:
            outcomes.append(UploadOutcome(path.name, "rejected", f"'{path.name}' rejected: the upload cannot be "
                                          f"read ({err.strerror}); upload it again"))
            continue
        outcomes.append(store_upload(settings, path.name, data, replace=replace))
    return outcomes


def corpus_files(settings: Settings) -> list[str]:
    """Every visible file in corpus/ (indexed or not), as document ids: what a user may delete."""
    try:
        files, skipped = scan_corpus(settings.corpus_dir)
    except LoadError:
        return []
    ids = [p.relative_to(settings.corpus_dir).as_posix() for p in files] + [s.path for s in skipped]
    return sorted(ids)


def delete_document(settings: Settings, doc_id: str) -> str:
    """Remove one file from corpus/ by its document id; the next ingest drops it from the index."""
    if not doc_id:
        raise UploadRejected("no document selected: pick one in the list first")
    if doc_id not in corpus_files(settings):
        raise UploadRejected(f"'{doc_id}' is not a file in {settings.corpus_dir}: refresh the list and pick again")
    path = settings.corpus_dir / doc_id
    try:
        path.unlink()
    except FileNotFoundError:
        raise UploadRejected(f"'{doc_id}' is no longer in {settings.corpus_dir}: refresh the list") from None
    except OSError as err:
        raise UploadRejected(f"'{doc_id}' could not be deleted ({err.strerror}); check the folder's permissions") from err
    return f"'{doc_id}' deleted from the corpus"
