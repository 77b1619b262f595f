"""What every Trainer-based task shares: the training arguments of a recipe, and a record of the batches.

`OrderRecorder` wraps the trainer's collator and hashes every batch it builds, so that two
fine-tunes (two members of a pair, two learning rates) can be shown to have seen the same batches.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from twofold.finetune.recipes import Recipe


class OrderRecorder:
    """Wraps a data collator and hashes every batch it builds: two runs with equal hashes saw equal batches."""

    def __init__(self, collator):
        self.collator = collator
        self.digest = hashlib.sha256()
        self.batches = 0
        self.steps: int | None = None  # optimizer steps the trainer took (set after training)

    def __call__(self, features):
        self.digest.update(json.dumps([_texts(f) for f in features], sort_keys=True, default=str).encode())
        self.batches += 1
        return self.collator(features)

    def __getattr__(self, name):
        return getattr(self.collator, name)

    @property
    def hexdigest(self) -> str:
        return self.digest.hexdigest()


def _texts(feature: dict) -> dict:
    return {k: v for k, v in feature.items() if isinstance(v, (str, int, float))}


def training_args(cls, recipe: Recipe, lr: float, workdir: Path, **extra):
    return cls(output_dir=str(workdir), num_train_epochs=recipe.epochs, per_device_train_batch_size=recipe.batch_size,
               learning_rate=lr, warmup_steps=recipe.warmup_ratio, weight_decay=recipe.weight_decay,
               seed=recipe.seed, data_seed=recipe.seed, save_strategy="no", report_to="none",
               logging_steps=max(1, 10), disable_tqdm=None, **extra)


def train_with(trainer, recorder: OrderRecorder) -> None:
    recorder.collator = trainer.data_collator
    trainer.data_collator = recorder
    trainer.train()
    recorder.steps = trainer.state.global_step
