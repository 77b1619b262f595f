"""Metrics as pure functions. Retrieval scores come from `ranx`, a standard IR library.

ranx compiles its metrics with numba: the first call on a fresh install takes ~30 s, later
runs read numba's cache.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch

from twofold.errors import TwofoldError


def accuracy(predictions: Sequence, labels: Sequence) -> float:
    if len(predictions) != len(labels) or not labels:
        raise TwofoldError(f"accuracy needs as many predictions as labels (>0), "
                           f"got {len(predictions)} and {len(labels)}")
    return sum(int(p == y) for p, y in zip(predictions, labels)) / len(labels)


def perplexity(total_nll: float, count: int) -> float:
    """exp of the mean negative log-likelihood (natural log) per predicted token."""
    if count <= 0:
        raise TwofoldError("perplexity needs at least one predicted token")
    return math.exp(total_nll / count)


def top_k(queries: torch.Tensor, documents: torch.Tensor, k: int, chunk: int = 1024):
    """Cosine similarity search: (scores [Q, k], document indices [Q, k]), best first."""
    queries = torch.nn.functional.normalize(queries.float(), dim=-1)
    documents = torch.nn.functional.normalize(documents.float(), dim=-1)
    k = min(k, documents.shape[0])
    scores, indices = [], []
    for start in range(0, queries.shape[0], chunk):
        best = (queries[start:start + chunk] @ documents.T).topk(k, dim=-1)
        scores.append(best.values)
        indices.append(best.indices)
    return torch.cat(scores), torch.cat(indices)


def ranking(query_ids: Sequence[str], doc_ids: Sequence[str], scores: torch.Tensor,
            indices: torch.Tensor) -> dict[str, dict[str, float]]:
    """A TREC-style run {query: {doc: score}} from `top_k`'s output."""
    return {q: {doc_ids[i]: s for s, i in zip(row_scores, row_indices)}
            for q, row_scores, row_indices in zip(query_ids, scores.tolist(), indices.tolist())}


def retrieval_scores(qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]],
                     k: int = 10) -> dict[str, float]:
    """nDCG@k (linear gain, as trec_eval) and MRR@k (ranx). Unanswered queries score 0."""
    from ranx import Qrels, Run, evaluate

    names = [f"ndcg@{k}", f"mrr@{k}"]
    with warnings.catch_warnings():  # numba's type-safety chatter
        warnings.simplefilter("ignore")
        scores = evaluate(Qrels(qrels), Run(run), names, make_comparable=True)
    return {name: float(scores[name]) for name in names}
