"""The suites' own bookkeeping, fast: which suite gets which `--tasks`, what `--suite ettin` expands
into, which member each suite takes, how a run records results, failures and seconds, the family
scores of the Ettin figure (each rule on a fixture where it and its neighbours give different
answers), and the provenance and result records every suite shares. The suites' libraries are
replaced by scripted suites where only twofold's loop is under test; the suites run for real in
tests/eval/test_suites.py."""

from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from twofold.errors import TwofoldError
from twofold.eval.member import CLASSIFIER, DECODER, EMBEDDER, ENCODER, Member
from twofold.eval.settings import Settings
from twofold.eval.suites import base, runner
from twofold.eval.suites.base import Suite
from twofold.files import sha256_file
from twofold.results import Result, load_results


def quiet(_line: str) -> None:
    pass


ENC = Member(Path("exports/encoder"), "encoder", ENCODER)
DEC = Member(Path("exports/decoder"), "decoder", DECODER, causal=True)


class Scripted:
    """A suite's functions with the library's work replaced: tasks as asked (or `default`), each
    run giving `metrics[task]`, `failing` tasks raising; every call recorded."""

    def __init__(self, name, default=("a", "b"), metrics=None, failing=(), kinds=(ENCODER, DECODER)):
        self.name, self.default, self.metrics, self.failing = name, default, metrics or {}, failing
        self.checked, self.ran = [], []
        self.suite = Suite(name, "scripted", kinds, self.tasks, self.run, "numpy", self.check_data)

    def tasks(self, options: Settings) -> list[str]:
        return list(options.tasks) or list(self.default)

    def check_data(self, names, options) -> None:
        self.checked.append((list(names), options))

    def run(self, member: Member, task: str, options: Settings) -> list[Result]:
        self.ran.append((member.label, task, options))
        if task in self.failing:
            raise self.failing[task]
        if task == "a":
            time.sleep(0.03)
        return [base.result(member, self.name, task, self.metrics.get(task, {"score": 0.5}), 4, "numpy", {},
                            seed=options.seed, **({"seconds": 99.0} if task == "timed" else {}))]


@pytest.fixture
def scripted(monkeypatch):
    """Every suite of the registry scripted (the registry itself as it is: names, kinds, instead)."""
    made = {}
    for name, suite in runner.SUITES.items():
        made[name] = Scripted(name, kinds=suite.kinds)
        monkeypatch.setitem(runner.SUITES, name, made[name].suite)
    return made


# ----------------------------------------------------------------------------- names and plans

def test_suite_names_are_checked_and_kept_once_in_order():
    assert runner.suite_names("lm-eval, glue,lm-eval") == ["lm-eval", "glue"]
    assert runner.suite_names(["rank1", " mteb "]) == ["rank1", "mteb"]
    assert runner.suite_names("ettin") == ["ettin"]
    with pytest.raises(TwofoldError, match=r"^unknown suite 'gleu'; valid suites: glue, mteb, mteb-retrieval, csn, "
                                           r"mldr, followir, lm-eval, rank1, ettin$"):
        runner.suite_names("glue,gleu")
    with pytest.raises(TwofoldError, match="^unknown suite ' , '; valid"):
        runner.suite_names(" , ")


def test_each_suite_gets_the_plain_tasks_and_its_own_qualified_ones_and_its_data_checked(scripted):
    options = Settings(tasks=("cola", "glue:sst2", "rank1:tiny", "rank1:x:y"), seed=3)
    steps = runner.plan(["glue", "rank1"], options)
    assert [(s.suite.name, s.tasks, s.ettin) for s in steps] == [("glue", ["cola", "sst2"], False),
                                                                 ("rank1", ["cola", "tiny", "x:y"], False)]
    assert steps[0].options == replace(options, tasks=("cola", "sst2"))
    assert scripted["glue"].checked == [(["cola", "sst2"], steps[0].options)]
    assert scripted["rank1"].checked == [(["cola", "tiny", "x:y"], steps[1].options)]
    assert scripted["mteb"].checked == []
    with pytest.raises(TwofoldError, match=r"^--tasks gluee:…: no suite 'gluee'; valid suites: glue, mteb"):
        runner.plan(["glue"], Settings(tasks=("rank1:a", "gluee:cola", "zz:b")))
    idle = r"^--tasks lm-eval:…: --suite lm-eval is not asked for \(--suite glue,rank1\); add it to --suite or drop"
    with pytest.raises(TwofoldError, match=idle):
        runner.plan(["glue", "rank1"], Settings(tasks=("rank1:a", "mteb:b", "mteb:c", "lm-eval:d")))


