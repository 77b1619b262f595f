"""Generation data: prompt -> completion pairs, from files, parallel text, `datasets` or the built-in set.

`--data` (and `--dev` / `--test`) for `twofold finetune generate` may be
- `stdlib`: the built-in offline set, a function's code -> the first line of its docstring.
  Training examples come from the *train* part of the stdlib split (dev: a seeded tenth), the
  test set from the held-out modules (the functions the demo's code completion scores);
- a JSONL, TSV or CSV file (header line) of `prompt` + `completion`, or of `source` + `target`
  rendered into a prompt with a template (`--template`, which must contain `{source}`);
  `--source-field` / `--target-field` name other columns, `a.b` a field inside a record
  (e.g. `translation.src_text`);
- two parallel text files, `SOURCE_FILE,TARGET_FILE`: one sentence per line, line i of one the
  translation of line i of the other, as MT corpora ship (`train.hat,train.eng`);
- `hf:NAME[:CONFIG]`: a Hugging Face `datasets` name or a local dataset folder; its train,
  validation and test splits are read like a file.
Without a dev or test split, a seeded 10% of the training examples is held out for each one missing
(the share of a split given in its own file stays in training).
Every problem is one `TwofoldError` naming the file, line or field and what to do.

`datasets` (optional, the `hf` extra) is imported only for `hf:` data.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np

from twofold.data.stdlib import documented_functions
from twofold.errors import TwofoldError
from twofold.finetune.datasets import HELD_OUT_FRACTION, given_splits, rows, split_off
from twofold.local_datasets import load_dataset

DEFAULT_TEMPLATE = "{source}\n"  # source/target data without --template: the source, then the target
STDLIB_TEMPLATE = "{source}\n# Summary:"  # the built-in set: a function, then its docstring's first line
STDLIB_CODE_LINES = 12  # lines of a function's code in a built-in prompt (its signature and start)
HF_SPLITS = {"train": ("train",), "dev": ("validation", "dev"), "test": ("test",)}


@dataclass(frozen=True)
class Example:
    prompt: str
    completion: str


@dataclass
class GenerationData:
    name: str
    train: list[Example]
    dev: list[Example]
    test: list[Example]
    files: list[Path] = field(default_factory=list)
    template: str | None = None  # how a source became a prompt (None: prompts given as they are)
    test_split: str = "test"

    @property
    def fingerprint(self) -> str:
        parts = [[[e.prompt, e.completion] for e in split] for split in (self.train, self.dev, self.test)]
        return hashlib.sha256(json.dumps([parts, self.template]).encode()).hexdigest()


@dataclass(frozen=True)
class Fields:
    """Which columns hold the texts: prompt/completion as given, or source/target through a template."""

    source: str | None = None  # None: `prompt`, else `source`
    target: str | None = None  # None: `completion`, else `target`
    template: str | None = None

    def check(self) -> Fields:
        if self.template is not None and "{source}" not in self.template:
            raise TwofoldError(f"--template {self.template!r} drops the source: it must contain {{source}} "
                               "where the source text goes, e.g. 'Translate to English: {source}\\nEnglish:'")
        return self


def render(template: str, source: str) -> str:
    """The prompt of `source`: `{source}` replaced (other braces are kept as written)."""
    return template.replace("{source}", source)


# ----------------------------------------------------------------------------- one row

def _value(row: dict, path: str):
    """A column, or a field inside a record column (`translation.src_text`)."""
    value = row
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _example(where: str, number: int, row: dict, fields: Fields) -> Example:
    if fields.source or fields.target or fields.template is not None:
        names = (fields.source or "source", fields.target or "target")
    elif "prompt" in row or "completion" in row:
        names = ("prompt", "completion")
    else:
        names = ("source", "target")
    first, second = (_value(row, name) for name in names)
    if first is None and "prompt" in row and fields.template is not None:
        raise TwofoldError(f"{where}:{number}: prompt/completion rows are used as they are, and --template "
                           "renders source/target rows; drop --template (or name the columns with --source-field)")
    if first is None or second is None:
        missing = names[0] if first is None else names[1]
        raise TwofoldError(f"{where}:{number}: no {missing!r} field (columns: {', '.join(k for k in row if k)}); "
                           "generation data needs prompt + completion, or source + target (--source-field / "
                           "--target-field name other columns)")
    if not str(second).strip():
        raise TwofoldError(f"{where}:{number}: empty {names[1]}; every example needs a text to learn to generate")
    if names[0] == "prompt":
        return Example(str(first), str(second))
    return Example(render(fields.template or DEFAULT_TEMPLATE, str(first)), str(second))


# ----------------------------------------------------------------------------- sources

def _parallel(spec: str) -> tuple[Path, Path] | None:
    """(source file, target file) when `spec` is two files joined by a comma (not one file named with a comma)."""
    if "," not in spec or spec.startswith("hf:") or Path(spec).is_file():
        return None
    first, _, second = spec.partition(",")
    paths = (Path(first), Path(second))
    for path in paths:
        if not path.is_file():
            raise TwofoldError(f"{path}: no such file; parallel text is SOURCE_FILE,TARGET_FILE (one sentence per "
                               "line in each)")
    return paths


def _read_parallel(source: Path, target: Path, template: str | None) -> list[Example]:
    sides = [path.read_text(encoding="utf-8").splitlines() for path in (source, target)]
    if len(sides[0]) != len(sides[1]):
        raise TwofoldError(f"{source} has {len(sides[0])} lines but {target} has {len(sides[1])}; parallel files "
                           "need one sentence per line, line i of one the translation of line i of the other")
    examples = []
    for number, (src, tgt) in enumerate(zip(*sides), start=1):
        if not src.strip() and not tgt.strip():
            continue  # a blank line in both: a paragraph break, not a pair
        if not tgt.strip():
            raise TwofoldError(f"{target}:{number}: empty line where {source}:{number} has a sentence; every "
                               "example needs a text to learn to generate")
        examples.append(Example(render(template or DEFAULT_TEMPLATE, src), tgt))
    return examples


def _pair_name(source: Path, target: Path) -> str:
    """train.hat,train.eng -> hat-eng: the languages, as MT corpora name their files; else the source's stem."""
    if source.suffix and target.suffix and source.suffix != target.suffix:
        return f"{source.suffix[1:]}-{target.suffix[1:]}"
    return source.stem


