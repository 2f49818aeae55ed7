"""nltk's English stopwords and punkt sentence splitter, as llama-index bundles and builds them, without the
import cost that would keep `rag ask` from starting at once.

`from llama_index.core.utils import globals_helper` imports all of llama-index.core and nltk (about 3.5 s of
CPU here); nltk's own `__init__` imports scikit-learn and scipy.stats for optional integrations nobody here
uses (1.7 of its 2.1 s). So the stopword list is read from llama-index's bundled file, and nltk is imported
with those two optional packages hidden for the duration of the import (nltk skips what it cannot import).
The results are the same objects globals_helper gives (tests/test_embedding.py compares them).
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

# Optional integrations nltk's __init__ tries to import (in try/except); hidden only if not imported already.
# scipy itself is needed (bm25s uses scipy.sparse); its stats package is what costs.
_NLTK_OPTIONAL = ("sklearn", "scipy.stats")


@functools.lru_cache(maxsize=1)
def english_stopwords() -> tuple[str, ...]:
    """nltk's English stopword list from the copy llama-index ships (`globals_helper.stopwords`)."""
    spec = importlib.util.find_spec("llama_index")  # the namespace package only: llama_index.core is not run
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = Path(root) / "core" / "_static" / "nltk_cache" / "corpora" / "stopwords" / "english"
        if path.is_file():
            return tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    from llama_index.core.utils import globals_helper  # another layout: the slow way, same list

    return tuple(globals_helper.stopwords)


def _import_punkt():
    hidden = [name for name in _NLTK_OPTIONAL if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # makes `import name` raise ImportError
    try:
        from nltk.tokenize import PunktSentenceTokenizer
    finally:
        for name in hidden:
            if sys.modules.get(name) is None:
                del sys.modules[name]
    return PunktSentenceTokenizer


@functools.lru_cache(maxsize=1)
def sentence_splitter() -> Callable[[str], list[str]]:
    """llama-index's `split_by_sentence_tokenizer()`: an untrained punkt whose sentences run up to the next
    sentence's start."""
    tokenizer = _import_punkt()()

    def split(text: str) -> list[str]:
        starts = [start for start, _ in tokenizer.span_tokenize(text)]
        return [text[start:end] for start, end in zip(starts, starts[1:] + [len(text)])]

    return split
