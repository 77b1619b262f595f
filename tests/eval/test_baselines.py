"""The baselines' edges: special tokens never guessed, short count tables, rankings with fewer
candidates than the cutoff, and the one-line errors (the main cases: tests/eval/test_demo_scoring.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from twofold.errors import TwofoldError
from twofold.eval.tasks import QUICK
from twofold.eval.tasks.baselines import language_model_baselines, majority, random_ranking
from twofold.eval.tasks.lm import held_out_windows, mask_windows

SETTINGS = QUICK.replace(lm_tokens=400, max_length=64)


def test_the_most_frequent_token_is_never_a_special_one_and_counts_may_stop_short(tokenizer):
    special = sorted(tokenizer.special.all())
    counts = np.zeros(300)  # shorter than the vocabulary: the rest counted 0
    counts[special] = 10_000  # special tokens dominate the counts but are never a masked target
    counts[120], counts[121] = 50, 40
    frequent, unigram = language_model_baselines(tokenizer, counts, SETTINGS)
    windows = held_out_windows(tokenizer, SETTINGS.length, SETTINGS.lm_tokens, SETTINGS.seed)
    _, labels = mask_windows(windows, tokenizer, SETTINGS.mask_rate, SETTINGS.seed)
    golds = [t for row in labels for t in row if t >= 0]
    assert frequent.details == {"token": tokenizer.decode([120])} and frequent.variant == "masked"
    assert frequent.metrics == {"mlm_accuracy": pytest.approx(golds.count(120) / len(golds))}
    full = np.pad(counts, (0, tokenizer.vocab_size - len(counts)))
    targets = [t for w in windows for t in w[1:]]
    nll = [-math.log((full[t] + 1) / (full.sum() + tokenizer.vocab_size)) for t in targets]
    assert unigram.metrics == {"perplexity": pytest.approx(math.exp(sum(nll) / len(nll)))}
    assert (unigram.n, unigram.task, unigram.model, frequent.model) == (len(targets), "lm", "unigram",
                                                                        "most-frequent token")
    assert (frequent.task, frequent.seed, unigram.seed, unigram.variant) == ("lm", 0, 0, "")
    assert min(special) == 0  # id 0 is never a masked target, so `label >= 0` and `> 0` pick the same golds
    counts[120], counts[121] = 0, 1  # one regular token seen once: still it, never a special token
    assert language_model_baselines(tokenizer, counts, SETTINGS)[0].details == {"token": tokenizer.decode([121])}


def test_random_ranking_with_fewer_candidates_than_the_cutoff():
    # three candidates: the relevant one is at rank 1, 2 or 3, each with probability 1/3
    assert random_ranking(3) == pytest.approx({"ndcg@10": (1 + 1 / math.log2(3) + 1 / 2) / 3,
                                               "mrr@10": (1 + 1 / 2 + 1 / 3) / 3})
    assert random_ranking(3, k=2) == pytest.approx({"ndcg@2": (1 + 1 / math.log2(3)) / 3, "mrr@2": (1 + 1 / 2) / 3})
    assert random_ranking(1) == {"ndcg@10": 1.0, "mrr@10": 1.0}
    with pytest.raises(TwofoldError, match="at least one candidate"):
        random_ranking(0)


def test_majority_needs_labels():
    assert majority(["b", "a", "b"]) == {"accuracy": pytest.approx(2 / 3)}
    with pytest.raises(TwofoldError, match="needs test labels"):
        majority([])
