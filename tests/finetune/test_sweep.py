"""The learning-rate sweep's rule and record: every rate trained on the same data, the best on the dev
split's primary metric kept (the first on a tie), all recorded; a pair fine-tunes both members alike.

The task's library is replaced by a scripted one whose "training" records the rate and whose
scores come from a table, so the fixture can tell the rules apart: dev and test rank the rates
differently, and each metric ranks them differently. The model, data and outputs are real
(a tiny export, a TSV file, the written folder). Real libraries train in
tests/finetune/test_finetune.py.
"""

from __future__ import annotations

import json
import platform
import sys
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import twofold
from twofold.errors import TwofoldError
from twofold.files import sha256_file
from twofold.finetune import run, tasks
from twofold.finetune.datasets import LabelledData, RetrievalSet
from twofold.finetune.inputs import BaseModel
from twofold.finetune.recipes import recipe_for
from twofold.finetune.run import RECORD, RESULTS, finetune, finetune_pair, load_data
from twofold.finetune.tasks import OrderRecorder
from twofold.results import load_results

# rate -> {split: metrics}; None: before fine-tuning. On dev, accuracy ranks 3e-5 first (2e-5 ties it
# later), f1 ranks 8e-5 first, mcc ranks 1e-5 first; on test, accuracy ranks 1e-5 first.
SCORES = {
    None: {"dev": {"accuracy": 0.30, "f1": 0.31, "mcc": 0.32}, "test": {"accuracy": 0.35, "f1": 0.36, "mcc": 0.37}},
    1e-5: {"dev": {"accuracy": 0.50, "f1": 0.20, "mcc": 0.95}, "test": {"accuracy": 0.90, "f1": 0.21, "mcc": 0.22}},
    3e-5: {"dev": {"accuracy": 0.80, "f1": 0.40, "mcc": 0.10}, "test": {"accuracy": 0.40, "f1": 0.41, "mcc": 0.42}},
    8e-5: {"dev": {"accuracy": 0.60, "f1": 0.90, "mcc": 0.30}, "test": {"accuracy": 0.70, "f1": 0.71, "mcc": 0.72}},
    2e-5: {"dev": {"accuracy": 0.80, "f1": 0.50, "mcc": 0.20}, "test": {"accuracy": 0.10, "f1": 0.11, "mcc": 0.12}},
}
RATES = (1e-5, 3e-5, 8e-5, 2e-5)


@dataclass
class Scripted:
    base: BaseModel
    rate: float | None = None
    model: torch.nn.Module = None  # as the libraries' wrappers hold the network: its parameters are counted

    def __post_init__(self):
        self.model = torch.nn.Linear(3, 3)  # 12 parameters

    def parameters(self):  # the wrapper's own: not what is counted
        return [torch.zeros(7)]


@dataclass
class Bare:
    """A model that is its own network (no `.model`): its own parameters are counted."""

    base: BaseModel
    rate: float | None = None

    def parameters(self):
        return [torch.zeros(5)]


def batch_digest(rate: float) -> str:
    recorder = OrderRecorder(lambda features: features)
    recorder([{"text": f"rate {rate}"}])
    return recorder.hexdigest


