"""Console noise of the field's libraries that a twofold user cannot act on, silenced where twofold
calls them; anything a user must see is kept.

- transformers' load report for an export loaded without its pretraining head (Sentence
  Transformers, mteb and the task heads load the body of an MLM/LM export): the head's keys are
  UNEXPECTED there by design. A report that lists anything else (a MISSING key, another
  unexpected key, a size mismatch) is kept whole.
- lm-eval's `git describe` for the results' `git_hash`: outside a git checkout git prints
  "fatal: not a git repository" on the terminal (the hash is still recorded where there is one).
- mteb's FutureWarnings about Sentence Transformers method names mteb itself calls.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import warnings
from collections.abc import Iterator

HEAD_KEYS = ("head.", "decoder.", "lm_head.")  # twofold's MLM head, its tied decoder bias, the LM head


class _HeadOnlyLoadReport(logging.Filter):
    """Drops a transformers load report whose rows are all UNEXPECTED keys of the pretraining head."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if "LOAD REPORT" not in text:
            return True
        rows = [[cell.strip() for cell in line.split("|")] for line in text.splitlines() if "|" in line]
        keys = [row for row in rows[1:] if row[0] and row[0] != "Key"]
        return not keys or not all(status == "UNEXPECTED" and key.startswith(HEAD_KEYS)
                                   for key, status, *_ in keys)


_FILTER = _HeadOnlyLoadReport()


def quiet_head_load_reports() -> None:
    """Install the filter on transformers' loading logger (once; it only drops head-only reports)."""
    logger = logging.getLogger("transformers.modeling_utils")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)


@contextlib.contextmanager
def quiet_mteb() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"mteb(\.|$)")
        yield


def _git_hash() -> str | None:
    """lm-eval's `get_git_commit_hash`, with git's complaint captured instead of printed."""
    import os

    from lm_eval.loggers.utils import get_commit_from_path

    done = subprocess.run(["git", "describe", "--always"], capture_output=True, text=True, check=False) \
        if _has_git() else None
    return done.stdout.strip() if done is not None and done.returncode == 0 else get_commit_from_path(os.getcwd())


def _has_git() -> bool:
    import shutil

    return shutil.which("git") is not None


@contextlib.contextmanager
def quiet_lm_eval_git(evaluator) -> Iterator[None]:
    """During one `simple_evaluate`: lm-eval's git lookup without git's message; restored after."""
    original = getattr(evaluator, "get_git_commit_hash", None)
    if original is None:  # another lm-eval layout: leave it alone
        yield
        return
    evaluator.get_git_commit_hash = _git_hash
    try:
        yield
    finally:
        evaluator.get_git_commit_hash = original
