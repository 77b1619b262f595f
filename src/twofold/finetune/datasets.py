"""Fine-tuning data: retrieval pairs and labelled texts, from files, BEIR, `datasets` or the built-in set.

`--data` may be
- `stdlib`: the built-in offline set (no download). Retrieval: a docstring's first line ->
  its function's code; classification: a function's docstring -> its top-level package.
  Training examples come from the *train* part of the stdlib split, the test set from the
  held-out modules (the same functions `twofold eval`'s code-search and package tasks score).
- a JSONL, TSV or CSV file (header line) of
  retrieval: `query` (or anchor/question/sentence1) + `positive` (or document/passage/
  sentence2), optional `negative` / `negative_1`…, or labelled pairs `query, document, label`;
  classification: the text column(s) (`--text-fields`, default `sentence`) and `label`;
- a BEIR folder: corpus.jsonl, queries.jsonl, qrels/{train,dev,test}.tsv;
- `hf:NAME[:CONFIG]`: a Hugging Face `datasets` name (needs internet), its train/validation/
  test splits read like a file.
Without a dev or test split, a seeded 10% of the training examples is held out for each one missing
(the share of a split given in its own file stays in training).
Every problem is one `TwofoldError` naming the file, line or column and what to do.

`datasets` (optional, the `hf` extra) is imported only for `hf:` data.
"""

from __future__ import annotations

import csv
import hashlib
import json
import sys
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path

import numpy as np

from twofold.data.stdlib import documented_functions
from twofold.errors import TwofoldError
from twofold.local_datasets import load_dataset

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
QUERY_FIELDS = ("query", "anchor", "question", "sentence1")
POSITIVE_FIELDS = ("positive", "document", "passage", "sentence2", "answer")
HELD_OUT_FRACTION = 0.1
STDLIB_PACKAGES_MIN = (30, 10)  # classification: functions a package needs in the train / held-out part


@dataclass
class RetrievalSet:
    """Queries, a corpus and which documents answer which query, with BEIR's graded relevance."""

    queries: dict[str, str]  # id -> text
    corpus: dict[str, str]  # id -> text
    qrels: dict[str, dict[str, int]]  # query id -> {document id: relevance > 0}
    name: str = ""

    def __len__(self) -> int:
        return len(self.queries)

    @property
    def relevant(self) -> dict[str, set[str]]:
        """query id -> its relevant documents, as the Sentence Transformers and PyLate evaluators take them."""
        return {query: set(docs) for query, docs in self.qrels.items()}


@dataclass
class RetrievalData:
    name: str
    train: list[dict]  # {"query", "positive"[, "negative_1", …]}, or {"query", "document", "label"}
    dev: RetrievalSet
    test: RetrievalSet
    files: list[Path] = field(default_factory=list)

    @property
    def fingerprint(self) -> str:
        return _fingerprint([self.train, _set_json(self.dev), _set_json(self.test)])


@dataclass
class LabelledData:
    name: str
    train: list[tuple[tuple[str, ...], float | int]]
    dev: list[tuple[tuple[str, ...], float | int]]
    test: list[tuple[tuple[str, ...], float | int]]
    labels: list[str] | None  # label names (index = class id); None: regression
    files: list[Path] = field(default_factory=list)
    test_split: str = "test"  # what the scored held-out part is called (GLUE scores its dev set)

    @property
    def regression(self) -> bool:
        return self.labels is None

    @property
    def fingerprint(self) -> str:
        return _fingerprint([self.train, self.dev, self.test, self.labels])


def _fingerprint(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=sorted).encode()).hexdigest()


def _set_json(data: RetrievalSet) -> list:
    return [data.queries, data.corpus, {q: sorted(d) for q, d in data.qrels.items()}]


# ----------------------------------------------------------------------------- rows of a file