def test_ettin_expands_into_the_suites_its_tasks_name_with_the_embed_fine_tune_for_retrieval(scripted):
    options = Settings(tasks=("lm-eval", "glue", "mldr", "glue:cola", "lm-eval:piqa", "lm-eval:sciq:2"))
    steps = runner.plan(["ettin"], options)
    assert [(s.suite.name, s.tasks, s.ettin) for s in steps] == [("lm-eval", ["piqa", "sciq:2"], True),
                                                                 ("glue", ["cola"], True), ("mldr", ["a", "b"], True)]
    assert [s.options.finetune_data for s in steps] == [None, None, runner.ETTIN_EMBED_DATA]
    assert runner.ETTIN_EMBED_DATA == "hf:sentence-transformers/msmarco-bm25:triplet"
    given = runner.plan(["ettin"], Settings(finetune_data="pairs.jsonl"))
    assert [(s.suite.name, s.options.finetune_data, s.options.tasks) for s in given] == [
        ("glue", None, ()), ("mteb-retrieval", "pairs.jsonl", ()), ("csn", "pairs.jsonl", ()),
        ("mldr", "pairs.jsonl", ()), ("lm-eval", None, ())]
    assert all(s.ettin for s in given) and all(
        (s.tasks, s.options) in scripted[s.suite.name].checked for s in given)
    both = runner.plan(["glue", "ettin"], Settings(tasks=("glue", "glue:cola")))
    assert [(s.suite.name, s.tasks, s.ettin) for s in both] == [("glue", ["glue", "cola"], False),
                                                                ("glue", ["cola"], True)]
    with pytest.raises(TwofoldError, match="--suite ettin: unknown task 'rank1'; valid tasks: glue, mteb-retrieval"):
        runner.plan(["ettin"], Settings(tasks=("rank1",)))


# ----------------------------------------------------------------------------- which member takes which suite

def test_a_model_no_suite_asked_for_takes_is_one_line_naming_the_suite_that_would():
    steps = [runner.Step(runner.SUITES[name], ["t"], Settings()) for name in ("glue", "rank1")]
    for member, words in ((ENC, "an encoder; --suite rank1 cannot evaluate it (it takes decoder); use --suite mteb "
                                "(retrieval) or lm-eval; rank1 needs a decoder"),
                          (Member(Path("st"), "st", EMBEDDER), "an embedder; --suite glue cannot evaluate it (it "
                                                                "takes encoder, decoder); use --suite mteb"),
                          (Member(Path("clf"), "clf", CLASSIFIER), "a classifier; --suite glue cannot evaluate it "
                                                                   "(it takes encoder, decoder); use --suite none")):
        with pytest.raises(TwofoldError, match="^" + str(member.path).replace(".", r"\.") + ": " + words.replace(
                "(", r"\(").replace(")", r"\)")):
            runner.check_kinds([member], steps, say=quiet)
    said = []
    taken = runner.check_kinds([ENC, DEC], steps, say=said.append)
    assert [s.suite.name for s in taken["encoder"]] == ["glue"] and [s.suite.name for s in taken["decoder"]] == \
        ["glue", "rank1"]
    assert said == ["encoder: skipping --suite rank1 (an encoder; it takes decoder)"]
    only_rank1 = steps[1:]
    said.clear()
    assert [s.suite.name for s in runner.check_kinds([ENC, DEC], only_rank1, say=said.append)["decoder"]] == ["rank1"]
    assert said == ["encoder: skipping --suite rank1 (an encoder; it takes decoder)"]
    with pytest.raises(TwofoldError, match="use --suite mteb"):  # no model of the folder fits
        runner.check_kinds([ENC, replace(ENC, name="other")], only_rank1, say=quiet)
    glue = runner.Step(runner.SUITES["mteb"], ["t"], Settings())
    with pytest.raises(TwofoldError, match="a classifier; --suite mteb cannot evaluate it .* use --suite glue "):
        runner.check_kinds([Member(Path("clf"), "clf", CLASSIFIER)], [glue], say=quiet)
    assert runner.check_kinds([Member(Path("e"), "e", "unusual")], [], say=quiet) == {"e": []}
    with pytest.raises(TwofoldError, match=r"^e: an unusual; --suite glue cannot evaluate it \(it takes encoder, "
                                           r"decoder\); use --suite another suite$"):
        runner.check_kinds([Member(Path("e"), "e", "unusual")], steps[:1], say=quiet)
    said.clear()
    runner.check_kinds([Member(Path("st"), "st", EMBEDDER), DEC], steps, say=said.append)
    assert said == ["st: skipping --suite glue (an embedder; it takes encoder, decoder)",
                    "st: skipping --suite rank1 (an embedder; it takes decoder)"]


