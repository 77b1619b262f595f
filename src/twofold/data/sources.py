"""Sources: where documents come from, each with provenance (source, stable id, group).

A source is described by a `SourceSpec`; `read_documents(spec, stats)` streams its documents
one at a time (never the whole corpus in memory) and fills `stats` with what it saw: input
file checksums, skipped bad lines, and non-UTF-8 bytes replaced by U+FFFD.

On the command line a source is `PATH`, `stdlib`, or `key=value,...` with the fields of
`SourceSpec`, e.g. `path=data/fr.jsonl,group=fr,text_field=content`. In a multilingual recipe a
document's group is its language: a fixed `group=`, a record field `group_field=`, or the locale
of a translation catalogue (`kind=gettext,path=django`).

Pre-tokenized sources carry token ids instead of text: a JSONL field or Parquet column of
integer lists named by `ids_field=` (e.g. `ids_field=input_ids`, the published Ettin data
order's column), or NumPy `.npy` files (kind `numpy`: a 1-D array is one document, a 2-D array
one document per row). The store checks the ids against the tokenizer's vocabulary. MDS shards
(kind `mds`, mosaicml-streaming's format, `twofold.data.mds`) give text or ids the same way.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path

from twofold.data.documents import Document, decode_utf8, replace_surrogates
from twofold.errors import TwofoldError
from twofold.files import sha256_file
from twofold.local_datasets import load_dataset

KINDS = ("text", "jsonl", "parquet", "numpy", "mds", "hf", "stdlib", "gettext")
LOCAL_KINDS = ("text", "jsonl", "parquet", "numpy", "mds")
_SUFFIX_KINDS = {".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet", ".npy": "numpy"}
_BLANK_LINES = re.compile(r"\n(?:[ \t\r\f\v]*\n)+")


@dataclass(frozen=True)
class SourceSpec:
    path: str  # file, directory, dataset name (kind=hf), or "stdlib"
    kind: str = ""  # inferred from `path` when empty
    name: str = ""  # defaults to the file/dataset name
    group: str = ""  # fixed group label; defaults to `name`
    group_field: str = ""  # or take the group from this field of each record
    text_field: str = "text"
    ids_field: str = ""  # JSONL/Parquet: pre-tokenized, token ids from this field instead of text
    id_field: str = ""  # take doc ids from this field instead of file:line
    split: str = "file"  # text files: one document per "file" or per "blank-line" block
    skip_bad_lines: bool = False  # JSONL: skip (and count) bad lines instead of stopping
    hf_config: str = ""
    hf_split: str = "train"
    hf_data_files: str = ""  # for builders such as "json"/"parquet": local or remote files
    streaming: bool = False
    part: str = "train"  # stdlib, gettext: "train" or "held-out"
    packages: str = ""  # stdlib: only these top-level packages, joined by "+" (e.g. json+email)

    def __post_init__(self) -> None:
        kind = self.kind or _infer_kind(self.path)
        object.__setattr__(self, "kind", kind)
        if kind not in KINDS:
            raise TwofoldError(f"source {self.path}: unknown kind {kind!r}; use one of {', '.join(KINDS)}")
        if self.split not in ("file", "blank-line"):
            raise TwofoldError(f"source {self.path}: split={self.split!r}; use 'file' or 'blank-line'")
        if not self.name:
            name = "stdlib" if kind == "stdlib" else Path(self.path).stem or self.path
            object.__setattr__(self, "name", name)
        if not self.group:
            object.__setattr__(self, "group", self.name)


@dataclass
class SourceStats:
    """What reading a source saw; recorded in the store's manifest."""

    files: dict[str, str] = field(default_factory=dict)  # input file -> sha256
    bad_lines_skipped: int = 0
    replaced_characters: int = 0


def parse_source_spec(text: str) -> SourceSpec:
    """`PATH`, `stdlib`, or `key=value,key=value` naming `SourceSpec` fields."""
    if "=" not in text:
        return SourceSpec(path=text)
    known = {f.name: f.type for f in fields(SourceSpec)}
    values: dict[str, object] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in known:
            raise TwofoldError(
                f"--source {text!r}: bad item {item!r}; use key=value with keys {', '.join(known)}"
            )
        values[key] = value.strip().lower() in ("1", "true", "yes") if known[key] == "bool" else value.strip()
    if "path" not in values:
        raise TwofoldError(f"--source {text!r}: needs path=… (a file, directory, dataset name or stdlib)")
    return SourceSpec(**values)


def read_documents(spec: SourceSpec, stats: SourceStats | None = None) -> Iterator[Document]:
    stats = stats if stats is not None else SourceStats()
    if spec.kind == "stdlib":
        from twofold.data.stdlib import stdlib_documents

        packages = [p for p in spec.packages.split("+") if p] or None
        for document in stdlib_documents(spec.part, packages):  # under the source's own name
            yield Document(document.text, document.doc_id, spec.name, document.group)
        return
    if spec.kind == "hf":
        yield from _read_hf(spec)
        return
    if spec.kind == "gettext":  # translation catalogues of a package: group = locale
        from twofold.data.catalogues import catalogue_documents

        yield from catalogue_documents(spec.path, spec.part, spec.name)
        return
    if spec.kind == "mds":
        yield from _read_mds(spec, stats)
        return
    files = input_files(spec)
    reader = {"text": _read_text, "jsonl": _read_jsonl, "parquet": _read_parquet, "numpy": _read_numpy}[spec.kind]
    count = 0
    for file, relative in files:
        for document in reader(spec, file, relative, stats):
            count += 1
            yield document
    if count == 0:
        raise TwofoldError(f"source {spec.path}: no documents found (empty source); check the path and kind")


