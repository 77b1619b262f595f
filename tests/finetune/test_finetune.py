"""twofold finetune on the real libraries: every output loads unchanged there and in twofold."""

import dataclasses
import json

import numpy as np
import pytest
import torch

import twofold
from twofold.data.tokenizer import load_tokenizer
from twofold.eval.text import embed_texts, frame, pad
from twofold.finetune import RECORD, finetune, load_data
from twofold.finetune.datasets import stdlib_classification, stdlib_retrieval
from twofold.results import load_results

from .conftest import PACKAGES, tiny_recipe

TEXTS = ["Return the number of items.", "def f(x):\n    return x + 1", "import os"]


@pytest.mark.parametrize("member", ["encoder", "decoder"])
def test_embed_loads_in_sentence_transformers_and_twofold_embeds_the_same(tmp_path, exports, pairs_file, member):
    from sentence_transformers import SentenceTransformer

    result = finetune("embed", exports[member], load_data("embed", str(pairs_file)), tmp_path / "out",
                      tiny_recipe("embed"), say=lambda *_: None)
    st = SentenceTransformer(str(tmp_path / "out"), device="cpu")
    pooling = "last" if member == "decoder" else "mean"
    assert st[1].get_config_dict()["pooling_mode"] == ("lasttoken" if pooling == "last" else "mean")
    with pytest.warns(UserWarning, match="fresh initialisation"):  # the export has no LM head: only the body
        model = twofold.load(tmp_path / "out")
    ours = embed_texts(model, load_tokenizer(tmp_path / "out"), TEXTS, (pooling,), max_length=48, batch_size=2)
    theirs = st.encode(TEXTS, convert_to_tensor=True)
    assert torch.allclose(ours[pooling], theirs.cpu(), atol=1e-4)
    record = json.loads((tmp_path / "out" / RECORD).read_text())
    assert record["model"]["sha256"]["model.safetensors"] and record["data"]["files"][str(pairs_file)]
    assert result.test["ndcg@10"] == record["test"]["ndcg@10"]
    written = {r.variant: r for r in load_results(tmp_path / "out" / "results")}
    assert set(written) == {"pairs", "pairs/before"}
    assert {r.variant: r for r in result.results} == written  # it returns the very results it wrote


