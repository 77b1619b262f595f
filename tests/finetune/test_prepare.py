"""What a fine-tune trains and is scored on, counted by hand: hard negatives mined per query by default,
the reranker's training pairs and candidates, and the classification metrics on predictions where
each differs from the others."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from tests.finetune.conftest import PACKAGES

from twofold.finetune import recipe_for
from twofold.finetune.datasets import RetrievalSet
from twofold.finetune.inputs import resolve
from twofold.finetune.run import load_data, prepare
from twofold.finetune.tasks import classification_metrics, embedder, rerank_candidates


def test_classification_metrics_on_predictions_where_each_metric_differs():
    gold = [0, 0, 0, 1, 1, 2]
    logits = np.eye(3)[[0, 0, 1, 1, 2, 2]]  # right on 0, 0, 1, 2; wrong on one 0 and one 1
    # per class (precision, recall): 0 (1, 2/3), 1 (1/2, 1/2), 2 (1/2, 1); macro-F1 averages their F1
    f1 = (0.8 + 0.5 + 2 / 3) / 3
    cov = 4 / 6 - (2 * 3 + 2 * 2 + 2 * 1) / 36  # Matthews' multi-class form from the confusion matrix
    mcc = cov / math.sqrt((1 - (3 * 3 + 2 * 2 + 1) / 36) * (1 - (2 * 2 + 2 * 2 + 2 * 2) / 36))
    assert classification_metrics(logits, gold, regression=False) == pytest.approx(
        {"accuracy": 4 / 6, "f1": f1, "mcc": mcc})
    similarity = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    predicted = np.array([[0.0], [0.1], [0.2], [0.3], [0.4], [5.0]])  # the same order, far from a line
    assert classification_metrics(predicted, similarity, regression=True) == pytest.approx(
        {"pearson": float(np.corrcoef(predicted[:, 0], similarity)[0, 1]), "spearman": 1.0})


@pytest.fixture(scope="module")
def encoder(exports, tmp_path_factory):
    return resolve(exports["encoder"], tmp_path_factory.mktemp("scratch"))


def test_embed_mines_one_hard_negative_per_query_by_default(encoder, pairs_file):
    data = load_data("embed", str(pairs_file))
    prepared = prepare("embed", data, recipe_for("embed", max_length=48), encoder)
    assert prepared.train.column_names == ["query", "positive", "negative_1"]
    assert len(prepared.train) == len(data.train) == 32  # 40 pairs less the dev and test queries
    assert all(row["negative_1"] != row["positive"] for row in prepared.train)
    assert prepared.negatives == {"per_query": 1, "mined_with": "encoder",
                                  "library": "sentence_transformers.util.mine_hard_negatives"}
    assert (prepared.dev, prepared.test) == (data.dev, data.test)
    unmined = prepare("embed", data, recipe_for("embed", hard_negatives=0), encoder)
    assert unmined.train.column_names == ["query", "positive"] and unmined.negatives["mined_with"] is None
    no_miner = prepare("embed", data, recipe_for("embed"), None)  # nothing to mine with: the pairs as they are
    assert no_miner.train.column_names == ["query", "positive"] and no_miner.negatives["mined_with"] is None


def test_rerank_trains_on_each_positive_and_five_mined_negatives_by_default(encoder, pairs_file):
    data = load_data("rerank", str(pairs_file))
    prepared = prepare("rerank", data, recipe_for("rerank", max_length=48), encoder)
    labels = prepared.train["label"]
    assert len(prepared.train) == 32 * (1 + 5) and labels.count(1) == 32 and labels.count(0) == 32 * 5
    assert prepared.negatives == {"per_query": 5, "mined_with": "encoder",
                                  "library": "sentence_transformers.util.mine_hard_negatives",
                                  "candidates": "positives + the miner's top 19 others"}
    assert [len(split) for split in (prepared.dev, prepared.test)] == [4, 4]
    # without hard negatives the miner still picks each query's candidates to rerank
    plain = prepare("rerank", data, recipe_for("rerank", max_length=48, hard_negatives=0), encoder)
    assert plain.train["label"] == [1.0] * 32 and [len(s["negative"]) for s in plain.dev] == [3] * 4
    # scored on each query's positives and every other document of its small split (fewer than 19 here)
    assert [(len(s["positive"]), len(s["negative"])) for s in prepared.test] == [(1, 3)] * 4


def test_rerank_candidates_are_the_positives_and_the_miners_top_19_others(encoder):
    miner = embedder(encoder, recipe_for("embed", max_length=16))
    corpus = {f"d{i:02d}": f"def f{i}(x): return x + {i}" for i in range(25)}
    split = RetrievalSet({"q": "add a number", "r": "return x"}, corpus, {"q": {"d03": 1, "d07": 2}, "r": {"d01": 1}})
    samples = rerank_candidates(split, miner)
    assert [(s["query"], len(s["positive"]), len(s["negative"])) for s in samples] == \
        [("add a number", 2, 19), ("return x", 1, 19)]
    assert samples[0]["positive"] == [corpus["d03"], corpus["d07"]]
    assert not set(samples[0]["negative"]) & set(samples[0]["positive"])
    scores = miner.similarity(miner.encode(["add a number"]), miner.encode(list(corpus.values())))[0]
    ranked = [text for _, text in sorted(zip(scores.tolist(), corpus.values()), key=lambda x: -x[0])
              if text not in samples[0]["positive"]]
    assert samples[0]["negative"] == ranked[:19]  # the miner's best first
    assert [len(s["negative"]) for s in rerank_candidates(split, miner, count=4)] == [4, 4]


def test_load_data_reads_given_dev_and_test_files_and_passes_the_seed_and_options(tmp_path, labels_file, pairs_file):
    lines = labels_file.read_text().splitlines()
    (tmp_path / "dev.tsv").write_text("\n".join(lines[:1] + lines[1:4]) + "\n")
    (tmp_path / "test.tsv").write_text("\n".join(lines[:1] + lines[4:15]) + "\n")
    data = load_data("classify", str(labels_file), str(tmp_path / "dev.tsv"), str(tmp_path / "test.tsv"), seed=3,
                     max_train=10)
    assert (len(data.train), len(data.dev), len(data.test)) == (10, 3, 11)
    assert load_data("classify", str(labels_file)).dev == load_data("classify", str(labels_file), seed=0).dev
    assert load_data("classify", str(labels_file), seed=3).dev != load_data("classify", str(labels_file), seed=4).dev
    rows = pairs_file.read_text().splitlines()
    (tmp_path / "dev.jsonl").write_text("\n".join(rows[:3]) + "\n")
    (tmp_path / "test.jsonl").write_text("\n".join(rows[3:8]) + "\n")
    retrieval = load_data("embed", str(pairs_file), str(tmp_path / "dev.jsonl"), str(tmp_path / "test.jsonl"),
                          text_fields=("ignored",), max_train=7)  # options of classify only are left out
    assert (len(retrieval.train), len(retrieval.dev.queries), len(retrieval.test.queries)) == (7, 3, 5)
    split = {s: load_data("embed", str(pairs_file), seed=s).dev.queries for s in (3, 4)}
    assert split[3] != split[4] and load_data("embed", str(pairs_file), seed=3).dev.queries == split[3]
    four, three = (load_data("embed", "stdlib", packages=p) for p in (PACKAGES, PACKAGES[1:]))
    assert len(four.train) > len(three.train)  # the packages asked for, not the default ones


def test_generation_data_is_loaded_by_its_own_reader_and_trained_as_it_is(tmp_path, encoder):
    rows = [{"source": f"text {i}", "target": f"answer {i}"} for i in range(30)]
    for name, part in (("train", rows[:20]), ("dev", rows[20:24]), ("test", rows[24:])):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    data = load_data("generate", str(tmp_path / "train.jsonl"), str(tmp_path / "dev.jsonl"),
                     str(tmp_path / "test.jsonl"), seed=3, template="Q: {source}\nA:", max_train=15)
    assert (len(data.train), len(data.dev), len(data.test)) == (15, 4, 6)
    assert (data.dev[0].prompt, data.dev[0].completion) == ("Q: text 20\nA:", "answer 20")
    split = {s: load_data("generate", str(tmp_path / "train.jsonl"), seed=s, template="{source}").dev for s in (3, 4)}
    assert split[3] != split[4]
    assert load_data("generate", str(tmp_path / "train.jsonl"), seed=3, template="{source}").dev == split[3]
    prepared = prepare("generate", data, recipe_for("generate"), encoder)  # nothing mined
    assert (prepared.train, prepared.dev, prepared.test, prepared.negatives) == (data.train, data.dev, data.test, {})
