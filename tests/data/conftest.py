"""Shared fixtures: a small real BPE tokenizer and small real token stores on disk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from twofold.data.sources import SourceSpec
from twofold.data.stdlib import stdlib_documents
from twofold.data.store import prepare_store
from twofold.data.tokenizer import train_tokenizer

PACKAGES = ["json", "email"]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def paragraphs() -> list[str]:
    """Real English/code text: the paragraphs of a few stdlib modules."""
    blocks = []
    for document in stdlib_documents(packages=PACKAGES):
        blocks += [b.strip() for b in document.text.split("\n\n") if len(b.strip()) > 40]
    return blocks


@pytest.fixture(scope="session")
def tokenizer(tmp_path_factory):
    texts = [d.text for d in stdlib_documents(packages=PACKAGES)]
    return train_tokenizer(texts, 512, tmp_path_factory.mktemp("tokenizer"))


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
    return write_jsonl(tmp_path_factory.mktemp("corpus") / "langs.jsonl", records)


@pytest.fixture(scope="session")
def group_store(tmp_path_factory, tokenizer, group_corpus) -> Path:
    out = tmp_path_factory.mktemp("stores") / "langs"
    spec = SourceSpec(str(group_corpus), group_field="lang", id_field="id")
    prepare_store([spec], tokenizer, out, progress=False)
    return out
