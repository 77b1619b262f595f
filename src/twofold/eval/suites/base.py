"""What every suite shares: the model under evaluation (`Member`), the options, provenance
(library versions, data revisions or checksums) and the result records.

A suite runs on Hugging Face directories (exports, fine-tunes), because the libraries that do
the work (transformers, sentence-transformers, mteb, lm-eval) load those; a training
checkpoint is exported first (`twofold.eval.suites.runner`).

`packaging` (installed with the optional libraries it checks) is imported where used.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from safetensors import safe_open

from twofold.errors import TwofoldError
from twofold.files import sha256_file
from twofold.results import Result

# What a directory holds, as the suites see it.
ENCODER, DECODER, EMBEDDER, CLASSIFIER = "encoder", "decoder", "embedder", "classifier"


@dataclass
class Member:
    """One model a suite evaluates: an HF directory and the labels its results carry."""

    path: Path
    name: str
    kind: str  # ENCODER, DECODER, EMBEDDER (a Sentence Transformers directory) or CLASSIFIER
    parameters: int = 0
    checkpoint: str = ""
    tokens: int | None = None
    causal: bool = False  # the body's attention (an embedder or classifier of a decoder is causal)

    @property
    def label(self) -> str:
        return f"{self.name}@{self.checkpoint}" if self.checkpoint else self.name

    @property
    def member_kind(self) -> str:
        """encoder or decoder: the side of the pair this model belongs to (for tables and plots)."""
        return DECODER if self.causal else ENCODER


def kind_of(path: Path) -> tuple[str, bool]:
    """(kind, causal) of an HF directory, from modules.json (Sentence Transformers) and config.json."""
    config_file = path / "config.json"
    if not config_file.is_file():
        raise TwofoldError(f"{path}: no config.json; pass a Hugging Face model directory or a training run")
    try:
        config = json.loads(config_file.read_text())
    except ValueError:
        raise TwofoldError(f"{config_file}: not valid JSON; export the model again") from None
    architectures = " ".join(config.get("architectures") or [])
    causal = config.get("model_type") == "modernbert-decoder" or "CausalLM" in architectures \
        or "Decoder" in architectures or bool(config.get("is_decoder"))
    if (path / "modules.json").is_file():
        return EMBEDDER, causal
    if "SequenceClassification" in architectures:
        return CLASSIFIER, causal
    return (DECODER if causal else ENCODER), causal


def count_parameters(path: Path) -> int:
    """Parameters stored in a directory's safetensors files, read from their headers (not loaded)."""
    total = 0
    for file in sorted(path.rglob("*.safetensors")):
        with safe_open(str(file), framework="pt") as handle:
            for name in handle.keys():
                count = 1
                for size in handle.get_slice(name).get_shape():
                    count *= size
                total += count
    return total


def member_of(path: Path, name: str | None = None, checkpoint: str = "", tokens: int | None = None) -> Member:
    kind, causal = kind_of(path)
    return Member(path, name or path.name, kind, count_parameters(path), checkpoint, tokens, causal)


@dataclass(frozen=True)
class SuiteOptions:
    """Every knob of the suites; None keeps the published default."""

    tasks: tuple[str, ...] = ()  # a subset of the suite's tasks (default: all of them)
    data_dir: Path | None = None  # local copies of the data (see docs/evaluation.md)
    limit: int | None = None  # examples per task at most (quick looks; not the published protocol)
    seed: int = 0
    batch_size: int = 32
    max_length: int | None = None  # tokens per text (default: each suite's published value)
    learning_rates: tuple[float, ...] | None = None  # fine-tunes (glue, mteb --finetune): the sweep
    epochs: float | None = None
    finetune_batch_size: int | None = None
    finetune_data: str | None = None  # mteb: fine-tune `embed` on this first
    num_fewshot: int | None = None  # lm-eval
    think_tokens: int = 0  # rank1: reasoning tokens generated before the verdict
    first_stage: str = "bm25"  # rank1: bm25, a TREC run file, or an embedder directory
    depth: int = 100  # rank1: documents reranked per query
    work: Path | None = None  # where fine-tunes and exports go (default: OUT/work)

    def recipe_changes(self) -> dict:
        return {"learning_rates": self.learning_rates, "epochs": self.epochs,
                "batch_size": self.finetune_batch_size, "seed": self.seed,
                "max_length": self.max_length}


