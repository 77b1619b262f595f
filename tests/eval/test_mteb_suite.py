"""`--suite mteb` and its presets, twofold's own logic, fast: which tasks a preset or `--tasks`
names, which local copy a task reads and in which layout, the Sentence Transformers model mteb is
given (pooling, length, fine-tune or not), the settings handed to `mteb.evaluate`, and the mapping
of its scores into a Result (main score, nDCG@10 / MRR@10, FollowIR's per-instruction nDCG@5,
means over subsets and splits). mteb's task objects and readers are real; `mteb.evaluate` is
replaced by a recorder where only the mapping is under test (tests/eval/test_suites.py runs it)."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from tools import suite_data

from twofold.errors import TwofoldError
from twofold.eval.member import DECODER, EMBEDDER, ENCODER, Member
from twofold.eval.settings import Settings
from twofold.eval.suites import mteb_suite
from twofold.files import sha256_file
from twofold.finetune import RECORD


@pytest.fixture(autouse=True)
def fresh(monkeypatch, tmp_path):
    """No task resolved yet, and each test in a working folder of its own: what one writes to a
    relative path (a model saved to 'None') is never found by another."""
    monkeypatch.setattr(mteb_suite, "_RESOLVED", {})
    monkeypatch.chdir(tmp_path)


# ----------------------------------------------------------------------------- tasks

def test_each_preset_names_its_tasks_and_plain_mteb_the_tasks_asked_for():
    import mteb

    retrieval = mteb_suite.preset_tasks("mteb-retrieval")
    assert "ArguAna" in retrieval and "SCIDOCS" in retrieval and len(retrieval) == 10
    assert "STS12" not in retrieval  # MTEB(eng, v2) tasks of other types are left out
    assert mteb_suite.task_lister("csn")(Settings()) == ["CodeSearchNetRetrieval"]
    assert mteb_suite.task_lister("mldr")(Settings()) == ["MultiLongDocRetrieval"]
    assert mteb_suite.task_lister("followir")(Settings(tasks=("news21instructionretrieval",))) == \
        ["News21InstructionRetrieval"]
    assert mteb_suite.task_lister("mteb-retrieval")(Settings()) == retrieval
    with pytest.raises(TwofoldError, match="--suite followir: unknown task 'SciFact'; valid tasks: Core17"):
        mteb_suite.task_lister("followir")(Settings(tasks=("SciFact",)))
    lister = mteb_suite.task_lister("mteb")
    assert lister(Settings(tasks=("scifact", "NFCorpus"))) == ["SciFact", "NFCorpus"]
    with pytest.raises(TwofoldError, match=r"^--suite mteb: name the MTEB tasks with --tasks \(e\.g\. SciFact,NFCorpus"
                                           r"\), or use a preset suite: mteb-retrieval, csn, mldr, followir$"):
        lister(Settings())
    with pytest.raises(TwofoldError, match=r"^--suite mteb: unknown MTEB task 'SciFakt'; close: SciFact.* \(mteb"):
        lister(Settings(tasks=("NFCorpus", "SciFakt", "Nope")))
    with pytest.raises(TwofoldError, match=r"; close: ([\w.-]+, ){4}[\w.-]+ \(mteb") as error:  # the five closest
        lister(Settings(tasks=("CQADupstackRetrievl",)))
    close = str(error.value).partition("; close: ")[2].partition(" (mteb")[0].split(", ")
    assert close[0] == "CQADupstackRetrieval" and len(close) == 5
    assert set(close) <= {t.metadata.name for t in mteb.get_tasks()}  # each one a task's name
    with pytest.raises(TwofoldError, match=r"^--suite mteb: unknown MTEB task 'qqqqqqqq' \(mteb\.get_tasks\(\)"):
        lister(Settings(tasks=("qqqqqqqq",)))


def test_task_objects_given_in_python_run_under_their_own_names(tmp_path):
    task = suite_data.retrieval_task(suite_data.write_retrieval(tmp_path / "tiny"))
    assert mteb_suite.task_lister("mteb")(Settings(tasks=(task,))) == ["TinyCodeRetrieval"]
    assert mteb_suite.task_lister("mteb")(Settings(tasks=("SciFact", task))) == ["SciFact", "TinyCodeRetrieval"]
    assert mteb_suite.task_lister("csn")(Settings(tasks=(task,))) == ["CodeSearchNetRetrieval", "TinyCodeRetrieval"]
    options = Settings(tasks=(task,))
    assert mteb_suite.resolve("TinyCodeRetrieval", options) is task
    assert mteb_suite.resolve("TinyCodeRetrieval", options) is task  # resolved once
    local = Settings(tasks=(task,), data_dir=tmp_path / "elsewhere")  # a task on its own local files
    assert mteb_suite.resolve("TinyCodeRetrieval", local).metadata.dataset["path"] == str(tmp_path / "tiny")
    other = suite_data.retrieval_task(suite_data.write_retrieval(tmp_path / "other"))  # the same name, anew
    assert mteb_suite.resolve("TinyCodeRetrieval", Settings(tasks=(other,))) is other


def test_a_task_on_local_files_named_from_the_working_folder_is_read_in_its_layout(tmp_path):
    """A task defined on a relative folder that --data-dir does not hold reads that folder: here a
    repository copy whose qrels are BEIR's TSV files, which twofold's BEIR reader puts into the task."""
    suite_data.write_beir(tmp_path / "tiny")
    (tmp_path / "tiny" / "README.md").write_text("---\nconfigs:\n- config_name: corpus\n---\n")
    task = suite_data.retrieval_task(Path("tiny"))  # relative to the working folder, tmp_path
    resolved = mteb_suite.resolve("TinyCodeRetrieval", Settings(tasks=(task,), data_dir=tmp_path / "elsewhere"))
    assert resolved is task and task.metadata.dataset["path"] == "tiny" and task.data_loaded
    assert task.dataset["default"]["test"]["relevant_docs"] == {f"q{i}": {f"d{i}": 1} for i in range(8)}


def test_mldr_is_its_english_test_set_and_other_tasks_as_mteb_defines_them():
    mldr = mteb_suite.resolve("MultiLongDocRetrieval", Settings())
    assert mldr.hf_subsets == ["en"] and mldr.eval_splits == ["test"]
    assert mteb_suite.resolve("CodeSearchNetRetrieval", Settings()).hf_subsets == [
        "python", "javascript", "go", "ruby", "java", "php"]
    assert mteb_suite.resolve("MSMARCO", Settings()).eval_splits == ["dev"]  # not narrowed to test as MLDR is
    first = mteb_suite.resolve("SciFact", Settings())
    assert mteb_suite.resolve("SciFact", Settings()) is first


# ----------------------------------------------------------------------------- local copies

def test_a_local_copy_is_found_under_the_dataset_path_or_the_task_name_and_read_in_its_layout(tmp_path):
    by_path = suite_data.write_beir(tmp_path / "a" / "mteb" / "scifact")
    by_name = suite_data.write_beir(tmp_path / "b" / "SciFact")
    both = tmp_path / "c"
    suite_data.write_beir(both / "mteb" / "scifact")
    suite_data.write_beir(both / "SciFact")
    for data_dir, folder in ((tmp_path / "a", by_path), (tmp_path / "b", by_name), (both, both / "mteb" / "scifact")):
        task = mteb_suite.resolve("SciFact", Settings(data_dir=data_dir))
        assert task.metadata.dataset["path"] == str(folder) and task.data_loaded
        split = task.dataset["default"]["test"]
        assert split["relevant_docs"] == {f"q{i}": {f"d{i}": 1} for i in range(8)} and split["top_ranked"] is None
        assert dict(zip(split["queries"]["id"], split["queries"]["text"]))["q0"] == "json: " + suite_data.TOPICS[0][1]
        assert dict(zip(split["corpus"]["id"], split["corpus"]["text"])) == {
            f"d{i}": code for i, (_, _, code) in enumerate(suite_data.TOPICS)}
    with pytest.raises(TwofoldError, match=f"^{tmp_path / 'd' / 'mteb' / 'nfcorpus'}: missing; --data-dir holds, "
                                           "for each MTEB task, a copy of its dataset repository \\(huggingface-cli "
                                           f"download --repo-type dataset mteb/nfcorpus --local-dir "):
        mteb_suite.resolve("NFCorpus", Settings(data_dir=tmp_path / "d"))


def test_the_layout_of_a_local_copy_decides_who_reads_it(tmp_path):
    scifact = mteb_suite.resolve("SciFact", Settings())
    csn = mteb_suite.resolve("CodeSearchNetRetrieval", Settings())
    beir = suite_data.write_beir(tmp_path / "beir")
    assert mteb_suite.layout(beir, scifact) == mteb_suite.BEIR
    repository = suite_data.beir_as_repository(beir, tmp_path / "repo")
    assert mteb_suite.layout(repository, scifact) == mteb_suite.REPOSITORY
    card = repository / "README.md"
    card.write_bytes(card.read_bytes() + "Jeu de donn\xe9es.\n".encode("latin-1"))  # a card that is not UTF-8
    assert mteb_suite.layout(repository, scifact) == mteb_suite.REPOSITORY
    (repository / "qrels" / "extra.tsv").write_text("query-id\tcorpus-id\tscore\n")  # TSV qrels: twofold reads them
    assert mteb_suite.layout(repository, scifact) == mteb_suite.BEIR
    assert mteb_suite.layout(repository, csn) == mteb_suite.REPOSITORY  # subsets: mteb's
    inferred = tmp_path / "inferred"
    inferred.mkdir()
    (inferred / "README.md").write_text("a dataset card without configs\n")
    (inferred / "data.parquet").write_text("")
    assert mteb_suite.layout(inferred, scifact) == mteb_suite.REPOSITORY
    for marker in ("corpus.jsonl", "queries.jsonl", "qrels"):
        alone = tmp_path / f"only-{marker}"
        alone.mkdir()
        (alone / marker).mkdir() if marker == "qrels" else (alone / marker).write_text("")
        assert mteb_suite.layout(alone, scifact) == mteb_suite.BEIR
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TwofoldError, match=f"^{empty}: neither a copy of SciFact's dataset repository \\(mteb/scifact: "
                                           "README.md with its configs:\\) nor a BEIR folder"):
        mteb_suite.layout(empty, scifact)


def test_a_beir_folder_for_a_task_it_cannot_hold_is_one_line(tmp_path):
    beir = suite_data.write_beir(tmp_path / "beir")
    core17 = mteb_suite.resolve("Core17InstructionRetrieval", Settings())
    with pytest.raises(TwofoldError, match=f"^{beir}: a BEIR folder, but Core17InstructionRetrieval "
                                           r"\(InstructionReranking\) reads what BEIR does not hold"):
        mteb_suite.load_beir(core17, beir)
    csn = mteb_suite.resolve("CodeSearchNetRetrieval", Settings())
    with pytest.raises(TwofoldError, match=f"^{beir}: a BEIR folder holds one set, but CodeSearchNetRetrieval has "
                                           "subsets python, javascript, go, ruby, java, php; give a copy"):
        mteb_suite.load_beir(csn, beir)
    (beir / "qrels" / "test.tsv").rename(beir / "qrels" / "dev.tsv")
    scifact = mteb_suite.resolve("SciFact", Settings())
    with pytest.raises(TwofoldError, match=f"^{beir}: no qrels/test.tsv; mteb scores SciFact on split test "
                                           r"\(query-id<TAB>corpus-id<TAB>score lines\)$"):
        mteb_suite.load_beir(scifact, beir)


def test_a_local_copy_that_does_not_load_is_one_line_and_the_hubs_are_left_to_mteb(tmp_path, monkeypatch):
    import datasets

    folder = suite_data.write_retrieval(tmp_path / "data" / "mteb" / "scifact")
    options = Settings(data_dir=tmp_path / "data")
    before = datasets.config.HF_DATASETS_CACHE
    mteb_suite.check_data(["SciFact"], options)
    assert datasets.config.HF_DATASETS_CACHE == before
    (folder / "corpus.jsonl").unlink()
    monkeypatch.setattr(mteb_suite, "_RESOLVED", {})
    with pytest.raises(TwofoldError, match=f"^{folder}: the local copy of SciFact does not load \\(\\w+: .*\\); it "
                                           r"must hold the hub repository's files \(configs and split test\)$"):
        mteb_suite.check_data(["SciFact"], options)
    assert datasets.config.HF_DATASETS_CACHE == before
    loaded = []
    monkeypatch.setattr(type(mteb_suite.resolve("NFCorpus", Settings())), "load_data",
                        lambda self, **kwargs: loaded.append(self.metadata.name))
    mteb_suite.check_data(["NFCorpus"], Settings())  # the hub's: downloaded by mteb when run, not here
    assert loaded == []


def test_every_local_copy_is_loaded_before_any_model_work_and_its_error_is_its_first_line(tmp_path, monkeypatch):
    """A task given in Python on local files is loaded by check_data, also after a hub task (which
    is skipped, not the end of the list); the loader's error is named by its class and first line."""
    folder = suite_data.write_retrieval(tmp_path / "tiny")
    task = suite_data.retrieval_task(folder)
    loaded = []
    errors = {"TinyCodeRetrieval": ValueError("\n  Config 'corpus' not found.\nAvailable: 'queries'\n")}

    def load_data(self, **kwargs):
        loaded.append(self.metadata.name)
        if self.metadata.name in errors:
            raise errors[self.metadata.name]

    monkeypatch.setattr(type(mteb_suite.resolve("NFCorpus", Settings())), "load_data", load_data)
    monkeypatch.setattr(type(task), "load_data", load_data)
    options = Settings(tasks=("NFCorpus", task))
    with pytest.raises(TwofoldError, match=f"^{folder}: the local copy of TinyCodeRetrieval does not load "
                                           r"\(ValueError: Config 'corpus' not found\.\); it must hold"):
        mteb_suite.check_data(["NFCorpus", "TinyCodeRetrieval"], options)
    assert loaded == ["TinyCodeRetrieval"]  # the hub's NFCorpus is left to mteb
    errors["TinyCodeRetrieval"] = ValueError()
    with pytest.raises(TwofoldError, match=r"does not load \(ValueError: \); it must hold"):
        mteb_suite.check_data(["NFCorpus", "TinyCodeRetrieval"], options)
    del errors["TinyCodeRetrieval"]
    mteb_suite.check_data(["NFCorpus", "TinyCodeRetrieval"], options)
    assert loaded == ["TinyCodeRetrieval"] * 3


