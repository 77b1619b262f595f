"""Token store: documents tokenized once into memory-mapped arrays plus a manifest.

A store directory holds
    tokens.bin       all token ids of all documents, back to back (uint16, or uint32 if needed)
    offsets.bin      int64, num_documents + 1: document i is tokens[offsets[i]:offsets[i+1]]
    doc_groups.bin   uint32 per document: index into manifest["groups"]
    doc_sources.bin  uint32 per document: index into manifest["sources"]
    doc_ids.txt      one stable document id per line
    manifest.json    counts per source/group, tokenizer, checksums and the data fingerprint

`prepare_store` streams: documents are read and tokenized in chunks (the tokenizer encodes each
chunk on all cores in a background thread while the next chunk is read), so memory stays
bounded whatever the corpus size. Everything is written into a hidden `.NAME.partial` directory
that is renamed to NAME only once complete, so a directory named NAME is always a whole store;
a rerun after an interruption deletes the leftover partial directory and starts over. The
fingerprint hashes the content (tokens, boundaries, ids, groups, tokenizer), not paths or
times, so a rerun over the same input gives the same fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from pathlib import Path

import numpy as np
from tqdm import tqdm

from twofold.data.sources import (
    LOCAL_KINDS,
    Document,
    SourceSpec,
    SourceStats,
    estimated_size,
    input_files,
    read_documents,
)
from twofold.data.tokenizer import Tokenizer
from twofold.errors import TwofoldError
from twofold.files import fsync_path, sha256_file

FORMAT = "twofold-token-store/1"
MANIFEST = "manifest.json"
TOKENS, OFFSETS, DOC_GROUPS, DOC_SOURCES, DOC_IDS = (
    "tokens.bin", "offsets.bin", "doc_groups.bin", "doc_sources.bin", "doc_ids.txt")
DATA_FILES = (TOKENS, OFFSETS, DOC_GROUPS, DOC_SOURCES, DOC_IDS)
CHUNK_CHARS = 2 << 20


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


def prepare_store(specs: Sequence[SourceSpec], tokenizer: Tokenizer, out: str | Path, *,
                  overwrite: bool = False, chunk_chars: int = CHUNK_CHARS,
                  progress: bool = True) -> dict:
    """Tokenize `specs` into a store at `out`; return its manifest."""
    out = Path(out)
    if not specs:
        raise TwofoldError("prepare: no sources given; pass --source PATH (or stdlib)")
    if out.exists() and not overwrite:
        raise TwofoldError(f"{out}: already exists; choose another --out or pass --overwrite")
    for spec in specs:  # fail on a missing or empty path before any work
        if spec.kind in LOCAL_KINDS:
            input_files(spec)
    partial = out.parent / f".{out.name}.partial"
    if partial.exists():  # left by an interrupted run: never resumed half-way, rebuilt
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    writer = _StoreWriter(partial, token_dtype(tokenizer.vocab_size))
    stats = [SourceStats() for _ in specs]
    total = _total_size(specs)
    # disable=None: no bar when stderr is not a terminal (logs, pipes, tests)
    with tqdm(total=total, unit="B", unit_scale=True, disable=None if progress else True,
              desc=f"prepare {out.name}") as bar:
        for chunk, ids in _tokenized_chunks(_all_documents(specs, stats), tokenizer, chunk_chars):
            for document, token_ids in zip(chunk, ids):
                writer.add(document, token_ids)
            bar.update(sum(len(d.text) for d in chunk))
            bar.set_postfix(docs=writer.num_documents, tokens=writer.num_tokens, refresh=False)
    manifest = writer.finish(specs, stats, tokenizer)
    if out.exists():
        old = out.parent / f".{out.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
        partial.rename(out)
        shutil.rmtree(old)
    else:
        partial.rename(out)
    fsync_path(out.parent)
    return manifest


class TokenStore:
    """A prepared store, memory-mapped (read-only)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        manifest_file = self.path / MANIFEST
        if not manifest_file.is_file():
            hint = " (an interrupted prepare leaves .NAME.partial; rerun it)" if self.path.parent.joinpath(
                f".{self.path.name}.partial").exists() else ""
            raise TwofoldError(
                f"{self.path}: not a complete token store (no {MANIFEST}){hint}; "
                "create it with `twofold data prepare`"
            )
        self.manifest = json.loads(manifest_file.read_text())
        if self.manifest.get("format") != FORMAT:
            raise TwofoldError(f"{manifest_file}: format {self.manifest.get('format')!r} is not {FORMAT!r}")
        self.fingerprint: str = self.manifest["fingerprint"]
        self.groups: list[str] = [g["name"] for g in self.manifest["groups"]]
        self.sources: list[str] = [s["name"] for s in self.manifest["sources"]]
        self.special_ids: dict[str, int] = self.manifest["tokenizer"]["special_ids"]
        self.vocab_size: int = self.manifest["tokenizer"]["vocab_size"]
        self.tokens = self._map(TOKENS, self.manifest["dtype"])
        self.offsets = self._map(OFFSETS, np.int64)
        self.doc_groups = self._map(DOC_GROUPS, np.uint32)
        self.doc_sources = self._map(DOC_SOURCES, np.uint32)

    def __getstate__(self) -> dict:  # reopen by path instead of pickling the arrays
        return {"path": self.path}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"])

    @property
    def num_documents(self) -> int:
        return len(self.offsets) - 1

    @property
    def num_tokens(self) -> int:
        return len(self.tokens)

    def document(self, index: int) -> np.ndarray:
        return self.tokens[self.offsets[index]:self.offsets[index + 1]]

    def document_lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def group_tokens(self) -> dict[str, int]:
        return {g["name"]: g["tokens"] for g in self.manifest["groups"]}

    def documents_of(self, group: str) -> np.ndarray:
        """Indices of the documents of `group`, ascending."""
        order, starts = self._by_group
        index = self.groups.index(group)
        return order[starts[index]:starts[index + 1]]

    @cached_property
    def _by_group(self) -> tuple[np.ndarray, np.ndarray]:
        # One stable sort serves every group (a scan per group would cost groups × documents).
        order = np.argsort(self.doc_groups, kind="stable")
        counts = np.bincount(self.doc_groups, minlength=len(self.groups))
        return order, np.concatenate([[0], np.cumsum(counts)])

    @cached_property
    def doc_ids(self) -> list[str]:
        return (self.path / DOC_IDS).read_text(encoding="utf-8").split("\n")[:-1]

    def verify(self) -> None:
        """Recompute the checksums of the data files and compare them with the manifest."""
        for name, expected in self.manifest["files"].items():
            if sha256_file(self.path / name) != expected:
                raise TwofoldError(f"{self.path / name}: checksum differs from {MANIFEST}; the store is "
                                   "damaged, prepare it again")

    def _map(self, name: str, dtype) -> np.ndarray:
        file = self.path / name
        if not file.is_file():
            raise TwofoldError(f"{file}: missing from the token store; prepare it again")
        if file.stat().st_size == 0:
            return np.zeros(0, dtype=dtype)
        # A plain ndarray view of the map: slicing a np.memmap subclass costs more per call.
        return np.asarray(np.memmap(file, dtype=dtype, mode="r"))


