"""`--suite glue`: the GLUE benchmark (Wang et al. 2019), each task fine-tuned with the `classify`
recipe (`twofold.finetune`: learning-rate sweep 1e-5, 3e-5, 8e-5, 3 epochs, warmup 6%; the rate
with the best dev score is kept, as Ettin does) and scored with its official metric:

    cola  Matthews correlation        sst2, qnli, rte  accuracy
    mrpc, qqp  F1 (positive class) and accuracy        stsb  Pearson and Spearman
    mnli  accuracy on dev-matched and dev-mismatched

GLUE's test labels are hidden, so — like BERT, ModernBERT and Ettin — the scores are on the dev
sets, and the sweep keeps the rate with the best dev score on the task's first official metric
(MCC, F1, Pearson or accuracy). A task's `score` is the mean of its metrics, the GLUE `average`
the mean of the task scores (WNLI left out, as those papers do). Data: `datasets` (nyu-mll/glue)
or the GLUE download's own layout under `--data-dir` (`glue/CoLA/{train,dev}.tsv`, … `glue/MNLI/dev_matched.tsv`).

transformers, datasets, scipy and scikit-learn (optional, the `suites` extra) are imported where used.
"""

from __future__ import annotations

import csv
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from twofold.errors import TwofoldError
from twofold.eval.member import Member
from twofold.eval.settings import Settings
from twofold.eval.suites.base import hub_data, local_files, pick_tasks, result
from twofold.finetune import RECORD, finetune, recipe_for
from twofold.finetune.datasets import LabelledData
from twofold.finetune.tasks import Classifier, predict
from twofold.results import Result

HUB = "nyu-mll/glue"


@dataclass(frozen=True)
class GlueTask:
    name: str
    folder: str  # the GLUE download's folder
    texts: tuple[str, ...]  # text columns: the TSV's header names (CoLA: positional names below)
    label: str  # label column in the TSV
    hub_texts: tuple[str, ...]  # the same columns in nyu-mll/glue
    metrics: tuple[str, ...]  # official metrics, the first one the sweep's selection metric
    regression: bool = False
    dev: tuple[str, ...] = ("dev",)  # dev files (MNLI: matched, mismatched)
    header: tuple[str, ...] | None = None  # column names of a TSV without a header line (CoLA)


TASKS = {t.name: t for t in (
    GlueTask("cola", "CoLA", ("sentence",), "label", ("sentence",), ("mcc",),
             header=("source", "label", "original_label", "sentence")),
    GlueTask("sst2", "SST-2", ("sentence",), "label", ("sentence",), ("accuracy",)),
    GlueTask("mrpc", "MRPC", ("#1 String", "#2 String"), "Quality", ("sentence1", "sentence2"), ("f1", "accuracy")),
    GlueTask("stsb", "STS-B", ("sentence1", "sentence2"), "score", ("sentence1", "sentence2"),
             ("pearson", "spearman"), regression=True),
    GlueTask("qqp", "QQP", ("question1", "question2"), "is_duplicate", ("question1", "question2"), ("f1", "accuracy")),
    GlueTask("mnli", "MNLI", ("sentence1", "sentence2"), "gold_label", ("premise", "hypothesis"),
             ("accuracy", "accuracy_mismatched"), dev=("dev_matched", "dev_mismatched")),
    GlueTask("qnli", "QNLI", ("question", "sentence"), "label", ("question", "sentence"), ("accuracy",)),
    GlueTask("rte", "RTE", ("sentence1", "sentence2"), "label", ("sentence1", "sentence2"), ("accuracy",)),
)}
HUB_DEV = {"dev": "validation", "dev_matched": "validation_matched", "dev_mismatched": "validation_mismatched"}


def tasks(options: Settings) -> list[str]:
    return pick_tasks("glue", options.tasks, list(TASKS), list(TASKS))


def glue_root(data_dir: Path) -> Path:
    """The folder holding CoLA/, SST-2/, …: DIR/glue if it exists, else DIR."""
    return data_dir / "glue" if (data_dir / "glue").is_dir() else data_dir


# ----------------------------------------------------------------------------- data

Example = tuple[tuple[str, ...], str]