def rows(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, row) of a TSV/CSV with a header line, or of a JSONL file."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        with path.open(encoding="utf-8") as file:
            for number, line in enumerate(file, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError:
                    row = None
                if not isinstance(row, dict):
                    raise TwofoldError(f"{path}:{number}: not a JSON object; JSONL needs one object per line")
                yield number, row
    elif suffix in (".tsv", ".csv", ".txt"):
        with path.open(encoding="utf-8", newline="") as file:
            reader = csv.DictReader(file) if suffix == ".csv" else \
                csv.DictReader(file, delimiter="\t", quoting=csv.QUOTE_NONE)  # GLUE's TSVs hold bare quotes
            for row in reader:
                yield reader.line_num, row
    else:
        raise TwofoldError(f"{path}: unknown file type {suffix or '(none)'}; use .jsonl, .tsv or .csv")


def _file_rows(spec: str) -> tuple[str, list[tuple[str, int, dict]], list[Path]]:
    """(name, [(where, line, row)], files) of a data file or a `hf:` dataset split."""
    if spec.startswith("hf:"):
        return _hf_rows(spec)
    path = Path(spec)
    if not path.is_file():
        raise TwofoldError(f"{path}: no such file; pass a .jsonl/.tsv/.csv file, a BEIR folder, stdlib or hf:NAME")
    found = [(str(path), number, row) for number, row in rows(path)]
    if not found:
        raise TwofoldError(f"{path}: no examples; the file needs a header line (TSV/CSV) and at least one row")
    return path.stem, found, [path]


def _hf_rows(spec: str) -> tuple[str, list, list]:
    name, _, config = spec[3:].partition(":")
    try:
        loaded = load_dataset(name, config or None, split="train")
    except Exception as error:  # network, unknown name: the library's message says which
        raise TwofoldError(f"{spec}: cannot load the dataset ({type(error).__name__}: {error})") from None
    return name.replace("/", "_"), [(spec, i + 1, dict(row)) for i, row in enumerate(loaded)], []


def split_off(items: list, seed: int, given: tuple[str, ...] = ()) -> tuple[list, list, list]:
    """(train, dev, test): a seeded HELD_OUT_FRACTION each for dev and test. A split named in `given`
    comes from its own file: it is returned empty and its share stays in train."""
    if len(items) < 3:
        raise TwofoldError(f"only {len(items)} examples; fine-tuning needs at least 3 to hold out a dev and a test "
                           "example (or pass --dev and --test)")
    order = np.random.default_rng(seed).permutation(len(items)).tolist()
    cut = max(1, round(len(items) * HELD_OUT_FRACTION))
    parts = {"dev": order[:cut], "test": order[cut:2 * cut]}
    train = order[2 * cut:] + [i for split in given for i in parts.pop(split)]
    pick = lambda idx: [items[i] for i in sorted(idx)]
    return pick(train), pick(parts.get("dev", [])), pick(parts.get("test", []))


def given_splits(**splits) -> tuple[str, ...]:
    """The names of the splits that were given (truthy)."""
    return tuple(name for name, value in splits.items() if value)


# ----------------------------------------------------------------------------- retrieval

def _pick(row: dict, names: tuple[str, ...]) -> str | None:
    for name in names:
        if row.get(name) not in (None, ""):
            return str(row[name])
    return None


def _retrieval_example(where: str, number: int, row: dict) -> dict:
    query = _pick(row, QUERY_FIELDS)
    if query is None:
        raise TwofoldError(f"{where}:{number}: no query field ({', '.join(QUERY_FIELDS)}); columns: "
                           f"{', '.join(k for k in row if k)}")
    if "label" in row and "document" in row:  # a labelled pair
        try:
            label = float(row["label"])
        except (TypeError, ValueError):
            raise TwofoldError(f"{where}:{number}: label {row['label']!r} is not a number "
                               "(1 relevant, 0 not)") from None
        return {"query": query, "document": str(row["document"]), "label": label}
    positive = _pick(row, POSITIVE_FIELDS)
    if positive is None:
        raise TwofoldError(f"{where}:{number}: no positive field ({', '.join(POSITIVE_FIELDS)}); columns: "
                           f"{', '.join(k for k in row if k)}")
    example = {"query": query, "positive": positive}
    negatives = [row[k] for k in sorted(row) if k and k.startswith("negative") and row[k] not in (None, "")]
    for i, negative in enumerate(negatives, start=1):
        example[f"negative_{i}"] = str(negative)
    return example


def _read_columns(row: dict) -> set[str]:
    """The columns of `row` that `_retrieval_example` reads."""
    def first(names):
        return next((n for n in names if row.get(n) not in (None, "")), None)

    if "label" in row and "document" in row:
        return {first(QUERY_FIELDS), "label", "document"}
    return {first(QUERY_FIELDS), first(POSITIVE_FIELDS), *(k for k in row if k and k.startswith("negative"))}


def _warn_unread(where: str, found: list[tuple[str, int, dict]]) -> None:
    """One warning naming the columns with values that no example reads (a `hard_negative` column
    would otherwise train with no negatives, silently); identifiers are expected and not named."""
    unread: Counter = Counter()
    for _, _, row in found:
        used = _read_columns(row)
        unread.update(k for k, v in row.items() if k and k not in used and v not in (None, "") and not _an_id(k))
    if unread:
        names = ", ".join(f"{k!r} ({n} rows)" for k, n in sorted(unread.items()))
        warnings.warn(f"{where}: column(s) {names} not read: queries are {'/'.join(QUERY_FIELDS)}, positives "
                      f"{'/'.join(POSITIVE_FIELDS)}, negatives any column named negative*, or label with "
                      "document; rename a column to use it", stacklevel=3)


def _an_id(column: str) -> bool:
    name = column.lower()
    return name in ("id", "_id", "idx", "qid", "pid", "docid") or name.endswith(("_id", "-id", "_idx"))


def _as_set(examples: list[dict]) -> RetrievalSet:
    """An IR set from pairs: each query's positives are relevant, every text of the split is the corpus."""
    ids: dict[str, str] = {}
    queries, qrels = {}, defaultdict(dict)
    for example in examples:
        texts = [v for k, v in example.items() if k != "query" and isinstance(v, str)]
        for text in texts:
            ids.setdefault(text, f"d{len(ids)}")
        qid = f"q{len(queries)}" if example["query"] not in queries.values() else \
            next(k for k, v in queries.items() if v == example["query"])
        queries[qid] = example["query"]
        relevant = [example["positive"]] if "positive" in example else \
            [example["document"]] if example.get("label", 0) > 0 else []
        qrels[qid].update({ids[text]: 1 for text in relevant})
    qrels = {q: docs for q, docs in qrels.items() if docs}
    return RetrievalSet({q: queries[q] for q in qrels}, {i: t for t, i in ids.items()}, qrels)


def load_retrieval(spec: str, dev: str | None = None, test: str | None = None, seed: int = 0,
                   packages: tuple[str, ...] | None = None, max_train: int | None = None) -> RetrievalData:
    """Retrieval data for embed / sparse / rerank / colbert."""
    if spec == "stdlib":
        data = stdlib_retrieval(packages, seed)
    elif Path(spec).is_dir():
        data = load_beir(Path(spec), seed)
    else:
        name, found, files = _file_rows(spec)
        train = [_retrieval_example(*row) for row in found]
        _warn_unread(spec, found)
        if not (dev and test):
            train, dev_part, test_part = split_off(train, seed, given_splits(dev=dev, test=test))
        dev_set = _as_set(_retrieval_file(dev, files)) if dev else _as_set(dev_part)
        test_set = _as_set(_retrieval_file(test, files)) if test else _as_set(test_part)
        data = RetrievalData(name, train, dev_set, test_set, files)
    for split, part in (("dev", data.dev), ("test", data.test)):
        if not part.qrels:
            raise TwofoldError(f"{spec}: the {split} split has no query with a relevant document; "
                               "give positives (or labels > 0) there")
    if max_train is not None:
        data.train = data.train[:max_train]
    if not data.train:
        raise TwofoldError(f"{spec}: no training examples")
    return data


def _retrieval_file(spec: str, files: list[Path]) -> list[dict]:
    _, found, more = _file_rows(spec)
    files += more
    examples = [_retrieval_example(*row) for row in found]
    _warn_unread(spec, found)
    return examples


def read_beir(directory: Path) -> tuple[dict[str, str], dict[str, str], dict[str, dict[str, dict[str, int]]]]:
    """(corpus, queries, {split: qrels}) of a BEIR folder: corpus.jsonl, queries.jsonl, qrels/{train,dev,test}.tsv."""
    corpus_file, queries_file, qrels_dir = directory / "corpus.jsonl", directory / "queries.jsonl", directory / "qrels"
    if not directory.is_dir():
        raise TwofoldError(f"{directory}: not a directory; pass a BEIR dataset folder")
    for path in (corpus_file, queries_file):
        if not path.is_file():
            raise TwofoldError(f"{directory}: no {path.name}; a BEIR folder holds corpus.jsonl, queries.jsonl "
                               "and qrels/{train,dev,test}.tsv")
    splits = {s: qrels_dir / f"{s}.tsv" for s in ("train", "dev", "test") if (qrels_dir / f"{s}.tsv").is_file()}
    if not splits:
        raise TwofoldError(f"{directory}: no qrels (qrels/train.tsv, dev.tsv or test.tsv); BEIR qrels are "
                           "'query-id<TAB>corpus-id<TAB>score' lines")
    corpus = {str(row["_id"]): f"{row.get('title') or ''} {row.get('text') or ''}".strip()
              for row in _beir_rows(corpus_file)}
    queries = {str(row["_id"]): str(row.get("text") or "") for row in _beir_rows(queries_file)}
    return corpus, queries, {split: _read_qrels(path, queries, corpus) for split, path in splits.items()}


def _beir_rows(path: Path) -> Iterator[dict]:
    for number, row in rows(path):
        if "_id" not in row:
            raise TwofoldError(f"{path}:{number}: no '_id'; BEIR rows look like {{\"_id\": …, \"text\": …}}")
        yield row


def load_beir(directory: Path, seed: int) -> RetrievalData:
    """A BEIR folder: train pairs from qrels/train.tsv, dev/test IR sets from qrels/{dev,test}.tsv."""
    corpus, queries, qrels = read_beir(directory)
    if "train" not in qrels:
        raise TwofoldError(f"{directory}: no qrels/train.tsv; fine-tuning needs training queries "
                           "(BEIR sets with only test qrels are for evaluation: `twofold eval --task beir`)")
    train_queries = sorted(qrels["train"])
    missing = [split for split in ("dev", "test") if split not in qrels]
    taken = set()
    if missing:  # a seeded tenth of the training queries for each
        _, dev_q, test_q = split_off(train_queries, seed)  # only the missing splits' queries are taken
        for split, held in (("dev", dev_q), ("test", test_q)):
            if split in missing:
                qrels[split] = {q: qrels["train"][q] for q in held}
                taken |= set(held)
    train = [{"query": queries[q], "positive": corpus[d]} for q in train_queries if q not in taken
             for d in sorted(qrels["train"][q])]
    sets = {split: RetrievalSet({q: queries[q] for q in qrels[split]}, corpus, qrels[split])
            for split in ("dev", "test")}
    files = [directory / "corpus.jsonl", directory / "queries.jsonl",
             *(path for s in ("train", "dev", "test") if (path := directory / "qrels" / f"{s}.tsv").is_file())]
    return RetrievalData(directory.name, train, sets["dev"], sets["test"], files)


@lru_cache(maxsize=2)  # checked before an evaluation, then read by each model's task: read once
def beir_test_set(directory: str | Path | None, max_queries: int, seed: int) -> RetrievalSet:
    """The test queries (qrels/test.tsv) of a BEIR folder, a seeded sample of `max_queries`, for zero-shot scoring."""
    if not directory:
        raise TwofoldError("task beir needs --beir DIR (a BEIR dataset: corpus.jsonl, queries.jsonl, qrels/test.tsv)")
    directory = Path(directory)
    corpus, queries, qrels = read_beir(directory)
    if "test" not in qrels:
        raise TwofoldError(f"{directory}: no qrels/test.tsv; evaluation scores the test queries "
                           "(query-id, corpus-id, score)")
    test = qrels["test"]
    chosen = sorted(np.random.default_rng(seed).permutation(sorted(test))[:max_queries].tolist())
    return RetrievalSet({q: queries[q] for q in chosen}, corpus, {q: test[q] for q in chosen}, directory.name)


def _read_qrels(path: Path, queries: dict, corpus: dict) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = defaultdict(dict)
    with path.open(encoding="utf-8") as file:
        for number, line in enumerate(file, start=1):
            fields = line.rstrip("\n").split("\t")
            if (number == 1 and fields[:1] == ["query-id"]) or not line.strip():
                continue
            try:
                query, doc, score = fields[0], fields[1], float(fields[2])
            except (IndexError, ValueError):
                raise TwofoldError(f"{path}:{number}: expected 'query-id<TAB>corpus-id<TAB>score'") from None
            if query not in queries or doc not in corpus:
                missing = "query" if query not in queries else "document"
                raise TwofoldError(f"{path}:{number}: {missing} {query if missing == 'query' else doc!r} is not in "
                                   f"{'queries' if missing == 'query' else 'corpus'}.jsonl")
            if score > 0:
                qrels[query][doc] = max(1, int(score))
    if not qrels:
        raise TwofoldError(f"{path}: no relevant (score > 0) pairs")
    return dict(qrels)


# ----------------------------------------------------------------------------- classification

def load_labelled(spec: str, dev: str | None = None, test: str | None = None, seed: int = 0,
                  text_fields: tuple[str, ...] = ("sentence",), label_field: str = "label",
                  regression: bool | None = None, packages: tuple[str, ...] | None = None,
                  max_train: int | None = None) -> LabelledData:
    """Labelled texts for classify: single texts or pairs, classes or (regression) numbers."""
    if spec == "stdlib":
        data = stdlib_classification(packages, seed)
    else:
        if Path(spec).is_dir():
            raise TwofoldError(f"{spec}: a folder; classify reads a .jsonl/.tsv/.csv file (or stdlib, hf:NAME)")
        name, found, files = _file_rows(spec)
        raw = {"train": [_labelled_example(*row, text_fields, label_field) for row in found]}
        for split, path in (("dev", dev), ("test", test)):
            if path:
                _, more, extra = _file_rows(path)
                files += extra
                raw[split] = [_labelled_example(*row, text_fields, label_field) for row in more]
        if "dev" not in raw or "test" not in raw:
            given = given_splits(dev="dev" in raw, test="test" in raw)
            train, dev_part, test_part = split_off(raw["train"], seed, given)
            raw["train"] = train
            raw.setdefault("dev", dev_part)
            raw.setdefault("test", test_part)
        data = _encode_labels(name, raw, regression, files)
    if max_train is not None:
        data.train = data.train[:max_train]
    return data


def train_and_dev(train: str | Path | None, dev: str | Path | None, text_fields: tuple[str, ...],
                  label_field: str) -> LabelledData:
    """Classes from a training and a dev file (TSV/CSV/JSONL), as `twofold eval --task classification`
    takes them: the dev file is what is scored (it is also the test split), labels sorted by name."""
    if not train or not dev:
        raise TwofoldError("task classification needs --train and --dev files (TSV/CSV/JSONL)")
    train_rows, dev_rows = (read_labelled(path, text_fields, label_field) for path in (train, dev))
    names = sorted({label for _, label in train_rows})
    unseen = sorted({label for _, label in dev_rows} - set(names))
    if unseen:
        raise TwofoldError(f"{dev}: labels {unseen[:5]}{'…' if len(unseen) > 5 else ''} do not occur in "
                           f"{train} (labels there: {names[:10]}); the classifier can only learn training labels")
    if len(names) < 2:
        raise TwofoldError(f"{train}: only one label ({names[0]!r}); classification needs at least two")
    index = {name: i for i, name in enumerate(names)}
    dev_examples = [(texts, index[label]) for texts, label in dev_rows]
    return LabelledData(Path(train).parent.name or Path(train).stem,
                        [(texts, index[label]) for texts, label in train_rows], dev_examples, dev_examples, names,
                        [Path(train), Path(dev)])


def read_labelled(path: str | Path, text_fields: tuple[str, ...], label_field: str) -> list[tuple[tuple, str]]:
    """((text, …), label) per row of a TSV/CSV with a header line or a JSONL file; the label as text."""
    path = Path(path)
    if not path.is_file():
        raise TwofoldError(f"{path}: no such file; pass a TSV/CSV with a header line or a JSONL file")
    examples = [_labelled_example(str(path), number, row, text_fields, label_field)[:2] for number, row in rows(path)]
    if not examples:
        raise TwofoldError(f"{path}: no examples; the file needs a header line and at least one row")
    return examples


def _labelled_example(where: str, number: int, row: dict, text_fields, label_field) -> tuple:
    missing = [f for f in (*text_fields, label_field) if row.get(f) is None]
    if missing:
        kind = "label column" if label_field in missing else "text column"
        raise TwofoldError(f"{where}:{number}: {kind} {missing[0]!r} is missing (columns: "
                           f"{', '.join(k for k in row if k)}); set --text-fields / --label-field")
    label = str(row[label_field]).strip()
    if not label:
        raise TwofoldError(f"{where}:{number}: empty label in column {label_field!r}")
    return tuple(str(row[f]) for f in text_fields), label, f"{where}:{number}"


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if np.isfinite(value) else None


def _encode_labels(name: str, raw: dict, regression: bool | None, files: list[Path]) -> LabelledData:
    train_labels = [label for _, label, _ in raw["train"]]
    if regression is None:  # numbers that are not all whole: a regression task (e.g. STS-B)
        numbers = [_number(label) for label in train_labels]
        regression = all(n is not None for n in numbers) and any(n != int(n) for n in numbers)
    if regression:
        out = {}
        for split, examples in raw.items():
            converted = []
            for texts, label, where in examples:
                value = _number(label)
                if value is None:
                    raise TwofoldError(f"{where}: label {label!r} is not a number; a regression task needs "
                                       "numeric labels (or drop --regression)")
                converted.append((texts, value))
            out[split] = converted
        return LabelledData(name, out["train"], out["dev"], out["test"], None, files)
    names = sorted(set(train_labels), key=lambda s: (_number(s) is None, _number(s) or 0, s))
    if len(names) < 2:
        raise TwofoldError(f"{name}: only one label ({names[0]!r}) in the training data; classification needs two")
    index = {label: i for i, label in enumerate(names)}
    out = {}
    for split, examples in raw.items():
        unseen = [(label, where) for _, label, where in examples if label not in index]
        if unseen:
            raise TwofoldError(f"{unseen[0][1]}: label {unseen[0][0]!r} does not occur in the training data "
                               f"(labels there: {names[:10]}); the classifier can only learn training labels")
        out[split] = [(texts, index[label]) for texts, label, _ in examples]
    return LabelledData(name, out["train"], out["dev"], out["test"], names, files)


# ----------------------------------------------------------------------------- the built-in set

@cache
def _functions(part: str, packages: tuple[str, ...] | None):
    return tuple(documented_functions(part, packages))


def _unique_first_lines(functions) -> list[tuple[str, str]]:
    lines = [f.docstring.strip().splitlines()[0] for f in functions]
    counts = Counter(lines)
    return [(line, f.code) for line, f in zip(lines, functions) if counts[line] == 1]


def stdlib_retrieval(packages: tuple[str, ...] | None = None, seed: int = 0) -> RetrievalData:
    """Docstring line -> code: train (and dev) on the train part's functions, test on the held-out ones."""
    pairs = [{"query": q, "positive": code} for q, code in _unique_first_lines(_functions("train", packages))]
    order = np.random.default_rng(seed).permutation(len(pairs)).tolist()
    cut = max(1, round(len(pairs) * HELD_OUT_FRACTION))
    dev = _as_set([pairs[i] for i in sorted(order[:cut])])
    train = [pairs[i] for i in sorted(order[cut:])]
    test = _as_set([{"query": q, "positive": c} for q, c in _unique_first_lines(_functions("held-out", packages))])
    if not test.qrels:
        raise TwofoldError(f"stdlib: no held-out functions in packages {list(packages or [])}; name other packages")
    return RetrievalData("stdlib-code-search", train, dev, test)


def stdlib_classification(packages: tuple[str, ...] | None = None, seed: int = 0,
                          max_per_class: int = 200, max_test_per_class: int = 45) -> LabelledData:
    """Docstring -> top-level package, for packages with enough functions in both parts of the split.

    The test set takes at most `max_test_per_class` held-out functions of each package (a seeded
    sample): the held-out modules hold 100 unittest functions against 15-43 of the others, while
    the train part holds only 33 of unittest, so a full test set would be scored mostly on the
    package the models saw least, and "always unittest" would look like a skill. A held-out
    docstring that also occurs in the train part is left out of the test set.
    """
    train_part, held_out = _functions("train", packages), _functions("held-out", packages)
    counts_train, counts_held = Counter(f.package for f in train_part), Counter(f.package for f in held_out)
    names = sorted(p for p in counts_train if counts_train[p] >= STDLIB_PACKAGES_MIN[0]
                   and counts_held[p] >= STDLIB_PACKAGES_MIN[1])
    if len(names) < 2:
        raise TwofoldError(f"stdlib: fewer than two packages with enough documented functions in "
                           f"{list(packages or ['the standard library'])}; name more packages")
    index = {name: i for i, name in enumerate(names)}
    rng = np.random.default_rng(seed)
    train, dev = [], []
    for name in names:
        docs = [((f.docstring,), index[name]) for f in train_part if f.package == name]
        order = rng.permutation(len(docs))[:max_per_class]
        cut = max(1, round(len(order) * HELD_OUT_FRACTION))
        dev += [docs[i] for i in order[:cut]]
        train += [docs[i] for i in order[cut:]]
    train = [train[i] for i in rng.permutation(len(train))]
    seen = {f.docstring for f in train_part}  # a few held-out modules copy docstrings of train ones
    test = []
    for name in names:
        docs = [((f.docstring,), index[name]) for f in held_out if f.package == name and f.docstring not in seen]
        test += [docs[i] for i in sorted(rng.permutation(len(docs))[:max_test_per_class].tolist())]
    return LabelledData("stdlib-packages", train, dev, test, names)
