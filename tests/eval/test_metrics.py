"""Metrics on cases computed by hand."""

import math

import pytest
import torch

from twofold.errors import TwofoldError
from twofold.eval.metrics import accuracy, perplexity, ranking, retrieval_scores, top_k


def test_ndcg_and_mrr_match_hand_computed_values():
    qrels = {"q1": {"d1": 1}, "q2": {"d3": 1}, "q3": {"d1": 2, "d2": 1}, "q4": {"d4": 1}}
    run = {
        "q1": {"d2": 0.9, "d1": 0.5},  # relevant at rank 2: nDCG 1/log2(3), RR 1/2
        "q2": {"d1": 0.9, "d2": 0.8, "d3": 0.1},  # rank 3: nDCG 1/log2(4) = 1/2, RR 1/3
        "q3": {"d2": 0.9, "d1": 0.8},  # graded, swapped; linear gain (trec_eval): DCG 1 + 2/log2(3)
        # q4 is not answered at all: 0 for both
    }
    ideal_q3 = 2 + 1 / math.log2(3)
    ndcg = (1 / math.log2(3) + 0.5 + (1 + 2 / math.log2(3)) / ideal_q3 + 0) / 4
    mrr = (1 / 2 + 1 / 3 + 1 + 0) / 4
    scores = retrieval_scores(qrels, run, k=10)
    assert scores["ndcg@10"] == pytest.approx(ndcg)
    assert scores["mrr@10"] == pytest.approx(mrr)


def test_cutoff_ignores_documents_past_k():
    qrels = {"q": {"d2": 1}}
    run = {"q": {"d0": 0.9, "d1": 0.8, "d2": 0.7}}
    assert retrieval_scores(qrels, run, k=2) == {"ndcg@2": 0.0, "mrr@2": 0.0}
    assert retrieval_scores(qrels, run, k=3)["mrr@3"] == pytest.approx(1 / 3)


def test_top_k_ranks_by_cosine_and_ranking_names_documents():
    queries = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    documents = torch.tensor([[10.0, 1.0], [0.0, 3.0], [1.0, 1.0]])  # length must not matter
    scores, indices = top_k(queries, documents, k=2, chunk=1)
    assert indices.tolist() == [[0, 2], [1, 2]]
    assert scores[1, 0].item() == pytest.approx(1.0)
    run = ranking(["qa", "qb"], ["x", "y", "z"], scores, indices)
    assert list(run["qa"]) == ["x", "z"] and run["qb"]["y"] == pytest.approx(1.0)


def test_accuracy_and_perplexity():
    assert accuracy([1, 0, 2, 2], [1, 1, 2, 0]) == 0.5
    # two tokens with probabilities 1/2 and 1/8: perplexity = (2 * 8) ** (1/2) = 4
    assert perplexity(math.log(2) + math.log(8), 2) == pytest.approx(4.0)
    with pytest.raises(TwofoldError):
        accuracy([1], [1, 2])
    with pytest.raises(TwofoldError):
        perplexity(1.0, 0)