class Library:
    """The classify task with a scripted library: checks what it is handed, records what it scores."""

    def __init__(self, monkeypatch, table=SCORES, task="classify", primary="accuracy"):
        self.scored, self.built, self.table, self.data = [], [], table, None
        self.recipe = None
        monkeypatch.setitem(tasks.TASK_TABLE, task, tasks.Task("scripted", self.build, self.train, self.score,
                                                                primary, save=self.save, details=self.details))
        self.bare = False  # build a wrapper that holds no `.model`
        clock = iter(range(0, 1000, 2))  # each training "takes" 1.23456 s: round(., 2) is recorded
        times = []
        monkeypatch.setattr("twofold.finetune.run.time", SimpleNamespace(
            perf_counter=lambda: times.append(next(clock) * 1.23456 / 2) or times[-1]))

    def build(self, base, recipe, **extra):
        assert recipe == self.recipe and isinstance(base, BaseModel)
        self.built.append((base.name, extra))
        return Bare(base) if self.bare else Scripted(base)

    @staticmethod
    def details(recipe):
        return {"recipe_seed": recipe.seed}  # what the task adds to finetune.json and its results

    def train(self, model, rows, recipe, lr, workdir, recorder):
        assert list(rows) == list(self.data.train) and recipe == self.recipe  # as loaded with the recipe's seed
        assert Path(workdir).name == "trainer" and Path(workdir).parent.name.startswith(".sweep-")
        Path(workdir).mkdir(parents=True)  # the libraries' trainers make their output folder
        model.rate = lr
        recorder.collator = lambda features: features
        recorder([{"text": f"rate {lr}"}])
        recorder.steps = 3

    def score(self, model, split, recipe):
        assert recipe == self.recipe
        name = "dev" if split == self.data.dev else "test"
        assert split == (self.data.dev if name == "dev" else self.data.test)
        self.scored.append((model.base.name, name, model.rate))
        return dict(self.table[model.rate][name])

    def save(self, model, out):
        Path(out).mkdir(parents=True)
        (Path(out) / "model.json").write_text(json.dumps({"rate": model.rate, "base": model.base.name}))

    def run(self, task, *args, recipe, **kwargs):
        self.recipe = recipe or recipe_for(task)
        return finetune(task, *args, recipe, **kwargs)

    def run_pair(self, task, *args, recipe, **kwargs):
        self.recipe = recipe or recipe_for(task)
        return finetune_pair(task, *args, recipe, **kwargs)


@pytest.fixture
def scripted(monkeypatch):
    return Library(monkeypatch)


def small_data(labels=("no", "yes")) -> LabelledData:
    return LabelledData("scripted", train=[(("a",), 0), (("b",), 1)], dev=[(("c",), 0), (("d",), 1)],
                        test=[(("e",), 0), (("f",), 1), (("g",), 0)], labels=list(labels) if labels else None)


