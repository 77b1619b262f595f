"""`Settings`: every knob of an evaluation, of the built-in tasks and of the suites alike.

Both rooms read the shared knobs (seed, batch size, tokens per text, fine-tuning epochs); each
reads its own beside them. Where a shared knob is None, each room keeps its own default: the
built-in tasks 256 tokens per text and 3 fine-tuning epochs (`length`, `fine_tune_epochs`),
a suite its published values. The sample sizes bound the work of each task; the seed fixes
every random choice (which text, which tokens are masked, which functions form the query set,
the train/dev split, the order of fine-tuning batches), so two runs with the same settings give
the same numbers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

TASK_LENGTH = 256  # the built-in tasks' tokens per sequence, special tokens included
TASK_EPOCHS = 3  # the built-in classification tasks' fine-tuning epochs


@dataclass(frozen=True)
class Settings:
    # both rooms
    seed: int = 0
    batch_size: int = 32
    max_length: int | None = None  # tokens per text (None: TASK_LENGTH, or each suite's published value)
    epochs: float | None = None  # fine-tuning epochs (None: TASK_EPOCHS, or each suite's recipe)
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
    generate_data: str = "stdlib"  # generation: its test split is scored (stdlib: the held-out functions)
    generate_test: str | None = None  # generation: a file (or SOURCE,TARGET files) scored whole instead
    template: str | None = None  # generation: prompt of source/target data, with {source}
    source_field: str | None = None
    target_field: str | None = None
    # the suites (None keeps the published default)
    tasks: tuple[str, ...] = ()  # a subset of the suite's tasks (default: all of them)
    data_dir: Path | None = None  # local copies of the data (see docs/evaluation.md)
    limit: int | None = None  # examples per task at most (quick looks; not the published protocol)
    learning_rates: tuple[float, ...] | None = None  # fine-tunes (glue, mteb --finetune): the sweep
    finetune_batch_size: int | None = None
    finetune_data: str | None = None  # mteb: fine-tune `embed` on this first
    num_fewshot: int | None = None  # lm-eval
    think_tokens: int = 0  # rank1: reasoning tokens generated before the verdict
    first_stage: str = "bm25"  # rank1: bm25, a TREC run file, or an embedder directory
    depth: int = 100  # rank1: documents reranked per query
    work: Path | None = None  # where fine-tunes and exports go (default: OUT/work)

    @property
    def length(self) -> int:
        """Tokens per sequence of the built-in tasks."""
        return self.max_length or TASK_LENGTH

    @property
    def fine_tune_epochs(self) -> float:
        """Epochs of the built-in classification tasks' fine-tune."""
        return self.epochs or TASK_EPOCHS

    def recipe_changes(self) -> dict:
        """What a suite's fine-tune (`twofold.finetune.recipe_for`) takes from these settings."""
        return {"learning_rates": self.learning_rates, "epochs": self.epochs,
                "batch_size": self.finetune_batch_size, "seed": self.seed,
                "max_length": self.max_length}

    def replace(self, **changes) -> Settings:
        return dataclasses.replace(self, **changes)


# Small enough that every task finishes in seconds with a tiny model (tests, quick looks).
QUICK = Settings(lm_tokens=2_000, pseudo_perplexity_tokens=64, max_queries=64, max_examples=128,
                 epochs=1, max_length=128, max_new_tokens=16)
