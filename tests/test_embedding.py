"""The numpy query encoder against the torch embedder (the real bundled model, both ways), and a question
answered from a fresh interpreter without importing torch."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rag.embedding import (Embedder, EmbedderError, QueryEncoder, limit_blas_threads, load_query_encoder, resolve_model_path,
                           unsupported_reason)
from rag.nlp_data import english_stopwords, sentence_splitter
from rag.settings import Settings
from tests.conftest import REPO, SHIPPED_CORPUS, TINY_CORPUS


def many_texts() -> list[str]:
    """Every sentence of the shipped article and the tiny corpus, 80 of its words, and edge cases: numbers and
    currency, accents and CJK, markup, an empty string, and texts longer than the model's 256 word pieces."""
    article = (SHIPPED_CORPUS / "dongguan-hong-kong-cooperation.txt").read_text(encoding="utf-8")
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n+", article + "\n" + "\n".join(TINY_CORPUS.values()))]
    edge = [
        "", "cats", "How many agreements were signed at the conference?", "What is the GDP of Hong Kong?",
        "18.47 billion RMB, US$3.2m and 3,100 people on 17/03/2024", "Café déjà vu — naïve façade", "東莞與香港的合作",
        "<p>markup &amp; entities</p>", "UPPER lower MiXeD", "a " * 400, article[:4000],
    ]
    # Single words, as the answerer embeds question words to find near synonyms.
    words = list(dict.fromkeys(w.lower() for w in re.findall(r"[A-Za-z]{4,}", article)))[:80]
    return [s for s in sentences if s] + words + edge


@pytest.fixture(scope="module")
def encoder() -> QueryEncoder:
    return QueryEncoder(Settings().embed_model)


def test_numpy_vectors_equal_torch_within_1e_4_cosine(encoder: QueryEncoder, embedder: Embedder) -> None:
    texts = many_texts()
    assert len(texts) > 120
    expected = embedder.embed(texts)
    got = encoder.embed(texts)
    assert got.shape == expected.shape == (len(texts), 384) and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    cosines = np.sum(got * expected, axis=1)
    worst = int(np.argmin(cosines))
    assert cosines.min() >= 1 - 1e-4, (texts[worst][:80], float(cosines[worst]))
    # One text alone (the query path) gives the same vector as in a padded batch.
    for i in (0, len(texts) - 2, len(texts) - 1):
        assert float(encoder.embed_one(texts[i]) @ expected[i]) >= 1 - 1e-4


def test_tokens_and_shape_match_the_torch_embedder(encoder: QueryEncoder, embedder: Embedder) -> None:
    assert (encoder.dimension, encoder.max_tokens) == (embedder.dimension, embedder.max_tokens) == (384, 256)
    for text in many_texts()[:20] + ["a " * 400]:
        assert encoder.tokenize(text) == embedder.tokenize(text)
    assert encoder.count_tokens("a " * 400) == 400  # chunking counts whole texts; only the model cuts at 256
    assert encoder.embed([]).shape == (0, 384)


def test_the_query_path_caps_blas_threads_as_set() -> None:
    from threadpoolctl import threadpool_info, threadpool_limits

    def blas_threads() -> set[int]:
        return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}

    with threadpool_limits(limits=2, user_api="blas"):  # restored on exit: the limit is process-wide
        assert blas_threads() == {2}
        load_query_encoder(Settings(blas_threads=1))
        assert blas_threads() == {1}
        limit_blas_threads(0)  # 0 leaves them as they are
        assert blas_threads() == {1}
        load_query_encoder(Settings(blas_threads=3))
        assert blas_threads() == {3}


def test_big_batches_go_to_torch(embedder: Embedder) -> None:
    small = QueryEncoder(Settings().embed_model, max_tokens=20)
    texts = ["Typhoons arrive mostly in August.", "Cats sleep.", "Ferries leave twice a day."]  # 22 word pieces with [CLS] and [SEP]
    small.embed(texts[1:])  # 13 word pieces with [CLS] and [SEP]: numpy
    assert small._torch is None
    np.testing.assert_array_equal(small.embed(texts), embedder.embed(texts))  # the very torch vectors
    assert small._torch is embedder  # the shared, cached instance


def test_a_model_numpy_cannot_run_is_named_and_torch_is_used(tmp_path: Path, monkeypatch) -> None:
    source = Path(resolve_model_path(Settings().embed_model))
    folder = tmp_path / "roberta"
    folder.mkdir()
    for item in source.iterdir():
        (folder / item.name).symlink_to(item)
    (folder / "config.json").unlink()
    config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "roberta"}), encoding="utf-8")
    assert unsupported_reason(folder) == "model_type 'roberta' is not a BERT with absolute positions"
    with pytest.raises(EmbedderError, match=r"cannot run .*roberta.* Set RAG_QUERY_ENCODER=torch"):
        QueryEncoder(str(folder))
    assert unsupported_reason(tmp_path) == f"{tmp_path} lacks config.json, sentence_bert_config.json, " \
                                           "tokenizer.json, model.safetensors, modules.json"

    loaded = []
    monkeypatch.setattr("rag.embedding.load_embedder", lambda name: loaded.append(name) or "torch embedder")
    assert load_query_encoder(Settings(embed_model=str(folder))) == "torch embedder"
    assert load_query_encoder(Settings(query_encoder="torch")) == "torch embedder"
    assert loaded == [str(folder), Settings().embed_model]
    assert isinstance(load_query_encoder(Settings()), QueryEncoder)


def test_stopwords_and_sentence_splitter_are_llama_index_s() -> None:
    from llama_index.core.node_parser.text.utils import split_by_sentence_tokenizer
    from llama_index.core.utils import globals_helper

    assert list(english_stopwords()) == globals_helper.stopwords and "the" in english_stopwords()
    text = (SHIPPED_CORPUS / "dongguan-hong-kong-cooperation.txt").read_text(encoding="utf-8")
    text += " The U.S. grew by 3.28 million. Dr. Kalder came at 5 p.m. today! Did he? Yes."
    assert sentence_splitter()(text) == split_by_sentence_tokenizer()(text)
    assert len(sentence_splitter()(text)) > 20


def test_a_question_in_a_fresh_process_imports_no_torch(shipped_index: Settings) -> None:
    """A subprocess is the point: the test session itself has torch loaded."""
    script = (
        "import sys, json\n"
        "from rag.cli import main\n"
        "code = main(sys.argv[1:])\n"
        "heavy = sorted(set(sys.modules) & {'torch', 'sentence_transformers', 'transformers', 'gradio', 'llama_index',"
        " 'llama_index.core', 'sklearn', 'scipy.stats'})\n"
        "print(json.dumps({'code': code, 'heavy': heavy}), file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, "ask", "How many agreements were signed at the conference?", "--json",
         "--corpus", str(SHIPPED_CORPUS), "--index", str(shipped_index.index_dir)],
        capture_output=True, text=True, timeout=300, cwd=REPO, env=dict(os.environ),
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["short_answer"] == "33"
    assert json.loads(result.stderr.strip().splitlines()[-1]) == {"code": 0, "heavy": []}