def test_every_suite_takes_the_kinds_it_can_evaluate_and_names_the_library_that_does_the_work():
    kinds = {name: suite.kinds for name, suite in runner.SUITES.items()}
    retrieval = (ENCODER, DECODER, EMBEDDER)
    assert kinds == {"glue": (ENCODER, DECODER), "mteb": retrieval, "mteb-retrieval": retrieval, "csn": retrieval,
                     "mldr": retrieval, "followir": retrieval, "lm-eval": (ENCODER, DECODER), "rank1": (DECODER,)}
    assert {name: suite.library for name, suite in runner.SUITES.items()} == {
        "glue": "transformers", "mteb": "mteb", "mteb-retrieval": "mteb", "csn": "mteb", "mldr": "mteb",
        "followir": "mteb", "lm-eval": "lm-eval", "rank1": "transformers"}
    assert all(suite.check_data is not None and suite.name == name for name, suite in runner.SUITES.items())
    assert runner.ETTIN_SUITES == ("glue", "mteb-retrieval", "csn", "mldr", "lm-eval") == tuple(runner.ETTIN_FAMILIES)


def test_a_suite_whose_library_is_missing_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "twofold.eval.suites.lmeval", None)  # import fails as if lm-eval were absent
    with pytest.raises(TwofoldError, match=r"^this suite needs lm-eval \(twofold\.eval\.suites\.lmeval\); "
                                           r"pip install 'twofold\[lmeval\]'$"):
        runner.SUITES["lm-eval"].tasks(Settings())
    monkeypatch.setitem(sys.modules, "twofold.eval.suites.rank1", None)
    with pytest.raises(TwofoldError, match=r"needs bm25s .*'twofold\[suites\]'"):
        runner.SUITES["rank1"].run(DEC, "t", Settings())
    monkeypatch.setitem(sys.modules, "twofold.eval.suites.mteb_suite", None)
    for name in ("mteb", "csn", "followir"):
        for call in (lambda s: s.tasks(Settings()), lambda s: s.run(ENC, "t", Settings()),
                     lambda s: s.check_data(["t"], Settings())):
            with pytest.raises(TwofoldError, match=r"needs mteb .*'twofold\[suites\]'"):
                call(runner.SUITES[name])
    monkeypatch.setitem(sys.modules, "twofold.eval.suites.glue", None)
    with pytest.raises(TwofoldError, match=r"needs transformers .*'twofold\[finetune\]'"):
        runner.SUITES["glue"].check_data(["cola"], Settings())


def test_a_lazy_function_imports_its_suite_module_when_called_and_passes_everything_on(monkeypatch):
    from twofold.eval.suites import rank1

    calls = []
    monkeypatch.setattr(rank1, "tasks", lambda *args, **kwargs: calls.append((args, kwargs)) or ["t"])
    lazy = runner._lazy("rank1", "tasks", "bm25s", "suites")
    assert lazy(1, 2, key=3) == ["t"] and calls == [((1, 2), {"key": 3})]
    monkeypatch.setitem(sys.modules, "twofold.eval.suites.rank1", None)
    with pytest.raises(TwofoldError, match=r"^this suite needs bm25s \(twofold\.eval\.suites\.rank1\); "
                                           r"pip install 'twofold\[suites\]'$"):
        lazy()
    lister = runner._lazy("mteb_suite", "task_lister", "mteb", "suites")
    monkeypatch.setitem(sys.modules, "twofold.eval.suites.mteb_suite", None)
    with pytest.raises(TwofoldError, match=r"^this suite needs mteb .*'twofold\[suites\]'$"):
        lister("csn")


