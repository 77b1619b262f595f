"""The classification tasks: the recipe the settings ask for reaches transformers' Trainer, a seeded
subset of the training rows is what it trains on, the dev accuracy and the majority baseline are
counted by hand from the classifier's own logits, and the built-in split's edges."""

import dataclasses
import importlib.util
from collections import Counter

import numpy as np
import pytest
import torch

from twofold.errors import TwofoldError
from twofold.eval import stdlib
from twofold.eval.settings import Settings
from twofold.eval.tasks import classification
from twofold.eval.tasks.subject import Subject
from twofold.finetune.datasets import LabelledData
from twofold.finetune.tasks import TASK_TABLE

from .conftest import tiny_model

WORDS = ["alpha", "beta", "gamma"]
TRAIN = [((f"{WORDS[i % 3]} item {i}",), i % 3) for i in range(30)]
DEV = [((f"{WORDS[i % 3]} thing {i}",), i % 3) for i in range(8)] + [(("alpha again",), 0)]


@pytest.fixture
def seen(monkeypatch):
    """What reached the fine-tune: the recipe, the labels, the rows and learning rate trained on, and
    the logits of the dev rows; each the real call's, passed through."""
    seen = {}
    spec = TASK_TABLE["classify"]

    def recipe_for(*args, **kwargs):
        seen["recipe"] = real_recipe_for(*args, **kwargs)
        return seen["recipe"]

    def build(model, recipe, labels):
        seen["labels"] = labels
        return spec.build(model, recipe, labels=labels)

    def train(classifier, rows, recipe, learning_rate, out, order):
        seen["rows"], seen["learning_rate"] = rows, learning_rate
        return spec.train(classifier, rows, recipe, learning_rate, out, order)

    def predict(classifier, examples, recipe):
        seen["logits"] = real_predict(classifier, examples, recipe)
        return seen["logits"]

    real_recipe_for, real_predict = classification.recipe_for, classification.predict
    monkeypatch.setattr(classification, "recipe_for", recipe_for)
    monkeypatch.setattr(classification, "predict", predict)
    monkeypatch.setitem(TASK_TABLE, "classify", dataclasses.replace(spec, build=build, train=train))
    return seen


@pytest.mark.parametrize("causal, pooling, used", [(False, None, "mean"), (True, None, "last"), (False, "cls", "cls")])
def test_the_fine_tune_follows_the_settings_and_is_scored_by_hand(tokenizer, seen, tmp_path, monkeypatch, causal,
                                                                  pooling, used):
    monkeypatch.chdir(tmp_path)  # the Trainer's scratch belongs in a temporary folder, not here
    torch.manual_seed(0)
    subject = Subject(tiny_model(tokenizer, causal), tokenizer, "m")
    settings = Settings(learning_rate=3e-4, epochs=2, batch_size=4, weight_decay=0.05, max_length=24, seed=5,
                        max_examples=20, pooling=pooling)
    data = LabelledData("mine", TRAIN, DEV, DEV, WORDS)
    result = classification.fine_tune_and_score(subject, data, settings, "classification", variant="v")

    recipe = seen["recipe"]  # every value differs from the published classify recipe's
    assert (recipe.task, recipe.learning_rates, recipe.epochs, recipe.batch_size, recipe.warmup_ratio,
            recipe.weight_decay, recipe.max_length, recipe.pooling, recipe.seed) == (
        "classify", (3e-4,), 2, 4, 0.0, 0.05, 24, used, 5)
    keep = sorted(np.random.default_rng(5).permutation(30)[:20].tolist())
    assert seen["rows"] == [TRAIN[i] for i in keep] and seen["learning_rate"] == 3e-4
    assert seen["labels"] == WORDS and seen["logits"].shape == (9, 3)
    correct = sum(int(row.argmax()) == label for row, (_, label) in zip(seen["logits"], DEV))
    majority = Counter(label for _, label in TRAIN).most_common(1)[0][0]  # 0: ten of each, alpha first
    assert result.metrics == {"accuracy": pytest.approx(correct / 9)}
    assert (result.task, result.variant, result.n, result.seed) == ("classification", "v", 9, 5)
    assert result.details == {"labels": 3, "train": 20, "majority_accuracy": pytest.approx(4 / 9), "pooling": used}
    assert majority == 0 and list(tmp_path.iterdir()) == []


def test_user_files_are_read_with_the_fields_given(tokenizer, tmp_path, seen):
    (tmp_path / "data").mkdir()
    for name, rows in (("train", TRAIN), ("dev", DEV)):
        lines = [f'{{"text": "{texts[0]}", "tag": "{WORDS[label]}"}}' for texts, label in rows]
        (tmp_path / "data" / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
    settings = Settings(train=str(tmp_path / "data" / "train.jsonl"), dev=str(tmp_path / "data" / "dev.jsonl"),
                        text_fields=("text",), label_field="tag", max_length=24, batch_size=8, epochs=1)
    (result,) = classification.user_classification(Subject(tiny_model(tokenizer, False), tokenizer, "e"), settings)
    assert (result.task, result.variant, result.n, result.details["labels"]) == ("classification", "data", 9, 3)
    assert seen["rows"] == TRAIN and seen["labels"] == WORDS


@pytest.mark.parametrize("missing", ["transformers", "datasets"])
def test_either_missing_library_is_named_before_any_work(monkeypatch, missing):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == missing else real(name, *a))
    with pytest.raises(TwofoldError, match=r"pip install 'twofold\[finetune\]'"):
        classification.check_trainer(Settings())


def test_the_built_in_split_at_its_edges():
    counts = Counter(function.package for function in stdlib.functions())
    second = sorted(counts.values(), reverse=True)[1]
    data = classification.package_set(second, 1000, 0.001, seed=3)  # exactly the two largest qualify
    assert len(data.labels) == 2 and all(counts[name] >= second for name in data.labels)
    assert Counter(label for _, label in data.dev) == {0: 1, 1: 1}  # never less than one dev example a class
    assert len(data.train) == counts[data.labels[0]] + counts[data.labels[1]] - 2
    assert data.name == "stdlib-packages" and data.test == data.dev
    assert classification.package_set(second, 1000, 0.001, seed=3) == data
    assert classification.package_set(second, 1000, 0.001, seed=4) != data
    with pytest.raises(TwofoldError, match="fewer than two packages"):
        classification.package_set(second + 1, 1000, 0.2, seed=3)


def test_the_built_in_task_splits_by_the_settings_seed(monkeypatch):
    given = []
    monkeypatch.setattr(classification, "fine_tune_and_score", lambda subject, data, settings, task: given.append(
        (data, task)) or "scored")
    settings = Settings(min_per_class=20, max_per_class=30, dev_fraction=0.25, seed=9)
    assert classification.package_classification(None, settings) == ["scored"]
    assert given == [(classification.package_set(20, 30, 0.25, 9), "package-classification")]
