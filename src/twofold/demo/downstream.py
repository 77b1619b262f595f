"""The same downstream fine-tune for several models, over seeds, with baselines on the same test set.

As Ettin compares its pairs (arXiv 2507.11412): every model gets the identical data, recipe and
batches (`twofold finetune`), and is scored on the held-out modules' functions:

- `embed` (Sentence Transformers, in-batch negatives): code search, docstring line -> function,
  nDCG@10 and MRR@10 over the held-out functions; also the model *before* fine-tuning
  (zero-shot, the same pooling), random ranking and BM25 on the same queries and candidates;
- `classify` (transformers Trainer): docstring -> top-level package, accuracy; also the
  test set's majority class and a uniform random guess;
- `generate` (transformers Trainer, the loss on the completion only): a function's code -> the
  first line of its docstring, chrF / chrF++ / BLEU of greedy generations (sacrebleu); also the
  model before fine-tuning (zero-shot) and the function's name in words ("read_file" -> "read
  file"), the line a reader could guess from the signature alone.

Each fine-tune runs once per seed (the seed orders the batches and initialises the new head);
the report shows mean ± spread, so a difference smaller than the spread is not called a win.
The pieces are separate functions so that the fine-tunes can run side by side (`twofold.demo.lanes`):
`task_data` once per task, `prepared_seeds` once per task, `fine_tune` per model and seed,
`task_baselines` once per task.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from twofold.eval.metrics import bm25
from twofold.eval.tasks.baselines import baseline, majority, random_ranking
from twofold.finetune import RetrievalSet, finetune, load_data, prepare, resolve
from twofold.finetune.recipes import Recipe
from twofold.finetune.scoring import generation_scores, signatures
from twofold.results import Result

# What each fine-tuning task is called in the results, and the metrics kept.
TASK_NAMES = {"embed": "code-search", "classify": "package-classification", "generate": "docstring-generation"}
KEPT = {"embed": ("ndcg@10", "mrr@10"), "classify": ("accuracy",), "generate": ("chrf", "chrf++", "bleu")}
FINE_TUNED, ZERO_SHOT = "fine-tuned", "zero-shot"


def task_data(task: str, sizes: dict[str, int | None] | None = None):
    """The built-in set of `task` with seeded samples of `sizes[task]` training examples and at
    most `sizes["<task> test"]` dev/test examples (or `sizes["test"]` for every task: quick looks
    and tests); the same for every model and seed."""
    sizes = sizes or {}
    caps = [size for size in (sizes.get("test"), sizes.get(f"{task} test")) if size is not None]
    return _sample(load_data(task, "stdlib"), sizes.get(task), min(caps) if caps else None)


def prepared_seeds(task: str, data, recipe: Recipe, seeds: Sequence[int], miner: str | Path, work: Path) -> dict:
    """{seed: the rows every model trains on}. Negatives, if the recipe mines any, are mined once
    per seed with `miner` (an HF export), so every model trains on the same rows."""
    base = resolve(miner, work / ".inputs")
    return {seed: prepare(task, data, recipe.replace(seed=seed), base) for seed in seeds}


def fine_tune(task: str, model: str | Path, name: str, data, prepared, recipe: Recipe, seed: int,
              work: Path) -> list[Result]:
    """One seed of one model: fine-tuned with `recipe`, scored on the test split (kept), weights
    deleted. Returns its results (an embedder's also before fine-tuning: zero-shot)."""
    out = work / f"{task}-{name}-seed{seed}"
    shutil.rmtree(out, ignore_errors=True)
    done = finetune(task, resolve(model, work / ".inputs", name), data, out, recipe.replace(seed=seed),
                    name=name, prepared=prepared, say=lambda line: None)
    shutil.rmtree(out, ignore_errors=True)  # the scores are kept; the weights are not needed
    return _member_results(task, done, seed, len(data.test))


def _sample(data, train: int | None, test: int | None = None):
    """The data with seeded samples of `train` training and `test` dev/test examples (the same
    for every model and seed)."""
    data.train = _subset(data.train, train)
    if test is not None:
        data.dev, data.test = (_subset_set(s, test) if isinstance(s, RetrievalSet) else _subset(s, test)
                               for s in (data.dev, data.test))
    return data


def _subset(items: list, size: int | None) -> list:
    if size is None or size >= len(items):
        return items
    return [items[i] for i in sorted(np.random.default_rng(0).permutation(len(items))[:size].tolist())]


def _subset_set(data: RetrievalSet, size: int) -> RetrievalSet:
    """`size` queries, and as candidates only the documents relevant to them."""
    queries = dict(_subset(list(data.queries.items()), size))
    qrels = {q: data.qrels[q] for q in queries}
    wanted = set().union(*qrels.values())
    return RetrievalSet(queries, {d: text for d, text in data.corpus.items() if d in wanted}, qrels)


def _member_results(task: str, done, seed: int, n: int) -> list[Result]:
    name, keep = TASK_NAMES[task], KEPT[task]
    common = dict(task=name, model=done.model, seed=seed, n=n, kind=done.kind)
    after = Result(**common, metrics={m: done.test[m] for m in keep}, variant=FINE_TUNED,
                   details={"learning_rate": done.learning_rate, "dev": done.dev})
    if task == "classify":  # a classifier's untrained head scores chance: not a baseline worth a row
        return [after]
    return [after, Result(**common, metrics={m: done.before[m] for m in keep}, variant=ZERO_SHOT)]


def task_baselines(task: str, data) -> list[Result]:
    name = TASK_NAMES[task]
    if task == "embed":
        test = data.test
        qrels = {q: {d: 1 for d in docs} for q, docs in test.qrels.items()}
        return [baseline(name, "random", random_ranking(len(test.corpus)), len(test), variant=FINE_TUNED,
                         candidates=len(test.corpus)),
                baseline(name, "BM25", bm25(test.queries, test.corpus, qrels), len(test), variant=FINE_TUNED,
                         library="bm25s")]
    if task == "generate":
        named = [" " + _function_name(example.prompt).replace("_", " ") for example in data.test]
        scores = generation_scores(named, [example.completion for example in data.test])
        return [baseline(name, "function name", {m: scores[m] for m in KEPT[task]}, len(data.test),
                         variant=FINE_TUNED, library="sacrebleu", signatures=signatures())]
    test_labels = [label for _, label in data.test]
    classes = len(data.labels)
    return [baseline(name, "majority", majority(test_labels), len(test_labels), variant=FINE_TUNED),
            baseline(name, "random", {"accuracy": 1 / classes}, len(test_labels), variant=FINE_TUNED,
                     classes=classes)]


def _function_name(prompt: str) -> str:
    """The name of the function a prompt's code defines (its first `def`)."""
    found = re.search(r"def\s+(\w+)", prompt)
    return found.group(1) if found else ""