@pytest.fixture
def mteb_calls(monkeypatch) -> list:
    """The calls the mteb suite module gets, recorded instead of run."""
    from twofold.eval.suites import mteb_suite

    calls = []
    monkeypatch.setattr(mteb_suite, "task_lister", lambda preset: lambda options: calls.append(("tasks", preset,
                                                                                                options)) or [preset])
    monkeypatch.setattr(mteb_suite, "run_task", lambda suite: lambda member, task, options: calls.append(
        ("run", suite, member.name, task, options)) or [])
    monkeypatch.setattr(mteb_suite, "check_data", lambda names, options: calls.append(("check", names, options)))
    return calls


def test_an_mteb_preset_is_a_suite_of_its_name_for_every_retrieval_kind(monkeypatch, mteb_calls):
    calls = mteb_calls
    suite = runner._mteb_suite("csn", "CodeSearchNet")
    assert (suite.name, suite.help, suite.kinds, suite.library) == ("csn", "CodeSearchNet",
                                                                    (ENCODER, DECODER, EMBEDDER), "mteb")
    assert suite.instead == {CLASSIFIER: "glue (classifiers are fine-tuned there)"}
    options = Settings(tasks=("x",))
    assert suite.tasks(options) == ["csn"]
    assert suite.run(ENC, "t", options) == []
    suite.check_data(["t"], options)
    assert calls == [("tasks", "csn", options), ("run", "csn", "encoder", "t", options), ("check", ["t"], options)]
    monkeypatch.setitem(sys.modules, "twofold.eval.suites.mteb_suite", None)  # mteb not installed
    for call in (lambda: suite.tasks(options), lambda: suite.run(ENC, "t", options),
                 lambda: suite.check_data(["t"], options)):
        with pytest.raises(TwofoldError, match=r"^this suite needs mteb \(twofold\.eval\.suites\.mteb_suite\); "
                                               r"pip install 'twofold\[suites\]'$"):
            call()


def test_the_lazy_suites_call_their_modules_functions_with_the_suites_name(mteb_calls):
    calls = mteb_calls
    options = Settings(tasks=("x",))
    assert runner.SUITES["csn"].tasks(options) == ["csn"]
    assert runner.SUITES["mldr"].run(ENC, "t", options) == []
    runner.SUITES["followir"].check_data(["t"], options)
    assert calls == [("tasks", "csn", options), ("run", "mldr", "encoder", "t", options), ("check", ["t"], options)]


# ----------------------------------------------------------------------------- running a plan

def test_a_run_records_each_task_its_seconds_and_a_failure_in_one_line_and_goes_on(tmp_path, scripted):
    glue = scripted["glue"]
    glue.failing = {"b": RuntimeError("the library broke\nsecond line")}
    glue.metrics = {"a": {"mcc": 0.25, "score": 25.0}, "timed": {"mcc": 0.75, "score": 75.0}}
    steps = runner.plan(["glue"], Settings(tasks=("a", "b", "timed"), seed=5))
    said = []
    results = runner.run_plan([DEC], steps, tmp_path, say=said.append)
    assert [(r.task, r.variant, r.error or "", r.metrics) for r in results] == [
        ("glue/a", "", "", {"mcc": 0.25, "score": 25.0}), ("glue/b", "error", "RuntimeError: the library broke", {}),
        ("glue/timed", "", "", {"mcc": 0.75, "score": 75.0}), ("glue/average", "", "", {"score": 50.0})]
    assert said == ["decoder: glue a", "decoder: glue b", "  failed: RuntimeError: the library broke",
                    "decoder: glue timed"]
    seconds = results[0].details["seconds"]
    assert 0.03 <= seconds < 2 and seconds == round(seconds, 2)
    assert results[2].details["seconds"] == 99.0  # the suite's own time kept
    assert results[1].seed == 5 and results[1].library == "numpy" and results[1].n == 0
    assert sorted((r.task, r.variant) for r in load_results(tmp_path)) == sorted((r.task, r.variant) for r in results)
    assert [options.work for _, _, options in glue.ran] == [tmp_path / "work"] * 3
    glue.failing = {}  # the task works now: its error record goes, the others stay
    again = runner.plan(["glue"], Settings(tasks=("b",), work=tmp_path / "elsewhere"))
    runner.run_plan([DEC], again, tmp_path, say=quiet)
    assert not any(r.error for r in load_results(tmp_path)) and glue.ran[-1][2].work == tmp_path / "elsewhere"
    assert {r.task for r in load_results(tmp_path)} == {"glue/a", "glue/b", "glue/timed", "glue/average"}