@dataclass(frozen=True)
class Suite:
    """A named evaluation: its tasks, which model kinds it takes, how it checks and runs a task."""

    name: str
    help: str
    kinds: tuple[str, ...]
    tasks: Callable[[SuiteOptions], list[str]]  # the tasks to run (validated), from the options
    run: Callable[[Member, str, SuiteOptions], list[Result]]
    library: str  # the distribution that does the work, for error messages
    check_data: Callable[[list[str], SuiteOptions], None] | None = None  # local copies complete?
    instead: dict[str, str] = field(default_factory=dict)  # kind -> the suite that evaluates it


def version_of(distribution: str) -> str:
    if not distribution:
        return ""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return ""


def require(distribution: str, minimum: str, feature: str, extra: str) -> str:
    """The installed version of `distribution`, or one line saying which version has `feature`."""
    from packaging.version import Version

    found = version_of(distribution)
    if not found:
        raise TwofoldError(f"{feature} needs {distribution} >= {minimum}, which is not installed; "
                           f"pip install 'twofold[{extra}]'")
    if Version(found) < Version(minimum):
        raise TwofoldError(f"{feature} needs {distribution} >= {minimum}, found {found}; "
                           f"pip install -U 'twofold[{extra}]'")
    return found


def local_files(path: Path) -> dict:
    """Provenance of a local copy: its path and the sha256 of every file in it."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()
                                                 and not any(part.startswith(".") for part in p.parts[-3:]))
    root = path.parent if path.is_file() else path
    return {"path": str(path.resolve()), "sha256": {str(f.relative_to(root)): sha256_file(f) for f in files}}


def hub_data(dataset: str, revision: str | None, config: str | None = None) -> dict:
    record = {"dataset": dataset, "revision": revision or "unpinned (latest)"}
    if config:
        record["config"] = config
    return record


def result(member: Member, suite: str, task: str, metrics: dict[str, float], n: int, library: str,
           data: dict, seed: int = 0, variant: str = "", **details) -> Result:
    """A suite's Result: `task` is `suite/name` so that rows of different suites never mix."""
    return Result(task=f"{suite}/{task}", model=member.name, metrics={k: float(v) for k, v in metrics.items()},
                  seed=seed, n=n, variant=variant, kind=member.member_kind, parameters=member.parameters,
                  checkpoint=member.checkpoint, tokens=member.tokens, details=details, suite=suite,
                  library=library, library_version=version_of(library), data=data)


def failure(member: Member, suite: str, task: str, error: BaseException, library: str, seed: int = 0) -> Result:
    """The record of a task that failed: no metrics, the error in one line."""
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return Result(task=f"{suite}/{task}", model=member.name, metrics={}, seed=seed, n=0, variant="error",
                  kind=member.member_kind, parameters=member.parameters, checkpoint=member.checkpoint,
                  tokens=member.tokens, details={"error": f"{type(error).__name__}: {message}"}, suite=suite,
                  library=library, library_version=version_of(library))


def pick_tasks(suite: str, requested: Sequence[str], valid: Sequence[str], default: Sequence[str]) -> list[str]:
    """The requested tasks (default: `default`), each checked against `valid` (case-insensitive)."""
    if not requested:
        return list(default)
    by_lower = {name.lower(): name for name in valid}
    unknown = [name for name in requested if name.lower() not in by_lower]
    if unknown:
        raise TwofoldError(f"--suite {suite}: unknown task {unknown[0]!r}; valid tasks: {', '.join(valid)}")
    return list(dict.fromkeys(by_lower[name.lower()] for name in requested))