# ----------------------------------------------------------------------------- the model mteb is given

@pytest.fixture(scope="module")
def exports(tmp_path_factory, tokenizer):
    from tests.eval.conftest import export_pair

    torch.manual_seed(5)
    return export_pair(tmp_path_factory.mktemp("mteb-models"), tokenizer)


def test_the_export_is_embedded_with_its_members_pooling_at_the_tasks_length(exports, tmp_path):
    encoder = Member(exports / "encoder", "encoder", ENCODER)
    decoder = Member(exports / "decoder", "decoder", DECODER, causal=True)
    model, made = mteb_suite.embedding_model(encoder, Settings(work=tmp_path), "SciFact")
    assert made == "export, mean pooling" and model.max_seq_length == 512
    assert model[1].pooling_mode == "mean"
    model, made = mteb_suite.embedding_model(decoder, Settings(work=tmp_path, max_length=64), "SciFact")
    assert made == "export, last-token pooling" and model.max_seq_length == 64
    assert model[1].pooling_mode == "lasttoken"
    model, _ = mteb_suite.embedding_model(encoder, Settings(work=tmp_path, max_length=4096), "SciFact")
    assert model.max_seq_length == 1024  # never past the model's context
    model, _ = mteb_suite.embedding_model(encoder, Settings(work=tmp_path, max_length=64), "MultiLongDocRetrieval")
    assert model.max_seq_length == 1024  # MLDR: the full context
    model.save(str(tmp_path / "st"))
    given = Member(tmp_path / "st", "st", EMBEDDER)
    model, made = mteb_suite.embedding_model(given, Settings(work=tmp_path), "SciFact")
    assert made == "sentence-transformers directory" and model.max_seq_length == 512


