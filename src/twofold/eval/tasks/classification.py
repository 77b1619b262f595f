"""Classification by a short fine-tune, with one recipe for both members of a pair.

A copy of the model is fine-tuned as `twofold finetune classify` does it (transformers'
`Trainer` on the Hugging Face export, `twofold.finetune.tasks`), with the settings' learning
rate, epochs, batch size, weight decay and pooling (the mean for the encoder, as ModernBERT's
released configs and our retrieval do; the last token for the decoder, as Ettin's decoders are
fine-tuned), no warmup and a linear decay. Score: accuracy on the dev set; the majority-class
accuracy is kept beside it so a reader can tell learning from guessing. transformers is an
optional library (`pip install 'twofold[finetune]'`), checked before any model work.

Built in: which top-level package a held-out stdlib function belongs to, from its docstring
(packages with at least `min_per_class` functions, at most `max_per_class` of each; a
stratified train/dev split by seed).
"""

from __future__ import annotations

import importlib.util
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from twofold.errors import TwofoldError
from twofold.eval import stdlib
from twofold.eval.metrics import accuracy
from twofold.eval.settings import Settings
from twofold.eval.tasks.subject import Subject
from twofold.finetune.datasets import LabelledData, train_and_dev
from twofold.finetune.inputs import resolve
from twofold.finetune.recipes import recipe_for
from twofold.finetune.tasks import TASK_TABLE, OrderRecorder, predict
from twofold.hf import save_pretrained
from twofold.results import Result


def check_trainer(settings: Settings) -> None:
    """One line before any work when the fine-tune's library is missing."""
    if importlib.util.find_spec("transformers") is None or importlib.util.find_spec("datasets") is None:
        raise TwofoldError("the classification tasks fine-tune with transformers' Trainer, which is not installed; "
                           "pip install 'twofold[finetune]' (or leave out package-classification)")


def fine_tune_and_score(subject: Subject, data: LabelledData, settings: Settings, task: str,
                        variant: str = "") -> Result:
    """Fine-tune a copy of the subject (its export, in a temporary folder) and score the dev split."""
    train = data.train
    if len(train) > settings.max_examples:
        keep = np.random.default_rng(settings.seed).permutation(len(train))[:settings.max_examples]
        train = [train[i] for i in sorted(keep)]
    pooling = settings.pooling or ("last" if subject.causal else "mean")
    recipe = recipe_for("classify", learning_rates=(settings.learning_rate,), epochs=settings.fine_tune_epochs,
                        batch_size=settings.batch_size, warmup_ratio=0.0, weight_decay=settings.weight_decay,
                        max_length=settings.length, pooling=pooling, seed=settings.seed)
    if not subject.tokenizer.source:
        raise TwofoldError(f"{subject.name}: its tokenizer has no file to export beside the model; "
                           "load it with load_tokenizer(DIR)")
    spec = TASK_TABLE["classify"]
    with tempfile.TemporaryDirectory(prefix="twofold-classify-") as scratch:
        export = save_pretrained(subject.model, Path(scratch) / "model", tokenizer=subject.tokenizer.source)
        classifier = spec.build(resolve(export, Path(scratch)), recipe, labels=data.labels)
        spec.train(classifier, train, recipe, settings.learning_rate, Path(scratch) / "trainer", OrderRecorder(None))
        predictions = predict(classifier, data.dev, recipe).argmax(-1).tolist()
    gold = [label for _, label in data.dev]
    majority = Counter(label for _, label in data.train).most_common(1)[0][0]
    return subject.result(task, {"accuracy": accuracy(predictions, gold)}, settings.seed, len(gold),
                          variant=variant, labels=len(data.labels), train=len(train),
                          majority_accuracy=accuracy([majority] * len(gold), gold), pooling=pooling)


def package_set(min_per_class: int, max_per_class: int, dev_fraction: float, seed: int) -> LabelledData:
    """Docstring -> top-level package of held-out stdlib functions, split per class by seed.

    Big packages are cut to `max_per_class` functions, so that guessing the largest class
    (unittest has 100 functions) does not look like skill.
    """
    by_package = defaultdict(list)
    for function in stdlib.functions():
        by_package[function.package].append(function.docstring)
    names = sorted(p for p, docs in by_package.items() if len(docs) >= min_per_class)
    if len(names) < 2:
        raise TwofoldError(f"the held-out stdlib has fewer than two packages with {min_per_class} documented "
                           "functions; lower min_per_class (--min-per-class)")
    rng = np.random.default_rng(seed)
    train, dev = [], []
    for label, name in enumerate(names):
        docs = by_package[name]
        order = rng.permutation(len(docs))[:max_per_class]
        cut = max(1, round(len(order) * dev_fraction))
        dev += [((docs[i],), label) for i in order[:cut]]
        train += [((docs[i],), label) for i in order[cut:]]
    return LabelledData("stdlib-packages", train, dev, dev, names)


def package_classification(subject: Subject, settings: Settings) -> list[Result]:
    data = package_set(settings.min_per_class, settings.max_per_class, settings.dev_fraction, settings.seed)
    return [fine_tune_and_score(subject, data, settings, "package-classification")]


def user_classification(subject: Subject, settings: Settings) -> list[Result]:
    data = train_and_dev(settings.train, settings.dev, settings.text_fields, settings.label_field)
    return [fine_tune_and_score(subject, data, settings, "classification", variant=data.name)]
