"""Fine-tuning data read from files, BEIR folders and the built-in set, checked against hand counts: which
rows become which training examples, queries, documents and relevance, what is held out, and every bad
row named by its file and line (no model: these tests take milliseconds)."""

import json
import re
import shutil
import warnings

import numpy as np
import pytest

from twofold.errors import TwofoldError
from twofold.finetune import datasets
from twofold.finetune.datasets import (
    LabelledData,
    RetrievalData,
    RetrievalSet,
    _as_set,
    beir_test_set,
    load_beir,
    load_labelled,
    load_retrieval,
    read_beir,
    read_labelled,
    rows,
    split_off,
    train_and_dev,
)


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def jsonl(path, items):
    return write(path, "".join(json.dumps(item) + "\n" for item in items))


# ----------------------------------------------------------------------------- rows of a file

def test_rows_of_jsonl_tsv_and_csv_with_their_line_numbers(tmp_path):
    assert list(rows(write(tmp_path / "a.jsonl", '{"x": 1}\n\n  \n{"x": 2}\n'))) == [(1, {"x": 1}), (4, {"x": 2})]
    assert list(rows(write(tmp_path / "a.JSON", '{"x": 1}\n'))) == [(1, {"x": 1})]  # any case of the suffix
    tsv = write(tmp_path / "a.tsv", 'sentence\tlabel\nsays "hi\t1\nb\t0\n')  # GLUE's bare quotes stay text
    assert list(rows(tsv)) == [(2, {"sentence": 'says "hi', "label": "1"}), (3, {"sentence": "b", "label": "0"})]
    assert list(rows(write(tmp_path / "a.txt", "a\tb\n1\t2\n"))) == [(2, {"a": "1", "b": "2"})]
    csv = write(tmp_path / "a.csv", 'text,label\n"one, two",1\n"multi\nline",0\n')
    assert list(rows(csv)) == [(2, {"text": "one, two", "label": "1"}), (4, {"text": "multi\nline", "label": "0"})]
    for line in ("[1, 2]", "not json", '"text"'):
        with pytest.raises(TwofoldError, match=r"b.jsonl:2: not a JSON object; JSONL needs one object per line$"):
            list(rows(write(tmp_path / "b.jsonl", '{"x": 1}\n' + line + "\n")))
    for name, shown in (("a.parquet", ".parquet"), ("noext", "(none)")):
        with pytest.raises(TwofoldError, match=re.escape(f"{name}: unknown file type {shown}; use .jsonl, .tsv or "
                                                         ".csv")):
            list(rows(write(tmp_path / name, "x")))


def test_the_held_out_tenth_for_dev_and_test_is_seeded_and_counted():
    items = list(range(25))
    train, dev, test = split_off(items, seed=0)
    order = np.random.default_rng(0).permutation(25).tolist()
    assert (dev, test) == (sorted(order[:2]), sorted(order[2:4]))  # round(2.5) = 2 each
    assert train == sorted(order[4:])
    assert [len(part) for part in split_off(list(range(35)), seed=0)] == [27, 4, 4]  # round(3.5) = 4
    assert [len(part) for part in split_off(list(range(3)), seed=0)] == [1, 1, 1]  # at least one each
    assert split_off(items, seed=1)[1] != dev
    with pytest.raises(TwofoldError, match=r"^only 2 examples; fine-tuning needs at least 3 to hold out a dev"):
        split_off([1, 2], seed=0)


# ----------------------------------------------------------------------------- retrieval

def test_a_retrieval_row_reads_the_first_named_column_and_its_negatives_in_order(tmp_path):
    found = jsonl(tmp_path / "pairs.jsonl", [
        {"anchor": "", "question": "q1", "document": "d1", "negative_2": "n2", "negative": "n0", "negative_1": "",
         "negative_10": "n10"},
        {"query": "q2", "sentence1": "other", "positive": "", "passage": "d2"},
        {"sentence1": "q3", "answer": 7},
        {"query": "q4", "document": "d4", "label": "0"},
        {"query": "q5", "document": "d5", "label": "1.0", "negative": "ignored"},
    ] + [{"query": f"q{i}", "positive": f"d{i}"} for i in range(6, 12)])
    with pytest.warns(UserWarning, match=r"column\(s\) 'negative' \(1 rows\), 'sentence1' \(1 rows\) not read"):
        data = load_retrieval(str(found), str(found), str(found))  # dev and test given: nothing held out
    assert data.train[:5] == [
        {"query": "q1", "positive": "d1", "negative_1": "n0", "negative_2": "n10", "negative_3": "n2"},
        {"query": "q2", "positive": "d2"},
        {"query": "q3", "positive": "7"},
        {"query": "q4", "document": "d4", "label": 0.0},
        {"query": "q5", "document": "d5", "label": 1.0}]
    assert data.name == "pairs" and data.files == [found, found, found] and len(data.train) == 11