def test_each_model_goes_where_sentence_transformers_places_models_on_the_machine(exports, tmp_path, monkeypatch):
    """The export, the fine-tune and a given Sentence Transformers directory alike go to the device
    Sentence Transformers picks (an accelerator where there is one). This machine has none: 'meta'
    stands in for it as the device picked."""
    from sentence_transformers import SentenceTransformer

    encoder = Member(exports / "encoder", "encoder", ENCODER)
    model, _ = mteb_suite.embedding_model(encoder, Settings(work=tmp_path), "SciFact")
    model.save(str(tmp_path / "st"))
    model.save(str(tmp_path / "work" / "encoder" / "embed"))
    (tmp_path / "work" / "encoder" / "embed" / RECORD).write_text("{}")  # a fine-tune made earlier
    monkeypatch.setattr(SentenceTransformer, "get_device_name", lambda self: "meta")
    given = Member(tmp_path / "st", "st", EMBEDDER)
    for member, options in ((encoder, Settings(work=tmp_path)), (given, Settings(work=tmp_path)),
                            (encoder, Settings(work=tmp_path / "work", finetune_data="pairs.jsonl"))):
        model, made = mteb_suite.embedding_model(member, options, "SciFact")
        assert model.device.type == "meta", made


def test_with_fine_tune_data_the_embed_fine_tune_is_evaluated_and_made_once(exports, tmp_path, monkeypatch):
    made, shown = [], []
    stdout = io.BytesIO()  # stdout as a pipe to a log file: block-buffered
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(stdout, encoding="utf-8"))

    def finetune(task, base, data, out, recipe, name, say):
        made.append((task, base, data, out, recipe.max_length, name))
        say("epoch 1: loss 0.5\n")
        shown.append(stdout.getvalue())  # the progress line is out while the fine-tune still runs
        model, _ = mteb_suite.embedding_model(Member(exports / "encoder", "encoder", ENCODER), Settings(), "SciFact")
        model.save(str(out))
        (out / RECORD).write_text("{}")

    monkeypatch.setattr(mteb_suite, "finetune", finetune)
    member = Member(exports / "encoder", "encoder", ENCODER, checkpoint="step2")
    options = Settings(work=tmp_path / "work", finetune_data="pairs.jsonl", max_length=128)
    (tmp_path / "work" / "encoder_step2" / "mteb-predictions").mkdir(parents=True)  # an earlier run's
    model, said = mteb_suite.embedding_model(member, options, "SciFact")
    assert shown == [b"  embed epoch 1: loss 0.5\n"]
    out = tmp_path / "work" / "encoder_step2" / "embed"
    assert made == [("embed", str(exports / "encoder"), "pairs.jsonl", out, 128, "encoder")]
    assert said == f"embed fine-tune on pairs.jsonl ({out})" and model.max_seq_length == 128
    mteb_suite.embedding_model(member, options, "NFCorpus")
    assert len(made) == 1  # the fine-tune is kept for the member's other tasks
    fresh = Settings(work=tmp_path / "new" / "work", finetune_data="pairs.jsonl")  # its folders made on the way
    mteb_suite.embedding_model(member, fresh, "SciFact")
    assert made[-1][3] == tmp_path / "new" / "work" / "encoder_step2" / "embed"