def _read_file(spec: str, fields: Fields) -> tuple[str, list[Example], list[Path]]:
    pair = _parallel(spec)
    if pair:
        return _pair_name(*pair), _read_parallel(*pair, fields.template), list(pair)
    path = Path(spec)
    if not path.is_file():
        raise TwofoldError(f"{path}: no such file; pass a .jsonl/.tsv/.csv file, SOURCE_FILE,TARGET_FILE, stdlib or "
                           "hf:NAME")
    return path.stem, [_example(str(path), number, row, fields) for number, row in rows(path)], [path]


def _read_hf(spec: str, fields: Fields) -> tuple[str, dict[str, list[Example]]]:
    name, _, config = spec[3:].partition(":")
    try:
        loaded = load_dataset(name, config or None)
    except Exception as error:  # network, unknown name or config: the library's message says which
        raise TwofoldError(f"{spec}: cannot load the dataset ({type(error).__name__}: {error})") from None
    splits = {}
    for ours, theirs in HF_SPLITS.items():
        found = next((s for s in theirs if s in loaded), None)
        if found:
            splits[ours] = [_example(f"{spec}[{found}]", i + 1, dict(row), fields)
                            for i, row in enumerate(loaded[found])]
    if "train" not in splits:
        raise TwofoldError(f"{spec}: no train split (splits: {', '.join(loaded)}); fine-tuning needs one")
    return Path(name).name if Path(name).is_dir() else name.replace("/", "_"), splits


