"""The held-out part of the built-in `stdlib` corpus, read once per process (parsing it takes seconds)."""

from __future__ import annotations

from functools import cache

from twofold.data.documents import Document
from twofold.data.stdlib import HeldOutFunction, held_out_functions, stdlib_documents


@cache
def functions() -> tuple[HeldOutFunction, ...]:
    return tuple(held_out_functions())


@cache
def documents() -> tuple[Document, ...]:
    return tuple(sorted(stdlib_documents("held-out"), key=lambda d: d.doc_id))
