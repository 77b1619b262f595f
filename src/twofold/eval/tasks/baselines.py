"""Baselines on the very texts, positions and queries the models are scored on.

- language modelling: the most frequent training token guessed at every masked position (the
  MLM accuracy of a model that ignores context), and the unigram perplexity of the held-out
  text under the training split's token counts (add-one smoothed): the perplexity of a decoder
  that ignores context. Both use `twofold.eval.tasks.lm`'s windows and masks, so they are scored on
  the same tokens as the members.
- retrieval: random ranking (its expected nDCG@10 / MRR@10, exact for one relevant document per
  query); BM25 is `twofold.eval.metrics.bm25`.
- classification: the majority class of the test set, predicted for every test example (the
  best any single-class guess can score; the built-in training set caps each class, so its own
  majority says little).
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from twofold.data.tokenizer import Tokenizer
from twofold.errors import TwofoldError
from twofold.eval.settings import Settings
from twofold.eval.tasks.lm import held_out_windows, mask_windows
from twofold.results import Result

BASELINE = "baseline"  # the `kind` of a baseline's results


def baseline(task: str, name: str, metrics: dict[str, float], n: int, variant: str = "", **details) -> Result:
    return Result(task=task, model=name, metrics=metrics, seed=0, n=n, variant=variant, kind=BASELINE,
                  details=details)


def language_model_baselines(tokenizer: Tokenizer, counts: np.ndarray, settings: Settings) -> list[Result]:
    """Most-frequent-token MLM accuracy and unigram perplexity on `twofold.eval.tasks.lm`'s held-out windows.

    `counts[t]`: how often token t occurs in the training split (e.g. `np.bincount(store.tokens)`).
    """
    if len(counts) < tokenizer.vocab_size:
        counts = np.pad(counts, (0, tokenizer.vocab_size - len(counts)))
    special = list(tokenizer.special.all())
    regular = counts.astype(np.float64)
    regular[special] = 0  # never a masked target, never a next token worth guessing
    windows = held_out_windows(tokenizer, settings.length, settings.lm_tokens, settings.seed)
    _, labels = mask_windows(windows, tokenizer, settings.mask_rate, settings.seed)
    golds = [t for row in labels for t in row if t >= 0]
    top = int(regular.argmax())
    probabilities = (counts + 1.0) / (counts.sum() + len(counts))
    targets = np.asarray([t for w in windows for t in w[1:]])  # what a decoder predicts: every next token
    nll = -np.log(probabilities[targets]).sum()
    return [
        baseline("lm", "most-frequent token", {"mlm_accuracy": sum(g == top for g in golds) / len(golds)},
                 len(golds), variant="masked", token=tokenizer.decode([top])),
        baseline("lm", "unigram", {"perplexity": math.exp(nll / len(targets))}, len(targets)),
    ]


def random_ranking(candidates: int, k: int = 10) -> dict[str, float]:
    """Expected nDCG@k and MRR@k of a uniformly random ranking, one relevant document among `candidates`."""
    if candidates < 1:
        raise TwofoldError("a random ranking needs at least one candidate document")
    ranks = range(1, min(k, candidates) + 1)  # the relevant document lands at each rank with p = 1/candidates
    return {f"ndcg@{k}": sum(1 / math.log2(r + 1) for r in ranks) / candidates,
            f"mrr@{k}": sum(1 / r for r in ranks) / candidates}


def majority(test_labels: list) -> dict[str, float]:
    """Accuracy of predicting the test set's most common label for every test example."""
    if not test_labels:
        raise TwofoldError("the majority baseline needs test labels")
    return {"accuracy": Counter(test_labels).most_common(1)[0][1] / len(test_labels)}