# ----------------------------------------------------------------------------- scores

def _task(name: str, main: str, splits=("test",), kind="Retrieval"):
    return SimpleNamespace(eval_splits=list(splits), metadata=SimpleNamespace(name=name, main_score=main, type=kind))


def test_the_main_score_and_ndcg_mrr_at_10_are_averaged_over_subsets_and_splits():
    assert mteb_suite.metric_name("ndcg_at_10") == "ndcg@10" and mteb_suite.metric_name("p-MRR") == "p-mrr"
    rows = {"test": [{"ndcg_at_10": 0.2, "mrr_at_10": 0.4, "map_at_10": 0.9, "main_score": 0.2},
                     {"ndcg_at_10": 0.4, "mrr_at_10": 0.8, "map_at_10": 0.9, "main_score": 0.4}],
            "dev": [{"ndcg_at_10": 0.9, "mrr_at_10": 0.9}]}
    result = SimpleNamespace(scores=rows)
    assert mteb_suite.scores_of(result, _task("T", "ndcg_at_10")) == (
        pytest.approx({"ndcg@10": 0.3, "mrr@10": 0.6}), 2)
    partial = SimpleNamespace(scores={"test": [{"map_at_10": 0.5, "ndcg_at_10": 0.1}, {"map_at_10": 0.7}]})
    assert mteb_suite.scores_of(partial, _task("T", "map_at_10")) == (pytest.approx({"map@10": 0.6}), 2)
    both = SimpleNamespace(scores={"test": [{"map_at_10": 0.5, "ndcg_at_10": 0.1, "mrr_at_10": 0.3},
                                            {"map_at_10": 0.7, "ndcg_at_10": 0.3, "mrr_at_10": 0.5}],
                                   "dev": [{"map_at_10": 0.0, "ndcg_at_10": 0.0, "mrr_at_10": 0.0}]})
    assert mteb_suite.scores_of(both, _task("T", "map_at_10", splits=("test", "dev"))) == (
        pytest.approx({"map@10": 0.4, "ndcg@10": 0.4 / 3, "mrr@10": 0.8 / 3}), 3)
    with pytest.raises(TwofoldError, match="^mteb returned no scores for T$"):
        mteb_suite.scores_of(SimpleNamespace(scores={"dev": rows["dev"]}), _task("T", "ndcg_at_10"))