def test_an_interrupt_is_not_recorded_as_a_failure(tmp_path, scripted):
    scripted["rank1"].failing = {"a": KeyboardInterrupt()}
    with pytest.raises(KeyboardInterrupt):
        runner.run_plan([DEC], runner.plan(["rank1"], Settings(tasks=("a",))), tmp_path, say=quiet)
    scripted["rank1"].failing = {"a": SystemExit(3)}
    with pytest.raises(SystemExit):
        runner.run_plan([DEC], runner.plan(["rank1"], Settings(tasks=("a",))), tmp_path, say=quiet)
    assert not list(tmp_path.glob("*.json"))


def test_each_member_is_prepared_for_its_own_steps_and_a_member_with_none_is_skipped(tmp_path, scripted):
    prepared = []

    @contextmanager
    def prepare(member):
        prepared.append(member.label)
        yield replace(member, path=Path("ready") / member.name)

    steps = runner.plan(["rank1", "lm-eval"], Settings(tasks=("a",)))
    clf = Member(Path("clf"), "clf", CLASSIFIER)
    said = []
    results = runner.run_plan([ENC, clf, DEC], steps, tmp_path, say=said.append, prepare=prepare)
    assert prepared == ["encoder", "decoder"]
    assert said[:3] == ["encoder: skipping --suite rank1 (an encoder; it takes decoder)",
                        "clf: skipping --suite rank1 (a classifier; it takes decoder)",
                        "clf: skipping --suite lm-eval (a classifier; it takes encoder, decoder)"]
    assert [(r.model, r.task) for r in results] == [("encoder", "lm-eval/a"), ("decoder", "rank1/a"),
                                                    ("decoder", "lm-eval/a")]
    assert [(label, task) for label, task, _ in scripted["lm-eval"].ran] == [("encoder", "a"), ("decoder", "a")]
    assert not any(r.suite == "ettin" for r in results)


def test_a_named_task_object_is_run_under_its_metadata_name(tmp_path, scripted):
    class Task:
        class metadata:
            name = "TinyRetrieval"

    scripted["mteb"].default = (Task(),)
    results = runner.run_plan([ENC], runner.plan(["mteb"], Settings()), tmp_path, say=quiet)
    assert [r.task for r in results] == ["mteb/TinyRetrieval"]


# ----------------------------------------------------------------------------- the Ettin figure's families

def _scored(task: str, metrics: dict, model: str = "encoder", checkpoint: str = "", seed: int = 0) -> Result:
    suite = task.split("/")[0]
    return Result(task=task, model=model, metrics=metrics, seed=seed, n=1, suite=suite, checkpoint=checkpoint)


