"""Classification by a short fine-tune, with one recipe for both members of a pair.

The pretrained body and prediction head are copied into a `SequenceClassifier` (pooling:
the mean for the encoder, as ModernBERT's released configs and our retrieval do; the last
token for the decoder, as Ettin's decoders are fine-tuned), a fresh linear
classifier goes on top, and every weight is trained with AdamW and a linearly decaying LR for
a few epochs. Score: accuracy on the dev set; the majority-class accuracy is kept beside it
so a reader can tell learning from guessing.

Built in: which top-level package a held-out stdlib function belongs to, from its docstring
(packages with at least `min_per_class` functions, at most `max_per_class` of each; a
stratified train/dev split by seed).
"""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import torch

from twofold.errors import TwofoldError
from twofold.eval import stdlib
from twofold.eval.metrics import accuracy
from twofold.eval.progress import progress
from twofold.eval.tasks.settings import Settings
from twofold.eval.tasks.subject import Subject
from twofold.eval.text import batches_by_length, device_of, frame, pad
from twofold.finetune.datasets import LabelledData, train_and_dev
from twofold.model.heads import SequenceClassifier
from twofold.results import Result


def classifier_from(model, num_labels: int, pooling: str | None) -> SequenceClassifier:
    """A classifier whose body and head start from the pretrained language model."""
    classifier = SequenceClassifier(model.config, num_labels, pooling=pooling)
    classifier.model.load_state_dict(model.model.state_dict())
    classifier.head.load_state_dict(model.head.state_dict())
    return classifier


def fine_tune(subject: Subject, data: LabelledData, settings: Settings, task: str) -> SequenceClassifier:
    tokenizer = subject.tokenizer
    torch.manual_seed(settings.seed)  # the classifier's initialisation
    pooling = settings.pooling or ("last" if subject.causal else "mean")
    device = device_of(subject.model)
    classifier = classifier_from(subject.model, len(data.labels), pooling).to(device)
    train = data.train
    if len(train) > settings.max_examples:
        keep = np.random.default_rng(settings.seed).permutation(len(train))[:settings.max_examples]
        train = [train[i] for i in sorted(keep)]
    sequences = frame(tokenizer, [texts for texts, _ in train], settings.max_length, subject.causal)
    labels = torch.tensor([label for _, label in train], device=device)
    steps_per_epoch = -(-len(train) // settings.batch_size)
    total_steps = settings.epochs * steps_per_epoch
    optimizer = torch.optim.AdamW(classifier.parameters(), lr=settings.learning_rate,
                                  weight_decay=settings.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / total_steps)
    generator = torch.Generator().manual_seed(settings.seed)
    classifier.train()
    with progress(subject.name, f"{task} (fine-tune)", total_steps, "step") as bar:
        for _ in range(settings.epochs):
            order = torch.randperm(len(train), generator=generator).tolist()
            for start in range(0, len(order), settings.batch_size):
                batch = order[start:start + settings.batch_size]
                ids, mask = pad([sequences[i] for i in batch], tokenizer.special.pad, device)
                loss = classifier(ids, mask, labels=labels[batch]).loss
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}")
    return classifier.eval()


@torch.no_grad()
def predict(classifier: SequenceClassifier, subject: Subject, texts, settings: Settings) -> list[int]:
    sequences = frame(subject.tokenizer, texts, settings.max_length, subject.causal)
    predictions = [0] * len(sequences)
    for batch in batches_by_length(sequences, settings.batch_size):
        ids, mask = pad([sequences[i] for i in batch], subject.tokenizer.special.pad, device_of(classifier))
        for i, label in zip(batch, classifier(ids, mask).logits.argmax(-1).tolist()):
            predictions[i] = label
    return predictions


def fine_tune_and_score(subject: Subject, data: LabelledData, settings: Settings, task: str,
                        variant: str = "") -> Result:
    classifier = fine_tune(subject, data, settings, task)
    gold = [label for _, label in data.dev]
    predictions = predict(classifier, subject, [texts for texts, _ in data.dev], settings)
    majority = Counter(label for _, label in data.train).most_common(1)[0][0]
    return subject.result(task, {"accuracy": accuracy(predictions, gold)}, settings.seed, len(gold),
                          variant=variant, labels=len(data.labels),
                          train=min(len(data.train), settings.max_examples),
                          majority_accuracy=accuracy([majority] * len(gold), gold), pooling=classifier.pooling)


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