def test_followir_reports_p_mrr_and_the_ndcg_at_5_under_each_instruction():
    rows = [{"p-MRR": 0.1, "og": {"ndcg_at_5": 0.5, "ndcg_at_10": 0.9}, "changed": {"ndcg_at_5": 0.3}},
            {"p-MRR": -0.3, "og": {"ndcg_at_5": 0.7}, "changed": {"ndcg_at_5": 0.1}}]
    metrics, subsets = mteb_suite.scores_of(SimpleNamespace(scores={"test": rows}),
                                            _task("Core17InstructionRetrieval", "p-MRR"))
    assert metrics == pytest.approx({"p-mrr": -0.1, "ndcg@5_og": 0.6, "ndcg@5_changed": 0.2}) and subsets == 2
    rows[1]["changed"] = {"ndcg_at_10": 0.1}  # a row without it: not reported
    assert set(mteb_suite.scores_of(SimpleNamespace(scores={"test": rows}), _task("C", "p-MRR"))[0]) == \
        {"p-mrr", "ndcg@5_og"}


@pytest.fixture
def evaluated(monkeypatch, exports):
    """`mteb.evaluate` replaced by a recorder returning one task result as mteb shapes it."""
    import mteb

    calls = []

    def evaluate(model, tasks, **kwargs):
        calls.append((model, tasks, kwargs))
        rows = {"test": [{"ndcg_at_10": 0.25, "mrr_at_10": 0.5, "main_score": 0.25}]}
        return SimpleNamespace(task_results=[SimpleNamespace(scores=rows, evaluation_time=1.234)])

    monkeypatch.setattr(mteb, "evaluate", evaluate)
    return calls