def test_each_family_is_the_mean_of_its_tasks_headline_score_of_this_member_only():
    member = Member(Path("e"), "encoder", ENCODER, checkpoint="step2", tokens=20)
    mine = dict(checkpoint="step2")
    results = [
        _scored("glue/cola", {"mcc": 0.1, "score": 10.0}, **mine),
        _scored("glue/average", {"score": 61.0}, seed=4, **mine),
        _scored("mteb-retrieval/SciFact", {"ndcg@10": 0.5, "mrr@10": 0.9, "map@100": 0.1}, **mine),
        _scored("mteb-retrieval/NFCorpus", {"score": 0.3, "ndcg@10": 0.8}, **mine),  # score first
        _scored("mteb-retrieval/Other", {}, **mine),  # failed: no metrics
        _scored("csn/CodeSearchNetRetrieval", {"ndcg@10": 0.7}, model="decoder", **mine),
        _scored("csn/CodeSearchNetRetrieval", {"ndcg@10": 0.2}),  # another checkpoint
        _scored("lm-eval/piqa", {"acc": 0.6, "acc_norm": 0.64}, **mine),
        _scored("lm-eval/sciq", {"acc": 0.9, "exact_match": 0.1}, **mine),
        _scored("lm-eval/triviaqa", {"exact_match": 0.3, "p-mrr": 0.5}, **mine),
        _scored("lm-eval/gsm/cot", {"exact_match[strict-match]": 0.2, "bleu": 0.99}, **mine),
        _scored("lm-eval/lambada", {"perplexity": 3.0}, **mine),  # no headline score: left out
        _scored("followir/Core17InstructionRetrieval", {"p-mrr": 0.05}, **mine),  # not a family of the figure
    ]
    families = {r.task: r for r in runner.families(member, results)}
    assert set(families) == {"ettin/glue", "ettin/mteb-retrieval", "ettin/lm-eval"}
    glue, retrieval, lm = families["ettin/glue"], families["ettin/mteb-retrieval"], families["ettin/lm-eval"]
    assert glue.metrics == {"score": 61.0} and glue.n == 1 and glue.seed == 4
    assert retrieval.metrics["score"] == pytest.approx((0.5 + 0.3) / 2) and retrieval.n == 2
    assert retrieval.details["tasks"] == {"SciFact": 0.5, "NFCorpus": 0.3}
    assert lm.metrics["score"] == pytest.approx(np.mean([0.64, 0.9, 0.3, 0.2])) and lm.n == 4
    assert list(lm.details["tasks"]) == ["piqa", "sciq", "triviaqa", "gsm/cot"]
    assert lm.details["family"] == "generative (lm-eval)" and retrieval.details["family"] == "retrieval (MTEB v2)"
    assert all(r.suite == "ettin" and r.model == "encoder" and r.checkpoint == "step2" and r.tokens == 20
               and r.library == "twofold" for r in families.values())
    assert runner.headline(_scored("x/y", {"p-mrr": 0.4})) == 0.4
    assert runner.headline(_scored("x/y", {"bleu": 0.4})) is None
    assert runner.headline(_scored("x/y", {"bleu": 0.4, "acc[flex]": 0.2, "acc_norm[flex]": 0.3})) == 0.2
    decoder = Member(Path("d"), "decoder", DECODER, checkpoint="step2", causal=True)
    [csn] = runner.families(decoder, results)
    assert csn.task == "ettin/csn" and csn.metrics == {"score": 0.7} and csn.kind == "decoder"


def test_a_plan_with_ettin_steps_ends_each_member_with_its_family_scores(tmp_path, scripted):
    scripted["glue"].metrics = {"cola": {"mcc": 0.5, "score": 50.0}}
    scripted["csn"].metrics = {"a": {"ndcg@10": 0.25}, "b": {"ndcg@10": 0.75}}
    steps = runner.plan(["ettin"], Settings(tasks=("glue", "csn", "glue:cola")))
    results = runner.run_plan([ENC, DEC], steps, tmp_path, say=quiet)
    for member in ("encoder", "decoder"):
        families = {r.task: r.metrics["score"] for r in results if r.model == member and r.suite == "ettin"}
        assert families == {"ettin/glue": 50.0, "ettin/csn": 0.5}
    assert [r.task for r in results if r.model == "encoder"] == ["glue/cola", "glue/average", "csn/a", "csn/b",
                                                                 "ettin/glue", "ettin/csn"]
    assert {r.task for r in load_results(tmp_path)} >= {"ettin/glue", "ettin/csn"}


# ----------------------------------------------------------------------------- what every suite shares

def test_a_library_version_is_read_and_checked_as_a_version_not_as_text(monkeypatch):
    assert base.version_of("") == "" and base.version_of("no-such-distribution-here") == ""
    assert base.version_of("numpy") == np.__version__
    assert base.require("numpy", "1.0", "--suite x", "suites") == np.__version__
    versions = {"lib": "2.9"}
    monkeypatch.setattr(base, "version_of", lambda name: versions.get(name, ""))
    with pytest.raises(TwofoldError, match=r"^--suite x needs lib >= 2\.26, found 2\.9; pip install -U "
                                           r"'twofold\[suites\]'$"):
        base.require("lib", "2.26", "--suite x", "suites")
    assert base.require("lib", "2.9", "--suite x", "suites") == "2.9"
    with pytest.raises(TwofoldError, match=r"^--suite y needs other >= 1, which is not installed; pip install "
                                           r"'twofold\[extra\]'$"):
        base.require("other", "1", "--suite y", "extra")


