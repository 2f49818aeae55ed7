"""Real text and real embedded vectors for the scale benchmark and the ANN curve (bench/ann_curve.py).

Texts are windows of 1, 2 and 3 consecutive sentences of the eval datasets' documents
(eval/datasets/*/source_files/*.txt, public Wikipedia and arXiv text; see their README.md) and the shipped
corpus; queries are the eval sets' real questions. Embedding runs about 50-100 short texts/s on two cores,
so a run embeds at most `embed_limit` texts, caches their vectors under ~/.cache/rag-scale (keyed by the
texts and the model), and synthesises the rest by perturbing real vectors (`synthesise`): the result keeps
the neighbourhood structure of text embeddings, which uniform random vectors do not have (ANN recall on
random vectors is much worse than on real ones, so they would mislead the parameter choice).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
CACHE = Path.home() / ".cache" / "rag-scale"
SEED = 14


def source_texts(repo: Path = REPO) -> list[tuple[str, str]]:
    """(source name, text) of every plain-text document of the eval datasets and the shipped corpus."""
    paths = sorted(repo.glob("eval/datasets/*/source_files/*.txt")) + sorted(repo.glob("corpus/*.txt"))
    if not paths:
        raise FileNotFoundError(f"no eval/datasets/*/source_files/*.txt or corpus/*.txt under {repo}: "
                                "run from a checkout of the repository")
    return [(p.relative_to(repo).as_posix(), p.read_text(encoding="utf-8")) for p in paths]


def passages(repo: Path = REPO) -> list[tuple[str, str]]:
    """(source, passage): windows of 1-3 consecutive sentences, in a fixed shuffled order (seed SEED) so that
    any prefix covers every document."""
    from rag.language import get_language

    units: list[tuple[str, str]] = []
    for source, text in source_texts(repo):
        spans = get_language().split_sentences(text)
        for width in (1, 2, 3):
            for i in range(len(spans) - width + 1):
                units.append((source, " ".join(text[a:b] for a, b in spans[i : i + width])))
    order = np.random.default_rng(SEED).permutation(len(units))
    return [units[i] for i in order]


def queries(repo: Path = REPO) -> list[str]:
    """The eval sets' questions (SQuAD 2.0 sample and full, BlockchainSolana, the shipped article's)."""
    found: list[str] = []
    for path in sorted(repo.glob("eval/datasets/*/questions.jsonl")) + [repo / "eval/questions.jsonl"]:
        if path.is_file():
            found += [json.loads(line)["question"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for path in sorted(repo.glob("eval/datasets/*/rag_dataset.json")):
        found += [ex["query"] for ex in json.loads(path.read_text(encoding="utf-8"))["examples"]]
    return list(dict.fromkeys(found))


def embedded(texts: list[str], model: str, embed: Callable[[list[str]], np.ndarray] | None = None,
             log: Callable[[str], None] = print) -> np.ndarray:
    """Vectors of `texts`, from the cache when this model embedded these texts before, else embedded now
    (with `embed`, default the real sentence-transformers model) and cached."""
    key = hashlib.sha256(json.dumps([model, texts]).encode()).hexdigest()[:20]
    path = CACHE / f"{key}.npy"
    if path.is_file():
        return np.load(path)
    if embed is None:
        from rag.embedding import load_embedder

        embedder = load_embedder(model)
        embed = lambda batch: embedder.embed(batch, batch_size=64)  # noqa: E731
    log(f"embedding {len(texts)} real texts with {model} (cached in {CACHE} for the next run)")
    parts = []
    for start in range(0, len(texts), 1024):
        parts.append(embed(texts[start : start + 1024]))
        log(f"  {start + len(parts[-1])}/{len(texts)}")
    vectors = np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path.with_suffix(".tmp.npy"), vectors)
    path.with_suffix(".tmp.npy").replace(path)
    return vectors


def synthesise(real: np.ndarray, count: int, seed: int = SEED, noise: float = 0.6) -> np.ndarray:
    """`count` unit vectors near the real ones: a real vector plus a third of another plus Gaussian noise of
    norm about `noise`, normalised (cosine about 0.8 to its base vector). Made in blocks to bound memory."""
    rng = np.random.default_rng(seed)
    out = np.empty((count, real.shape[1]), dtype=np.float32)
    scale = noise / np.sqrt(real.shape[1])
    for start in range(0, count, 65536):
        n = min(65536, count - start)
        block = real[rng.integers(0, len(real), n)] + real[rng.integers(0, len(real), n)] / 3
        block += rng.standard_normal(block.shape, dtype=np.float32) * scale
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start : start + n] = block
    return out
