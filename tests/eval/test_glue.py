"""The GLUE suite's rules on cases where they differ from their neighbours: every official metric on
predictions where it differs from the others, MNLI's matched and mismatched dev sets scored apart,
the sweep keeping the rate that is best on the task's first metric, the average of the tasks that
finished. Fine-tuning itself runs in tests/eval/test_suites.py; here a scripted fine-tune stands
in for it where only the suite's own selection and bookkeeping are under test."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from tools import suite_data

import twofold
from twofold.errors import TwofoldError
from twofold.eval.member import DECODER, Member
from twofold.eval.suites import Settings, glue
from twofold.eval.suites.glue import TASKS, official_metrics, read_tsv, score_classifier
from twofold.results import Result


def test_each_official_metric_is_computed_on_predictions_where_they_all_differ():
    gold = [1, 1, 1, 0, 0, 0]
    predicted = np.array([1, 0, 0, 0, 0, 1])  # TP 1, FN 2, TN 2, FP 1
    mcc = (1 * 2 - 1 * 2) / math.sqrt(2 * 3 * 3 * 4)
    assert official_metrics(TASKS["cola"], predicted, gold, ["0", "1"]) == pytest.approx({"mcc": mcc})
    f1_of_1, f1_of_0 = 2 * 1 / (2 * 1 + 1 + 2), 2 * 2 / (2 * 2 + 2 + 1)
    assert official_metrics(TASKS["mrpc"], predicted, gold, ["0", "1"]) == pytest.approx(
        {"f1": f1_of_1, "accuracy": 0.5})
    # F1 is the class named "1" (paraphrase, duplicate), wherever it sorts; else class id 1
    assert official_metrics(TASKS["qqp"], 1 - predicted, [1 - y for y in gold], ["1", "2"])["f1"] == \
        pytest.approx(f1_of_1)
    assert official_metrics(TASKS["qqp"], predicted, gold, ["no", "yes"])["f1"] == pytest.approx(f1_of_1)
    assert f1_of_0 != f1_of_1
    for name in ("sst2", "mnli", "qnli", "rte"):
        assert official_metrics(TASKS[name], predicted, gold, ["0", "1"]) == {"accuracy": 0.5}
    similarity = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    monotone = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 5.0])  # the same order, far from a line: Spearman 1, Pearson not
    assert official_metrics(TASKS["stsb"], monotone, similarity, None) == pytest.approx(
        {"pearson": float(np.corrcoef(monotone, similarity)[0, 1]), "spearman": 1.0})
    with warnings.catch_warnings():  # scipy warns that a constant input has no correlation
        warnings.simplefilter("ignore")
        assert official_metrics(TASKS["stsb"], np.ones(6), similarity, None) == {"pearson": 0.0, "spearman": 0.0}


@pytest.fixture(scope="module")
def always_first(tmp_path_factory, tokenizer):
    """An exported classifier whose output layer always says class 0."""
    from tests.eval.conftest import tiny_model

    from twofold.model.heads import SequenceClassifier

    classifier = SequenceClassifier(tiny_model(tokenizer, False).config, num_labels=3, pooling="mean")
    with torch.no_grad():
        classifier.classifier.weight.zero_()
        classifier.classifier.bias.copy_(torch.tensor([50.0, -50.0, -50.0]))
    path = tmp_path_factory.mktemp("clf") / "clf"
    twofold.save(classifier, path, tokenizer=Path(tokenizer.source).parent)
    return path


def test_mnli_scores_its_matched_and_mismatched_dev_sets_apart(always_first):
    texts = [("a premise", "a hypothesis"), ("json text", "parsed"), ("x", "y"), ("one", "two")]
    devs = {"dev_matched": [(t, 0) for t in texts], "dev_mismatched": [(t, y) for t, y in zip(texts, (0, 1, 2, 1))]}
    labels = ["contradiction", "entailment", "neutral"]
    assert score_classifier(always_first, TASKS["mnli"], devs, labels, 32) == {"accuracy": 1.0,
                                                                                "accuracy_mismatched": 0.25}
    swapped = {"dev_matched": devs["dev_mismatched"], "dev_mismatched": devs["dev_matched"]}
    assert score_classifier(always_first, TASKS["mnli"], swapped, labels, 32) == {"accuracy": 0.25,
                                                                                   "accuracy_mismatched": 1.0}


def test_mnli_reads_both_dev_files_and_skips_unlabelled_rows(tmp_path):
    folder = tmp_path / "glue" / "MNLI"
    folder.mkdir(parents=True)
    header = "index\tsentence1\tsentence2\tgold_label\n"
    (folder / "train.tsv").write_text(header + "0\tp\th\tentailment\n1\tp2\th2\tcontradiction\n2\tp3\th3\tneutral\n")
    (folder / "dev_matched.tsv").write_text(header + "0\tm\tm2\t-\n1\tm3\tm4\tneutral\n")
    (folder / "dev_mismatched.tsv").write_text(header + "0\tx\tx2\tentailment\n1\tx3\tx4\tcontradiction\n")
    data = glue.load(TASKS["mnli"], Settings(data_dir=tmp_path))
    assert data.data.labels == ["contradiction", "entailment", "neutral"]
    assert data.devs == {"dev_matched": [(("m3", "m4"), 2)], "dev_mismatched": [(("x", "x2"), 1), (("x3", "x4"), 0)]}
    assert (data.data.dev, data.data.test, data.data.test_split) == (data.devs["dev_matched"],
                                                                     data.devs["dev_mismatched"], "dev_mismatched")
    assert data.data.train == [(("p", "h"), 1), (("p2", "h2"), 0), (("p3", "h3"), 2)]
    assert sorted(data.provenance["sha256"]) == ["dev_matched.tsv", "dev_mismatched.tsv", "train.tsv"]
    (folder / "dev_matched.tsv").write_text(header + "0\tm\tm2\tentailment\n1\tm3\tm4\tcontradiction\n"
                                            "2\tm5\tm6\tneutral\n")
    limited = glue.load(TASKS["mnli"], Settings(data_dir=tmp_path, limit=2))  # the first 2 of each file
    assert limited.data.train == data.data.train[:2] and limited.data.labels == ["contradiction", "entailment"]
    assert limited.devs == {"dev_matched": [(("m", "m2"), 1), (("m3", "m4"), 0)],
                            "dev_mismatched": [(("x", "x2"), 1), (("x3", "x4"), 0)]}


def test_cola_reads_a_file_without_a_header_by_position(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text("gj04\t1\t\tThe cat sat.\ngj04\t0\t*\tCat the sat.\n")
    assert read_tsv(path, TASKS["cola"]) == [(("The cat sat.",), "1"), (("Cat the sat.",), "0")]
    path.write_text("gj04\t1\n")
    with pytest.raises(TwofoldError, match=r"train.tsv:1: 2 fields, expected at least 4$"):
        read_tsv(path, TASKS["cola"])


SWEEP = {  # rate -> dev metrics: F1 ranks 3e-5 first, accuracy ranks 1e-5 first
    1e-5: {"f1": 0.50, "accuracy": 0.90},
    3e-5: {"f1": 0.80, "accuracy": 0.60},
    8e-5: {"f1": 0.70, "accuracy": 0.70},
}


def test_the_sweep_keeps_the_rate_best_on_the_tasks_first_metric(tmp_path, monkeypatch):
    """MRPC selects on F1 (its first official metric), not accuracy; the other rates' models are removed;
    a rate an earlier run fine-tuned is not fine-tuned again."""
    data_dir = suite_data.write_glue(tmp_path / "data")
    tuned = []

    def finetune(task, model, data, out, recipe, name, say):
        assert (task, data.name, recipe.learning_rates, recipe.epochs) == ("classify", "glue-mrpc",
                                                                           recipe.learning_rates, 2.0)
        tuned.append(recipe.learning_rates[0])
        out.mkdir()
        (out / glue.RECORD).write_text(json.dumps({"rate": recipe.learning_rates[0]}))

    def score(directory, task, devs, labels, max_length):
        assert (task.name, list(devs), labels) == ("mrpc", ["dev"], ["0", "1"])
        return SWEEP[json.loads((directory / glue.RECORD).read_text())["rate"]]

    monkeypatch.setattr(glue, "finetune", finetune)
    monkeypatch.setattr(glue, "score_classifier", score)
    member = Member(tmp_path / "model", "decoder", DECODER, causal=True)
    options = Settings(data_dir=data_dir, work=tmp_path / "work", learning_rates=tuple(SWEEP), epochs=2.0)
    done = tmp_path / "work" / "decoder" / "glue-mrpc" / "lr-8e-05"
    done.mkdir(parents=True)
    (done / glue.RECORD).write_text(json.dumps({"rate": 8e-5}))  # left by an earlier run of the suite
    [found] = glue.run(member, "mrpc", options)
    assert tuned == [1e-5, 3e-5]
    assert found.metrics == pytest.approx({"f1": 0.80, "accuracy": 0.60, "score": 0.70})
    assert (found.task, found.n, found.details["learning_rate"], found.details["selected_on"]) == \
        ("glue/mrpc", 8, 3e-5, "f1")
    kept = tmp_path / "work" / "decoder" / "glue-mrpc" / "lr-3e-05"
    assert found.details["finetuned"] == str(kept)
    assert sorted(p.name for p in kept.parent.iterdir()) == ["lr-3e-05"]
    assert [(s["learning_rate"], s["dev"], s["model"]) for s in found.details["sweep"]] == \
        [(r, SWEEP[r], str(kept) if r == 3e-5 else None) for r in SWEEP]
    assert (found.details["train"], found.details["split"]) == (24, "dev")


def test_the_glue_average_is_over_the_tasks_that_finished():
    member = Member(None, "encoder", "encoder")

    def scored(task, score, suite="glue"):
        return Result(task=task, model="encoder", metrics={"score": score} if score is not None else {}, seed=3, n=8,
                      suite=suite)

    results = [scored("glue/cola", 0.2), scored("glue/stsb", 0.6), scored("glue/rte", None),
               scored("mteb/x", 0.9, suite="mteb"), scored("glue/average", 0.0)]
    [average] = glue.summarize(member, results)
    assert average.task == "glue/average" and average.metrics == pytest.approx({"score": 0.4})
    assert (average.n, average.seed, average.details["tasks"]) == (2, 3, ["cola", "stsb"])
    assert average.details["missing"] == ["sst2", "mrpc", "qqp", "mnli", "qnli", "rte"]
    assert average.details["complete"] is False
    assert glue.summarize(member, [scored("glue/rte", None)]) == []
