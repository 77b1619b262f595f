"""The learning-rate sweep's rule: every rate trained on the same data, the best on the dev split's
primary metric kept (the first on a tie), all recorded.

The task's library is replaced by a scripted one whose "training" records the rate and whose
scores come from a table, so the fixture can tell the rules apart: dev and test rank the rates
differently, and each metric ranks them differently. Real libraries train in
tests/finetune/test_finetune.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from twofold.finetune import tasks
from twofold.finetune.datasets import LabelledData, RetrievalSet
from twofold.finetune.inputs import BaseModel
from twofold.finetune.recipes import recipe_for
from twofold.finetune.run import RECORD, RESULTS, finetune
from twofold.results import load_results

# rate -> {split: metrics}; None: before fine-tuning. On dev, accuracy ranks 3e-5 first (2e-5 ties it
# later), f1 ranks 8e-5 first, mcc ranks 1e-5 first; on test, accuracy ranks 1e-5 first.
SCORES = {
    None: {"dev": {"accuracy": 0.30, "f1": 0.31, "mcc": 0.32}, "test": {"accuracy": 0.35, "f1": 0.36, "mcc": 0.37}},
    1e-5: {"dev": {"accuracy": 0.50, "f1": 0.20, "mcc": 0.95}, "test": {"accuracy": 0.90, "f1": 0.21, "mcc": 0.22}},
    3e-5: {"dev": {"accuracy": 0.80, "f1": 0.40, "mcc": 0.10}, "test": {"accuracy": 0.40, "f1": 0.41, "mcc": 0.42}},
    8e-5: {"dev": {"accuracy": 0.60, "f1": 0.90, "mcc": 0.30}, "test": {"accuracy": 0.70, "f1": 0.71, "mcc": 0.72}},
    2e-5: {"dev": {"accuracy": 0.80, "f1": 0.50, "mcc": 0.20}, "test": {"accuracy": 0.10, "f1": 0.11, "mcc": 0.12}},
}


@dataclass
class Scripted:
    rate: float | None = None

    def parameters(self):
        return [torch.zeros(7), torch.zeros(2, 3)]


@pytest.fixture
def scripted(monkeypatch):
    """The classify task with a scripted library; returns the list of (split, rate) it scored."""
    scored = []
    data = LabelledData("scripted", train=[(("a",), 0), (("b",), 1)], dev=[(("c",), 0), (("d",), 1)],
                        test=[(("e",), 0), (("f",), 1), (("g",), 0)], labels=["no", "yes"])

    def train(model, rows, recipe, lr, workdir, recorder):
        assert rows is data.train
        Path(workdir).mkdir(parents=True)  # the libraries' trainers make their output folder
        model.rate = lr
        recorder.batches, recorder.steps = 1, 1

    def score(model, split, recipe):
        name = "dev" if split is data.dev else "test"
        scored.append((name, model.rate))
        return dict(SCORES[model.rate][name])

    def save(model, out):
        Path(out).mkdir(parents=True)
        (Path(out) / "model.json").write_text(json.dumps({"rate": model.rate}))

    task = tasks.Task("scripted", lambda base, recipe, **extra: Scripted(), train, score, "accuracy", save=save)
    monkeypatch.setitem(tasks.TASK_TABLE, "classify", task)
    return data, scored


BASE = BaseModel("unused", "encoder", causal=False, source={"kind": "hf"})


def test_the_sweep_keeps_the_best_rate_on_the_dev_accuracy_and_records_every_rate(tmp_path, scripted):
    data, scored = scripted
    rates = (1e-5, 3e-5, 8e-5, 2e-5)
    lines = []
    with pytest.warns(UserWarning, match=r"the test split is 3 examples: too small .* \(each one is 33% of it\)"):
        result = finetune("classify", BASE, data, tmp_path / "out", recipe_for("classify", learning_rates=rates),
                          say=lines.append)
    assert scored == [("dev", None), ("test", None)] + [(split, r) for r in rates for split in ("dev", "test")]
    assert (result.learning_rate, result.metric, result.out) == (3e-5, "accuracy", tmp_path / "out")
    assert (result.dev, result.test, result.before) == (SCORES[3e-5]["dev"], SCORES[3e-5]["test"],
                                                       SCORES[None]["test"])
    assert result.improved and [s["learning_rate"] for s in result.sweep] == list(rates)
    out = tmp_path / "out"
    assert json.loads((out / "model.json").read_text()) == {"rate": 3e-5}  # the kept model, moved up
    assert sorted(p.name for p in out.iterdir()) == ["finetune.json", "model.json", RESULTS]
    record = json.loads((out / RECORD).read_text())
    assert record["selected"] == {"learning_rate": 3e-5, "dev": SCORES[3e-5]["dev"]}
    assert (record["test"], record["before"], record["metric"]) == (SCORES[3e-5]["test"], SCORES[None], "accuracy")
    assert [(s["learning_rate"], s["dev"], s["test"], s["batches"], s["optimizer_steps"]) for s in record["sweep"]] \
        == [(r, SCORES[r]["dev"], SCORES[r]["test"], 1, 1) for r in rates]
    assert (record["member"], record["name"], record["library"], record["pooling"]) == \
        ("encoder", "encoder", "scripted", "mean")
    assert record["data"]["examples"] == {"train": 2, "dev": 2, "test": 3} and record["data"]["labels"] == ["no", "yes"]
    kept, before = sorted(load_results(out / RESULTS), key=lambda r: r.variant)
    assert (kept.task, kept.variant, kept.metrics, kept.n, kept.kind) == \
        ("finetune-classify", "scripted", SCORES[3e-5]["test"], 3, "encoder")
    assert kept.details == {"learning_rate": 3e-5, "dev": SCORES[3e-5]["dev"], "before": SCORES[None]["test"]}
    assert (before.variant, before.metrics, before.details) == ("scripted/before", SCORES[None]["test"],
                                                                {"fine_tuned": False})
    assert kept.parameters == before.parameters == 13
    assert lines == ["  before fine-tuning: dev accuracy 0.3000", "  lr 1e-05: dev accuracy 0.5000 (0 s)",
                     "  lr 3e-05: dev accuracy 0.8000 (0 s)", "  lr 8e-05: dev accuracy 0.6000 (0 s)",
                     "  lr 2e-05: dev accuracy 0.8000 (0 s)"]


def test_a_regression_sweep_selects_on_pearson(tmp_path, scripted, monkeypatch):
    data, _ = scripted
    data.labels = None  # regression: the primary metric is Pearson, whatever the task's table says
    table = {1e-5: {"pearson": 0.2, "spearman": 0.9, "accuracy": 0.9}, 3e-5: {"pearson": 0.7, "spearman": 0.1,
                                                                               "accuracy": 0.1}}
    table[None] = {"pearson": 0.0, "spearman": 0.0, "accuracy": 0.0}
    monkeypatch.setitem(tasks.TASK_TABLE, "classify", tasks.TASK_TABLE["classify"].__class__(
        **{**tasks.TASK_TABLE["classify"].__dict__, "score": lambda model, split, recipe: dict(table[model.rate])}))
    with pytest.warns(UserWarning):
        result = finetune("classify", BASE, data, tmp_path / "out", recipe_for("classify", learning_rates=(1e-5, 3e-5)),
                          say=lambda *_: None)
    assert (result.metric, result.learning_rate) == ("pearson", 3e-5)
    assert json.loads((tmp_path / "out" / "model.json").read_text()) == {"rate": 3e-5}


def test_one_rate_scores_only_the_test_split(tmp_path, scripted):
    data, scored = scripted
    data.test_split = "dev_matched"  # what GLUE calls its scored part
    lines = []
    with pytest.warns(UserWarning, match="the dev_matched split is 3 examples"):
        result = finetune("classify", BASE, data, tmp_path / "out", recipe_for("classify", learning_rates=(8e-5,)),
                          say=lines.append)
    assert scored == [("test", None), ("test", 8e-5)]
    assert (result.learning_rate, result.dev, result.test) == (8e-5, {}, SCORES[8e-5]["test"])
    record = json.loads((tmp_path / "out" / RECORD).read_text())
    assert set(record["before"]) == {"test"} and record["selected"] == {"learning_rate": 8e-5, "dev": {}}
    assert lines == ["  before fine-tuning: dev_matched accuracy 0.3500",
                     "  lr 8e-05: dev_matched accuracy 0.7000 (0 s)"]


def test_a_small_retrieval_split_is_named_by_its_queries_and_documents(tmp_path, scripted, monkeypatch):
    from twofold.finetune import run

    split = RetrievalSet({"q1": "a", "q2": "b"}, {"d1": "x", "d2": "y", "d3": "z"}, {"q1": {"d1": 1}, "q2": {"d2": 1}})
    with pytest.warns(UserWarning, match=r"^the test split is 2 queries over 3 documents: .*each one is 50% of it\)"):
        run._warn_if_too_small(split, "test")
    big = RetrievalSet({f"q{i}": "a" for i in range(run.SMALL_SPLIT)}, {"d": "x"}, {})
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run._warn_if_too_small(big, "test")  # 50 queries: no warning