def test_a_task_is_evaluated_with_the_runs_settings_and_recorded_with_its_provenance(tmp_path, exports, evaluated):
    folder = suite_data.write_beir(tmp_path / "data" / "SciFact")
    member = Member(exports / "decoder", "decoder", DECODER, checkpoint="step1", causal=True)
    options = Settings(data_dir=tmp_path / "data", work=tmp_path / "work", batch_size=6, seed=3)
    [r] = mteb_suite.run_task("mteb-retrieval")(member, "SciFact", options)
    [(model, [task], kwargs)] = evaluated
    predictions = tmp_path / "work" / "decoder_step1" / "mteb-predictions"
    assert task.metadata.name == "SciFact" and task.data_loaded
    assert kwargs == {"cache": None, "prediction_folder": predictions, "encode_kwargs": {"batch_size": 6},
                      "show_progress_bar": True}
    assert model.max_seq_length == 512 and model[1].pooling_mode == "lasttoken"
    assert (r.task, r.suite, r.metrics, r.n, r.seed, r.library) == ("mteb-retrieval/SciFact", "mteb-retrieval",
                                                                     {"ndcg@10": 0.25, "mrr@10": 0.5}, 8, 3, "mteb")
    assert r.data == {"path": str(folder.resolve()), "sha256": {name: sha256_file(folder / name) for name in (
        "corpus.jsonl", "qrels/test.tsv", "queries.jsonl")}}
    assert r.details == {"model": "export, last-token pooling", "type": "Retrieval", "main_score": "ndcg@10",
                         "subsets": 1, "max_seq_length": 512, "seconds": 1.23,
                         "predictions": str(predictions / "SciFact_predictions.json")}
    assert json.dumps(r.to_dict())