def test_a_retrieval_row_without_a_query_positive_or_numeric_label_is_named(tmp_path):
    cases = [({"title": "t", "positive": "p"}, r"no query field \(query, anchor, question, sentence1\); columns: "
                                               r"title, positive$"),
             ({"query": "q", "title": "t"}, r"no positive field \(positive, document, passage, sentence2, answer\); "
                                            r"columns: query, title$"),
             ({"query": "q", "document": "d", "label": "yes"}, r"label 'yes' is not a number \(1 relevant, 0 not\)$")]
    for row, message in cases:
        path = jsonl(tmp_path / "bad.jsonl", [{"query": "a", "positive": "b"}, row])
        with pytest.raises(TwofoldError, match=rf"bad.jsonl:2: {message}"):
            load_retrieval(str(path))


def test_columns_no_example_reads_are_named_once_with_their_counts(tmp_path):
    path = jsonl(tmp_path / "cols.jsonl", [{"query": "q", "positive": "p", "hard_negative": "h", "id": 1, "doc_id": 2,
                                            "qid": 3, "Row-ID": 4, "extra": ""}] * 2 +
                 [{"query": "q", "document": "d", "label": 1, "positive": "unused", "negative_1": "n"}] * 3 +
                 [{"question": "q", "passage": "p", "query": "", "negative_x": "kept", "idx": 5, "pidx": 6}])
    with pytest.warns(UserWarning) as caught:
        load_retrieval(str(path), str(path), str(path))
    said = [str(w.message) for w in caught]
    assert len(said) == 3  # train, dev and test each read the file
    assert said[0].startswith(f"{path}: column(s) 'hard_negative' (2 rows), 'negative_1' (3 rows), 'pidx' (1 rows), "
                              "'positive' (3 rows) not read: queries are query/anchor/question/sentence1, positives "
                              "positive/document/passage/sentence2/answer")
    clean = jsonl(tmp_path / "clean.jsonl", [{"query": "q", "positive": "p", "negative_a": "n", "_id": 1}] * 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_retrieval(str(clean))


def test_pairs_become_an_ir_set_with_every_text_a_document_and_repeated_queries_merged():
    found = _as_set([{"query": "a", "positive": "p1", "negative_1": "n1"}, {"query": "b", "positive": "p2"},
                     {"query": "a", "positive": "p3"}, {"query": "c", "document": "p1", "label": 0.0},
                     {"query": "d", "document": "p4", "label": 2.0}, {"query": "e", "document": "n1", "label": 0.5}])
    assert found.corpus == {"d0": "p1", "d1": "n1", "d2": "p2", "d3": "p3", "d4": "p4"}
    assert found.queries == {"q0": "a", "q1": "b", "q3": "d", "q4": "e"}  # c has no relevant document
    assert found.qrels == {"q0": {"d0": 1, "d3": 1}, "q1": {"d2": 1}, "q3": {"d4": 1}, "q4": {"d1": 1}}
    assert len(found) == 4 and found.relevant == {"q0": {"d0", "d3"}, "q1": {"d2"}, "q3": {"d4"}, "q4": {"d1"}}


def test_a_file_without_dev_or_test_holds_a_seeded_tenth_out_for_each(tmp_path):
    pairs = [{"query": f"q{i}", "positive": f"d{i}"} for i in range(20)]
    path = jsonl(tmp_path / "pairs.jsonl", pairs)
    data = load_retrieval(str(path), seed=5)
    train, dev, test = split_off(pairs, 5)
    assert data.train == train and list(data.dev.queries.values()) == [p["query"] for p in dev]
    assert list(data.test.queries.values()) == [p["query"] for p in test]
    dev_file = jsonl(tmp_path / "dev.jsonl", pairs[:3])
    only_dev = load_retrieval(str(path), dev=str(dev_file), seed=5)
    assert sorted(only_dev.dev.queries.values()) == ["q0", "q1", "q2"] and only_dev.test == data.test
    assert only_dev.files == [path, dev_file] and only_dev.train == [p for p in pairs if p not in test]
    assert len(load_retrieval(str(path), seed=5, max_train=4).train) == 4
    labelled = jsonl(tmp_path / "labelled.jsonl", [{"query": f"q{i}", "document": f"d{i}", "label": 0}
                                                   for i in range(20)])
    with pytest.raises(TwofoldError, match=r"labelled.jsonl: the dev split has no query with a relevant document"):
        load_retrieval(str(labelled))
    with pytest.raises(TwofoldError, match=r"the test split has no query with a relevant document"):
        load_retrieval(str(path), dev=str(dev_file), test=str(labelled))
    with pytest.raises(TwofoldError, match=r"pairs.jsonl: no training examples$"):
        load_retrieval(str(path), seed=5, max_train=0)
    with pytest.raises(TwofoldError, match=r"none.jsonl: no such file; pass a .jsonl/.tsv/.csv file, a BEIR folder"):
        load_retrieval(str(tmp_path / "none.jsonl"))
    with pytest.raises(TwofoldError, match=r"empty.tsv: no examples; the file needs a header line \(TSV/CSV\)"):
        load_retrieval(str(write(tmp_path / "empty.tsv", "query\tpositive\n")))


def test_the_fingerprints_follow_every_split():
    one = RetrievalSet({"q": "a"}, {"d": "x"}, {"q": {"d": 1}})
    other = RetrievalSet({"q": "a"}, {"d": "y"}, {"q": {"d": 1}})
    base = RetrievalData("n", [{"query": "a", "positive": "x"}], one, one)
    prints = {base.fingerprint, RetrievalData("n", [], one, one).fingerprint,
              RetrievalData("n", base.train, other, one).fingerprint,
              RetrievalData("n", base.train, one, other).fingerprint}
    assert len(prints) == 4 and RetrievalData("m", base.train, one, one).fingerprint == base.fingerprint
    labelled = LabelledData("n", [(("a",), 0)], [(("b",), 1)], [(("c",), 0)], ["x", "y"])
    changed = [LabelledData("n", [(("a",), 1)], [(("b",), 1)], [(("c",), 0)], ["x", "y"]),
               LabelledData("n", [(("a",), 0)], [(("b",), 0)], [(("c",), 0)], ["x", "y"]),
               LabelledData("n", [(("a",), 0)], [(("b",), 1)], [(("c",), 1)], ["x", "y"]),
               LabelledData("n", [(("a",), 0)], [(("b",), 1)], [(("c",), 0)], None)]
    assert len({labelled.fingerprint, *(d.fingerprint for d in changed)}) == 5
    assert (labelled.regression, changed[-1].regression) == (False, True)


# ----------------------------------------------------------------------------- BEIR

def beir(tmp_path, splits=("train", "dev", "test"), queries=12):
    folder = tmp_path / "tiny-beir"
    jsonl(folder / "corpus.jsonl", [{"_id": f"d{i}", "title": "T" if i == 0 else None, "text": f"doc {i}"}
                                    for i in range(queries)] + [{"_id": 99, "text": None}])
    jsonl(folder / "queries.jsonl", [{"_id": f"q{i}", "text": f"query {i}"} for i in range(queries)])
    for split in splits:
        lines = ["query-id\tcorpus-id\tscore"] + [f"q{i}\td{i}\t{1 + (i % 3)}" for i in range(queries)] + \
            ["q0\td1\t0", "", "q1\td2\t0.5"]
        write(folder / "qrels" / f"{split}.tsv", "\n".join(lines) + "\n")
    return folder


def test_a_beir_folder_reads_titles_texts_and_graded_relevance(tmp_path):
    corpus, queries, qrels = read_beir(beir(tmp_path))
    assert corpus["d0"] == "T doc 0" and corpus["d1"] == "doc 1" and corpus["99"] == ""
    assert queries["q3"] == "query 3" and set(qrels) == {"train", "dev", "test"}
    assert qrels["test"]["q0"] == {"d0": 1} and qrels["test"]["q1"] == {"d1": 2, "d2": 1}  # 0 dropped, 0.5 -> 1
    assert qrels["test"]["q2"] == {"d2": 3}


def test_a_beir_folder_trains_on_its_train_qrels_and_holds_out_what_it_lacks(tmp_path):
    folder = beir(tmp_path)
    data = load_beir(folder, seed=0)
    assert data.name == "tiny-beir" and data.dev.qrels == data.test.qrels == read_beir(folder)[2]["test"]
    assert len(data.train) == 13  # one pair per relevant document
    assert {"query": "query 1", "positive": "doc 2"} in data.train
    assert data.files == [folder / "corpus.jsonl", folder / "queries.jsonl"] + \
        [folder / "qrels" / f"{s}.tsv" for s in ("train", "dev", "test")]
    only_train = load_beir(beir(tmp_path / "only", splits=("train",)), seed=0)
    _, dev_q, test_q = split_off(sorted(f"q{i}" for i in range(12)), 0)
    assert sorted(only_train.dev.queries) == dev_q and sorted(only_train.test.queries) == test_q
    assert not {p["query"] for p in only_train.train} & {f"query {q[1:]}" for q in dev_q + test_q}
    assert len(only_train.train) == 13 - sum(len(read_beir(beir(tmp_path / "x"))[2]["train"][q])
                                             for q in dev_q + test_q)
    with_dev = load_beir(beir(tmp_path / "dev", splits=("train", "dev")), seed=0)
    assert sorted(with_dev.dev.queries) == sorted(f"q{i}" for i in range(12))
    assert sorted(with_dev.test.queries) == test_q
    assert len(with_dev.files) == 4
    with pytest.raises(TwofoldError, match=r"no qrels/train.tsv; fine-tuning needs training queries"):
        load_beir(beir(tmp_path / "test-only", splits=("test",)), seed=0)
    assert load_retrieval(str(folder)).train == data.train  # a folder is read as BEIR


def test_a_beir_test_set_is_a_seeded_sample_of_its_test_queries(tmp_path):
    folder = beir(tmp_path)
    full = beir_test_set(folder, 100, 0)
    assert sorted(full.queries) == sorted(f"q{i}" for i in range(12)) and full.name == "tiny-beir"
    sample = beir_test_set(str(folder), 5, 3)
    assert list(sample.queries) == sorted(np.random.default_rng(3).permutation(sorted(full.queries))[:5].tolist())
    assert sample.qrels == {q: full.qrels[q] for q in sample.queries} and sample.corpus == full.corpus
    assert beir_test_set(str(folder), 5, 4).queries != sample.queries
    with pytest.raises(TwofoldError, match=r"^task beir needs --beir DIR"):
        beir_test_set(None, 5, 0)
    with pytest.raises(TwofoldError, match=r"no qrels/test.tsv; evaluation scores the test queries"):
        beir_test_set(beir(tmp_path / "no-test", splits=("train",)), 5, 0)


def test_a_damaged_beir_folder_is_named_by_its_file_and_line(tmp_path):
    folder = beir(tmp_path)
    with pytest.raises(TwofoldError, match=r"nothing: not a directory; pass a BEIR dataset folder"):
        read_beir(tmp_path / "nothing")
    cases = [("qrels/test.tsv", "q0\td0\n", r"test.tsv:1: expected 'query-id<TAB>corpus-id<TAB>score'"),
             ("qrels/test.tsv", "q0\td0\tlots\n", r"test.tsv:1: expected"),
             ("qrels/test.tsv", "query-id\tcorpus-id\tscore\nq0\td0\t1\nqx\td0\t1\n",
              r"test.tsv:3: query 'qx' is not in queries.jsonl"),
             ("qrels/test.tsv", "q0\td0\t1\nq0\tdx\t1\n", r"test.tsv:2: document 'dx' is not in corpus.jsonl"),
             ("qrels/test.tsv", "q0\td0\t0\n", r"test.tsv: no relevant \(score > 0\) pairs"),
             ("corpus.jsonl", '{"_id": "d0"}\n{"text": "no id"}\n', r"corpus.jsonl:2: no '_id'; BEIR rows look like")]
    for name, text, message in cases:
        broken = tmp_path / f"broken-{len(list(tmp_path.iterdir()))}"
        shutil.copytree(folder, broken)
        write(broken / name, text)
        with pytest.raises(TwofoldError, match=message):
            read_beir(broken)
    for missing in ("corpus.jsonl", "queries.jsonl"):
        broken = tmp_path / f"no-{missing}"
        shutil.copytree(folder, broken)
        (broken / missing).unlink()
        with pytest.raises(TwofoldError, match=rf"no-{missing}: no {missing}; a BEIR folder holds corpus.jsonl"):
            read_beir(broken)
    with pytest.raises(TwofoldError, match=r"no qrels \(qrels/train.tsv, dev.tsv or test.tsv\)"):
        read_beir(beir(tmp_path / "bare", splits=()))


# ----------------------------------------------------------------------------- classification

def test_labels_are_classes_sorted_by_number_then_name_or_a_regression_when_not_whole(tmp_path):
    path = write(tmp_path / "cls.tsv", "sentence\tlabel\n" + "".join(f"s{i}\t{label}\n" for i, label in
                                                                     enumerate(["10", "b", "2", "a", "10", "2"] * 2)))
    data = load_labelled(str(path), str(path), str(path))
    assert data.labels == ["2", "10", "a", "b"] and not data.regression
    assert data.train[:4] == [(("s0",), 1), (("s1",), 3), (("s2",), 0), (("s3",), 2)]
    assert data.dev == data.test == data.train and data.name == "cls" and data.files == [path, path, path]
    whole = write(tmp_path / "whole.tsv", "sentence\tlabel\n" + "".join(f"s{i}\t{i % 3}.0\n" for i in range(6)))
    assert load_labelled(str(whole), str(whole), str(whole)).labels == ["0.0", "1.0", "2.0"]  # whole: classes
    scores = write(tmp_path / "sts.tsv", "sentence\tlabel\n" + "".join(f"s{i}\t{i / 2}\n" for i in range(6)))
    regression = load_labelled(str(scores), str(scores), str(scores))
    assert regression.regression and regression.train[:3] == [(("s0",), 0.0), (("s1",), 0.5), (("s2",), 1.0)]
    assert load_labelled(str(whole), str(whole), str(whole), regression=True).train[1] == (("s1",), 1.0)
    assert load_labelled(str(scores), str(scores), str(scores), regression=False).labels[:2] == ["0.0", "0.5"]
    mixed = write(tmp_path / "mixed.tsv", "sentence\tlabel\ns0\t0.5\ns1\tnan\ns2\t1\n")
    assert load_labelled(str(mixed), str(mixed), str(mixed)).labels == ["0.5", "1", "nan"]  # nan is no number


def test_pairs_of_texts_given_splits_held_out_splits_and_the_size_limit(tmp_path):
    path = write(tmp_path / "pairs.csv", "premise,hypothesis,gold\n" + "".join(f"p{i},h{i},{'ny'[i % 2]}\n"
                                                                                for i in range(20)))
    data = load_labelled(str(path), text_fields=("premise", "hypothesis"), label_field="gold", seed=2)
    train, dev, test = split_off([((f"p{i}", f"h{i}"), i % 2) for i in range(20)], 2)
    assert (data.train, data.dev, data.test, data.labels) == (train, dev, test, ["n", "y"])
    dev_file = write(tmp_path / "dev.csv", "premise,hypothesis,gold\nx,y,y\n")
    only_dev = load_labelled(str(path), dev=str(dev_file), text_fields=("premise", "hypothesis"),
                             label_field="gold", seed=2)
    assert only_dev.dev == [(("x", "y"), 1)] and only_dev.test == test
    assert only_dev.train == [((f"p{i}", f"h{i}"), i % 2) for i in range(20) if ((f"p{i}", f"h{i}"), i % 2) not in test]
    assert only_dev.files == [path, dev_file]
    assert len(load_labelled(str(path), text_fields=("premise", "hypothesis"), label_field="gold",
                             max_train=3).train) == 3
    with pytest.raises(TwofoldError, match=r"a folder; classify reads a .jsonl/.tsv/.csv file"):
        load_labelled(str(tmp_path))


def test_bad_labelled_rows_are_named_by_file_and_line(tmp_path):
    cases = [("sentence\tlabel\na\t1\nb\t\n", {}, r"bad.tsv:3: empty label in column 'label'$"),
             ("sentence\tlabel\na\t1\nb\t2\n", {"label_field": "gold"}, r"bad.tsv:2: label column 'gold' is missing "
                                                                         r"\(columns: sentence, label\)"),
             ("text\tlabel\na\t1\n", {}, r"bad.tsv:2: text column 'sentence' is missing"),
             ("sentence\tlabel\na\t1\nb\t1\nc\t1\n", {}, r"bad: only one label \('1'\) in the training data"),
             ("sentence\tlabel\na\t0.5\nb\t1.5\nc\tlots\n", {"regression": True},
              r"bad.tsv:4: label 'lots' is not a number; a regression task needs numeric labels")]
    for text, options, message in cases:
        path = write(tmp_path / "bad.tsv", text)
        with pytest.raises(TwofoldError, match=message):
            load_labelled(str(path), str(path), str(path), **options)
    train = write(tmp_path / "train.tsv", "sentence\tlabel\na\tx\nb\ty\n")
    dev = write(tmp_path / "dev.tsv", "sentence\tlabel\na\tx\nb\tz\n")
    with pytest.raises(TwofoldError, match=r"dev.tsv:3: label 'z' does not occur in the training data \(labels "
                                           r"there: \['x', 'y'\]\)"):
        load_labelled(str(train), str(dev), str(train))


def test_train_and_dev_files_score_the_dev_file_with_labels_sorted_by_name(tmp_path):
    train = write(tmp_path / "task" / "train.tsv", "sentence\tlabel\na\tpos\nb\tneg\nc\tpos\n")
    dev = write(tmp_path / "task" / "dev.tsv", "sentence\tlabel\nd\tneg\n")
    data = train_and_dev(train, dev, ("sentence",), "label")
    assert (data.name, data.labels, data.train, data.dev, data.test) == (
        "task", ["neg", "pos"], [(("a",), 1), (("b",), 0), (("c",), 1)], [(("d",), 0)], [(("d",), 0)])
    assert data.files == [train, dev]
    assert read_labelled(train, ("sentence",), "label") == [(("a",), "pos"), (("b",), "neg"), (("c",), "pos")]
    with pytest.raises(TwofoldError, match=r"task classification needs --train and --dev files"):
        train_and_dev(train, None, ("sentence",), "label")
    with pytest.raises(TwofoldError, match=r"task classification needs --train and --dev files"):
        train_and_dev(None, dev, ("sentence",), "label")
    one = write(tmp_path / "one.tsv", "sentence\tlabel\na\tpos\n")
    with pytest.raises(TwofoldError, match=r"one.tsv: only one label \('pos'\); classification needs at least two"):
        train_and_dev(one, one, ("sentence",), "label")
    many = write(tmp_path / "many.tsv", "sentence\tlabel\n" + "".join(f"s\tl{i}\n" for i in range(7)))
    with pytest.raises(TwofoldError, match=r"many.tsv: labels \['l0', 'l1', 'l2', 'l3', 'l4'\]… do not occur in "):
        train_and_dev(train, many, ("sentence",), "label")
    with pytest.raises(TwofoldError, match=r"absent.tsv: no such file"):
        read_labelled(tmp_path / "absent.tsv", ("sentence",), "label")
    with pytest.raises(TwofoldError, match=r"header.tsv: no examples; the file needs a header line"):
        read_labelled(write(tmp_path / "header.tsv", "sentence\tlabel\n"), ("sentence",), "label")


# ----------------------------------------------------------------------------- the built-in set

PACKAGES = ("json", "email", "asyncio", "unittest")


def test_the_built_in_retrieval_set_pairs_unique_docstring_lines_with_their_code():
    from twofold.data.stdlib import documented_functions

    data = load_retrieval("stdlib", packages=PACKAGES, seed=0)
    functions = documented_functions("train", PACKAGES)
    lines = [f.docstring.strip().splitlines()[0] for f in functions]
    unique = [{"query": line, "positive": f.code} for line, f in zip(lines, functions) if lines.count(line) == 1]
    assert len(unique) < len(functions)  # the fixture has repeated first lines, which are left out
    cut = round(len(unique) * 0.1)
    assert len(data.train) == len(unique) - cut and len(data.dev.queries) == cut
    assert sorted(data.train + [{"query": data.dev.queries[q], "positive": data.dev.corpus[d]}
                                for q, docs in data.dev.qrels.items() for d in docs],
                  key=unique.index) == unique
    assert data.name == "stdlib-code-search" and data.test.qrels and data.files == []
    assert load_retrieval("stdlib", packages=PACKAGES, seed=1).dev.queries != data.dev.queries


def test_the_built_in_classification_set_balances_its_test_packages():
    data = load_labelled("stdlib", packages=PACKAGES, seed=0)
    assert data.labels == ["asyncio", "email", "unittest"]  # json has 14 train functions, fewer than 30
    counts = np.bincount([y for _, y in data.test], minlength=len(data.labels))
    assert counts.max() <= 45 and counts.min() > 0
    small = datasets.stdlib_classification(PACKAGES, seed=0, max_per_class=20, max_test_per_class=5)
    assert np.bincount([y for _, y in small.train + small.dev]).tolist() == [20] * len(small.labels)
    assert np.bincount([y for _, y in small.dev]).tolist() == [2] * len(small.labels)
    assert np.bincount([y for _, y in small.test]).tolist() == [5] * len(small.labels)
    train_docs = {t for t, _ in small.train + small.dev}
    assert not {t for t, _ in small.test} & train_docs
    assert len(load_labelled("stdlib", packages=PACKAGES, max_train=7).train) == 7
    with pytest.raises(TwofoldError, match=r"stdlib: fewer than two packages with enough documented functions"):
        datasets.stdlib_classification(("json",))


# ----------------------------------------------------------------------------- what the first tests left open

def test_identifier_columns_are_expected_and_the_warning_names_the_file_read(tmp_path):
    rows = [{"query": "q", "positive": "p", "pid": 1, "DocId": 2, "row_idx": 3, "Q-ID": 4, "note": "n"}] * 3
    train, dev = jsonl(tmp_path / "train.jsonl", rows), jsonl(tmp_path / "dev.jsonl", rows)
    with pytest.warns(UserWarning) as caught:
        load_retrieval(str(train), str(dev), str(train))
    assert [str(w.message).split(": column(s) ")[0] for w in caught] == [str(train), str(dev), str(train)]
    assert all(": column(s) 'note' (3 rows) not read: " in str(w.message) for w in caught)


def test_a_fingerprint_is_the_same_whatever_the_order_of_keys():
    a = RetrievalData("n", [{"query": "a", "positive": "x"}], RetrievalSet({"q1": "a", "q2": "b"}, {"d": "x"},
                                                                          {"q1": {"d": 1}, "q2": {"d": 1}}),
                      RetrievalSet({}, {}, {}))
    b = RetrievalData("n", [{"positive": "x", "query": "a"}], RetrievalSet({"q2": "b", "q1": "a"}, {"d": "x"},
                                                                          {"q2": {"d": 1}, "q1": {"d": 1}}),
                      RetrievalSet({}, {}, {}))
    assert a.fingerprint == b.fingerprint


def test_qrels_ids_may_hold_spaces_and_queries_without_text_are_empty(tmp_path):
    folder = tmp_path / "spaced"
    jsonl(folder / "corpus.jsonl", [{"_id": "doc 1", "text": "x"}])
    jsonl(folder / "queries.jsonl", [{"_id": "q 1", "text": "y"}, {"_id": "q2"}])
    write(folder / "qrels" / "test.tsv", "q 1\tdoc 1\t1\nq2\tdoc 1\t2\n")
    corpus, queries, qrels = read_beir(folder)
    assert qrels == {"test": {"q 1": {"doc 1": 1}, "q2": {"doc 1": 2}}} and queries == {"q 1": "y", "q2": ""}


def test_a_beir_split_searches_the_whole_corpus_and_the_seed_picks_the_held_out_queries(tmp_path):
    folder = beir(tmp_path, splits=("train",), queries=30)
    data = load_retrieval(str(folder), seed=3)
    assert data.test.corpus == data.dev.corpus == read_beir(folder)[0]
    assert load_retrieval(str(folder), seed=3).dev.queries == data.dev.queries
    assert load_retrieval(str(folder), seed=4).dev.queries != data.dev.queries
    assert load_retrieval(str(folder)).dev.queries == load_retrieval(str(folder), seed=0).dev.queries


def test_regression_data_keeps_its_name_files_and_every_split(tmp_path):
    train = write(tmp_path / "sts.tsv", "sentence\tlabel\n" + "".join(f"s{i}\t{i / 2}\n" for i in range(6)))
    dev = write(tmp_path / "dev.tsv", "sentence\tlabel\nd\t0.25\n")
    test = write(tmp_path / "test.tsv", "sentence\tlabel\nt\t4.5\n")
    data = load_labelled(str(train), str(dev), str(test))
    assert (data.name, data.dev, data.test, data.files) == ("sts", [(("d",), 0.25)], [(("t",), 4.5)],
                                                            [train, dev, test])


def test_csv_cells_keep_their_line_breaks_and_tsv_cells_their_quotes(tmp_path):
    csv = tmp_path / "crlf.csv"
    csv.write_bytes(b'text,label\r\n"two\r\nlines",1\r\n')
    assert list(rows(csv)) == [(3, {"text": "two\r\nlines", "label": "1"})]
    tsv = write(tmp_path / "quotes.tsv", 'sentence\tlabel\n"hi" she said\t1\n')
    assert list(rows(tsv)) == [(2, {"sentence": '"hi" she said', "label": "1"})]


def test_a_labelled_file_read_alone_names_its_bad_row(tmp_path):
    path = write(tmp_path / "rows.tsv", "sentence\tgold\na\t1\n")
    with pytest.raises(TwofoldError, match=rf"^{path}:2: label column 'label' is missing"):
        read_labelled(path, ("sentence",), "label")


def test_a_training_file_in_the_working_folder_is_named_by_its_stem(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "sst.tsv", "sentence\tlabel\na\tx\nb\ty\n")
    assert train_and_dev("sst.tsv", "sst.tsv", ("sentence",), "label").name == "sst"


def test_hub_data_is_read_from_its_train_split_and_named_by_its_id(monkeypatch):
    """No internet here: `datasets.load_dataset` is replaced by one that returns a real `datasets` split."""
    import datasets

    asked = []

    def load_dataset(name, config=None, split=None, **kwargs):
        asked.append((name, config, split))
        if name == "org/absent":
            raise ConnectionError("no route to the hub")
        if name == "org/labels":
            return datasets.Dataset.from_list([{"sentence": f"s{i}", "label": i % 2} for i in range(10)])
        pairs = [{"query": f"q{i}", "positive": f"p{i}"} for i in range(9)]
        return datasets.Dataset.from_list(pairs + [{"query": "q"}])

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    with pytest.raises(TwofoldError, match=r"^hf:org/pairs:v2:10: no positive field"):
        load_retrieval("hf:org/pairs:v2")
    assert asked == [("org/pairs", "v2", "train")]
    data = load_labelled("hf:org/labels", seed=1)
    assert asked[-1] == ("org/labels", None, "train") and data.name == "org_labels" and data.files == []
    assert sorted(data.train + data.dev + data.test) == sorted(((f"s{i}",), i % 2) for i in range(10))
    with pytest.raises(TwofoldError, match=r"^hf:org/absent: cannot load the dataset \(ConnectionError: no route"):
        load_labelled("hf:org/absent")


def test_the_built_in_sets_default_to_seed_0_and_a_seed_repeats():
    for load in (load_retrieval, load_labelled):
        first, again, zero = load("stdlib", packages=PACKAGES, seed=2), load("stdlib", packages=PACKAGES, seed=2), \
            load("stdlib", packages=PACKAGES)
        assert first.dev == again.dev and zero.dev == load("stdlib", packages=PACKAGES, seed=0).dev != first.dev
    assert datasets.stdlib_classification(PACKAGES).dev == datasets.stdlib_classification(PACKAGES, seed=0).dev
    assert datasets.stdlib_retrieval(PACKAGES).dev == datasets.stdlib_retrieval(PACKAGES, seed=0).dev


def test_the_built_in_retrieval_set_of_a_small_package_holds_out_one_dev_query():
    small = datasets.stdlib_retrieval(("ctypes",))  # five unique train lines: round(0.5) = 0, at least 1
    assert len(small.dev.queries) == 1 and small.name == "stdlib-code-search"
    from twofold.data.stdlib import documented_functions

    held = {f.docstring.strip().splitlines()[0] for f in documented_functions("held-out", ("ctypes",))}
    assert set(small.test.queries.values()) <= held and len(small.test.queries) > 0


def fake_functions(counts: dict[str, tuple[int, int]]):
    """Made-up documented functions: package -> (functions in the train part, in the held-out part); the
    package "other" also documents, in the train part, a function with the docstring of at's first held-out one."""
    from twofold.data.stdlib import HeldOutFunction

    def functions(part, packages):
        index = 0 if part == "train" else 1
        found = [HeldOutFunction(f"{p}.f{i}", p, p, f"Doc {p} {part} {i}.", f"def f{i}(): pass")
                 for p, n in counts.items() for i in range(n[index])]
        if part == "train":
            found.append(HeldOutFunction("other.f", "other", "other", "Doc at held-out 0.", "def f(): pass"))
        return tuple(f for f in found if packages is None or f.package in packages)
    return functions


def test_a_package_needs_30_train_and_10_held_out_functions_and_two_packages_suffice(monkeypatch):
    monkeypatch.setattr(datasets, "_functions", fake_functions({"at": (30, 10), "low_train": (29, 50),
                                                                "low_held": (60, 9), "big": (250, 60)}))
    data = datasets.stdlib_classification(seed=0)
    assert data.labels == ["at", "big"] and data.name == "stdlib-packages"
    label = {(f"Doc {p} train {i}.",): p for p, n in (("at", 30), ("big", 250)) for i in range(n)}
    assert all(data.labels[y] == label[t] for t, y in data.train + data.dev)  # each text its own package
    assert all(t[0].startswith(f"Doc {data.labels[y]} held-out ") for t, y in data.test)
    counts = lambda part: np.bincount([y for _, y in part], minlength=2).tolist()
    assert counts(data.train) == [27, 180] and counts(data.dev) == [3, 20]  # at most 200 a package
    assert counts(data.test) == [9, 45]  # at most 45 a package; at's first held-out docstring is seen in training
    asked = datasets.stdlib_classification(("at", "big"), seed=0)  # "other"'s functions are not asked for
    assert counts(asked.test) == [10, 45] and asked.labels == ["at", "big"]
    monkeypatch.setattr(datasets, "_functions", fake_functions({"a": (5, 10), "b": (5, 10)}))
    monkeypatch.setattr(datasets, "STDLIB_PACKAGES_MIN", (5, 10))
    few = datasets.stdlib_classification(max_per_class=5)  # round(0.5) = 0: at least one for dev
    assert counts(few.dev) == [1, 1] and counts(few.train) == [4, 4]


def test_a_split_given_in_its_own_file_leaves_its_share_of_the_training_data_to_training(tmp_path):
    """Only the missing split is held out of the training data: the tenth that would have been the given
    split's stays in training (it is neither trained on nor scored otherwise)."""
    pairs = [{"query": f"q{i}", "positive": f"d{i}"} for i in range(20)]
    path, dev = jsonl(tmp_path / "pairs.jsonl", pairs), jsonl(tmp_path / "dev.jsonl", pairs[:2])
    _, held_dev, held_test = split_off(pairs, 5)
    retrieval = load_retrieval(str(path), dev=str(dev), seed=5)
    assert len(retrieval.train) == 18 and held_dev[0] in retrieval.train and held_test[0] not in retrieval.train
    test_only = load_retrieval(str(path), test=str(dev), seed=5)
    assert len(test_only.train) == 18 and held_test[0] in test_only.train and held_dev[0] not in test_only.train
    labels = write(tmp_path / "cls.tsv", "sentence\tlabel\n" + "".join(f"s{i}\t{i % 2}\n" for i in range(20)))
    labelled = load_labelled(str(labels), dev=str(labels), seed=5)
    assert len(labelled.train) == 18 and len(labelled.test) == 2 and len(labelled.dev) == 20
    labelled = load_labelled(str(labels), test=str(labels), seed=5)
    assert len(labelled.train) == 18 and len(labelled.dev) == 2 and len(labelled.test) == 20
    folder = beir(tmp_path, splits=("train", "dev"), queries=20)
    with_dev = load_beir(folder, seed=0)
    pairs_of = read_beir(folder)[2]["train"]
    assert sum(map(len, pairs_of.values())) == 21  # 20 queries, q1 with two relevant documents
    test_queries = split_off(sorted(pairs_of), 0)[2]
    assert sorted(with_dev.test.queries) == test_queries
    assert len(with_dev.train) == 21 - sum(len(pairs_of[q]) for q in test_queries)


def test_two_training_examples_suffice_when_dev_and_test_are_given(tmp_path):
    pairs = jsonl(tmp_path / "pairs.jsonl", [{"query": f"q{i}", "positive": f"d{i}"} for i in range(2)])
    assert len(load_retrieval(str(pairs), str(pairs), str(pairs)).train) == 2
    labels = write(tmp_path / "cls.tsv", "sentence\tlabel\na\tx\nb\ty\n")
    assert len(load_labelled(str(labels), str(labels), str(labels)).train) == 2
