"""The GLUE suite's rules on cases where they differ from their neighbours: every official metric on
predictions where it differs from the others, MNLI's matched and mismatched dev sets scored apart,
the sweep keeping the rate that is best on the task's first metric, the average of the tasks that
finished. Fine-tuning itself runs in tests/eval/test_suites.py; here a scripted fine-tune stands
in for it where only the suite's own selection and bookkeeping are under test."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from tools import suite_data

import twofold
from twofold.errors import TwofoldError
from twofold.eval.member import DECODER, Member
from twofold.eval.suites import Settings, glue
from twofold.eval.suites.glue import TASKS, official_metrics, read_tsv, score_classifier
from twofold.results import Result


def test_each_official_metric_is_computed_on_predictions_where_they_all_differ():
    gold = [1, 1, 1, 0, 0, 0]
    predicted = np.array([1, 0, 0, 0, 0, 1])  # TP 1, FN 2, TN 2, FP 1
    mcc = (1 * 2 - 1 * 2) / math.sqrt(2 * 3 * 3 * 4)
    assert official_metrics(TASKS["cola"], predicted, gold, ["0", "1"]) == pytest.approx({"mcc": mcc})
    f1_of_1, f1_of_0 = 2 * 1 / (2 * 1 + 1 + 2), 2 * 2 / (2 * 2 + 2 + 1)
    assert official_metrics(TASKS["mrpc"], predicted, gold, ["0", "1"]) == pytest.approx(
        {"f1": f1_of_1, "accuracy": 0.5})
    # F1 is the class named "1" (paraphrase, duplicate), wherever it sorts; else class id 1
    assert official_metrics(TASKS["qqp"], 1 - predicted, [1 - y for y in gold], ["1", "2"])["f1"] == \
        pytest.approx(f1_of_1)
    assert official_metrics(TASKS["qqp"], predicted, gold, ["no", "yes"])["f1"] == pytest.approx(f1_of_1)
    assert f1_of_0 != f1_of_1
    none_positive = np.zeros(6, dtype=int)  # no positive predicted nor gold: F1 is 0, not undefined
    assert official_metrics(TASKS["mrpc"], none_positive, [0] * 6, ["0", "1"]) == {"f1": 0.0, "accuracy": 1.0}
    for name in ("sst2", "mnli", "qnli", "rte"):
        assert official_metrics(TASKS[name], predicted, gold, ["0", "1"]) == {"accuracy": 0.5}
    similarity = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    monotone = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 5.0])  # the same order, far from a line: Spearman 1, Pearson not
    assert official_metrics(TASKS["stsb"], monotone, similarity, None) == pytest.approx(
        {"pearson": float(np.corrcoef(monotone, similarity)[0, 1]), "spearman": 1.0})
    with warnings.catch_warnings():  # scipy warns that a constant input has no correlation
        warnings.simplefilter("ignore")
        assert official_metrics(TASKS["stsb"], np.ones(6), similarity, None) == {"pearson": 0.0, "spearman": 0.0}


@pytest.fixture(scope="module")
def always_first(tmp_path_factory, tokenizer):
    """An exported classifier whose output layer always says class 0."""
    from tests.eval.conftest import tiny_model

    from twofold.model.heads import SequenceClassifier

    classifier = SequenceClassifier(tiny_model(tokenizer, False).config, num_labels=3, pooling="mean")
    with torch.no_grad():
        classifier.classifier.weight.zero_()
        classifier.classifier.bias.copy_(torch.tensor([50.0, -50.0, -50.0]))
    path = tmp_path_factory.mktemp("clf") / "clf"
    twofold.save(classifier, path, tokenizer=Path(tokenizer.source).parent)
    return path


def test_mnli_scores_its_matched_and_mismatched_dev_sets_apart(always_first):
    texts = [("a premise", "a hypothesis"), ("json text", "parsed"), ("x", "y"), ("one", "two")]
    devs = {"dev_matched": [(t, 0) for t in texts], "dev_mismatched": [(t, y) for t, y in zip(texts, (0, 1, 2, 1))]}
    labels = ["contradiction", "entailment", "neutral"]
    assert score_classifier(always_first, TASKS["mnli"], devs, labels, 32) == {"accuracy": 1.0,
                                                                                "accuracy_mismatched": 0.25}
    swapped = {"dev_matched": devs["dev_mismatched"], "dev_mismatched": devs["dev_matched"]}
    assert score_classifier(always_first, TASKS["mnli"], swapped, labels, 32) == {"accuracy": 0.25,
                                                                                   "accuracy_mismatched": 1.0}


def test_a_classifiers_f1_is_of_the_label_named_1_and_a_regressors_texts_are_cut_at_max_length(
        always_first, tmp_path, tokenizer):
    texts = [("a paraphrase", "the same"), ("json text", "parsed"), ("x", "y")]
    dev = {"dev": [(t, 0) for t in texts]}  # always class 0, here the label "1": every positive found
    assert score_classifier(always_first, TASKS["qqp"], dev, ["1", "2", "3"], 32) == {"f1": 1.0, "accuracy": 1.0}
    from tests.eval.conftest import tiny_model

    from twofold.model.heads import SequenceClassifier

    torch.manual_seed(3)
    regressor = SequenceClassifier(tiny_model(tokenizer, False).config, num_labels=1, pooling="mean")
    twofold.save(regressor, tmp_path / "reg", tokenizer=Path(tokenizer.source).parent)
    words = "the parser reads every line of the file and returns its fields one by one".split()
    pairs = [(" ".join(words[:n]), " ".join(words[n:])) for n in range(2, 12, 2)]
    devs = {"dev": [(pair, float(i)) for i, pair in enumerate(pairs)]}
    whole = score_classifier(tmp_path / "reg", TASKS["stsb"], devs, None, 64)
    cut = score_classifier(tmp_path / "reg", TASKS["stsb"], devs, None, 4)
    assert set(whole) == {"pearson", "spearman"} and 0 not in whole.values() and whole != cut


def test_mnli_reads_both_dev_files_and_skips_unlabelled_rows(tmp_path):
    folder = tmp_path / "glue" / "MNLI"
    folder.mkdir(parents=True)
    header = "index\tsentence1\tsentence2\tgold_label\n"
    (folder / "train.tsv").write_text(header + "0\tp\th\tentailment\n1\tp2\th2\tcontradiction\n2\tp3\th3\tneutral\n")
    (folder / "dev_matched.tsv").write_text(header + "0\tm\tm2\t-\n1\tm3\tm4\tneutral\n")
    (folder / "dev_mismatched.tsv").write_text(header + "0\tx\tx2\tentailment\n1\tx3\tx4\tcontradiction\n")
    data = glue.load(TASKS["mnli"], Settings(data_dir=tmp_path))
    assert data.data.labels == ["contradiction", "entailment", "neutral"]
    assert data.devs == {"dev_matched": [(("m3", "m4"), 2)], "dev_mismatched": [(("x", "x2"), 1), (("x3", "x4"), 0)]}
    assert (data.data.dev, data.data.test, data.data.test_split) == (data.devs["dev_matched"],
                                                                     data.devs["dev_mismatched"], "dev_mismatched")
    assert data.data.train == [(("p", "h"), 1), (("p2", "h2"), 0), (("p3", "h3"), 2)]
    assert sorted(data.provenance["sha256"]) == ["dev_matched.tsv", "dev_mismatched.tsv", "train.tsv"]
    (folder / "dev_matched.tsv").write_text(header + "0\tm\tm2\tentailment\n1\tm3\tm4\tcontradiction\n"
                                            "2\tm5\tm6\tneutral\n")
    limited = glue.load(TASKS["mnli"], Settings(data_dir=tmp_path, limit=2))  # the first 2 of each file
    assert limited.data.train == data.data.train[:2] and limited.data.labels == ["contradiction", "entailment"]
    assert limited.devs == {"dev_matched": [(("m", "m2"), 1), (("m3", "m4"), 0)],
                            "dev_mismatched": [(("x", "x2"), 1), (("x3", "x4"), 0)]}


def test_tsv_files_are_read_as_glues_processors_read_them(tmp_path):
    """Tab-separated, no quoting (a sentence may start with a quote); CoLA has no header line, the others
    do; errors name the line."""
    path = tmp_path / "train.tsv"
    path.write_bytes(b'gj04\t1\t\t"Quoted" words, said he.\ngj04\t0\t*\tCat the sat.\n')
    assert read_tsv(path, TASKS["cola"]) == [(('"Quoted" words, said he.',), "1"), (("Cat the sat.",), "0")]
    path.write_text("gj04\t1\t\n")
    with pytest.raises(TwofoldError, match=r"train.tsv:1: 3 fields, expected at least 4$"):
        read_tsv(path, TASKS["cola"])
    path.write_text("sentence\tlabel\nfine\t1\nno label here\n")
    with pytest.raises(TwofoldError, match=r"train.tsv:3: 1 fields, expected at least 2$"):
        read_tsv(path, TASKS["sst2"])
    path.write_text("")
    with pytest.raises(TwofoldError, match=r"train.tsv: no column 'sentence' \(header: \); GLUE's SST-2 files carry "
                                           r"sentence, label$"):
        read_tsv(path, TASKS["sst2"])
    path.write_text("sentence\tlabel\nx\t-\n")
    with pytest.raises(TwofoldError, match=r"train.tsv: no labelled examples$"):
        read_tsv(path, TASKS["sst2"])


def test_stsb_labels_are_numbers_and_unknown_labels_are_refused(tmp_path):
    data_dir = suite_data.write_glue(tmp_path / "data")
    stsb = glue.load(TASKS["stsb"], Settings(data_dir=data_dir / "glue"))  # a folder holding the tasks directly
    assert stsb.data.regression and stsb.data.labels is None and isinstance(stsb.data.train[0][1], float)
    assert stsb.data.files == [data_dir / "glue" / "STS-B" / name for name in ("train.tsv", "dev.tsv")]
    with pytest.raises(TwofoldError, match=r"glue/MNLI: missing; --data-dir holds GLUE's folders"):
        glue.check_data(["cola", "mnli"], Settings(data_dir=data_dir))
    rows = (data_dir / "glue" / "STS-B" / "dev.tsv").read_text().splitlines()
    (data_dir / "glue" / "STS-B" / "dev.tsv").write_text("\n".join(rows[:2] + [rows[2].rsplit("\t", 1)[0] + "\thigh"]))
    with pytest.raises(TwofoldError, match=r"^glue stsb: a label is not a number \(could not convert"):
        glue.load(TASKS["stsb"], Settings(data_dir=data_dir))
    cola = data_dir / "glue" / "CoLA" / "dev.tsv"
    cola.write_text(cola.read_text() + "gj04\t7\t\tSeven.\n")
    with pytest.raises(TwofoldError, match=r"^glue cola: label '7' of dev is not in the training data \(0, 1\)$"):
        glue.load(TASKS["cola"], Settings(data_dir=data_dir))


def test_without_a_data_dir_glue_reads_the_hub_dataset(monkeypatch):
    """nyu-mll/glue as `datasets` gives it (no internet here: a stand-in returns its rows): label -1
    marks an unlabelled row of a classification task; STS-B's labels are numbers."""
    import datasets

    asked = []
    hub = {("mnli", "train"): [("p", "h", 0), ("p2", "h2", 1), ("p3", "h3", 2), ("p4", "h4", -1)],
           ("mnli", "validation_matched"): [("m", "m2", 2)],
           ("mnli", "validation_mismatched"): [("x", "x2", 1), ("x3", "x4", None)],
           ("stsb", "train"): [("a", "b", 4.5), ("c", "d", -1.0)], ("stsb", "validation"): [("e", "f", 0.5)]}

    def load_dataset(path, name, split):
        asked.append((path, name, split))
        columns = TASKS[name].hub_texts
        return [dict(zip(columns, row[:2]), label=row[2]) for row in hub[name, split]]

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    mnli = glue.load(TASKS["mnli"], Settings())
    assert asked == [("nyu-mll/glue", "mnli", s) for s in ("train", "validation_matched", "validation_mismatched")]
    assert mnli.data.labels == ["0", "1", "2"] and mnli.data.train == [(("p", "h"), 0), (("p2", "h2"), 1),
                                                                       (("p3", "h3"), 2)]
    assert mnli.devs == {"dev_matched": [(("m", "m2"), 2)], "dev_mismatched": [(("x", "x2"), 1)]}
    assert mnli.provenance == {"dataset": "nyu-mll/glue", "revision": "unpinned (latest)", "config": "mnli"}
    assert mnli.data.files == []
    stsb = glue.load(TASKS["stsb"], Settings(limit=1))
    assert stsb.data.train == [(("a", "b"), 4.5)] and stsb.devs == {"dev": [(("e", "f"), 0.5)]}
    assert glue.load(TASKS["stsb"], Settings()).data.train[1] == (("c", "d"), -1.0)  # a score, not "unlabelled"

    def offline(path, name, split):
        raise ConnectionError("no route to host")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(TwofoldError, match=r"^glue rte: cannot load nyu-mll/glue \(ConnectionError: no route to "
                                           r"host\); with no internet, pass --data-dir"):
        glue.load(TASKS["rte"], Settings())
    glue.check_data(["rte"], Settings())  # nothing local to check: the download is not tried here