def test_a_hub_task_is_recorded_by_its_dataset_and_revision(exports, evaluated, tmp_path, monkeypatch):
    task = mteb_suite.resolve("NFCorpus", Settings())
    monkeypatch.setattr(task, "dataset", {"default": {"test": {"queries": [1, 2, 3]}, "dev": {"queries": [4]}}},
                        raising=False)
    [r] = mteb_suite.run_task("mteb")(Member(exports / "encoder", "encoder", ENCODER), "NFCorpus",
                                      Settings(work=tmp_path))
    assert r.data == {"dataset": "mteb/nfcorpus", "revision": task.metadata.dataset["revision"]}
    assert r.n == 4 and r.details["seconds"] == 1.23
    monkeypatch.setattr(task, "dataset", None, raising=False)
    assert mteb_suite._queries(task) == 0


def test_an_mteb_too_old_or_missing_is_one_line(monkeypatch):
    from twofold.eval.suites import base

    versions = {"mteb": "1.38.0"}
    monkeypatch.setattr(base, "version_of", lambda name: versions.get(name, ""))
    with pytest.raises(TwofoldError, match=r"^--suite mteb needs mteb >= 2\.26, found 1\.38\.0; pip install -U "
                                           r"'twofold\[suites\]'$"):
        mteb_suite.task_lister("mteb")(Settings(tasks=("SciFact",)))
    versions.clear()
    with pytest.raises(TwofoldError, match=r"^--suite mteb needs mteb >= 2\.26, which is not installed; pip install "
                                           r"'twofold\[suites\]'$"):
        mteb_suite.resolve("SciFact", Settings())


def test_mldr_is_evaluated_at_the_models_full_context_and_a_missing_time_is_zero(tmp_path, exports, evaluated):
    import mteb

    suite_data.write_beir(tmp_path / "data" / "MultiLongDocRetrieval")
    suite_data.write_beir(tmp_path / "data" / "SciFact")
    member = Member(exports / "encoder", "encoder", ENCODER)
    options = Settings(data_dir=tmp_path / "data", work=tmp_path / "work", max_length=64)
    [r] = mteb_suite.run_task("mldr")(member, "MultiLongDocRetrieval", options)
    assert r.details["max_seq_length"] == 1024 and evaluated[0][0].max_seq_length == 1024
    [short] = mteb_suite.run_task("mteb")(member, "SciFact", options)
    assert short.details["max_seq_length"] == 64
    result = SimpleNamespace(scores={"test": [{"ndcg_at_10": 0.5}]}, evaluation_time=None)
    mteb.evaluate = lambda model, tasks, **kwargs: SimpleNamespace(task_results=[result])
    [untimed] = mteb_suite.run_task("mteb")(member, "SciFact", options)
    assert untimed.details["seconds"] == 0.0