def environment() -> dict:
    versions = {}
    for package in ("torch", "transformers", "sentence-transformers", "pylate", "datasets", "sacrebleu"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return {"python": sys.version.split()[0], "device": platform.processor() or "cpu", **versions}


def test_the_sweep_keeps_the_best_rate_on_the_dev_accuracy_and_records_every_rate(tmp_path, scripted, exports,
                                                                                  labels_file, disk):
    data = scripted.data = load_data("classify", str(labels_file), seed=12)
    recipe = recipe_for("classify", learning_rates=RATES)
    lines = []
    with pytest.warns(UserWarning, match=rf"the test split is {len(data.test)} examples: too small"):
        result = scripted.run("classify", exports["encoder"], data, tmp_path / "out", recipe=recipe, name="enc",
                              say=lines.append)
    assert scripted.scored == [("enc", "dev", None), ("enc", "test", None)] + \
        [("enc", split, r) for r in RATES for split in ("dev", "test")]
    assert scripted.built == [("enc", {"labels": data.labels})] * 5
    assert (result.learning_rate, result.metric, result.out, result.task, result.model, result.kind) == \
        (3e-5, "accuracy", tmp_path / "out", "classify", "enc", "encoder")
    assert (result.dev, result.test, result.before) == (SCORES[3e-5]["dev"], SCORES[3e-5]["test"],
                                                       SCORES[None]["test"])
    assert result.improved and result.sweep == json.loads((tmp_path / "out" / RECORD).read_text())["sweep"]
    out = tmp_path / "out"
    assert json.loads((out / "model.json").read_text()) == {"rate": 3e-5, "base": "enc"}  # the kept model, moved up
    assert sorted(p.name for p in out.iterdir()) == ["finetune.json", "model.json", RESULTS]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no hidden working folder left
    disk.published_whole(out)
    record = json.loads((out / RECORD).read_text())
    export = Path(exports["encoder"])
    assert record == {
        "task": "classify", "library": "scripted", "twofold_version": record["twofold_version"],
        "model": {"kind": "hf", "path": str(export.resolve()),
                  "sha256": {p.name: sha256_file(p) for p in sorted(export.iterdir())
                             if p.suffix in (".json", ".safetensors")}},
        "member": "encoder", "name": "enc",
        "data": {"name": data.name, "fingerprint": data.fingerprint,
                 "files": {str(labels_file): sha256_file(labels_file)},
                 "examples": {"train": len(data.train), "dev": len(data.dev), "test": len(data.test)},
                 "negatives": {}, "labels": data.labels},
        "recipe": recipe.to_dict(), "pooling": "mean", "metric": "accuracy",
        "selected": {"learning_rate": 3e-5, "dev": SCORES[3e-5]["dev"]}, "test": SCORES[3e-5]["test"],
        "before": SCORES[None],
        "sweep": [{"learning_rate": r, "dev": SCORES[r]["dev"], "test": SCORES[r]["test"], "seconds": 1.23,
                   "batches": 1, "optimizer_steps": 3, "data_order": batch_digest(r)} for r in RATES],
        "environment": environment(), "recipe_seed": 12}
    kept, before = sorted(load_results(out / RESULTS), key=lambda r: r.variant)
    assert (kept.task, kept.model, kept.variant, kept.metrics, kept.n, kept.kind, kept.seed) == \
        ("finetune-classify", "enc", data.name, SCORES[3e-5]["test"], len(data.test), "encoder", 12)
    assert kept.details == {"learning_rate": 3e-5, "dev": SCORES[3e-5]["dev"], "before": SCORES[None]["test"],
                            "recipe_seed": 12}
    assert (before.variant, before.metrics, before.details, before.model) == (
        f"{data.name}/before", SCORES[None]["test"], {"fine_tuned": False, "recipe_seed": 12}, "enc")
    assert kept.parameters == before.parameters == 12
    assert result.results == [r for r in load_results(out / RESULTS) if r.variant == data.name] + \
        [r for r in load_results(out / RESULTS) if r.variant != data.name]
    assert lines == ["  before fine-tuning: dev accuracy 0.3000", "  lr 1e-05: dev accuracy 0.5000 (1 s)",
                     "  lr 3e-05: dev accuracy 0.8000 (1 s)", "  lr 8e-05: dev accuracy 0.6000 (1 s)",
                     "  lr 2e-05: dev accuracy 0.8000 (1 s)"]


def test_a_pair_fine_tunes_both_members_alike_and_records_both(tmp_path, scripted, exports, labels_file, disk):
    data = scripted.data = load_data("classify", str(labels_file), seed=12)
    recipe = recipe_for("classify", learning_rates=(8e-5, 3e-5))
    lines = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the small split, said once per member
        results = scripted.run_pair("classify", Path(exports["encoder"]).parent, str(labels_file), tmp_path / "pair",
                                    recipe=recipe, say=lines.append)
    assert [(r.model, r.kind, r.learning_rate, r.out) for r in results] == [
        ("encoder", "encoder", 3e-5, tmp_path / "pair" / "encoder"), ("decoder", "decoder", 3e-5,
                                                                      tmp_path / "pair" / "decoder")]
    assert [line for line in lines if not line.startswith("  ")] == [f"encoder: classify on {data.name}",
                                                                      f"decoder: classify on {data.name}"]
    for member in ("encoder", "decoder"):
        assert json.loads((tmp_path / "pair" / member / "model.json").read_text()) == {"rate": 3e-5, "base": member}
        assert json.loads((tmp_path / "pair" / member / RECORD).read_text())["member"] == member
    record = json.loads((tmp_path / "pair" / RECORD).read_text())
    summary = {"learning_rate": 3e-5, "metric": "accuracy", "before": SCORES[None]["test"],
               "test": SCORES[3e-5]["test"]}
    assert record == {"task": "classify", "pair": str(Path(exports["encoder"]).parent.resolve()),
                      "members": ["encoder", "decoder"], "left_out": {}, "recipe": recipe.to_dict(),
                      "data": json.loads((tmp_path / "pair" / "encoder" / RECORD).read_text())["data"],
                      "data_order_identical": True,
                      "results": [{"model": "encoder", "kind": "encoder", **summary},
                                  {"model": "decoder", "kind": "decoder", **summary}]}
    assert sorted(p.name for p in (tmp_path / "pair").iterdir()) == ["decoder", "encoder", "finetune.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["pair"]
    disk.published_whole(tmp_path / "pair")


def test_a_regression_sweep_selects_on_pearson(tmp_path, monkeypatch):
    table = {None: {"dev": {"pearson": 0.0, "spearman": 0.0}, "test": {"pearson": 0.0, "spearman": 0.0}},
             1e-5: {"dev": {"pearson": 0.2, "spearman": 0.9}, "test": {"pearson": 0.9, "spearman": 0.9}},
             3e-5: {"dev": {"pearson": 0.7, "spearman": 0.1}, "test": {"pearson": 0.1, "spearman": 0.1}}}
    library = Library(monkeypatch, table)
    library.data = small_data(labels=None)  # regression: the primary metric is Pearson
    with pytest.warns(UserWarning):
        result = library.run("classify", BaseModel("unused", "decoder", causal=True), library.data, tmp_path / "out",
                             recipe=recipe_for("classify", learning_rates=(1e-5, 3e-5)), say=lambda *_: None)
    assert (result.metric, result.learning_rate, result.kind) == ("pearson", 3e-5, "decoder")
    assert [r.kind for r in load_results(tmp_path / "out" / RESULTS)] == ["decoder", "decoder"]
    assert library.built == [("decoder", {"labels": None})] * 3
    record = json.loads((tmp_path / "out" / RECORD).read_text())
    assert (record["member"], record["pooling"], record["data"]["labels"]) == ("decoder", "last", None)


def test_one_rate_scores_only_the_test_split(tmp_path, scripted):
    data = scripted.data = small_data()
    data.test_split = "dev_matched"  # what GLUE calls its scored part
    lines = []
    with pytest.warns(UserWarning, match="the dev_matched split is 3 examples"):
        result = scripted.run("classify", BaseModel("unused", "m", causal=False), data, tmp_path / "out",
                              recipe=recipe_for("classify", learning_rates=(8e-5,)), say=lines.append)
    assert scripted.scored == [("m", "test", None), ("m", "test", 8e-5)]
    assert (result.learning_rate, result.dev, result.test) == (8e-5, {}, SCORES[8e-5]["test"])
    record = json.loads((tmp_path / "out" / RECORD).read_text())
    assert set(record["before"]) == {"test"} and record["selected"] == {"learning_rate": 8e-5, "dev": {}}
    assert lines == ["  before fine-tuning: dev_matched accuracy 0.3500",
                     "  lr 8e-05: dev_matched accuracy 0.7000 (1 s)"]


def test_a_small_split_is_named_by_its_size(tmp_path):
    from twofold.finetune import run

    split = RetrievalSet({"q1": "a", "q2": "b"}, {"d1": "x", "d2": "y", "d3": "z"}, {"q1": {"d1": 1}, "q2": {"d2": 1}})
    with pytest.warns(UserWarning, match=r"^the test split is 2 queries over 3 documents: .*each one is 50% of it\); "
                                         r"give more data or a larger --test$"):
        run._warn_if_too_small(split, "test")
    with pytest.warns(UserWarning, match=r"^the dev split is 49 examples: .*each one is 2% of it\)"):
        run._warn_if_too_small(list(range(run.SMALL_SPLIT - 1)), "dev")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run._warn_if_too_small(RetrievalSet({f"q{i}": "a" for i in range(run.SMALL_SPLIT)}, {"d": "x"}, {}), "test")
        run._warn_if_too_small(list(range(run.SMALL_SPLIT)), "test")


def test_a_retrieval_fine_tune_with_the_tasks_default_recipe(tmp_path, monkeypatch, exports, pairs_file):
    """sparse (SPLADE): its default recipe, no labels for the library, max pooling recorded, the split
    called "test", a leftover working folder of this process replaced, a new folder's parents made."""
    import os

    table = {None: {"test": {"ndcg@10": 0.1, "mrr@10": 0.2}}, 2e-5: {"test": {"ndcg@10": 0.3, "mrr@10": 0.4}}}
    library = Library(monkeypatch, table, task="sparse", primary="ndcg@10")
    library.bare = True
    library.data = load_data("sparse", str(pairs_file), seed=12)
    def prepare(task, data, recipe, base):  # no mining: the test is about the run's record
        assert (task, recipe, base.name) == ("sparse", recipe_for("sparse"), "encoder")
        return run.Prepared(data.train, data.dev, data.test, {"per_query": 0})

    monkeypatch.setattr("twofold.finetune.run.prepare", prepare)
    out = tmp_path / "new" / "deeper" / "out"
    leftover = out.with_name(f".out.tmp-{os.getpid()}")
    leftover.mkdir(parents=True)
    (leftover / "half-written").write_text("x")
    lines = []
    with pytest.warns(UserWarning, match=r"the test split is 4 queries over 4 documents"):
        result = library.run("sparse", exports["encoder"], str(pairs_file), out, recipe=None, say=lines.append)
    assert library.built == [("encoder", {})] * 2 and (result.learning_rate, result.metric) == (2e-5, "ndcg@10")
    assert lines == ["  before fine-tuning: test ndcg@10 0.1000", "  lr 2e-05: test ndcg@10 0.3000 (1 s)"]
    record = json.loads((out / RECORD).read_text())
    assert (record["pooling"], record["data"]["labels"], record["recipe"]) == ("max", None,
                                                                               recipe_for("sparse").to_dict())
    assert sorted(p.name for p in out.parent.iterdir()) == ["out"]
    assert {r.parameters for r in load_results(out / RESULTS)} == {5}


def test_a_task_the_model_or_the_environment_cannot_do_is_refused_before_the_data_is_read(tmp_path, exports):
    import importlib.util

    missing = str(tmp_path / "no-such-data.jsonl")  # read after the checks: never reached
    if importlib.util.find_spec("pylate") is None:
        with pytest.raises(TwofoldError, match=r"^colbert needs PyLate"):
            finetune("colbert", exports["encoder"], missing, tmp_path / "out")
    with pytest.raises(TwofoldError, match=r"sparse \(SPLADE\) needs a masked-LM head; decoder is a decoder"):
        finetune("sparse", exports["decoder"], missing, tmp_path / "out", name="decoder")
    assert list(tmp_path.iterdir()) == []  # no hidden working folder left


def make_run(run_dir: Path, export: str) -> Path:
    """A `twofold train` run folder holding `export`'s weights as checkpoint 2 (tag step2), its tokenizer
    found through its token store's manifest, as training leaves them."""
    from twofold.train import checkpoint

    model = twofold.load(export)
    store = run_dir.parent / f"{run_dir.name}-store"
    store.mkdir(parents=True)
    (store / "manifest.json").write_text(json.dumps({"tokenizer": {"path": str(Path(export).parent / "tokenizer")}}))
    run_dir.mkdir()
    (run_dir / "run.json").write_text(json.dumps({"model": model.config.to_dict(),
                                                  "options": {"stores": [str(store)]}}))
    checkpoint.save(run_dir / "checkpoints", step=2, states=checkpoint.capture(model), progress={"tokens": 2000},
                    data={}, config=model.config.to_dict(), recipe={}, tag="step2")
    return run_dir


def test_a_pair_of_runs_mines_once_with_the_encoder_and_keeps_no_export(tmp_path, monkeypatch, exports, pairs_file):
    table = {None: {"test": {"ndcg@10": 0.1}}, 8e-5: {"test": {"ndcg@10": 0.3}}}
    library = Library(monkeypatch, table, task="embed", primary="ndcg@10")
    pair = tmp_path / "pair"
    for member in ("encoder", "decoder"):
        make_run(pair / member, exports[member])
    recipe = recipe_for("embed", max_length=16)
    library.data = load_data("embed", str(pairs_file), seed=recipe.seed)
    mined = run.prepare("embed", library.data, recipe, run.resolve(exports["encoder"], tmp_path / "scratch"))
    library.data.train = mined.train  # what the members train on: the pairs with the encoder's negatives
    out = tmp_path / "new" / "folder" / "pair"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = library.run_pair("embed", pair, str(pairs_file), out, recipe=recipe, say=lambda *_: None)
    assert [r.model for r in results] == ["encoder", "decoder"]
    assert sorted(p.name for p in out.iterdir()) == ["decoder", "encoder", "finetune.json"]
    record = json.loads((out / "encoder" / RECORD).read_text())
    assert (record["model"]["kind"], record["data"]["negatives"]["mined_with"]) == ("run", "encoder")
    assert sorted(p.name for p in out.parent.iterdir()) == ["pair"]


def test_a_pair_takes_data_already_loaded(tmp_path, scripted, exports, labels_file):
    data = scripted.data = load_data("classify", str(labels_file), seed=12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = scripted.run_pair("classify", Path(exports["encoder"]).parent, data, tmp_path / "pair",
                                    recipe=recipe_for("classify", learning_rates=(3e-5,)), say=lambda *_: None)
    assert [r.learning_rate for r in results] == [3e-5, 3e-5]


def test_a_runs_checkpoint_is_exported_for_the_libraries_and_the_export_not_kept(tmp_path, scripted, exports,
                                                                                 labels_file):
    """A run (`RUN@TAG`) is exported into the working folder for the libraries; the export goes when done."""
    run_dir = make_run(tmp_path / "run", exports["encoder"])
    scripted.data = load_data("classify", str(labels_file), seed=12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = scripted.run("classify", f"{run_dir}@step2", str(labels_file), tmp_path / "out",
                              recipe=recipe_for("classify", learning_rates=(1e-5,)), say=lambda *_: None)
    assert result.model == "run" and scripted.built[0][0] == "run"
    record = json.loads((tmp_path / "out" / RECORD).read_text())
    assert (record["model"]["kind"], record["model"]["checkpoint"]) == ("run", "000000002-step2")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["finetune.json", "model.json", RESULTS]


def test_a_pair_fine_tunes_only_the_member_a_task_fits_and_says_why(tmp_path, monkeypatch, exports, pairs_file):
    """sparse needs the encoder's MLM head: the decoder is left out, said and recorded; the task's default
    recipe is used when none is given."""
    table = {None: {"test": {"ndcg@10": 0.1}}, 2e-5: {"test": {"ndcg@10": 0.3}}}
    library = Library(monkeypatch, table, task="sparse", primary="ndcg@10")
    library.data = load_data("sparse", str(pairs_file), seed=12)
    monkeypatch.setattr("twofold.finetune.run.prepare",
                        lambda task, data, recipe, base: run.Prepared(data.train, data.dev, data.test, {}))
    lines = []
    out = tmp_path / "pair"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        [result] = library.run_pair("sparse", Path(exports["encoder"]).parent, library.data, out, recipe=None,
                                    say=lines.append)
    assert (result.model, result.out, result.learning_rate) == ("encoder", out / "encoder", 2e-5)
    assert [name for name, _ in library.built] == ["encoder", "encoder"]
    reason = tasks.unfit("sparse", run.resolve(exports["decoder"], tmp_path / "scratch", name="decoder"))
    assert reason.startswith(f"{exports['decoder']}: sparse (SPLADE) needs a masked-LM head; decoder is a decoder")
    assert [line for line in lines if not line.startswith("  ")] == [f"left out: {reason}",
                                                                      f"encoder: sparse on {library.data.name}"]
    record = json.loads((out / RECORD).read_text())
    assert record["members"] == ["encoder"] and record["left_out"] == {"decoder": reason}
    assert record["data_order_identical"] is None and record["recipe"] == recipe_for("sparse").to_dict()
    assert sorted(p.name for p in out.iterdir()) == ["encoder", "finetune.json"]


def test_a_pair_that_fails_leaves_no_hidden_folder(tmp_path, monkeypatch, scripted, exports, labels_file):
    scripted.data = load_data("classify", str(labels_file), seed=12)

    def fail(*args):
        raise RuntimeError("out of memory")

    monkeypatch.setitem(tasks.TASK_TABLE, "classify", tasks.Task("scripted", scripted.build, fail, scripted.score,
                                                                 "accuracy", save=scripted.save))
    with warnings.catch_warnings(), pytest.raises(RuntimeError, match="out of memory"):
        warnings.simplefilter("ignore")
        scripted.run_pair("classify", Path(exports["encoder"]).parent, scripted.data, tmp_path / "pair",
                          recipe=recipe_for("classify", learning_rates=(3e-5,)), say=lambda *_: None)
    assert list(tmp_path.iterdir()) == []


def test_finetune_generate_loads_its_data_with_the_seed_and_limits_and_returns_chrf_before_and_after(
        tmp_path, monkeypatch, exports):
    from twofold.finetune.generate import finetune_generate
    from twofold.finetune.generation_data import load_generation

    table = {None: {"dev": {"chrf": 1.0, "bleu": 0.1}, "test": {"chrf": 2.0, "bleu": 0.2}},
             1e-5: {"dev": {"chrf": 5.0, "bleu": 0.9}, "test": {"chrf": 30.0, "bleu": 0.3}},
             3e-5: {"dev": {"chrf": 9.0, "bleu": 0.4}, "test": {"chrf": 20.0, "bleu": 0.5}}}
    library = Library(monkeypatch, table, task="generate", primary="chrf")
    clock = iter([10.0, 12.3456])
    monkeypatch.setattr("twofold.finetune.generate.time", SimpleNamespace(perf_counter=lambda: next(clock)))
    packages = ("json", "email")
    library.data = load_generation("stdlib", seed=4, packages=packages, max_train=20, max_test=3)
    library.recipe = recipe_for("generate", learning_rates=(1e-5, 3e-5), epochs=2.0, seed=4)
    lines = []
    found = finetune_generate(exports["decoder"], "stdlib", tmp_path / "out", seed=4, packages=packages, max_train=20,
                              max_test=3, name="dec", say=lines.append, learning_rates=(1e-5, 3e-5), epochs=2.0)
    assert lines[0] == "  before fine-tuning: dev chrf 1.0000"  # the caller's say
    assert found == {"model": "dec", "kind": "decoder", "out": tmp_path / "out", "learning_rate": 3e-5,
                     "chrf_before": 2.0, "chrf_after": 20.0, "before": table[None]["test"],
                     "after": table[3e-5]["test"], "examples": {"train": 20, "dev": 3, "test": 3}, "seconds": 2.35,
                     "results": found["results"]}
    assert [r.variant for r in found["results"]] == ["stdlib-docstrings", "stdlib-docstrings/before"]
    assert json.loads((tmp_path / "out" / RECORD).read_text())["recipe"] == library.recipe.to_dict()
    clock = iter([0.0, 1.0])  # data already loaded is used as it is; the seed is 0 unless given
    library.data.train = library.data.train[:7]
    library.recipe = recipe_for("generate", learning_rates=(1e-5, 3e-5), epochs=2.0, seed=0)
    again = finetune_generate(exports["decoder"], library.data, tmp_path / "again", say=lambda *_: None,
                              learning_rates=(1e-5, 3e-5), epochs=2.0)
    assert again["examples"] == {"train": 7, "dev": 3, "test": 3} and again["model"] == "decoder"