def test_local_provenance_is_the_sha256_of_every_file_but_hidden_ones(tmp_path):
    data = tmp_path / "data" / "set"
    for name in ("corpus.jsonl", "qrels/test.tsv", ".cache/x", "qrels/.lock", "a/b/c/d.txt"):
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        (data / name).write_text(name)
    found = base.local_files(data)
    assert found["path"] == str(data.resolve())
    assert found["sha256"] == {name: sha256_file(data / name) for name in ("a/b/c/d.txt", "corpus.jsonl",
                                                                           "qrels/test.tsv")}
    assert list(found["sha256"]) == sorted(found["sha256"])
    one = base.local_files(data / "corpus.jsonl")
    assert one == {"path": str((data / "corpus.jsonl").resolve()),
                   "sha256": {"corpus.jsonl": sha256_file(data / "corpus.jsonl")}}
    # huggingface-cli download --local-dir keeps its metadata under .cache/huggingface/download/ inside the copy;
    # a copy that itself lives under a hidden folder keeps all its files
    hidden = tmp_path / ".data" / "set"
    for name in ("corpus.jsonl", ".cache/huggingface/download/qrels/test.tsv.metadata"):
        (hidden / name).parent.mkdir(parents=True, exist_ok=True)
        (hidden / name).write_text(name)
    assert list(base.local_files(hidden)["sha256"]) == ["corpus.jsonl"]
    assert base.hub_data("mteb/scifact", None) == {"dataset": "mteb/scifact", "revision": "unpinned (latest)"}
    assert base.hub_data("nyu-mll/glue", "abc", "cola") == {"dataset": "nyu-mll/glue", "revision": "abc",
                                                           "config": "cola"}


def test_a_suites_result_and_failure_carry_the_member_the_suite_and_the_library():
    member = Member(Path("x"), "decoder", DECODER, parameters=123, checkpoint="step1", tokens=9, causal=True)
    r = base.result(member, "lm-eval", "piqa", {"acc": np.float32(0.5), "n": 3}, 40, "numpy", {"dataset": "d"},
                    seed=2, variant="v", model="hf")
    assert (r.task, r.model, r.kind, r.parameters, r.checkpoint, r.tokens, r.seed, r.n, r.variant) == \
        ("lm-eval/piqa", "decoder", "decoder", 123, "step1", 9, 2, 40, "v")
    assert r.metrics == {"acc": 0.5, "n": 3.0} and all(type(v) is float for v in r.metrics.values())
    assert (r.suite, r.library, r.library_version, r.data, r.details) == ("lm-eval", "numpy", np.__version__,
                                                                          {"dataset": "d"}, {"model": "hf"})
    failed = base.failure(member, "rank1", "tiny", ValueError("  bad row 3\nTraceback\n"), "numpy", seed=4)
    assert (failed.task, failed.metrics, failed.n, failed.variant, failed.seed, failed.error) == \
        ("rank1/tiny", {}, 0, "error", 4, "ValueError: bad row 3")
    assert (failed.suite, failed.library, failed.library_version) == ("rank1", "numpy", np.__version__)
    assert base.failure(member, "rank1", "tiny", ValueError("  "), "").error == "ValueError: "
    assert base.failure(member, "rank1", "tiny", ValueError("x"), "").seed == 0
    assert base.result(member, "rank1", "tiny", {}, 1, "numpy", {}).seed == 0
    assert json.loads(json.dumps(failed.to_dict()))["details"] == {"error": "ValueError: bad row 3"}


def test_requested_tasks_are_matched_without_case_spelled_as_the_suite_spells_them_and_kept_once():
    valid, default = ["CoLA", "SST2", "MRPC"], ["CoLA"]
    assert base.pick_tasks("glue", (), valid, default) == ["CoLA"]
    assert base.pick_tasks("glue", ["mrpc", "cola", "MRPC"], valid, default) == ["MRPC", "CoLA"]
    with pytest.raises(TwofoldError, match=r"^--suite glue: unknown task 'wnli'; valid tasks: CoLA, SST2, MRPC$"):
        base.pick_tasks("glue", ["cola", "wnli", "qqp"], valid, default)


# ----------------------------------------------------------------------------- the members of a suite run

