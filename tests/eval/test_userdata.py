"""The user's files: GLUE-style classification and BEIR retrieval, and one clear error per mistake."""

import json

import pytest
import torch
from tests.eval.conftest import TINY, tiny_model

from twofold.errors import TwofoldError
from twofold.eval.tasks import evaluate
from twofold.finetune.datasets import beir_test_set, read_labelled, train_and_dev


def write_tsv(path, header, rows):
    path.write_text("\n".join("\t".join(map(str, r)) for r in [header, *rows]) + "\n")
    return path


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def sentiment(tmp_path, dev_labels=(0, 1)):
    words = {0: "awful dreadful bad", 1: "great lovely good"}
    train = write_tsv(tmp_path / "train.tsv", ["sentence", "label"],
                      [[f'it was "{words[i % 2]}" {i}', i % 2] for i in range(16)])
    dev = write_jsonl(tmp_path / "dev.jsonl", [{"sentence": f"so {words.get(y, y)}", "label": y} for y in dev_labels])
    return train, dev


def test_tsv_and_jsonl_read_the_same_way(tmp_path):
    tsv = write_tsv(tmp_path / "a.tsv", ["premise", "hypothesis", "label"], [['he said "hi"', "b", "yes"]])
    jsonl = write_jsonl(tmp_path / "a.jsonl", [{"premise": 'he said "hi"', "hypothesis": "b", "label": "yes"}])
    fields = ("premise", "hypothesis")
    expected = [(('he said "hi"', "b"), "yes")]
    assert read_labelled(tsv, fields, "label") == read_labelled(jsonl, fields, "label") == expected


def test_fine_tuning_learns_a_separable_task_from_user_files(tmp_path, tokenizer):
    train, dev = sentiment(tmp_path)
    settings = TINY.replace(train=str(train), dev=str(dev), text_fields=("sentence",), epochs=3,
                            batch_size=8, learning_rate=1e-3)
    model = tiny_model(tokenizer, causal=False)
    before = {name: t.clone() for name, t in model.state_dict().items()}
    (result,) = evaluate(model, tokenizer, ["classification"], settings=settings)
    assert all(torch.equal(before[name], t) for name, t in model.state_dict().items())  # fine-tuned a copy
    assert result.task == "classification" and result.n == 2 and result.details["labels"] == 2
    assert result.details["pooling"] == "mean"
    assert result.metrics["accuracy"] == 1.0 and result.details["majority_accuracy"] == 0.5


def test_missing_label_column_is_one_clear_error(tmp_path):
    train = write_tsv(tmp_path / "train.tsv", ["sentence", "gold"], [["a", 1]])
    with pytest.raises(TwofoldError, match=r"train.tsv:2: label column 'label' is missing \(columns: sentence, gold\)"):
        train_and_dev(train, train, ("sentence",), "label")


def test_dev_labels_must_occur_in_training(tmp_path):
    train, dev = sentiment(tmp_path, dev_labels=(0, 7))
    with pytest.raises(TwofoldError, match=r"labels \['7'\] do not occur in .*train.tsv"):
        train_and_dev(train, dev, ("sentence",), "label")


def beir_dir(tmp_path, qrels=True):
    root = tmp_path / "tiny-beir"
    root.mkdir()
    write_jsonl(root / "corpus.jsonl", [{"_id": f"d{i}", "title": "", "text": f"def f{i}(x): return x + {i}"}
                                        for i in range(6)])
    write_jsonl(root / "queries.jsonl", [{"_id": f"q{i}", "text": f"add {i}"} for i in range(4)])
    if qrels:
        (root / "qrels").mkdir()
        write_tsv(root / "qrels" / "test.tsv", ["query-id", "corpus-id", "score"],
                  [[f"q{i}", f"d{i}", 1] for i in range(3)])
    return root


def test_beir_retrieval_for_both_poolings_of_a_decoder(tmp_path, decoder, tokenizer):
    root = beir_dir(tmp_path)
    data = beir_test_set(root, max_queries=10, seed=0)
    assert set(data.queries) == {"q0", "q1", "q2"} and len(data.corpus) == 6  # q3 has no judgements
    results = evaluate(decoder, tokenizer, ["beir"], settings=TINY.replace(beir=str(root)))
    assert [r.variant for r in results] == ["tiny-beir/last", "tiny-beir/mean"]
    assert all(0 <= v <= 1 for r in results for v in r.metrics.values())


def test_beir_without_qrels_is_one_clear_error(tmp_path, encoder, tokenizer):
    root = beir_dir(tmp_path, qrels=False)
    with pytest.raises(TwofoldError, match="no qrels"):
        evaluate(encoder, tokenizer, ["beir"], settings=TINY.replace(beir=str(root)))