class _HashedFile:
    def __init__(self, path: Path):
        self.handle = open(path, "wb")
        self.sha256 = hashlib.sha256()

    def write(self, data: bytes) -> None:
        self.handle.write(data)
        self.sha256.update(data)

    def close(self) -> str:
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        return self.sha256.hexdigest()


class _StoreWriter:
    def __init__(self, directory: Path, dtype: np.dtype):
        self.directory = directory
        self.dtype = dtype
        self.files = {name: _HashedFile(directory / name) for name in DATA_FILES}
        self.files[OFFSETS].write(np.zeros(1, np.int64).tobytes())
        self.num_documents = 0
        self.num_tokens = 0
        self.groups: dict[str, dict[str, int]] = {}  # insertion order = group index
        self.sources: dict[str, dict[str, int]] = {}

    def add(self, document: Document, ids: list[int]) -> None:
        group = self.groups.setdefault(document.group, {"documents": 0, "tokens": 0})
        source = self.sources.setdefault(document.source, {"documents": 0, "tokens": 0})
        for counts in (group, source):
            counts["documents"] += 1
            counts["tokens"] += len(ids)
        self.num_documents += 1
        self.num_tokens += len(ids)
        self.files[TOKENS].write(np.asarray(ids, dtype=self.dtype).tobytes())
        self.files[OFFSETS].write(np.int64(self.num_tokens).tobytes())
        self.files[DOC_GROUPS].write(np.uint32(_index(self.groups, document.group)).tobytes())
        self.files[DOC_SOURCES].write(np.uint32(_index(self.sources, document.source)).tobytes())
        self.files[DOC_IDS].write(document.doc_id.replace("\n", " ").encode() + b"\n")

    def finish(self, specs: Sequence[SourceSpec], stats: Sequence[SourceStats],
               tokenizer: Tokenizer) -> dict:
        files = {name: handle.close() for name, handle in self.files.items()}
        sources = []
        for spec, stat in zip(specs, stats):
            counts = self.sources.get(spec.name, {"documents": 0, "tokens": 0})
            sources.append({
                "name": spec.name, "kind": spec.kind, "location": _location(spec),
                **counts,
                "bad_lines_skipped": stat.bad_lines_skipped,
                "replaced_characters": stat.replaced_characters,
                "input_files": stat.files,
            })
        content = {
            "format": FORMAT,
            "tokenizer": tokenizer.hash,
            "dtype": self.dtype.name,
            "groups": list(self.groups),
            "sources": [s["name"] for s in sources],
            "files": files,
        }
        manifest = {
            "format": FORMAT,
            "fingerprint": hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest(),
            "dtype": self.dtype.name,
            "num_documents": self.num_documents,
            "num_tokens": self.num_tokens,
            "tokenizer": {"hash": tokenizer.hash, "vocab_size": tokenizer.vocab_size,
                          "special_ids": tokenizer.special.to_dict(), "path": tokenizer.source},
            "groups": [{"name": name, **counts} for name, counts in self.groups.items()],
            "sources": sources,
            "files": files,
        }
        manifest_file = self.directory / MANIFEST
        with open(manifest_file, "w") as handle:
            handle.write(json.dumps(manifest, indent=2) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return manifest


def _location(spec: SourceSpec) -> str:
    if spec.kind == "stdlib":
        return f"stdlib of Python {platform.python_version()} ({spec.part})"
    return spec.path


def _index(table: dict, key: str) -> int:
    """Position of `key` in an insertion-ordered dict (tables hold few keys)."""
    for position, name in enumerate(table):
        if name == key:
            return position
    raise KeyError(key)


def _all_documents(specs: Sequence[SourceSpec], stats: Sequence[SourceStats]) -> Iterator[Document]:
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise TwofoldError(f"prepare: source names repeat ({', '.join(names)}); give each source name=…")
    for spec, stat in zip(specs, stats):
        yield from read_documents(spec, stat)


def _chunks(documents: Iterable[Document], chunk_chars: int) -> Iterator[list[Document]]:
    chunk, size = [], 0
    for document in documents:
        chunk.append(document)
        size += len(document.text)
        if size >= chunk_chars:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def _tokenized_chunks(documents: Iterable[Document], tokenizer: Tokenizer,
                      chunk_chars: int) -> Iterator[tuple[list[Document], list[list[int]]]]:
    """Encode chunks in background threads (Rust, all cores) while the next chunk is read.

    Two chunks are in flight so that the cores a chunk's longest documents leave idle at its
    end are used by the next one; results come back in order.
    """
    in_flight = 2
    with ThreadPoolExecutor(max_workers=in_flight) as pool:
        pending: deque = deque()
        for chunk in _chunks(documents, chunk_chars):
            pending.append((chunk, pool.submit(tokenizer.encode_batch, [d.text for d in chunk])))
            if len(pending) > in_flight:
                chunk, future = pending.popleft()
                yield chunk, future.result()
        while pending:
            chunk, future = pending.popleft()
            yield chunk, future.result()


def _total_size(specs: Sequence[SourceSpec]) -> int | None:
    """Approximate input size for the progress bar's ETA; None when a source cannot say."""
    sizes = [estimated_size(spec) for spec in specs]
    return None if None in sizes else sum(sizes)
