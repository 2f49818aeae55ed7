"""Text the web app sends to the browser: error messages without server paths.

(Escaping of document text and file names is rag.render.escape, the one escaping point.)
"""

from __future__ import annotations

import re
from pathlib import Path

# The directory part of an absolute path that is left after the configured folders are named.
_ABSOLUTE_DIRS = re.compile(r"(?<![\w.:/~-])/(?:[^\s/'\"()`]+/)+")


def public_text(text: str, folders: list[Path]) -> str:
    """`text` with each of `folders` (as configured and resolved) shown by its last name only, and any other
    absolute path cut to its file name: the browser learns no server path."""
    names: dict[str, str] = {}
    for folder in folders:
        for spelling in {str(folder), str(folder.resolve()), folder.as_posix()}:
            names[spelling] = folder.resolve().name or "/"
    for spelling in sorted(names, key=len, reverse=True):
        if spelling.startswith("/"):
            text = text.replace(spelling, names[spelling])
    return _ABSOLUTE_DIRS.sub("", text)