def read_tsv(path: Path, task: GlueTask) -> list[Example]:
    """(texts, label) of a GLUE TSV, read as GLUE's own processors read it (tab-separated, no quoting)."""
    if not path.is_file():
        raise TwofoldError(f"{path}: missing; a GLUE folder holds {task.folder}/train.tsv and "
                           f"{', '.join(f'{d}.tsv' for d in task.dev)} (the GLUE download's layout)")
    with path.open(encoding="utf-8", newline="") as file:
        lines = list(csv.reader(file, delimiter="\t", quoting=csv.QUOTE_NONE))
    header, body = (list(task.header), lines) if task.header else (lines[0] if lines else [], lines[1:])
    wanted = [*task.texts, task.label]
    missing = [c for c in wanted if c not in header]
    if missing:
        raise TwofoldError(f"{path}: no column {missing[0]!r} (header: {', '.join(header)}); "
                           f"GLUE's {task.folder} files carry {', '.join(wanted)}")
    index = [header.index(c) for c in wanted]
    examples = []
    for number, row in enumerate(body, start=1 if task.header else 2):
        if len(row) <= max(index):
            raise TwofoldError(f"{path}:{number}: {len(row)} fields, expected at least {max(index) + 1}")
        label = row[index[-1]].strip()
        if not label or label == "-":  # unlabelled rows (MNLI marks a few with '-')
            continue
        examples.append((tuple(row[i] for i in index[:-1]), label))
    if not examples:
        raise TwofoldError(f"{path}: no labelled examples")
    return examples


def _hub_split(task: GlueTask, split: str) -> list[Example]:
    import datasets

    try:
        loaded = datasets.load_dataset(HUB, task.name, split=split)
    except Exception as error:  # no network, or the hub refused: the library's message says which
        raise TwofoldError(f"glue {task.name}: cannot load {HUB} ({type(error).__name__}: {error}); "
                           "with no internet, pass --data-dir with the GLUE download's folders") from None
    return [(tuple(str(row[c]) for c in task.hub_texts), str(row["label"])) for row in loaded
            if row["label"] is not None and (task.regression or row["label"] != -1)]  # -1: no label


@dataclass
class GlueData:
    data: LabelledData  # train; dev = the first dev file (the sweep selects on it); test = the last
    devs: dict[str, list]  # dev file -> encoded examples
    provenance: dict


def load(task: GlueTask, options: Settings) -> GlueData:
    if options.data_dir is not None:
        folder = glue_root(options.data_dir) / task.folder
        if not folder.is_dir():
            raise TwofoldError(f"{folder}: missing; --data-dir holds GLUE's folders (glue/{task.folder}/train.tsv, "
                               "…) for every task asked for, or leave --data-dir out to download them")
        raw = {"train": read_tsv(folder / "train.tsv", task)}
        raw |= {dev: read_tsv(folder / f"{dev}.tsv", task) for dev in task.dev}
        provenance = local_files(folder)
        files = [folder / "train.tsv", *(folder / f"{dev}.tsv" for dev in task.dev)]
    else:
        raw = {"train": _hub_split(task, "train")} | {dev: _hub_split(task, HUB_DEV[dev]) for dev in task.dev}
        provenance, files = hub_data(HUB, None, task.name), []
    if options.limit:
        raw = {split: rows[:options.limit] for split, rows in raw.items()}
    return GlueData(*_encode(task, raw, files), provenance)


def _encode(task: GlueTask, raw: dict[str, list[Example]], files: list[Path]) -> tuple[LabelledData, dict]:
    if task.regression:
        try:
            encoded = {split: [(texts, float(label)) for texts, label in rows] for split, rows in raw.items()}
        except ValueError as error:
            raise TwofoldError(f"glue {task.name}: a label is not a number ({error})") from None
        labels = None
    else:
        labels = sorted({label for _, label in raw["train"]})
        if len(labels) < 2:
            raise TwofoldError(f"glue {task.name}: only one label ({labels[0]!r}) in the training data")
        index = {label: i for i, label in enumerate(labels)}
        for split, rows in raw.items():
            unseen = sorted({label for _, label in rows} - set(index))
            if unseen:
                raise TwofoldError(f"glue {task.name}: label {unseen[0]!r} of {split} is not in the training data "
                                   f"({', '.join(labels)})")
        encoded = {split: [(texts, index[label]) for texts, label in rows] for split, rows in raw.items()}
    devs = {dev: encoded[dev] for dev in task.dev}
    data = LabelledData(f"glue-{task.name}", encoded["train"], devs[task.dev[0]], devs[task.dev[-1]], labels, files,
                        test_split=task.dev[-1])
    return data, devs


def check_data(names: list[str], options: Settings) -> None:
    """Every local file there and readable before any model work (no download is checked here)."""
    if options.data_dir is None:
        return
    for name in names:
        load(TASKS[name], options)


