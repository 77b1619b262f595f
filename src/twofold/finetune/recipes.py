"""The downstream recipes: one `Recipe` per task, its defaults the published ones.

Ettin (arXiv 2507.11412) fine-tunes both members of a pair identically and reports the best
learning rate per member; its model cards (jhu-clsp/ettin-*) give the recipes:

- embed: Sentence Transformers, CachedMultipleNegativesRankingLoss on hard-negative triplets,
  lr 8e-5, batch 512, 1 epoch, warmup 5%, no-duplicates batches; encoder mean pooling,
  decoder last-token pooling.
- sparse: SparseEncoder (MLM head + SPLADE max pooling), SpladeLoss around
  SparseMultipleNegativesRankingLoss, query/document regularizer weights 5e-5 / 3e-5, lr 2e-5.
- rerank: CrossEncoder, BinaryCrossEntropy with pos_weight 5 on mined hard negatives (5 per
  query, as Sentence Transformers' own MS MARCO recipe pairs pos_weight with), lr 2e-5.
- colbert: PyLate ColBERT, lr 8e-5, contrastive loss (distillation when the data carries
  teacher scores).
- classify: GLUE-style; a learning-rate sweep {1e-5, 3e-5, 8e-5}, 3 epochs, warmup 6%.
- generate: supervised fine-tuning of a decoder on prompt -> completion pairs, the loss on the
  completion only. Ettin publishes no generative recipe; the classify sweep and schedule are
  used, with 256 tokens per example and greedy decoding of at most 64 new tokens for scoring.

Values the cards do not give (batch of sparse/colbert, lengths, weight decay) follow the
dense recipe or the libraries' defaults and are written down in every finetune.json.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from twofold.errors import TwofoldError

TASKS = ("embed", "sparse", "rerank", "colbert", "classify", "generate")
RETRIEVAL_TASKS = ("embed", "sparse", "rerank", "colbert")


@dataclass(frozen=True)
class Recipe:
    task: str
    learning_rates: tuple[float, ...]  # more than one: a sweep, selected on the dev split
    epochs: float = 1.0
    batch_size: int = 512
    mini_batch_size: int = 32  # cached losses: the chunk that fits in memory (no effect on the math)
    warmup_ratio: float = 0.05
    weight_decay: float = 0.01
    max_length: int = 256  # tokens per document (and per classified text)
    query_length: int = 32  # colbert: tokens per query
    hard_negatives: int = 1  # mined per query with Sentence Transformers' mine_hard_negatives (0: none)
    pos_weight: float = 5.0  # rerank
    query_regularizer: float = 5e-5  # sparse
    document_regularizer: float = 3e-5  # sparse
    pooling: str | None = None  # embed/classify; None: encoder mean, decoder last token
    max_new_tokens: int = 64  # generate: tokens generated per scored example (greedy)
    seed: int = 12

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["learning_rates"] = list(self.learning_rates)
        return data

    def replace(self, **changes) -> Recipe:
        changes = {k: v for k, v in changes.items() if v is not None}
        return check(dataclasses.replace(self, **changes))


DEFAULTS: dict[str, Recipe] = {
    "embed": Recipe("embed", (8e-5,)),
    "sparse": Recipe("sparse", (2e-5,)),
    "rerank": Recipe("rerank", (2e-5,), batch_size=64, hard_negatives=5),
    "colbert": Recipe("colbert", (8e-5,)),
    "classify": Recipe("classify", (1e-5, 3e-5, 8e-5), epochs=3, batch_size=32, warmup_ratio=0.06,
                       hard_negatives=0),
    "generate": Recipe("generate", (1e-5, 3e-5, 8e-5), epochs=3, batch_size=32, warmup_ratio=0.06,
                       hard_negatives=0),
}


def recipe_for(task: str, **changes) -> Recipe:
    """The published recipe of `task`, with `changes` (None values keep the default)."""
    if task not in DEFAULTS:
        raise TwofoldError(f"unknown fine-tuning task {task!r}; choose one of {', '.join(TASKS)}")
    return DEFAULTS[task].replace(**changes)


def parse_learning_rates(text: str) -> tuple[float, ...]:
    """'1e-5,3e-5,8e-5' -> (1e-5, 3e-5, 8e-5); anything else is one clear error."""
    rates = []
    for item in text.split(","):
        try:
            rate = float(item)
        except ValueError:
            raise TwofoldError(f"--lr {text!r}: {item.strip()!r} is not a number; "
                               "give learning rates like 1e-5,3e-5,8e-5") from None
        if not math.isfinite(rate) or rate <= 0:
            raise TwofoldError(f"--lr {text!r}: {item.strip()} is not a positive learning rate")
        rates.append(rate)
    return tuple(rates)


def check(recipe: Recipe) -> Recipe:
    if not recipe.learning_rates:
        raise TwofoldError("a recipe needs at least one learning rate (--lr)")
    bad = [rate for rate in recipe.learning_rates if not 0 < rate < math.inf]
    if bad:
        raise TwofoldError(f"--lr {bad[0]}: a learning rate must be a finite number > 0")
    for name in ("batch_size", "mini_batch_size", "max_length", "query_length", "max_new_tokens"):
        if getattr(recipe, name) < 1:
            raise TwofoldError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(recipe, name)}")
    if not 0 < recipe.epochs < math.inf:
        raise TwofoldError(f"--epochs must be positive, got {recipe.epochs}")
    if not 0 <= recipe.warmup_ratio < 1:
        raise TwofoldError(f"--warmup must be in [0, 1), got {recipe.warmup_ratio}")
    if recipe.hard_negatives < 0:
        raise TwofoldError(f"--hard-negatives must be 0 or more, got {recipe.hard_negatives}")
    if recipe.pooling not in (None, "mean", "last", "cls"):
        raise TwofoldError(f"--pooling {recipe.pooling!r}: choose mean, last or cls")
    return recipe
