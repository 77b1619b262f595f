"""Shared fixtures: small real token stores on disk (the tokenizer is `tests/conftest.py`'s)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.cache import cached

from twofold.data.sources import SourceSpec, SourceStats, read_documents
from twofold.data.stdlib import stdlib_documents
from twofold.data.store import prepare_store

PACKAGES = ["json", "email"]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def read(spec: SourceSpec) -> tuple[list, SourceStats]:
    """A source's documents and the counts its reading kept."""
    stats = SourceStats()
    return list(read_documents(spec, stats)), stats


def paragraphs() -> list[str]:
    """Real English/code text: the paragraphs of a few stdlib modules."""
    blocks = []
    for document in stdlib_documents(packages=PACKAGES):
        blocks += [b.strip() for b in document.text.split("\n\n") if len(b.strip()) > 40]
    return blocks


@pytest.fixture(scope="session")
def group_corpus(tmp_path_factory) -> Path:
    """JSONL with three groups of very different sizes (like languages)."""
    blocks = paragraphs()
    sizes = {"big": 240, "mid": 60, "small": 15}
    records, index = [], 0
    for group, count in sizes.items():
        for _ in range(count):
            records.append({"id": f"{group}-{index}", "lang": group, "text": blocks[index % len(blocks)]})
            index += 1
    return cached(tmp_path_factory, "corpus", lambda out: write_jsonl(out / "langs.jsonl", records)) / "langs.jsonl"


@pytest.fixture(scope="session")
def group_store(tmp_path_factory, tokenizer, group_corpus) -> Path:
    spec = SourceSpec(str(group_corpus), group_field="lang", id_field="id")
    build = lambda out: prepare_store([spec], tokenizer, out / "langs", progress=False)
    return cached(tmp_path_factory, "stores", build) / "langs"