# ----------------------------------------------------------------------------- metrics

def official_metrics(task: GlueTask, predictions: np.ndarray, gold: list, labels: list[str] | None) -> dict:
    """The task's official metrics of `predictions` (class ids, or numbers for STS-B) against `gold`."""
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    out = {}
    if task.regression:
        out = {"pearson": float(pearsonr(predictions, gold)[0]), "spearman": float(spearmanr(predictions, gold)[0])}
    if "mcc" in task.metrics:
        out["mcc"] = float(matthews_corrcoef(gold, predictions))
    if "f1" in task.metrics:  # F1 of the positive class ("1": paraphrase, duplicate)
        positive = labels.index("1") if labels and "1" in labels else 1
        out["f1"] = float(f1_score(gold, predictions, pos_label=positive, average="binary", zero_division=0.0))
    if "accuracy" in task.metrics or "accuracy_mismatched" in task.metrics:
        out["accuracy"] = float(accuracy_score(gold, predictions))
    return {k: (0.0 if np.isnan(v) else v) for k, v in out.items()}  # constant predictions: no correlation


def score_classifier(directory: Path, task: GlueTask, devs: dict[str, list], labels: list[str] | None,
                     max_length: int) -> dict[str, float]:
    """Load a fine-tuned classifier as transformers saves it and compute the official metrics on each dev set."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(directory)
    classifier = Classifier(model, AutoTokenizer.from_pretrained(directory), task.regression)
    recipe = recipe_for("classify", max_length=max_length)
    metrics = {}
    for i, examples in enumerate(devs.values()):
        logits = predict(classifier, examples, recipe)
        predictions = logits[:, 0] if task.regression else logits.argmax(-1)
        found = official_metrics(task, predictions, [y for _, y in examples], labels)
        metrics |= found if i == 0 else {"accuracy_mismatched": found["accuracy"]}
    return {name: metrics[name] for name in task.metrics}


# ----------------------------------------------------------------------------- the suite

def run(member: Member, name: str, options: Settings) -> list[Result]:
    """Fine-tune at each rate of the sweep, keep the rate whose dev score on the official metric is best."""
    task = TASKS[name]
    glue = load(task, options)
    recipe = recipe_for("classify", **options.recipe_changes())
    folder = options.work / member.label.replace("@", "_").replace("/", "_") / f"glue-{name}"
    sweep = []
    for lr in recipe.learning_rates:
        out = folder / f"lr-{lr:g}"
        if not (out / RECORD).is_file():  # an earlier run of the suite may have fine-tuned it already
            out.parent.mkdir(parents=True, exist_ok=True)
            finetune("classify", str(member.path), glue.data, out, recipe.replace(learning_rates=(lr,)),
                     name=member.name, say=lambda line: print(f"  glue {name} {line.strip()}", flush=True))
        sweep.append({"learning_rate": lr, "dev": score_classifier(out, task, glue.devs, glue.data.labels,
                                                                   recipe.max_length), "model": str(out)})
    best = max(sweep, key=lambda entry: entry["dev"][task.metrics[0]])
    for entry in sweep:  # the sweep's other models go; their scores stay in the record
        if entry is not best:
            shutil.rmtree(entry["model"], ignore_errors=True)
            entry["model"] = None
    metrics = dict(best["dev"])
    metrics["score"] = float(np.mean(list(metrics.values())))
    return [result(member, "glue", name, metrics, len(glue.data.dev), "transformers", glue.provenance,
                   seed=recipe.seed, learning_rate=best["learning_rate"], selected_on=task.metrics[0],
                   sweep=sweep, finetuned=best["model"], train=len(glue.data.train), recipe=recipe.to_dict(),
                   split="dev" if len(task.dev) == 1 else "dev_matched/dev_mismatched")]


def summarize(member: Member, results: list[Result]) -> list[Result]:
    """The GLUE average over the tasks that finished (the task list is in its details)."""
    scored = [r for r in results if r.suite == "glue" and r.metrics and "score" in r.metrics
              and r.task != "glue/average"]
    if not scored:
        return []
    names = [r.task.split("/", 1)[1] for r in scored]
    missing = [t for t in TASKS if t not in names]
    return [result(member, "glue", "average", {"score": float(np.mean([r.metrics["score"] for r in scored]))},
                   len(scored), "transformers", {"tasks": names}, seed=scored[0].seed, tasks=names,
                   complete=not missing, missing=missing)]
