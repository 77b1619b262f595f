"""`Result`: one task's scores for one model, and how results are written and read as JSON.

Every producer uses it: the evaluation tasks and suites (`twofold.eval`) and the fine-tunes
(`twofold.finetune`); `twofold.report` tables and plots what they give.

A result carries what a comparison needs besides the scores: the model's kind (encoder or
decoder), its parameter count, and, for a training checkpoint, its tag and training tokens.
Results of a suite (`twofold.eval.suites`) also say where the score comes from: the suite,
the library that computed it and its version, and the data (a hub dataset and its revision,
or the sha256 of each local file). Files written before these fields existed read as before.
A task that failed is a result with no metrics and `details["error"]`.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from twofold.errors import TwofoldError
from twofold.files import atomic_write_text, read_json

# Metrics where a smaller value is better; every other metric is "higher is better".
LOWER_IS_BETTER = frozenset({"perplexity", "pseudo_perplexity", "word_perplexity", "byte_perplexity",
                             "bits_per_byte"})
# The valid range of every metric a task reports (for checks of a whole pipeline's output).
METRIC_RANGES = {"mlm_accuracy": (0.0, 1.0), "accuracy": (0.0, 1.0), "perplexity": (1.0, math.inf),
                 "pseudo_perplexity": (1.0, math.inf), "ndcg@10": (0.0, 1.0), "mrr@10": (0.0, 1.0),
                 "p-mrr": (-1.0, 1.0), "mcc": (-1.0, 1.0), "f1": (0.0, 1.0), "pearson": (-1.0, 1.0),
                 "spearman": (-1.0, 1.0), "word_perplexity": (1.0, math.inf), "byte_perplexity": (1.0, math.inf),
                 "bits_per_byte": (0.0, math.inf), "chrf": (0.0, 100.0), "chrf++": (0.0, 100.0),
                 "bleu": (0.0, 100.0), "exact_match": (0.0, 1.0)}


@dataclass
class Result:
    task: str
    model: str  # a label: the model directory's name unless given
    metrics: dict[str, float]  # empty for tasks that only show text (samples)
    seed: int
    n: int  # examples scored: tokens, queries, dev examples, prompts
    variant: str = ""  # e.g. the pooling of a retrieval run
    kind: str = ""  # "encoder" or "decoder"
    parameters: int = 0
    checkpoint: str = ""  # the checkpoint's tag, when the model is one of a run's checkpoints
    tokens: int | None = None  # training tokens the checkpoint had seen, when known
    details: dict = field(default_factory=dict)  # task-specific extras (baselines, samples, error)
    suite: str = ""  # e.g. "glue", "mteb", "lm-eval", "rank1" (empty: a built-in task)
    library: str = ""  # the library that computed the score, e.g. "mteb"
    library_version: str = ""
    data: dict = field(default_factory=dict)  # {"dataset", "revision"} or {"path", "sha256": {file: hash}}

    @property
    def row(self) -> str:
        """The task as a table row names it: `code-search[last]`."""
        return f"{self.task}[{self.variant}]" if self.variant else self.task

    @property
    def error(self) -> str | None:
        """Why the task failed, for a failed task's record."""
        return self.details.get("error")

    @property
    def column(self) -> str:
        """The model as a table column names it: `encoder@decay2`."""
        return f"{self.model}@{self.checkpoint}" if self.checkpoint else self.model

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict, where: str = "result") -> Result:
        names = {f.name for f in fields(cls)}
        missing = {"task", "model", "metrics", "seed", "n"} - set(data)
        if missing:
            raise TwofoldError(f"{where}: not an evaluation result (missing {', '.join(sorted(missing))}); "
                               "pass the JSON files that `twofold eval` writes")
        for key, value in data.items():
            if key in _FIELD_TYPES and not _is(value, _FIELD_TYPES[key]):
                raise TwofoldError(f"{where}: {key} is {value!r}, not {_FIELD_TYPES[key][1]} (edited?); "
                                   "fix it or rerun `twofold eval`")
        for metric, value in data["metrics"].items():
            if not _is(value, _NUMBER):
                raise TwofoldError(f"{where}: metric {metric!r} is {value!r}, not a number (edited?); "
                                   "fix it or rerun `twofold eval`")
        return cls(**{k: v for k, v in data.items() if k in names})


# What each field of a result file must hold: (accepted types, how to say it).
_NUMBER = ((int, float), "a number")
_WHOLE = ((int,), "a whole number")
_TEXT = ((str,), "text")
_FIELD_TYPES = {"task": _TEXT, "model": _TEXT, "metrics": ((dict,), "an object of metric: number"), "seed": _WHOLE,
                "n": _WHOLE, "variant": _TEXT, "kind": _TEXT, "parameters": _WHOLE, "checkpoint": _TEXT,
                "tokens": ((int, type(None)), "a whole number or null"), "details": ((dict,), "an object"),
                "suite": _TEXT, "library": _TEXT, "library_version": _TEXT, "data": ((dict,), "an object")}


def _is(value, accepted: tuple) -> bool:
    return isinstance(value, accepted[0]) and not isinstance(value, bool)


def result_filename(result: Result) -> str:
    parts = [result.column, result.task] + ([result.variant] if result.variant else [])
    return re.sub(r"[^A-Za-z0-9._@=-]+", "_", "__".join(parts)) + ".json"


def save_results(results: list[Result], out_dir: str | Path) -> list[Path]:
    """One JSON file per result in `out_dir` (existing files of the same result are replaced)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for result in results:
        path = out_dir / result_filename(result)
        atomic_write_text(path, json.dumps(result.to_dict(), indent=2, default=float) + "\n")
        paths.append(path)
    return paths


WORK = "work"  # a suite's working folder (its fine-tunes, exports): their results are steps, not scores to compare


def load_results(path: str | Path) -> list[Result]:
    """Results from a JSON file (one result or a list) or every result file under a directory."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.json")
                       if WORK not in p.relative_to(path).parts[:-1] and _looks_like_result(p))
        if not files:
            raise TwofoldError(f"{path}: no evaluation results (*.json written by `twofold eval`) in it; "
                               "run `twofold eval` first or pass the result files")
        return [r for file in files for r in load_results(file)]
    if not path.is_file():
        raise TwofoldError(f"{path}: no such file or directory; pass result JSON files or the folder holding them")
    data = read_json(path, "pass the JSON files that `twofold eval` writes", kind=(dict, list))
    items = data if isinstance(data, list) else [data]
    if not all(isinstance(item, dict) for item in items):
        raise TwofoldError(f"{path}: not an evaluation result; pass the JSON files that `twofold eval` writes")
    return [Result.from_dict(item, where=str(path)) for item in items]


def _looks_like_result(path: Path) -> bool:
    """A result or a list of them, as `load_results` reads a file (other JSON in a folder is left alone)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    items = data if isinstance(data, list) else [data]
    return bool(items) and all(isinstance(item, dict) and {"task", "model", "metrics"} <= set(item) for item in items)
