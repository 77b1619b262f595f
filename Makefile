# twofold developer entry points.
# TORCH_SPEC lets CI pin the CPU build of torch that lies on the machine's disk
# (a bare `torch` requirement would pull a multi-GB CUDA build).
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-slow lint mutation clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# The main job on the built-in default: train, compare and report a tiny pair, offline.
demo: $(STAMP)
	$(BIN)/twofold demo $(DEMO_ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks tools

# Mutation testing (slow, not in CI): every behaviour-critical module, or one with
# `make mutation MODULE=src/twofold/data/objectives.py`. Results: docs/testing.md.
mutation: $(STAMP)
	$(BIN)/pip install --quiet -e ".[dev,mutation]" "$(TORCH_SPEC)"
	$(BIN)/python tools/mutation.py $(MODULE)

clean:
	rm -rf $(VENV) build mutants *.egg-info src/*.egg-info .pytest_cache