def test_glue_tasks_default_to_all_and_take_any_case():
    assert glue.tasks(Settings()) == list(TASKS)
    assert glue.tasks(Settings(tasks=("MNLI", "cola", "mnli"))) == ["mnli", "cola"]
    with pytest.raises(TwofoldError, match=r"^--suite glue: unknown task 'wnli'; valid tasks: cola, sst2"):
        glue.tasks(Settings(tasks=("wnli",)))


SWEEP = {  # rate -> dev metrics: F1 ranks 3e-5 first, accuracy ranks 1e-5 first
    1e-5: {"f1": 0.50, "accuracy": 0.90},
    3e-5: {"f1": 0.80, "accuracy": 0.60},
    8e-5: {"f1": 0.70, "accuracy": 0.70},
}


class ScriptedFinetune:
    """Stands in for `finetune` and `score_classifier`: each rate's model is a folder naming its rate,
    scored from a table."""

    def __init__(self, monkeypatch, member, table, task):
        self.tuned, self.member, self.table, self.task = [], member, table, task
        monkeypatch.setattr(glue, "finetune", self.finetune)
        monkeypatch.setattr(glue, "score_classifier", self.score)

    def finetune(self, task, model, data, out, recipe, name, say):
        assert (task, model, name, data.name) == ("classify", str(self.member.path), self.member.name,
                                                  f"glue-{self.task}")
        assert (recipe.epochs, recipe.seed, recipe.max_length) == (2.0, 5, 64)
        self.tuned.append(recipe.learning_rates[0])
        say(f"  lr {recipe.learning_rates[0]:g}: trained ")
        out.mkdir()
        (out / glue.RECORD).write_text(json.dumps({"rate": recipe.learning_rates[0]}))

    def score(self, directory, task, devs, labels, max_length):
        assert (task.name, list(devs), max_length) == (self.task, list(task.dev), 64)
        return self.table[json.loads((directory / glue.RECORD).read_text())["rate"]]