@pytest.fixture(scope="module")
def sizes(tmp_path_factory, tokenizer):
    """A folder of two pairs (`17m/`, `32m/`, each encoder/ and decoder/ exports) and a training run."""
    from tests.eval.conftest import export_pair, tagged_run

    root = tmp_path_factory.mktemp("sizes")
    for size in ("17m", "32m"):
        export_pair(root / "pairs" / size, tokenizer)
    (root / "runs").mkdir()
    tagged_run(root / "runs" / "decoder-run", tokenizer, causal=True)
    for name in ("encoder", "decoder"):  # a folder of pairs of training runs
        (root / "run-pairs" / "17m").mkdir(parents=True, exist_ok=True)
        tagged_run(root / "run-pairs" / "17m" / name, tokenizer, causal=name == "decoder")
    return root


def test_a_folder_of_pairs_names_each_member_by_its_pair(sizes):
    from twofold.eval.suites.members import suite_members

    found = suite_members(sizes / "pairs")
    assert [(m.name, m.kind, m.causal, m.path) for m, _ in found] == [
        (f"{size}/{name}", name, name == "decoder", sizes / "pairs" / size / name)
        for size in ("17m", "32m") for name in ("decoder", "encoder")]
    assert all(m.parameters > 0 and ref.path == m.path for m, ref in found)
    [(one, _)] = suite_members(sizes / "pairs" / "17m" / "encoder", name="mine")
    assert one.name == "mine"
    with pytest.raises(TwofoldError, match=r"^--name labels one model, but .*17m holds 2; leave --name out$"):
        suite_members(sizes / "pairs" / "17m", name="mine")


def test_a_runs_checkpoints_are_members_labelled_by_tag_and_exported_only_while_evaluated(sizes, tokenizer, tmp_path):
    from twofold.eval.suites.members import exported, suite_members

    run = sizes / "runs" / "decoder-run"
    found = suite_members(run, all_checkpoints=True, tokenizer=Path(tokenizer.source).parent)
    assert [(m.name, m.kind, m.causal, m.checkpoint, m.tokens, m.label) for m, _ in found] == [
        ("decoder-run", DECODER, True, "step1", 3000, "decoder-run@step1"),
        ("decoder-run", DECODER, True, "step2", 6000, "decoder-run@step2")]
    assert [m.path for m, _ in found] == [ref.checkpoint for _, ref in found]
    assert all(m.parameters == 0 for m, _ in found)  # counted once exported
    [(named, _)] = suite_members(run, tokenizer=Path(tokenizer.source).parent, name="late")
    assert (named.name, named.checkpoint) == ("late", "step2")
    with pytest.raises(TwofoldError, match=r"^no tokenizer found for decoder-run; pass --tokenizer DIR"):
        suite_members(run)
    member, ref = found[0]
    scratch = tmp_path / "scratch"
    member.name = "size/decoder-run"
    with exported(member, ref, scratch, Path(tokenizer.source).parent) as ready:
        assert ready.path == scratch / "size_decoder-run_step1"
        assert (ready.path / "config.json").is_file() and (ready.path / "tokenizer.json").is_file()
        assert ready.parameters == sum(p.numel() for p in ref.load().parameters())
    assert not (scratch / "size_decoder-run_step1").exists() and scratch.is_dir()
    hf, hf_ref = suite_members(sizes / "pairs" / "17m" / "encoder")[0]
    with exported(hf, hf_ref, scratch) as ready:
        assert ready.path == sizes / "pairs" / "17m" / "encoder"
    assert (sizes / "pairs" / "17m" / "encoder" / "config.json").is_file()


def test_a_folder_of_pairs_of_runs_gives_each_members_tagged_checkpoints(sizes, tokenizer):
    from twofold.eval.suites.members import suite_members

    found = suite_members(sizes / "run-pairs", all_checkpoints=True, tokenizer=Path(tokenizer.source).parent)
    assert [(m.name, m.kind, m.causal, m.checkpoint) for m, _ in found] == [
        ("17m/decoder", DECODER, True, "step1"), ("17m/decoder", DECODER, True, "step2"),
        ("17m/encoder", ENCODER, False, "step1"), ("17m/encoder", ENCODER, False, "step2")]
    with pytest.raises(TwofoldError, match="^no tokenizer found for decoder; pass --tokenizer DIR"):
        suite_members(sizes / "run-pairs")
