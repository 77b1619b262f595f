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

Opening a store checks what its manifest promises at no real cost: the fingerprint against
the content it hashes, the data files' sizes against the counts, the counts against each
other, the ends of the offsets, the largest token id against the vocabulary. `verify()`
(`twofold data info --verify`) reads everything: checksums, every offset, group and source
index, the token ids and the per-group counts.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
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
from twofold.files import check_out, read_json, sha256_file, staged_directory

FORMAT = "twofold-token-store/1"
MANIFEST = "manifest.json"
TOKENS, OFFSETS, DOC_GROUPS, DOC_SOURCES, DOC_IDS = (
    "tokens.bin", "offsets.bin", "doc_groups.bin", "doc_sources.bin", "doc_ids.txt")
DATA_FILES = (TOKENS, OFFSETS, DOC_GROUPS, DOC_SOURCES, DOC_IDS)
CHUNK_CHARS = 2 << 20
_PREPARE_AGAIN = "the store is damaged; prepare it again with `twofold data prepare --overwrite`"


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


def prepare_store(specs: Sequence[SourceSpec], tokenizer: Tokenizer, out: str | Path, *,
                  overwrite: bool = False, chunk_chars: int = CHUNK_CHARS,
                  progress: bool = True) -> dict:
    """Tokenize `specs` into a store at `out`; return its manifest.

    `overwrite` replaces an existing store, never a file or a folder that is not a store.
    """
    out = Path(out)
    if not specs:
        raise TwofoldError("prepare: no sources given; pass --source PATH (or stdlib)")
    check_out(out, "token store", holds=is_store, overwrite=overwrite)
    for spec in specs:  # fail on a missing or empty path before any work
        if spec.kind in LOCAL_KINDS:
            input_files(spec)
    stats = [SourceStats() for _ in specs]
    total = _total_size(specs)
    with staged_directory(out) as partial:
        writer = _StoreWriter(partial, token_dtype(tokenizer.vocab_size))
        try:
            # disable=None: no bar when stderr is not a terminal (logs, pipes, tests)
            with tqdm(total=total, unit="B", unit_scale=True, disable=None if progress else True,
                      desc=f"prepare {out.name}") as bar:
                for chunk, ids in _tokenized_chunks(_all_documents(specs, stats), tokenizer, chunk_chars):
                    for document, token_ids in zip(chunk, ids):
                        writer.add(document, token_ids if document.ids is None else _given_ids(document, tokenizer))
                    bar.update(sum(len(d.text) for d in chunk))
                    bar.set_postfix(docs=writer.num_documents, tokens=writer.num_tokens, refresh=False)
            manifest = writer.finish(specs, stats, tokenizer)
        finally:
            writer.close()
    return manifest


def is_store(path: str | Path) -> bool:
    """Whether `path` is (or was meant to be) a token store: it holds a manifest."""
    return (Path(path) / MANIFEST).is_file()