def read_examples(spec: str, template: str | None = None, source_field: str | None = None,
                  target_field: str | None = None) -> list[Example]:
    """Every example of one file (or SOURCE_FILE,TARGET_FILE pair), e.g. a test set scored whole."""
    examples = _read_file(spec, Fields(source_field, target_field, template).check())[1]
    if not examples:
        raise TwofoldError(f"{spec}: no examples")
    return examples


def load_generation(spec: str, dev: str | None = None, test: str | None = None, seed: int = 0,
                    template: str | None = None, source_field: str | None = None, target_field: str | None = None,
                    packages: tuple[str, ...] | None = None, max_train: int | None = None,
                    max_test: int | None = None) -> GenerationData:
    """Prompt -> completion examples for `finetune generate` and `eval --task generate`."""
    fields = Fields(source_field, target_field, template).check()
    if spec == "stdlib":
        if template is not None or source_field or target_field:
            raise TwofoldError("--template / --source-field / --target-field shape file data; the built-in "
                               "stdlib set has its own prompts; drop them")
        data = stdlib_docstrings(packages, seed)
    else:
        files: list[Path] = []
        if spec.startswith("hf:"):
            name, splits = _read_hf(spec, fields)
        else:
            name, train, files = _read_file(spec, fields)
            splits = {"train": train}
        for split, given in (("dev", dev), ("test", test)):
            if given:
                _, splits[split], more = _read_file(given, fields)
                files += more
        if not splits["train"]:
            raise TwofoldError(f"{spec}: no examples")
        if "dev" not in splits or "test" not in splits:
            train, dev_part, test_part = split_off(splits["train"], seed,
                                                    given_splits(dev="dev" in splits, test="test" in splits))
            splits = {"dev": dev_part, "test": test_part, **splits, "train": train}
        data = GenerationData(name, splits["train"], splits["dev"], splits["test"], files, fields.template)
    for split in ("dev", "test"):
        if not getattr(data, split):
            raise TwofoldError(f"{spec}: the {split} split has no examples; give some (or more data to hold out)")
    if max_train is not None:
        data.train = data.train[:max_train]
    if max_test is not None:
        data.dev, data.test = data.dev[:max_test], data.test[:max_test]
    return data


# ----------------------------------------------------------------------------- the built-in set

@cache
def _functions(part: str, packages: tuple[str, ...] | None):
    return tuple(documented_functions(part, packages))


def stdlib_examples(part: str, packages: tuple[str, ...] | None = None) -> list[Example]:
    """A function's code (its first lines) -> the first line of its docstring, for one part of the split."""
    examples = []
    for function in _functions(part, packages):
        code = "".join(function.code.splitlines(keepends=True)[:STDLIB_CODE_LINES]).rstrip()
        line = function.docstring.strip().splitlines()[0].strip()
        examples.append(Example(render(STDLIB_TEMPLATE, code), f" {line}"))
    return examples


def stdlib_docstrings(packages: tuple[str, ...] | None = None, seed: int = 0) -> GenerationData:
    """Code -> docstring line: train (and a seeded dev tenth) from the train part, test from the held-out modules.

    A held-out example whose docstring line also ends a training example is left out of the test
    set (a few held-out modules copy docstrings of train ones)."""
    pairs = stdlib_examples("train", packages)
    order = np.random.default_rng(seed).permutation(len(pairs)).tolist()
    cut = max(1, round(len(pairs) * HELD_OUT_FRACTION))
    seen = {e.completion for e in pairs}
    test = [e for e in stdlib_examples("held-out", packages) if e.completion not in seen]
    if not test:
        raise TwofoldError(f"stdlib: no held-out functions in packages {list(packages or [])}; name other packages")
    return GenerationData("stdlib-docstrings", [pairs[i] for i in sorted(order[cut:])],
                          [pairs[i] for i in sorted(order[:cut])], test, template=STDLIB_TEMPLATE)