def test_the_weights_change_and_the_batches_are_what_the_recipe_says(tmp_path, exports, pairs_file):
    from safetensors.torch import load_file

    data = load_data("embed", str(pairs_file))
    with pytest.warns(UserWarning, match=rf"the test split is {len(data.test.queries)} queries over "
                                         rf"{len(data.test.corpus)} documents: too small"):
        result = finetune("embed", exports["encoder"], data, tmp_path / "out", tiny_recipe("embed", hard_negatives=0),
                          say=lambda *_: None)
    before = load_file(exports["encoder"] / "model.safetensors")["model.layers.0.mlp.Wi.weight"]
    after = load_file(tmp_path / "out" / "model.safetensors")["layers.0.mlp.Wi.weight"]
    assert not torch.equal(before, after)
    assert result.sweep[0]["batches"] == -(-len(data.train) // 8)  # one epoch of batch 8
    # one learning rate: nothing to select on dev, so only the test split is scored
    assert result.sweep[0]["dev"] == {} and set(result.sweep[0]["test"]) >= {"ndcg@10"}
    record = json.loads((tmp_path / "out" / RECORD).read_text())
    assert set(record["before"]) == {"test"}
    # what was used, not the recipe's "default": the encoder's mean pooling; the steps the optimizer took
    assert record["pooling"] == "mean" and record["sweep"][0]["optimizer_steps"] == -(-len(data.train) // 8)


@pytest.mark.parametrize("mini_batch", [4, 8])
def test_the_ranking_loss_is_the_plain_one_when_the_batch_fits_one_mini_batch_and_both_agree(
        tmp_path, exports, pairs_file, mini_batch):
    from sentence_transformers import losses

    from twofold.finetune.inputs import resolve
    from twofold.finetune.tasks import _ranking_loss, embedder

    recipe = tiny_recipe("embed", batch_size=8, mini_batch_size=mini_batch)
    rows = load_data("embed", str(pairs_file)).train[:8]
    grads = {}
    for kind in ("chosen", "other"):
        model = embedder(resolve(exports["encoder"], tmp_path / kind), recipe)
        loss = _ranking_loss(losses, model, recipe)
        if kind == "other":  # the loss not chosen, as the reference
            loss = losses.CachedMultipleNegativesRankingLoss(model, mini_batch_size=mini_batch) \
                if mini_batch >= 8 else losses.MultipleNegativesRankingLoss(model)
        else:
            assert isinstance(loss, losses.CachedMultipleNegativesRankingLoss) == (mini_batch < 8)
        features = [model.tokenize([row[column] for row in rows]) for column in ("query", "positive")]
        value = loss(features, None)
        value.backward()
        grads[kind] = (value.item(), [p.grad.clone() for p in model.parameters()])
    assert grads["chosen"][0] == pytest.approx(grads["other"][0], rel=1e-5)
    for mine, theirs in zip(grads["chosen"][1], grads["other"][1]):
        assert torch.allclose(mine, theirs, atol=1e-6)


def test_sweep_trains_each_rate_keeps_the_best_on_dev_and_records_all(tmp_path, exports, labels_file):
    from transformers import AutoModelForSequenceClassification

    rates = (1e-6, 1e-3)
    result = finetune("classify", exports["encoder"], load_data("classify", str(labels_file)), tmp_path / "out",
                      tiny_recipe("classify", learning_rates=rates, epochs=2), say=lambda *_: None)
    record = json.loads((tmp_path / "out" / RECORD).read_text())
    assert [s["learning_rate"] for s in record["sweep"]] == list(rates)
    best = max(record["sweep"], key=lambda s: s["dev"]["accuracy"])
    assert set(record["before"]) == {"dev", "test"}  # a sweep scores the dev split
    assert record["selected"]["learning_rate"] == best["learning_rate"] == result.learning_rate
    assert not list((tmp_path / "out").glob(".sweep*")) and len(list((tmp_path / "out").glob("*.safetensors"))) == 1
    # the kept classifier: transformers and twofold compute the same logits from the directory
    hf = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out").eval()
    ours = twofold.load(tmp_path / "out").eval()
    tokenizer = load_tokenizer(tmp_path / "out")
    ids, mask = pad(frame(tokenizer, TEXTS, 48), tokenizer.special.pad)
    with torch.no_grad():
        assert torch.allclose(hf(input_ids=ids, attention_mask=mask).logits, ours(ids, mask).logits, atol=1e-5)
    assert hf.config.classifier_pooling == "mean" and ours.pooling == "mean" == record["pooling"]
    assert set(hf.config.id2label.values()) == set(record["data"]["labels"])


def test_regression_labels_train_a_one_output_model_scored_by_correlation(tmp_path, exports):
    path = tmp_path / "sts.jsonl"
    rng = np.random.default_rng(0)
    rows = [{"sentence1": f"a {'x' * int(n)}", "sentence2": "b", "label": round(float(n) / 2, 1)}
            for n in rng.integers(0, 10, 40)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = load_data("classify", str(path), text_fields=("sentence1", "sentence2"))
    assert data.regression
    result = finetune("classify", exports["decoder"], data, tmp_path / "out", tiny_recipe("classify"),
                      say=lambda *_: None)
    assert set(result.test) == {"pearson", "spearman"} and result.metric == "pearson"
    from transformers import AutoModelForSequenceClassification

    assert AutoModelForSequenceClassification.from_pretrained(tmp_path / "out").config.num_labels == 1


def test_sparse_loads_in_sparse_encoder(tmp_path, exports, pairs_file):
    from sentence_transformers.sparse_encoder import SparseEncoder

    finetune("sparse", exports["encoder"], load_data("sparse", str(pairs_file)), tmp_path / "out",
             tiny_recipe("sparse"), say=lambda *_: None)
    vectors = SparseEncoder(str(tmp_path / "out"), device="cpu").encode(TEXTS, convert_to_tensor=True)
    assert vectors.shape[-1] == load_tokenizer(tmp_path / "out").vocab_size or vectors.shape[-1] >= 512


def test_rerank_loads_in_cross_encoder_and_twofold_scores_the_same(tmp_path, exports, pairs_file):
    from sentence_transformers.cross_encoder import CrossEncoder

    finetune("rerank", exports["decoder"], load_data("rerank", str(pairs_file)), tmp_path / "out",
             tiny_recipe("rerank", hard_negatives=2), say=lambda *_: None)
    pairs = [("import os", "def f(x):\n    return x"), ("Return the number", "n = len(items)")]
    theirs = CrossEncoder(str(tmp_path / "out"), device="cpu").predict(pairs, activation_fn=torch.nn.Identity())
    ours = twofold.load(tmp_path / "out").eval()
    tokenizer = load_tokenizer(tmp_path / "out")
    ids, mask = pad(frame(tokenizer, pairs, 48, causal=True), tokenizer.special.pad)
    with torch.no_grad():
        assert np.allclose(ours(ids, mask).logits[:, 0].numpy(), theirs, atol=1e-4)


def test_pair_sees_identical_batches_and_compares_side_by_side(tmp_path, exports, labels_file, capsys):
    from twofold.cli import main

    pair = exports["encoder"].parent
    out = tmp_path / "pair-out"
    assert main(["finetune", "classify", "--pair", str(pair), "--data", str(labels_file), "--out", str(out),
                 "--batch-size", "8", "--max-length", "48", "--lr", "3e-4", "--epochs", "1"]) == 0
    record = json.loads((out / RECORD).read_text())
    members = {m: json.loads((out / m / RECORD).read_text()) for m in ("encoder", "decoder")}
    orders = [[s["data_order"] for s in members[m]["sweep"]] for m in members]
    assert orders[0] == orders[1] and record["data_order_identical"]
    assert members["encoder"]["recipe"] == members["decoder"]["recipe"]
    assert members["decoder"]["member"] == "decoder" and members["encoder"]["member"] == "encoder"
    table = (out / "comparison.md").read_text()
    assert "| encoder | decoder |" in table.splitlines()[2].replace("  ", " ") or "encoder" in table
    assert main(["compare", str(out / "encoder" / "results"), str(out / "decoder" / "results"),
                 "--out", str(tmp_path / "compare")]) == 0
    assert "finetune-classify[packages]" in capsys.readouterr().out


def test_different_batches_give_a_different_order_hash(tmp_path, exports, labels_file):
    data = load_data("classify", str(labels_file))
    first = finetune("classify", exports["encoder"], data, tmp_path / "a", tiny_recipe("classify"), say=lambda *_: 0)
    other = finetune("classify", exports["encoder"], data, tmp_path / "b", tiny_recipe("classify", seed=13),
                     say=lambda *_: 0)
    assert first.sweep[0]["data_order"] != other.sweep[0]["data_order"]


def test_builtin_set_trains_on_the_train_part_and_tests_on_held_out_modules():
    from twofold.data.stdlib import documented_functions

    data = stdlib_retrieval(PACKAGES)
    held_out_code = {f.code for f in documented_functions("held-out", PACKAGES)}
    assert data.train and not {row["positive"] for row in data.train} & held_out_code
    assert set(data.test.corpus.values()) <= held_out_code
    assert not set(data.dev.queries.values()) & {row["query"] for row in data.train}


def test_builtin_classification_tests_held_out_functions_with_no_package_dominating():
    """The held-out modules hold 100 unittest functions and 15-43 of each other package: capped
    at 5 per package here (45 by default), the test set is not a vote for the largest package."""
    from collections import Counter

    from twofold.data.stdlib import documented_functions

    held_out, train_part = documented_functions("held-out", None), documented_functions("train", None)
    data = stdlib_classification(seed=3, max_test_per_class=5)
    counts = Counter(label for _, label in data.test)
    seen = {f.docstring for f in train_part}
    available = Counter(f.package for f in held_out if f.docstring not in seen)
    assert [counts[i] for i in range(len(data.labels))] == [min(5, available[name]) for name in data.labels]
    by_docstring = {f.docstring: f.package for f in held_out}
    assert all(by_docstring[text] == data.labels[label] for (text,), label in data.test)
    assert not {text for (text,), _ in data.test} & seen  # no test text was trained on


def test_progress_names_the_split_it_scores(tmp_path, exports, labels_file):
    """GLUE scores its dev set (its test labels are hidden): the progress says so, never "test"."""
    data = dataclasses.replace(load_data("classify", str(labels_file)), test_split="dev_matched")
    lines = []
    finetune("classify", exports["decoder"], data, tmp_path / "out", tiny_recipe("classify"), say=lines.append)
    assert lines and all(" dev_matched accuracy " in line and "test" not in line for line in lines), lines
    assert json.loads((tmp_path / "out" / RECORD).read_text())["pooling"] == "last"