def fingerprint(content: dict) -> str:
    """The data fingerprint: sha256 of what defines the tokens (never paths or times)."""
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def _content(manifest: dict) -> dict:
    return {"format": manifest["format"], "tokenizer": manifest["tokenizer"]["hash"], "dtype": manifest["dtype"],
            "groups": [g["name"] for g in manifest["groups"]], "sources": [s["name"] for s in manifest["sources"]],
            "files": manifest["files"]}


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
        self.manifest = read_json(manifest_file, _PREPARE_AGAIN)
        if self.manifest.get("format") != FORMAT:
            raise TwofoldError(f"{manifest_file}: format {self.manifest.get('format')!r} is not {FORMAT!r}")
        try:
            self.fingerprint: str = self.manifest["fingerprint"]
            self.groups: list[str] = [g["name"] for g in self.manifest["groups"]]
            self.sources: list[str] = [s["name"] for s in self.manifest["sources"]]
            self.special_ids: dict[str, int] = dict(self.manifest["tokenizer"]["special_ids"])
            self.vocab_size: int = self.manifest["tokenizer"]["vocab_size"]
            recomputed = fingerprint(_content(self.manifest))
            dtype = np.dtype(self.manifest["dtype"])
            # the groups drive sampling; the sources are provenance, checked by verify()
            groups = self.manifest["groups"]
            counted = {key: sum(int(group[key]) for group in groups) for key in ("tokens", "documents")}
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise TwofoldError(f"{manifest_file}: lacks {error} or has it in the wrong form (edited?); "
                               f"{_PREPARE_AGAIN}") from None
        if recomputed != self.fingerprint:
            raise TwofoldError(f"{manifest_file}: the fingerprint does not match the content it hashes "
                               f"(edited?); {_PREPARE_AGAIN}")
        self.tokens = self._map(TOKENS, dtype, self._count("num_tokens"))
        self.offsets = self._map(OFFSETS, np.int64, self._count("num_documents") + 1)
        self.doc_groups = self._map(DOC_GROUPS, np.uint32, self.num_documents)
        self.doc_sources = self._map(DOC_SOURCES, np.uint32, self.num_documents)
        self._check_counts(counted)

    def _count(self, key: str) -> int:
        value = self.manifest.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise TwofoldError(f"{self.path / MANIFEST}: {key} is {value!r}, not a count; {_PREPARE_AGAIN}")
        return value

    def _check_counts(self, counted: dict) -> None:
        """The manifest's counts agree with each other, with the ends of the offsets and with the vocabulary."""
        where = self.path / MANIFEST
        for key, count in counted.items():
            total = self.num_tokens if key == "tokens" else self.num_documents
            if count != total:
                raise TwofoldError(f"{where}: the groups hold {count} {key} but the store {total} "
                                   f"(edited?); {_PREPARE_AGAIN}")
        if int(self.offsets[0]) != 0 or int(self.offsets[-1]) != self.num_tokens:
            raise TwofoldError(f"{self.path / OFFSETS}: does not span the {self.num_tokens} tokens "
                               f"(damaged); {_PREPARE_AGAIN}")
        largest = self.manifest.get("max_token_id")  # absent in stores prepared before it was recorded
        ids = [*self.special_ids.values(), *([largest] if largest is not None else [])]
        if not isinstance(self.vocab_size, int) or self.vocab_size < 1:
            raise TwofoldError(f"{where}: vocab_size {self.vocab_size!r} is not a count (edited?); {_PREPARE_AGAIN}")
        outside = [i for i in ids if not (isinstance(i, int) and 0 <= i < self.vocab_size)]
        if outside:
            raise TwofoldError(f"{where}: token id {outside[0]!r} does not fit vocab_size {self.vocab_size} "
                               f"(edited?); {_PREPARE_AGAIN}")

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
        if len(counts) > len(self.groups):
            raise TwofoldError(f"{self.path / DOC_GROUPS}: names group {len(counts) - 1} of {len(self.groups)} "
                               f"(damaged); {_PREPARE_AGAIN}")
        return order, np.concatenate([[0], np.cumsum(counts)])

    @cached_property
    def doc_ids(self) -> list[str]:
        return (self.path / DOC_IDS).read_text(encoding="utf-8").split("\n")[:-1]

    def verify(self) -> None:
        """Read everything: checksums, then every offset, index and token id against the manifest."""
        for name, expected in self.manifest["files"].items():
            if sha256_file(self.path / name) != expected:
                raise TwofoldError(f"{self.path / name}: checksum differs from {MANIFEST}; the store is "
                                   "damaged, prepare it again")
        lengths = self.document_lengths()
        if (lengths < 0).any():
            raise TwofoldError(f"{self.path / OFFSETS}: offsets go backwards (damaged); {_PREPARE_AGAIN}")
        largest = int(self.tokens.max()) if self.num_tokens else None
        if largest is not None and largest >= self.vocab_size:
            raise TwofoldError(f"{self.path / TOKENS}: token id {largest} is outside the vocabulary "
                               f"({self.vocab_size}); {_PREPARE_AGAIN}")
        tables = (("groups", self.doc_groups, DOC_GROUPS), ("sources", self.doc_sources, DOC_SOURCES))
        for table, indices, file in tables:
            entries = self.manifest[table]
            documents = np.bincount(indices, minlength=len(entries))
            tokens = np.bincount(indices, weights=lengths, minlength=len(entries))
            counted = [{"documents": int(d), "tokens": int(t)} for d, t in zip(documents, tokens)]
            promised = [{"documents": e["documents"], "tokens": e["tokens"]} for e in entries]
            if counted != promised:
                raise TwofoldError(f"{self.path / file}: the documents and tokens per entry differ from the "
                                   f"{table} of {MANIFEST}; {_PREPARE_AGAIN}")
        if len(self.doc_ids) != self.num_documents:
            raise TwofoldError(f"{self.path / DOC_IDS}: {len(self.doc_ids)} ids for {self.num_documents} "
                               f"documents; {_PREPARE_AGAIN}")

    def _map(self, name: str, dtype, count: int) -> np.ndarray:
        """The file as an array of `count` items; a missing, short or long file is one line."""
        file = self.path / name
        if not file.is_file():
            raise TwofoldError(f"{file}: missing from the token store; prepare it again")
        size, expected = file.stat().st_size, count * np.dtype(dtype).itemsize
        if size != expected:
            raise TwofoldError(f"{file}: {size:,} bytes where {MANIFEST} promises {expected:,} "
                               f"({'truncated' if size < expected else 'too long'}); {_PREPARE_AGAIN}")
        if size == 0:
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

    def discard(self) -> None:
        if not self.handle.closed:
            try:
                self.handle.close()
            except OSError:  # the disk that failed a write may fail the flush too
                pass