def test_the_sweep_keeps_the_rate_best_on_the_tasks_first_metric(tmp_path, monkeypatch, capsys):
    """MRPC selects on F1 (its first official metric), not accuracy; the other rates' models are removed;
    a rate an earlier run fine-tuned is not fine-tuned again."""
    data_dir = suite_data.write_glue(tmp_path / "data")
    member = Member(tmp_path / "model", "decoder", DECODER, checkpoint="runs/a", causal=True)
    script = ScriptedFinetune(monkeypatch, member, SWEEP, "mrpc")
    options = Settings(data_dir=data_dir, work=tmp_path / "work", learning_rates=tuple(SWEEP), epochs=2.0, seed=5,
                       max_length=64)
    folder = tmp_path / "work" / "decoder_runs_a" / "glue-mrpc"  # the member's label, made a folder name
    (folder / "lr-8e-05").mkdir(parents=True)
    (folder / "lr-8e-05" / glue.RECORD).write_text(json.dumps({"rate": 8e-5}))  # left by an earlier run
    [found] = glue.run(member, "mrpc", options)
    assert script.tuned == [1e-5, 3e-5]
    assert capsys.readouterr().out == "  glue mrpc lr 1e-05: trained\n  glue mrpc lr 3e-05: trained\n"
    assert found.metrics == pytest.approx({"f1": 0.80, "accuracy": 0.60, "score": 0.70})
    assert (found.task, found.n, found.seed, found.library, found.details["learning_rate"],
            found.details["selected_on"]) == ("glue/mrpc", 8, 5, "transformers", 3e-5, "f1")
    assert found.data == glue.local_files(data_dir / "glue" / "MRPC")
    kept = folder / "lr-3e-05"
    assert found.details["finetuned"] == str(kept)
    assert sorted(p.name for p in folder.iterdir()) == ["lr-3e-05"]
    assert [(s["learning_rate"], s["dev"], s["model"]) for s in found.details["sweep"]] == \
        [(r, SWEEP[r], str(kept) if r == 3e-5 else None) for r in SWEEP]
    assert (found.details["train"], found.details["split"]) == (24, "dev")
    assert found.details["recipe"] == glue.recipe_for("classify", **options.recipe_changes()).to_dict()


