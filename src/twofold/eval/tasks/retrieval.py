"""Zero-shot dense retrieval: pooled embeddings, cosine similarity, nDCG@10 and MRR@10.

Built in: code search over the held-out stdlib functions (query = the first line of the
docstring, document = the code without the docstring, one relevant document per query).
User data: a BEIR directory. Encoders pool with the mean; decoders are scored with the last
token and with the mean, both reported.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from twofold.eval import stdlib
from twofold.eval.metrics import ranking, retrieval_scores, top_k
from twofold.eval.progress import progress
from twofold.eval.settings import Settings
from twofold.eval.tasks.subject import Subject
from twofold.eval.text import embed_texts
from twofold.finetune.datasets import RetrievalSet
from twofold.results import Result


def poolings(subject: Subject) -> tuple[str, ...]:
    return ("last", "mean") if subject.causal else ("mean",)


def code_search_set(max_queries: int, seed: int) -> RetrievalSet:
    """Held-out functions whose docstring's first line is unique, a seeded sample of them."""
    functions = stdlib.functions()
    first_lines = [f.docstring.strip().splitlines()[0] for f in functions]
    counts = Counter(first_lines)
    usable = [i for i, line in enumerate(first_lines) if counts[line] == 1]
    chosen = sorted(np.random.default_rng(seed).permutation(usable)[:max_queries].tolist())
    return RetrievalSet(
        name="code-search",
        queries={f"q{i}": first_lines[i] for i in chosen},
        corpus={f"d{i}": functions[i].code for i in chosen},
        qrels={f"q{i}": {f"d{i}": 1} for i in chosen},
    )


def retrieve(subject: Subject, data: RetrievalSet, settings: Settings, task: str,
             variant_prefix: str = "") -> list[Result]:
    """Embed queries and documents once, then score each pooling."""
    total = len(data.queries) + len(data.corpus)
    with progress(subject.name, task, total, "text") as bar:
        pools = poolings(subject)
        query_vectors = embed_texts(subject.model, subject.tokenizer, list(data.queries.values()), pools,
                                    settings.length, settings.batch_size, bar)
        doc_vectors = embed_texts(subject.model, subject.tokenizer, list(data.corpus.values()), pools,
                                  settings.length, settings.batch_size, bar)
    results = []
    for pooling in pools:
        scores, indices = top_k(query_vectors[pooling], doc_vectors[pooling], settings.k)
        run = ranking(list(data.queries), list(data.corpus), scores, indices)
        metrics = retrieval_scores(data.qrels, run, settings.k)
        results.append(subject.result(task, metrics, settings.seed, len(data.queries),
                                      variant=variant_prefix + pooling, pooling=pooling,
                                      documents=len(data.corpus)))
    return results


def code_search(subject: Subject, settings: Settings) -> list[Result]:
    return retrieve(subject, code_search_set(settings.max_queries, settings.seed), settings, "code-search")

