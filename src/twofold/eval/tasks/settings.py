"""`Settings`: every knob of the evaluation tasks, with defaults sized for a laptop CPU.

The sample sizes bound the work of each task; the seed fixes every random choice (which text,
which tokens are masked, which functions form the query set, the train/dev split, the order
of fine-tuning batches), so two runs with the same settings give the same numbers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    seed: int = 0
    max_length: int = 256  # tokens per sequence, special tokens included
    batch_size: int = 32
    # language modelling over held-out stdlib text
    lm_tokens: int = 20_000  # tokens scored for MLM accuracy / perplexity
    pseudo_perplexity_tokens: int = 1_000  # tokens each masked alone (one forward pass each)
    mask_rate: float = 0.15
    # retrieval
    max_queries: int = 500
    k: int = 10
    # classification (fine-tuning, the same recipe for both members)
    max_examples: int = 2_000  # training examples at most
    min_per_class: int = 20  # built-in task: packages with fewer functions are left out
    max_per_class: int = 50  # built-in task: bigger packages are cut to this many functions
    dev_fraction: float = 0.2
    epochs: int = 3
    learning_rate: float = 1e-4
    weight_decay: float = 0.01
    pooling: str | None = None  # None: mean for the encoder, last token for the decoder
    # samples
    max_new_tokens: int = 32
    # user data
    train: str | None = None  # GLUE-style TSV or JSONL
    dev: str | None = None
    text_fields: tuple[str, ...] = ("sentence",)
    label_field: str = "label"
    beir: str | None = None  # a BEIR directory

    def replace(self, **changes) -> Settings:
        return dataclasses.replace(self, **changes)


# Small enough that every task finishes in seconds with a tiny model (tests, quick looks).
QUICK = Settings(lm_tokens=2_000, pseudo_perplexity_tokens=64, max_queries=64, max_examples=128,
                 epochs=1, max_length=128, max_new_tokens=16)