class _StoreWriter:
    def __init__(self, directory: Path, dtype: np.dtype):
        self.directory = directory
        self.dtype = dtype
        self.files = {name: _HashedFile(directory / name) for name in DATA_FILES}
        self.files[OFFSETS].write(np.zeros(1, np.int64).tobytes())
        self.num_documents = 0
        self.num_tokens = 0
        self.max_token_id = -1
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
        array = np.asarray(ids, dtype=self.dtype)
        if len(array):
            self.max_token_id = max(self.max_token_id, int(array.max()))
        self.files[TOKENS].write(array.tobytes())
        self.files[OFFSETS].write(np.int64(self.num_tokens).tobytes())
        self.files[DOC_GROUPS].write(np.uint32(_index(self.groups, document.group)).tobytes())
        self.files[DOC_SOURCES].write(np.uint32(_index(self.sources, document.source)).tobytes())
        self.files[DOC_IDS].write(document.doc_id.replace("\n", " ").encode() + b"\n")

    def close(self) -> None:
        """Close whatever is still open (after an error; `finish` closes them itself)."""
        for handle in self.files.values():
            handle.discard()

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
        manifest = {
            "format": FORMAT,
            "fingerprint": "",
            "dtype": self.dtype.name,
            "num_documents": self.num_documents,
            "num_tokens": self.num_tokens,
            "max_token_id": self.max_token_id if self.num_tokens else None,
            # absolute: `export` and `show-batch --decode` find it from any working directory
            "tokenizer": {"hash": tokenizer.hash, "vocab_size": tokenizer.vocab_size,
                          "special_ids": tokenizer.special.to_dict(),
                          "path": str(Path(tokenizer.source).resolve()) if tokenizer.source else ""},
            "groups": [{"name": name, **counts} for name, counts in self.groups.items()],
            "sources": sources,
            "files": files,
        }
        manifest["fingerprint"] = fingerprint(_content(manifest))
        manifest_file = self.directory / MANIFEST
        with open(manifest_file, "w") as handle:
            handle.write(json.dumps(manifest, indent=2) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return manifest


def _location(spec: SourceSpec) -> str:
    if spec.kind == "stdlib":
        return f"stdlib of Python {platform.python_version()} ({spec.part})"
    return str(Path(spec.path).resolve()) if spec.kind in LOCAL_KINDS else spec.path


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
        size += len(document.text) if document.ids is None else 4 * len(document.ids)
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
            pending.append((chunk, pool.submit(_encode, tokenizer, chunk)))
            if len(pending) > in_flight:
                chunk, future = pending.popleft()
                yield chunk, future.result()
        while pending:
            chunk, future = pending.popleft()
            yield chunk, future.result()


def _encode(tokenizer: Tokenizer, chunk: list[Document]) -> list:
    """Token ids of a chunk's text documents; pre-tokenized ones keep theirs (None here)."""
    texts = [d.text for d in chunk if d.ids is None]
    encoded = iter(tokenizer.encode_batch(texts) if texts else [])
    return [next(encoded) if d.ids is None else None for d in chunk]


def _given_ids(document: Document, tokenizer: Tokenizer) -> np.ndarray:
    """A pre-tokenized document's ids, checked against the vocabulary, without the [CLS] / [SEP]
    it may be framed with (the store frames every document itself)."""
    ids = document.ids
    outside = ids[(ids < 0) | (ids >= tokenizer.vocab_size)]
    if len(outside):
        raise TwofoldError(
            f"source {document.source}: document {document.doc_id} holds token id {int(outside[0])}, outside "
            f"the tokenizer's vocabulary of {tokenizer.vocab_size}; prepare the ids with the tokenizer they "
            "were made with (--tokenizer)")
    start = 1 if len(ids) and ids[0] == tokenizer.special.cls else 0
    stop = len(ids) - 1 if len(ids) > start and ids[-1] == tokenizer.special.sep else len(ids)
    return ids[start:stop]


def _total_size(specs: Sequence[SourceSpec]) -> int | None:
    """Approximate input size for the progress bar's ETA; None when a source cannot say."""
    sizes = [estimated_size(spec) for spec in specs]
    return None if None in sizes else sum(sizes)