def estimated_size(spec: SourceSpec) -> int | None:
    """Bytes a source will read (for progress and ETA): exact for files, rough for stdlib."""
    if spec.kind in LOCAL_KINDS:
        return sum(file.stat().st_size for file, _ in input_files(spec))
    if spec.kind == "gettext":
        from twofold.data.catalogues import catalogue_files, catalogue_root

        return sum(file.stat().st_size for _, file in catalogue_files(catalogue_root(spec.path)))
    if spec.kind == "stdlib":
        from twofold.data.stdlib import is_held_out, stdlib_modules

        packages = [p for p in spec.packages.split("+") if p] or None
        held_out = spec.part == "held-out"
        code = sum(file.stat().st_size for module, file in stdlib_modules(packages)
                   if is_held_out(module) == held_out)
        # The docstring documents repeat about a sixth of the code; the reference topics ~0.5 MB.
        return int(code * 1.18) + (500_000 if packages is None and not held_out else 0)
    return None


def _infer_kind(path: str) -> str:
    if path == "stdlib":
        return "stdlib"
    return _SUFFIX_KINDS.get(Path(path).suffix.lower(), "text")


def input_files(spec: SourceSpec) -> list[tuple[Path, str]]:
    """Files of a source in a stable order, with the names used in doc ids."""
    root = Path(spec.path)
    if root.is_file():
        return [(root, root.name)]
    if not root.is_dir():
        raise TwofoldError(f"source {spec.path}: no such file or directory; check the path")
    suffixes = {"jsonl": (".jsonl", ".json"), "parquet": (".parquet",), "numpy": (".npy",)}.get(spec.kind)
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    if suffixes:
        files = [p for p in files if p.suffix.lower() in suffixes]
    if not files:
        raise TwofoldError(f"source {spec.path}: directory holds no {spec.kind} files (empty source)")
    return [(p, p.relative_to(root).as_posix()) for p in files]


def _read_text(spec: SourceSpec, file: Path, relative: str, stats: SourceStats) -> Iterator[Document]:
    data = file.read_bytes()
    stats.files[str(file)] = hashlib.sha256(data).hexdigest()
    text, replaced = decode_utf8(data)
    stats.replaced_characters += replaced
    if spec.split == "file":
        if text.strip():
            yield Document(text, relative, spec.name, spec.group)
        return
    for index, block in enumerate(b for b in _BLANK_LINES.split(text) if b.strip()):
        yield Document(block.strip("\n"), f"{relative}#{index}", spec.name, spec.group)


