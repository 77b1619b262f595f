"""Metrics as pure functions. Retrieval scores come from `ranx`, a standard IR library; BM25
rankings from `bm25s`.

ranx compiles its metrics with numba: the first call on a fresh install takes ~30 s, later
runs read numba's cache. ranx and bm25s are imported where used (heavy, needed by few tasks).
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


def rank_of(run: dict[str, float], doc: str) -> int:
    """1-based rank of `doc` in a query's run {doc: score}: score descending, ties by doc id descending
    (as mteb breaks them); a document the run does not hold ranks just past its end."""
    ordered = sorted(run.items(), key=lambda item: (item[1], item[0]), reverse=True)
    for rank, (name, _) in enumerate(ordered, start=1):
        if name == doc:
            return rank
    return len(ordered) + 1


def p_mrr(original: dict[str, dict[str, float]], changed: dict[str, dict[str, float]],
          changed_docs: dict[str, list[str]]) -> float:
    """FollowIR's pairwise MRR (Weller et al. 2024, arXiv 2403.15246), in [-1, 1].

    For each query, `changed_docs` are the documents whose relevance the altered instruction
    took away. With R_og its rank under the original instruction and R_new under the altered
    one, a document scores R_new/R_og - 1 if it rose or stayed (R_og >= R_new), else
    1 - R_og/R_new; the scores are averaged per query, then over queries. Positive: the model
    followed the instruction (the no-longer-relevant documents went down).
    """
    per_query = []
    for query, docs in changed_docs.items():
        if query not in original or query not in changed or not docs:
            continue
        scores = []
        for doc in docs:
            before, after = rank_of(original[query], doc), rank_of(changed[query], doc)
            scores.append(after / before - 1 if before >= after else 1 - before / after)
        per_query.append(sum(scores) / len(scores))
    if not per_query:
        raise TwofoldError("p-MRR needs at least one query with changed documents in both runs")
    return sum(per_query) / len(per_query)


def bm25_run(queries: dict[str, str], documents: dict[str, str], depth: int) -> dict[str, dict[str, float]]:
    """Each query's top `depth` documents by BM25 (bm25s: Lucene's idf, k1 1.5, b 0.75, its default
    English tokenizer — lowercased words of 2+ characters without English stopwords).

    A document sharing no word with the query is not retrieved, as with Lucene (bm25s fills the
    top `depth` with such documents at score 0, in no meaningful order): a query matching fewer
    than `depth` documents gets only those."""
    import bm25s

    doc_ids = list(documents)
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(list(documents.values()), show_progress=False), show_progress=False)
    tokens = bm25s.tokenize(list(queries.values()), show_progress=False)
    found, scores = retriever.retrieve(tokens, k=min(depth, len(doc_ids)), show_progress=False)
    return {q: {doc_ids[int(i)]: float(s) for i, s in zip(row, score) if s > 0}
            for q, row, score in zip(queries, found, scores)}


def bm25(queries: dict[str, str], documents: dict[str, str], qrels: dict[str, dict[str, int]],
         k: int = 10) -> dict[str, float]:
    """nDCG@k and MRR@k of BM25 (`bm25_run`)."""
    return retrieval_scores(qrels, bm25_run(queries, documents, k), k)
