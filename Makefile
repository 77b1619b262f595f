# twofold developer entry points.
# TORCH_SPEC lets CI pin the CPU build of torch that lies on the machine's disk
# (a bare `torch` requirement would pull a multi-GB CUDA build).
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# PyLate (twofold finetune colbert) lives in its own environment: it pins sentence-transformers 5.3
# and transformers <= 5.3, and its fast-plaid index backend a torch build other than ours.
COLBERT_VENV ?= .venv-colbert
COLBERT_STAMP := $(COLBERT_VENV)/.installed
PYLATE_SPEC ?= pylate==1.6.0
# mosaicml-streaming (its MDSWriter writes the shards twofold's MDS reader is tested on) pins
# transformers<5 and numpy<2.2 and pulls cloud SDKs: its own environment, the writer's few
# requirements only (--no-deps).
MDS_VENV ?= .venv-mds
MDS_STAMP := $(MDS_VENV)/.installed
STREAMING_SPEC ?= mosaicml-streaming==0.13.0

.PHONY: install colbert mds demo test test-colbert test-mds test-slow lint mutation clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# A side environment: a venv with pip upgraded and $(TORCH_SPEC) installed first.
define side_venv
	$(PYTHON) -m venv $(1)
	$(1)/bin/pip install --quiet --upgrade pip
	$(1)/bin/pip install --quiet "$(TORCH_SPEC)"
endef

# PyLate's models, losses and evaluators without its index backend (fast-plaid), hence --no-deps;
# its other requirements are the `colbert` extra.
$(COLBERT_STAMP): pyproject.toml
	$(call side_venv,$(COLBERT_VENV))
	$(COLBERT_VENV)/bin/pip install --quiet -e ".[colbert]" "pytest>=8" "$(TORCH_SPEC)"
	$(COLBERT_VENV)/bin/pip install --quiet --no-deps "$(PYLATE_SPEC)"
	touch $(COLBERT_STAMP)

colbert: $(COLBERT_STAMP)

$(MDS_STAMP): pyproject.toml
	$(call side_venv,$(MDS_VENV))
	$(MDS_VENV)/bin/pip install --quiet -e . "pytest>=8" "$(TORCH_SPEC)" "numpy<2.2" "transformers<5,>=4.21.3" \
		"zstd<2,>=1.5.2.5" "xxhash<4,>=3.0.0" "Brotli>=1.0.9" "python-snappy<1,>=0.6.1" "catalogue<3,>=2" pillow
	$(MDS_VENV)/bin/pip install --quiet --no-deps "$(STREAMING_SPEC)"
	touch $(MDS_STAMP)

mds: $(MDS_STAMP)

# The main job on the built-in default: train, compare and report a tiny pair, offline.
demo: $(STAMP)
	$(BIN)/twofold demo $(DEMO_ARGS)

# One pytest worker per core, each test file on one worker (its module fixtures are built once).
TEST_WORKERS ?= auto
test: $(STAMP) $(COLBERT_STAMP) $(MDS_STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile
	$(COLBERT_VENV)/bin/python -m pytest -m colbert
	$(MDS_VENV)/bin/python -m pytest -m mds tests/data/test_mds.py

test-colbert: $(COLBERT_STAMP)
	$(COLBERT_VENV)/bin/python -m pytest -m colbert

test-mds: $(MDS_STAMP)
	$(MDS_VENV)/bin/python -m pytest -m mds tests/data/test_mds.py

test-slow: $(STAMP)
	$(BIN)/pip install --quiet -e ".[dev,multilingual]" "$(TORCH_SPEC)"
	$(BIN)/python -m pytest -m slow

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks tools

# Mutation testing (slow, not in CI): every behaviour-critical module, or one with
# `make mutation MODULE=src/twofold/data/objectives.py`. Results: docs/testing.md.
mutation: $(STAMP)
	$(BIN)/pip install --quiet -e ".[dev,mutation]" "$(TORCH_SPEC)"
	$(BIN)/python tools/mutation.py $(MODULE)

clean:
	rm -rf $(VENV) $(COLBERT_VENV) $(MDS_VENV) build mutants *.egg-info src/*.egg-info .pytest_cache
