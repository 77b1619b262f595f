"""Importing and using twofold leaves the field's libraries as a user had them, and keeps their
console free of noise a user cannot act on (while every message a user must see still shows)."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
from tests.finetune.conftest import exports  # noqa: F401  the tiny encoder/decoder exports

from twofold import quiet
from twofold.quiet import quiet_head_load_reports


def test_importing_the_lm_eval_scorer_adds_to_lm_evals_registry():
    """In a fresh interpreter, as a user's script would: lm-eval's own models still resolve."""
    pytest.importorskip("lm_eval")
    code = ("import twofold.eval.suites.lmeval\n"
            "from lm_eval.api.registry import get_model\n"
            "from lm_eval.models.huggingface import HFLM\n"
            "assert get_model('hf') is HFLM, get_model('hf')\n"
            "assert get_model('twofold-mlm').__name__ == 'MaskedLMHarness'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


class _Kept(logging.Handler):
    """The records transformers' loading logger passes on (it does not propagate to pytest's caplog)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.reports = []

    def emit(self, record):
        if "LOAD REPORT" in record.getMessage():
            self.reports.append(record.getMessage())


def test_the_head_only_load_report_of_an_export_is_silenced_and_other_reports_kept(exports):  # noqa: F811
    from transformers import AutoModel, AutoModelForSequenceClassification

    logger, kept = logging.getLogger("transformers.modeling_utils"), _Kept()
    logger.removeFilter(quiet._FILTER)  # as a fresh process has it, whatever ran before in this one
    logger.addHandler(kept)
    try:
        AutoModel.from_pretrained(exports["encoder"])
        assert len(kept.reports) == 1 and "head.dense.weight" in kept.reports[0]  # as transformers reports it
        quiet_head_load_reports()
        for member in ("encoder", "decoder"):
            AutoModel.from_pretrained(exports[member])  # the body: only the head's keys are unexpected
        assert len(kept.reports) == 1
        AutoModelForSequenceClassification.from_pretrained(exports["encoder"], num_labels=2)
    finally:
        logger.removeHandler(kept)
    assert len(kept.reports) == 2 and "classifier.weight" in kept.reports[1]  # a fresh head: the user must see it


def test_lm_eval_git_lookup_prints_nothing_outside_a_checkout(tmp_path):
    """The git hash lookup that lm-eval runs for every evaluation, run as twofold runs it."""
    pytest.importorskip("lm_eval")
    code = ("from lm_eval import evaluator\n"
            "from twofold.quiet import quiet_lm_eval_git\n"
            "original = evaluator.get_git_commit_hash\n"
            "with quiet_lm_eval_git(evaluator):\n"
            "    print(repr(evaluator.get_git_commit_hash()))\n"
            "assert evaluator.get_git_commit_hash is original\n"
            "evaluator.get_git_commit_hash()\n")  # lm-eval's own, as found
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "GIT_CEILING_DIRECTORIES": str(tmp_path.parent)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "None"
    if subprocess.run(["which", "git"], capture_output=True).returncode == 0:
        assert done.stderr.count("not a git repository") == 1  # lm-eval's own call, after: untouched
