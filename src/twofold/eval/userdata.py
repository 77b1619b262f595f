"""The user's own data: labelled text (GLUE-style TSV, CSV or JSONL) and BEIR retrieval directories.

Every problem with the files is one `TwofoldError` naming the file, the line or column, and
what to do, raised before any model work starts.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from twofold.errors import TwofoldError
from twofold.eval.retrieval import RetrievalSet

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # long documents in one cell


@dataclass
class LabelledSet:
    """Train and dev examples; labels are indices into `label_names` (the train set's labels)."""

    name: str
    train: list[tuple[tuple[str, ...], int]]
    dev: list[tuple[tuple[str, ...], int]]
    label_names: list[str]


def _rows(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, row) of a TSV/CSV with a header line, or of a JSONL file."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        with path.open(encoding="utf-8") as file:
            for number, line in enumerate(file, start=1):
                if line.strip():
                    try:
                        row = json.loads(line)
                    except ValueError:
                        raise TwofoldError(f"{path}:{number}: not a JSON object; "
                                           "JSONL needs one object per line") from None
                    if not isinstance(row, dict):
                        raise TwofoldError(f"{path}:{number}: not a JSON object; JSONL needs one object per line")
                    yield number, row
    elif suffix in (".tsv", ".csv", ".txt"):
        with path.open(encoding="utf-8", newline="") as file:
            if suffix == ".csv":
                reader = csv.DictReader(file)
            else:  # GLUE's TSVs hold unescaped quotes
                reader = csv.DictReader(file, delimiter="\t", quoting=csv.QUOTE_NONE)
            for row in reader:
                yield reader.line_num, row
    else:
        raise TwofoldError(f"{path}: unknown file type {suffix or '(none)'}; use .tsv, .csv or .jsonl")


def read_labelled(path: str | Path, text_fields: Sequence[str], label_field: str) -> list[tuple[tuple[str, ...], str]]:
    """((text, …), label) per row; the label as text."""
    path = Path(path)
    if not path.is_file():
        raise TwofoldError(f"{path}: no such file; pass a TSV/CSV with a header line or a JSONL file")
    wanted = [*text_fields, label_field]
    examples = []
    for number, row in _rows(path):
        missing = [f for f in wanted if row.get(f) is None]
        if missing:
            columns = ", ".join(k for k in row if k is not None)
            kind = "label column" if label_field in missing else "text column"
            raise TwofoldError(f"{path}:{number}: {kind} {missing[0]!r} is missing (columns: {columns}); "
                               "set --text-fields / --label-field to the file's column names")
        examples.append((tuple(str(row[f]) for f in text_fields), str(row[label_field])))
    if not examples:
        raise TwofoldError(f"{path}: no examples; the file needs a header line and at least one row")
    return examples


def read_classification(train: str | Path | None, dev: str | Path | None, text_fields: Sequence[str],
                        label_field: str) -> LabelledSet:
    if not train or not dev:
        raise TwofoldError("task classification needs --train and --dev files (TSV/CSV/JSONL)")
    train_rows = read_labelled(train, text_fields, label_field)
    dev_rows = read_labelled(dev, text_fields, label_field)
    names = sorted({label for _, label in train_rows})
    unseen = sorted({label for _, label in dev_rows} - set(names))
    if unseen:
        raise TwofoldError(f"{dev}: labels {unseen[:5]}{'…' if len(unseen) > 5 else ''} do not occur in "
                           f"{train} (labels there: {names[:10]}); the classifier can only learn training labels")
    if len(names) < 2:
        raise TwofoldError(f"{train}: only one label ({names[0]!r}); classification needs at least two")
    index = {name: i for i, name in enumerate(names)}
    return LabelledSet(
        name=Path(train).parent.name or Path(train).stem,
        train=[(texts, index[label]) for texts, label in train_rows],
        dev=[(texts, index[label]) for texts, label in dev_rows],
        label_names=names,
    )


def _jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    for number, row in _rows(path):
        if "_id" not in row:
            raise TwofoldError(f"{path}:{number}: no '_id'; BEIR rows look like {{\"_id\": …, \"text\": …}}")
        yield number, row


@lru_cache(maxsize=2)  # checked before the run, then read by each model's task: read once
def read_beir(directory: str | Path | None, max_queries: int, seed: int) -> RetrievalSet:
    """corpus.jsonl, queries.jsonl and qrels/test.tsv of a BEIR dataset; a seeded sample of queries."""
    if not directory:
        raise TwofoldError("task beir needs --beir DIR (a BEIR dataset: corpus.jsonl, queries.jsonl, qrels/test.tsv)")
    directory = Path(directory)
    if not directory.is_dir():
        raise TwofoldError(f"{directory}: not a directory; pass a BEIR dataset folder")
    paths = {name: directory / name for name in ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv")}
    for name, path in paths.items():
        if not path.is_file():
            raise TwofoldError(f"{directory}: no {name}; a BEIR directory holds corpus.jsonl, queries.jsonl "
                               "and qrels/test.tsv (query-id, corpus-id, score)")
    documents = {str(row["_id"]): f"{row.get('title') or ''} {row.get('text') or ''}".strip()
                 for _, row in _jsonl(paths["corpus.jsonl"])}
    queries = {str(row["_id"]): str(row.get("text") or "") for _, row in _jsonl(paths["queries.jsonl"])}
    qrels: dict[str, dict[str, int]] = {}
    with paths["qrels/test.tsv"].open(encoding="utf-8") as file:
        for number, line in enumerate(file, start=1):
            fields = line.rstrip("\n").split("\t")
            if number == 1 and fields[:1] == ["query-id"] or not line.strip():
                continue
            try:
                query, doc, score = fields[0], fields[1], int(float(fields[2]))
            except (IndexError, ValueError):
                raise TwofoldError(f"{paths['qrels/test.tsv']}:{number}: "
                                   "expected 'query-id<TAB>corpus-id<TAB>score'") from None
            if score > 0 and query in queries:
                qrels.setdefault(query, {})[doc] = score
    if not qrels:
        raise TwofoldError(f"{paths['qrels/test.tsv']}: no relevant pairs for the queries in queries.jsonl")
    chosen = sorted(np.random.default_rng(seed).permutation(sorted(qrels))[:max_queries].tolist())
    return RetrievalSet(name=directory.name, queries={q: queries[q] for q in chosen}, documents=documents,
                        qrels={q: qrels[q] for q in chosen})
