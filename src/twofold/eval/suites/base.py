"""What every suite shares: the options, provenance (library versions, data revisions or
checksums) and the result records of a `Member` (`twofold.eval.member`).

A suite runs on Hugging Face directories (exports, fine-tunes), because the libraries that do
the work (transformers, sentence-transformers, mteb, lm-eval) load those; a training
checkpoint is exported first (`twofold.eval.suites.runner`).

`packaging` (installed with the optional libraries it checks) is imported where used.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from twofold.errors import TwofoldError
from twofold.eval.member import Member
from twofold.eval.settings import Settings
from twofold.files import sha256_file
from twofold.results import Result


@dataclass(frozen=True)
class Suite:
    """A named evaluation: its tasks, which model kinds it takes, how it checks and runs a task."""

    name: str
    help: str
    kinds: tuple[str, ...]
    tasks: Callable[[Settings], list[str]]  # the tasks to run (validated), from the options
    run: Callable[[Member, str, Settings], list[Result]]
    library: str  # the distribution that does the work, for error messages
    check_data: Callable[[list[str], Settings], None] | None = None  # local copies complete?
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
    # files hidden inside the copy (huggingface-cli's .cache/) are not data; folders above it do not count
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file() and not any(
        part.startswith(".") for part in p.relative_to(path).parts))
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
    return member.result(f"{suite}/{task}", {k: float(v) for k, v in metrics.items()}, seed, n, variant, details,
                         suite=suite, library=library, library_version=version_of(library), data=data)


def failure(member: Member, suite: str, task: str, error: BaseException, library: str, seed: int = 0) -> Result:
    """The record of a task that failed: no metrics, the error in one line."""
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return member.result(f"{suite}/{task}", {}, seed, 0, "error", {"error": f"{type(error).__name__}: {message}"},
                         suite=suite, library=library, library_version=version_of(library))


def pick_tasks(suite: str, requested: Sequence[str], valid: Sequence[str], default: Sequence[str]) -> list[str]:
    """The requested tasks (default: `default`), each checked against `valid` (case-insensitive)."""
    if not requested:
        return list(default)
    by_lower = {name.lower(): name for name in valid}
    unknown = [name for name in requested if name.lower() not in by_lower]
    if unknown:
        raise TwofoldError(f"--suite {suite}: unknown task {unknown[0]!r}; valid tasks: {', '.join(valid)}")
    return list(dict.fromkeys(by_lower[name.lower()] for name in requested))
