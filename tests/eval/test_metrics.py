"""Metrics on cases computed by hand."""

import math

import pytest
import torch

from twofold.errors import TwofoldError
from twofold.eval.metrics import accuracy, bm25, bm25_run, p_mrr, perplexity, rank_of, ranking, retrieval_scores, top_k


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


def test_accuracy_counts_matches_and_top_k_is_capped_by_the_documents():
    assert accuracy(["a", "b", "c"], ["a", "x", "c"]) == pytest.approx(2 / 3)
    with pytest.raises(TwofoldError, match=r"got 0 and 0$"):
        accuracy([], [])
    queries = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 3.0, 0.0]])
    documents = torch.tensor([[1.0, 0.1, 0.0], [0.2, 1.0, 0.5]])
    scores, indices = top_k(queries, documents, k=5, chunk=2)  # k capped at 2 documents; chunks of 2 and 1 queries
    assert indices.tolist() == [[0, 1], [1, 0], [1, 0]]
    cosine = torch.nn.functional.cosine_similarity(queries[:, None], documents[None], dim=-1)
    assert torch.allclose(scores, cosine.sort(dim=1, descending=True).values)
    assert perplexity(2.0, 1) == pytest.approx(math.exp(2.0))  # one token is enough


def test_rank_of_breaks_score_ties_by_document_id_descending_and_ranks_the_absent_last():
    run = {"d1": 0.5, "d3": 0.5, "d2": 0.9, "d0": 0.1}
    assert [rank_of(run, d) for d in ("d2", "d3", "d1", "d0", "d9")] == [1, 2, 3, 4, 5]


def test_p_mrr_averages_each_querys_documents_then_the_queries():
    original = {"q1": {"a": 4, "b": 3, "c": 2, "d": 1}, "q2": {"a": 2, "b": 1}, "q3": {"a": 1}}
    changed = {"q1": {"c": 4, "d": 3, "a": 2, "b": 1}, "q2": {"b": 2, "a": 1}}
    # q1: a falls 1 -> 3 (1 - 1/3), b falls 2 -> 4 (1 - 2/4); q2: b rises 2 -> 1 (1/2 - 1);
    # q3 is not in the changed run and "q4" has no documents: both left out
    expected = (((1 - 1 / 3) + (1 - 2 / 4)) / 2 + (1 / 2 - 1)) / 2
    assert p_mrr(original, changed, {"q3": ["a"], "q1": ["a", "b"], "q4": [], "q2": ["b"]}) == pytest.approx(expected)
    assert p_mrr(original, original, {"q1": ["a", "b"]}) == 0.0  # no document moved
    with pytest.raises(TwofoldError, match="p-MRR needs at least one query"):
        p_mrr(original, changed, {"q3": ["a"], "q4": []})


DOCUMENTS = {"d1": "apples grow on trees", "d2": "bananas are yellow", "d3": "cars drive on roads",
             "d4": "apples and bananas", "d5": "the sky is blue"}


def test_bm25_returns_only_the_documents_that_share_a_word_with_the_query(capsys):
    """A query that shares words with fewer than `depth` documents gets only those (as Lucene's BM25
    does), best first; depth cuts the rest."""
    queries = {"q1": "apples", "q2": "yellow bananas", "q3": "nothing matches here"}
    run = bm25_run(queries, DOCUMENTS, depth=3)
    assert {q: list(docs) for q, docs in run.items()} == {"q1": ["d4", "d1"], "q2": ["d2", "d4"], "q3": []}
    assert all(score > 0 for docs in run.values() for score in docs.values())
    assert {q: list(docs) for q, docs in bm25_run(queries, DOCUMENTS, depth=1).items()} == \
        {"q1": ["d4"], "q2": ["d2"], "q3": []}
    qrels = {"q1": {"d1": 1}, "q2": {"d4": 1}, "q3": {"d5": 1}}
    scores = bm25(queries, DOCUMENTS, qrels, k=1)
    assert scores == {"ndcg@1": 0.0, "mrr@1": 0.0}  # each relevant document ranks second, or not at all
    scores = bm25(queries, DOCUMENTS, qrels, k=2)
    assert scores["mrr@2"] == pytest.approx((1 / 2 + 1 / 2 + 0) / 3)
    assert bm25(queries, DOCUMENTS, qrels) == retrieval_scores(qrels, bm25_run(queries, DOCUMENTS, 10)) == \
        {"ndcg@10": pytest.approx(scores["ndcg@2"]), "mrr@10": pytest.approx(scores["mrr@2"])}  # k 10 by default
    assert capsys.readouterr().err == ""  # no progress bars