def test_mnli_selects_on_matched_accuracy_and_reports_both(tmp_path, monkeypatch):
    folder = tmp_path / "data" / "MNLI"
    folder.mkdir(parents=True)
    header = "index\tsentence1\tsentence2\tgold_label\n"
    for name in ("train", "dev_matched", "dev_mismatched"):
        (folder / f"{name}.tsv").write_text(header + "0\tp\th\tentailment\n1\tp2\th2\tneutral\n")
    table = {1e-5: {"accuracy": 0.5, "accuracy_mismatched": 0.9}, 3e-5: {"accuracy": 0.7, "accuracy_mismatched": 0.2}}
    member = Member(tmp_path / "model", "encoder", "encoder")
    script = ScriptedFinetune(monkeypatch, member, table, "mnli")
    [found] = glue.run(member, "mnli", Settings(data_dir=tmp_path / "data", work=tmp_path / "fresh" / "work",
                                                learning_rates=(1e-5, 3e-5), epochs=2.0, seed=5, max_length=64))
    assert script.tuned == [1e-5, 3e-5] and found.details["learning_rate"] == 3e-5
    assert found.metrics == pytest.approx({"accuracy": 0.7, "accuracy_mismatched": 0.2, "score": 0.45})
    assert found.details["split"] == "dev_matched/dev_mismatched" and found.details["selected_on"] == "accuracy"


def test_the_glue_average_is_over_the_tasks_that_finished():
    member = Member(None, "encoder", "encoder")

    def scored(task, score, suite="glue"):
        return Result(task=task, model="encoder", metrics={"score": score} if score is not None else {},
                      seed=int(10 * (score or 0)), n=8, suite=suite)

    results = [scored("glue/cola", 0.2), scored("glue/stsb", 0.6), scored("glue/rte", None),
               scored("mteb/x", 0.9, suite="mteb"), scored("glue/average", 0.0)]
    [average] = glue.summarize(member, results)
    assert average.task == "glue/average" and average.metrics == pytest.approx({"score": 0.4})
    assert (average.n, average.seed, average.details["tasks"]) == (2, 2, ["cola", "stsb"])  # the first one's seed
    assert (average.library, average.data) == ("transformers", {"tasks": ["cola", "stsb"]})
    assert average.details["missing"] == ["sst2", "mrpc", "qqp", "mnli", "qnli", "rte"]
    assert average.details["complete"] is False
    assert glue.summarize(member, [scored("glue/rte", None)]) == []
