"""A document and how its bytes become text: the leaf that sources and corpora share."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_REPLACEMENT = "\ufffd"
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class Document:
    text: str
    doc_id: str  # stable: the same input gives the same id on every run
    source: str
    group: str
    ids: Any = None  # pre-tokenized documents: their token ids (a 1-D integer array), text ""


def decode_utf8(data: bytes) -> tuple[str, int]:
    """Decode UTF-8, replacing invalid bytes by U+FFFD; return the text and how many were replaced."""
    try:
        return data.decode("utf-8"), 0
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="replace")
        # A U+FFFD already present in the input is the valid sequence EF BF BD.
        return text, text.count(_REPLACEMENT) - data.count(_REPLACEMENT.encode())


def replace_surrogates(text: str) -> tuple[str, int]:
    """Replace lone surrogates (JSON's `"\\ud83d"` without its pair: not a character, and no
    UTF-8 encodes it) by U+FFFD, as invalid UTF-8 is; return the text and how many."""
    if text.isascii():
        return text, 0
    return _SURROGATE.subn(_REPLACEMENT, text)