def _read_jsonl(spec: SourceSpec, file: Path, relative: str, stats: SourceStats) -> Iterator[Document]:
    digest = hashlib.sha256()
    with open(file, "rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            digest.update(raw)
            if not raw.strip():
                continue
            line, replaced = decode_utf8(raw)
            stats.replaced_characters += replaced
            try:
                record = json.loads(line)
                text = "" if spec.ids_field else record[spec.text_field]
                ids = _token_ids(record[spec.ids_field]) if spec.ids_field else None
                if not isinstance(text, str):
                    raise TypeError
            except (ValueError, KeyError, TypeError):
                if spec.skip_bad_lines:
                    stats.bad_lines_skipped += 1
                    continue
                what = (f"a list of token ids {spec.ids_field!r}" if spec.ids_field
                        else f"a string field {spec.text_field!r}")
                raise TwofoldError(
                    f"{file}:{line_number}: not a JSON object with {what}; fix the line, set "
                    f"{'ids_field' if spec.ids_field else 'text_field'}=…, or skip_bad_lines=true"
                ) from None
            fields = (text, _doc_id(spec, record, f"{relative}:{line_number}"), _group(spec, record, file, line_number))
            (text, replaced_text), (doc_id, replaced_id), (group, replaced_group) = map(replace_surrogates, fields)
            stats.replaced_characters += replaced_text + replaced_id + replaced_group
            yield Document(text, doc_id, spec.name, group, ids)
    stats.files[str(file)] = digest.hexdigest()


def _read_parquet(spec: SourceSpec, file: Path, relative: str, stats: SourceStats) -> Iterator[Document]:
    import pyarrow.parquet as pq

    stats.files[str(file)] = sha256_file(file)
    try:
        parquet = pq.ParquetFile(file)
    except Exception as error:  # pyarrow raises ArrowInvalid and friends
        raise TwofoldError(f"{file}: not a readable Parquet file ({error})") from None
    column = spec.ids_field or spec.text_field
    if column not in parquet.schema_arrow.names:
        raise TwofoldError(
            f"{file}: no column {column!r} (columns: "
            f"{', '.join(parquet.schema_arrow.names)}); set {'ids_field' if spec.ids_field else 'text_field'}=…"
        )
    row = 0
    for batch in parquet.iter_batches(batch_size=1024):
        for record in batch.to_pylist():
            row += 1
            text, ids = record.get(spec.text_field), None
            if spec.ids_field:
                try:
                    text, ids = "", _token_ids(record[spec.ids_field])
                except (TypeError, ValueError):
                    raise TwofoldError(f"{file}: row {row}: column {spec.ids_field!r} is not a list of token ids; "
                                       "give the column of integer lists (ids_field=…)") from None
            if (isinstance(text, str) and text) or (ids is not None and len(ids)):
                doc_id = _doc_id(spec, record, f"{relative}:{row}")
                yield Document(text, doc_id, spec.name, _group(spec, record, file, row), ids)


def _read_numpy(spec: SourceSpec, file: Path, relative: str, stats: SourceStats) -> Iterator[Document]:
    """A 1-D integer array is one document; a 2-D one, one document per row."""
    import numpy as np

    stats.files[str(file)] = sha256_file(file)
    try:
        array = np.load(file, allow_pickle=False)  # never unpickle a data file
    except (ValueError, OSError) as error:
        raise TwofoldError(f"{file}: not a NumPy .npy array of token ids ({error})") from None
    if array.ndim not in (1, 2) or array.dtype.kind not in "iu":
        raise TwofoldError(f"{file}: holds a {array.ndim}-D {array.dtype} array; give 1-D (one document) or "
                           "2-D (a document per row) integer token ids")
    rows = [array] if array.ndim == 1 else list(array)
    for index, ids in enumerate(rows):
        if len(ids):
            yield Document("", f"{relative}:{index}" if array.ndim == 2 else relative, spec.name, spec.group,
                           ids.astype(np.int64))


def _read_mds(spec: SourceSpec, stats: SourceStats) -> Iterator[Document]:
    """The samples of an MDS folder: token ids from `ids_field` (an integer ndarray) or text."""
    from twofold.data.mds import read_mds

    for file, _ in input_files(spec):
        stats.files[str(file)] = sha256_file(file)
    count = 0
    for sample_id, record in read_mds(spec.path):
        column = spec.ids_field or spec.text_field
        if column not in record:
            raise TwofoldError(f"MDS {spec.path}: sample {sample_id} has no column {column!r} (columns: "
                               f"{', '.join(record)}); set {'ids_field' if spec.ids_field else 'text_field'}=…")
        value = record[column]
        if spec.ids_field and not (hasattr(value, "dtype") and value.dtype.kind in "iu"):
            raise TwofoldError(f"MDS {spec.path}: column {column!r} of sample {sample_id} is not integer token ids")
        count += 1
        doc_id = _doc_id(spec, record, sample_id)
        group = _group(spec, record, spec.path, count)
        if spec.ids_field:
            yield Document("", doc_id, spec.name, group, value.reshape(-1).astype("int64"))
        else:
            yield Document(str(value), doc_id, spec.name, group)


def _token_ids(value):
    """A JSON or Parquet list of integers as an int64 array (ValueError / TypeError otherwise)."""
    import numpy as np

    if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise TypeError("not a list of integers")
    try:
        return np.asarray(value, dtype=np.int64)
    except OverflowError:  # an id beyond 64 bits: a bad line like any other, not a crash
        raise ValueError("a token id does not fit in 64 bits") from None


def _read_hf(spec: SourceSpec) -> Iterator[Document]:
    try:
        dataset = load_dataset(
            spec.path, spec.hf_config or None, split=spec.hf_split, streaming=spec.streaming,
            data_files=spec.hf_data_files or None,
        )
    except Exception as error:  # datasets raises many kinds; all mean "cannot load this"
        raise TwofoldError(f"source {spec.path}: cannot load Hugging Face dataset ({error})") from None
    count = 0
    for index, record in enumerate(dataset):
        if spec.text_field not in record:
            raise TwofoldError(f"source {spec.path}: record {index} has no field "
                               f"{spec.text_field!r}; set text_field=…")
        text = record[spec.text_field]
        if isinstance(text, str) and text:
            count += 1
            text = replace_surrogates(text)[0]  # datasets read from JSON may hold them too
            doc_id = replace_surrogates(_doc_id(spec, record, f"{spec.hf_split}:{index}"))[0]
            yield Document(text, doc_id, spec.name, _group(spec, record, spec.path, index))
    if count == 0:
        raise TwofoldError(f"source {spec.path}: no documents found (empty source)")


def _doc_id(spec: SourceSpec, record: dict, default: str) -> str:
    return str(record[spec.id_field]) if spec.id_field and spec.id_field in record else default


def _group(spec: SourceSpec, record: dict, where: object, line: int) -> str:
    if not spec.group_field:
        return spec.group
    value = record.get(spec.group_field)
    if value is None or value == "":
        raise TwofoldError(f"{where}:{line}: no group field {spec.group_field!r}; add it or drop group_field")
    return str(value)
