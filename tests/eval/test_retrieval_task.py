"""The built-in retrieval task's scores recomputed by hand from the model's own embeddings: the rank of
each query's relevant document by cosine similarity, cut at k, for every pooling of the member."""

import math

import pytest
import torch
import torch.nn.functional as F
from tests.eval.conftest import Bars, tiny_model

from twofold.eval.settings import Settings
from twofold.eval.tasks import retrieval
from twofold.eval.tasks.subject import Subject
from twofold.eval.text import embed_texts
from twofold.finetune.datasets import RetrievalSet

QUERIES = {"q1": "read a file", "q2": "join two paths", "q3": "parse json text", "q4": "sort a list",
           "q5": "open a socket"}
CORPUS = {f"d{i}": text for i, text in enumerate([
    "def read(path): return open(path).read()", "os.path.join(a, b)", "json.loads(text)", "sorted(items)",
    "socket.socket()", "print('hello')", "x = 1 + 2", "class Point: pass"])}
QRELS = {"q1": {"d0": 1}, "q2": {"d1": 1}, "q3": {"d2": 1}, "q4": {"d3": 1}, "q5": {"d4": 1}}


def by_hand(model, tokenizer, pooling: str, settings: Settings) -> dict[str, float]:
    """nDCG@k and MRR@k with one relevant document per query: 1/log2(rank + 1) and 1/rank, 0 past k."""
    texts = list(QUERIES.values()) + list(CORPUS.values())
    vectors = F.normalize(embed_texts(model, tokenizer, texts, (pooling,), settings.length, 4)[pooling], dim=-1)
    queries, documents = vectors[:len(QUERIES)], vectors[len(QUERIES):]
    ndcg = mrr = 0.0
    for row, relevant in enumerate(QRELS.values()):
        similarities = queries[row] @ documents.T
        column = list(CORPUS).index(next(iter(relevant)))
        rank = 1 + int((similarities > similarities[column]).sum())
        if rank <= settings.k:
            ndcg, mrr = ndcg + 1 / math.log2(rank + 1), mrr + 1 / rank
    return {f"ndcg@{settings.k}": ndcg / len(QUERIES), f"mrr@{settings.k}": mrr / len(QUERIES)}


@pytest.mark.parametrize("causal", [False, True], ids=["encoder", "decoder"])
def test_retrieve_scores_each_pooling_as_counted_by_hand(tokenizer, monkeypatch, causal):
    torch.manual_seed(1)  # weights of our own: each pooling ranks relevant documents on both sides of the cut
    model = tiny_model(tokenizer, causal)
    bars = Bars()
    monkeypatch.setattr(retrieval, "progress", bars)
    subject = Subject(model, tokenizer, "m@step1")
    settings = Settings(k=2, seed=7, batch_size=3, max_length=24)
    results = retrieval.retrieve(subject, RetrievalSet(QUERIES, CORPUS, QRELS, "hand"), settings, "mine",
                                 variant_prefix="set/")
    poolings = ("last", "mean") if causal else ("mean",)
    assert [r.variant for r in results] == [f"set/{p}" for p in poolings]
    for pooling, result in zip(poolings, results):
        assert result.metrics == pytest.approx(by_hand(model, tokenizer, pooling, settings), abs=1e-6)
        assert (result.task, result.seed, result.n, result.details) == (
            "mine", 7, 5, {"pooling": pooling, "documents": 8})
    assert bars.opened == [("m@step1", "mine", 13, "text")] and bars.counted == [13]


def test_code_search_scores_as_many_queries_as_asked(encoder, tokenizer):
    settings = Settings(max_queries=3, max_length=24)
    (result,) = retrieval.code_search(Subject(encoder, tokenizer, "e"), settings)
    assert result.task == "code-search" and result.n == 3 and result.details["documents"] == 3
