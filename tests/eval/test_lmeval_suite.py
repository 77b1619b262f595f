"""`--suite lm-eval`'s own logic, fast: the masked-LM model it registers with lm-eval (each request
kind against twofold's scorer), which task manager reads the tasks, the settings handed to
`simple_evaluate` and the mapping of its outcome into a Result (metric names, sample count,
provenance). lm-eval's evaluation itself is replaced by a recorder where only that mapping is under
test; the suite runs for real, end to end, in tests/eval/test_suites.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lm_eval.api.instance import Instance
from tools import suite_data

import twofold
from twofold.errors import TwofoldError
from twofold.eval.member import DECODER, ENCODER, Member
from twofold.eval.mlm_scoring import count_scored_tokens, fill_greedy, pseudo_loglikelihood
from twofold.eval.settings import Settings
from twofold.eval.suites import lmeval
from twofold.files import sha256_file


@pytest.fixture(scope="module")
def exports(tmp_path_factory, tokenizer):
    from tests.eval.conftest import tiny_model

    root = tmp_path_factory.mktemp("lm")
    torch.manual_seed(11)
    for name in ("encoder", "decoder"):
        model = tiny_model(tokenizer, name == "decoder")
        with torch.no_grad():  # sharper random weights: what the model writes depends on the context
            for parameter_name, weight in model.named_parameters():
                if weight.dim() == 2 and "embeddings" not in parameter_name:
                    weight.mul_(10)
        twofold.save(model, root / name, tokenizer=Path(tokenizer.source).parent)
    return root


class Bar:
    """tqdm as the harness uses it, recording how it was asked to draw and what it was told."""

    made: list = []

    def __init__(self, iterable=None, **kwargs):
        self.iterable, self.kwargs, self.updates = iterable, kwargs, []
        Bar.made.append(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __iter__(self):
        return iter(self.iterable)

    def update(self, n):
        self.updates.append(n)


@pytest.fixture
def bars(monkeypatch):
    Bar.made = []
    monkeypatch.setattr(lmeval, "tqdm", Bar)
    return Bar.made


@pytest.fixture(scope="module")
def harness(exports):
    return lmeval.MaskedLMHarness(str(exports / "encoder"), batch_size="3", max_length="40", max_gen_toks=3)


class Hook:
    """lm-eval's cache hook, recording what a model hands it."""

    def __init__(self):
        self.added = []

    def add_partial(self, kind, args, value):
        self.added.append((kind, args, value))


def request(kind: str, *arguments) -> Instance:
    return Instance(kind, {}, tuple(arguments), 0)


# ----------------------------------------------------------------------------- the masked-LM model

def test_the_masked_lm_model_reads_its_settings(exports, harness):
    assert (harness.batch_size, harness.max_length, harness.max_gen_toks, harness.device_name) == (3, 40, 3, "cpu")
    auto = lmeval.MaskedLMHarness(str(exports / "encoder"), batch_size="auto")
    assert (auto.batch_size, auto.max_length, auto.max_gen_toks) == (64, None, 64)
    assert lmeval.MaskedLMHarness(str(exports / "encoder"), batch_size=5).batch_size == 5
    assert lmeval.MaskedLMHarness(str(exports / "encoder")).batch_size == 64
    assert not auto.model.training


def test_each_request_kind_is_scored_by_twofolds_masked_lm_scorer(harness, bars):
    harness.cache_hook = Hook()
    long = "def read(path):\n    return open(path).read()\n" * 3  # past the harness's 40 tokens: cut
    pairs = [("import", " os"), ("def read(path):\n", "    return 1"), ("x = ", "json.loads(text)"), (long, "x = 1")]
    got = harness.loglikelihood([request("loglikelihood", c, x) for c, x in pairs])
    want = pseudo_loglikelihood(harness.model, harness.tokenizer, pairs, batch_size=3, max_length=40)
    assert got == want and len({v for v, _ in got}) == 4
    assert got[3] != pseudo_loglikelihood(harness.model, harness.tokenizer, pairs[3:], batch_size=3)[0]
    assert harness.cache_hook.added == [("loglikelihood", pair, score) for pair, score in zip(pairs, want)]
    tokens = count_scored_tokens(harness.tokenizer, pairs)
    [bar] = bars
    assert bar.kwargs == {"total": tokens, "desc": "masked-LM pseudo-log-likelihood", "unit": "tok", "disable": None,
                          "dynamic_ncols": True}
    assert sum(bar.updates) == tokens and len(bar.updates) > 1
    harness.loglikelihood([request("loglikelihood", "import", " os")], disable_tqdm=True)
    assert bars[1].kwargs["disable"] is True
    harness.cache_hook = Hook()
    texts = ["import os\nimport sys", "def f(x):\n    return x"]
    rolling = harness.loglikelihood_rolling([request("loglikelihood_rolling", t) for t in texts])
    assert rolling == [v for v, _ in pseudo_loglikelihood(harness.model, harness.tokenizer, [("", t) for t in texts],
                                                          batch_size=3, max_length=40)]
    assert harness.cache_hook.added == [("loglikelihood_rolling", (t,), v) for t, v in zip(texts, rolling)]
    assert bars[2].kwargs["disable"] is None and bars[2].kwargs["total"] == count_scored_tokens(
        harness.tokenizer, [("", t) for t in texts])
    harness.loglikelihood_rolling([request("loglikelihood_rolling", texts[0])], disable_tqdm=True)
    assert bars[3].kwargs["disable"] is True


def test_generation_fills_masks_greedily_with_the_requests_stops_and_length(harness, bars):
    harness.cache_hook = Hook()
    context = "def read(path):\n"
    whole = fill_greedy(harness.model, harness.tokenizer, context, 8, (), 40)
    assert whole != fill_greedy(harness.model, harness.tokenizer, "", 8, (), 40)
    # a stop string one of whose characters is written before it: cut at the string, not at a character
    k = next(k for k in range(1, len(whole) - 1)
             if (whole[k] in whole[:k] or whole[k + 1] in whole[:k]) and whole.index(whole[k:k + 2]) == k)
    stop = whole[k:k + 2]
    long = "import os\n" * 12  # past the harness's 40 tokens: the window slides
    asked = [request("generate_until", context, {"until": stop, "max_gen_toks": 8}),
             request("generate_until", context, {"until": ["never", stop]}),
             request("generate_until", context, {"max_gen_toks": 8}),
             request("generate_until", context, None),
             request("generate_until", long, {"max_gen_toks": 2})]
    got = harness.generate_until(asked)
    three = fill_greedy(harness.model, harness.tokenizer, context, 3, (), 40)
    assert got[:4] == [whole[:k], three[:three.index(stop)] if stop in three else three, whole, three]
    assert got[4] == fill_greedy(harness.model, harness.tokenizer, long, 2, (), 40) != \
        fill_greedy(harness.model, harness.tokenizer, long, 2, ())
    assert harness.cache_hook.added == [("generate_until", r.args, text) for r, text in zip(asked, got)]
    [bar] = bars
    assert bar.kwargs == {"desc": "masked-LM greedy fill", "disable": None} and bar.iterable == asked
    harness.generate_until(asked[:1], disable_tqdm=True)
    assert bars[1].kwargs["disable"] is True


# ----------------------------------------------------------------------------- tasks and their data

class Manager:
    """A stand-in for lm-eval's TaskManager: the tasks it knows, what it was built with, what it loaded."""

    made: list = []

    def __init__(self, include_path=None, include_defaults=True):
        self.include_path, self.include_defaults = include_path, include_defaults
        local = ["tiny_a", "tiny_b", "broken", "empty"] if include_path else []
        self.all_tasks = local + (["arc_easy", "arc_challenge", "piqa", "broken", "empty"] + [
            f"mmlu_{n}" for n in range(8)] if include_defaults else [])
        Manager.made.append(self)

    def load(self, names):
        if names == ["broken"]:
            raise FileNotFoundError("  no such dataset: broken\nmore")
        if names == ["empty"]:
            raise KeyError()
        return {name: object() for name in names}


@pytest.fixture
def managers(monkeypatch):
    import lm_eval.tasks

    Manager.made = []
    monkeypatch.setattr(lm_eval.tasks, "TaskManager", Manager)
    monkeypatch.setattr(lmeval, "_MANAGERS", {})
    return Manager.made


def test_the_local_task_files_alone_are_read_when_they_hold_every_task_named(tmp_path, managers):
    (tmp_path / "lm-eval").mkdir()
    local = Settings(tasks=("tiny_b", "tiny_a", "tiny_b"), data_dir=tmp_path)
    assert lmeval.include_path(local) == tmp_path / "lm-eval"
    assert lmeval.include_path(Settings(data_dir=tmp_path / "flat")) == tmp_path / "flat"
    assert lmeval.include_path(Settings()) is None
    assert lmeval.tasks(local) == ["tiny_b", "tiny_a"]
    assert [(m.include_path, m.include_defaults) for m in managers] == [(str(tmp_path / "lm-eval"), False)]
    assert lmeval.task_manager(local, ["tiny_a"]) is managers[0]  # built once
    mixed = Settings(tasks=("tiny_a", "piqa"), data_dir=tmp_path)
    assert lmeval.tasks(mixed) == ["tiny_a", "piqa"]
    assert [(m.include_path, m.include_defaults) for m in managers[1:]] == [(str(tmp_path / "lm-eval"), True)]
    assert lmeval.task_manager(mixed) is managers[1] and len(managers) == 2
    assert lmeval.task_manager(Settings(), ["piqa"]).include_path is None and len(managers) == 3
    assert lmeval.tasks(Settings()) == list(lmeval.ETTIN_TASKS) and len(managers) == 3  # the default: no index read
    with pytest.raises(TwofoldError, match=r"^--suite lm-eval: unknown task 'arc_eazy'; close: arc_easy \(Ettin's: "
                                           r"arc_easy, arc_challenge, hellaswag, .*`lm-eval ls tasks` lists all\)$"):
        lmeval.tasks(Settings(tasks=("piqa", "arc_eazy", "zzzz")))
    with pytest.raises(TwofoldError, match=r"^--suite lm-eval: unknown task 'qqqqqq' \(Ettin's: "):
        lmeval.tasks(Settings(tasks=("qqqqqq",)))
    with pytest.raises(TwofoldError, match=r"; close: (mmlu_\d, ){4}mmlu_\d \(Ettin's"):
        lmeval.tasks(Settings(tasks=("mmlu_",)))  # the five closest of eight
    (tmp_path / "other").mkdir()
    other = lmeval.task_manager(Settings(data_dir=tmp_path / "other"), ["tiny_a"])
    assert other.include_path == str(tmp_path / "other") and not other.include_defaults  # a manager per folder


def test_an_lm_eval_too_old_is_one_line(monkeypatch):
    from twofold.eval.suites import base

    monkeypatch.setattr(base, "version_of", lambda name: {"lm-eval": "0.4.2"}.get(name, ""))
    with pytest.raises(TwofoldError, match=r"^--suite lm-eval needs lm-eval >= 0\.4\.5, found 0\.4\.2; pip install -U "
                                           r"'twofold\[lmeval\]'$"):
        lmeval.tasks(Settings())


def test_a_task_whose_data_does_not_load_is_one_line_before_any_model_work(tmp_path, managers):
    lmeval.check_data(["piqa", "arc_easy"], Settings())
    with pytest.raises(TwofoldError, match=r"^lm-eval task broken: its data does not load from the hub "
                                           r"\(FileNotFoundError: no such dataset: broken\); with no internet, give "
                                           "--data-dir with task YAMLs on local copies$"):
        lmeval.check_data(["piqa", "broken"], Settings())
    with pytest.raises(TwofoldError, match=f"from the task files under {tmp_path}"):
        lmeval.check_data(["broken"], Settings(data_dir=tmp_path))
    with pytest.raises(TwofoldError, match=r"its data does not load from the hub \(KeyError: \); with no internet"):
        lmeval.check_data(["empty"], Settings())
    managers.clear()
    lmeval.check_data(["tiny_a", "tiny_b"], Settings(data_dir=tmp_path / "fresh"))
    assert [(m.include_path, m.include_defaults) for m in managers] == [(str(tmp_path / "fresh"), False)]  # no index


def test_local_task_yamls_are_read_by_lm_evals_own_task_manager(tmp_path):
    suite_data.write_lmeval(tmp_path / "lm-eval", "tiny_mc", [{"context": "import", "choices": [" os", " json"],
                                                               "gold": 0}])
    options = Settings(tasks=("tiny_mc",), data_dir=tmp_path)
    assert lmeval.tasks(options) == ["tiny_mc"]
    lmeval.check_data(["tiny_mc"], options)


# ----------------------------------------------------------------------------- the models and the outcome

def test_each_member_gets_its_harness_model_once_and_one_model_is_kept(exports):
    from lm_eval.models.huggingface import HFLM

    encoder = Member(exports / "encoder", "encoder", ENCODER)
    decoder = Member(exports / "decoder", "decoder", DECODER, causal=True)
    options = Settings(batch_size=5, max_length=32)
    masked = lmeval.harness_model(encoder, options)
    assert isinstance(masked, lmeval.MaskedLMHarness) and (masked.batch_size, masked.max_length) == (5, 32)
    assert lmeval.harness_model(encoder, options) is masked
    hf = lmeval.harness_model(decoder, options)
    assert isinstance(hf, HFLM) and hf.batch_size == 5 and hf.max_length == 32 and len(lmeval._MODELS) == 1
    assert next(hf.model.parameters()).dtype == torch.float32
    from transformers import AutoModelForCausalLM

    half = exports / "decoder-bf16"
    if not half.is_dir():
        AutoModelForCausalLM.from_pretrained(exports / "decoder").to(torch.bfloat16).save_pretrained(half)
        for f in (exports / "decoder").glob("*token*"):
            (half / f.name).write_bytes(f.read_bytes())
    stored = lmeval.harness_model(Member(half, "decoder", DECODER, causal=True), options)
    assert next(stored.model.parameters()).dtype == torch.float32  # scored in float32 whatever the export holds
    assert lmeval.harness_model(decoder, Settings(batch_size=5)).max_length == 1024  # the model's own context
    assert lmeval.harness_model(encoder, options) is not masked  # the other one was let go


def test_lm_evals_metric_names_become_twofolds():
    scores = {"acc,none": 0.5, "acc_stderr,none": 0.1, "acc_norm,none": 0.75, "exact_match,strict-match": 0.25,
              "exact_match_stderr,strict-match": 0.01, "alias": "piqa", "sample_len,none": 10, "sample_count": 4,
              "perplexity": 3, "flag,none": True, "bleu,none": "N/A"}
    assert lmeval.metrics_of(scores) == {"acc": 0.5, "acc_norm": 0.75, "exact_match[strict-match]": 0.25,
                                         "perplexity": 3.0}


def test_provenance_names_the_hub_dataset_or_checksums_the_local_files(tmp_path):
    hub = {"dataset_path": "allenai/ai2_arc", "dataset_name": "ARC-Easy", "dataset_kwargs": {"revision": "abc"}}
    assert lmeval.provenance(hub, 1.0) == {"dataset": "allenai/ai2_arc", "config": "ARC-Easy", "revision": "abc",
                                           "task_version": "1.0"}
    unpinned = {"dataset": "piqa", "config": "", "revision": "unpinned (latest)", "task_version": "None"}
    assert lmeval.provenance({"dataset_path": "piqa"}, None) == unpinned
    files = [tmp_path / name for name in ("test.jsonl", "dev.jsonl", "more.jsonl")]
    for f in files:
        f.write_text(f.name)
    sha = {str(f): sha256_file(f) for f in files}
    for data_files, named in ((str(files[0]), files[:1]), ({"test": str(files[0]), "dev": str(files[1])}, files[:2]),
                              ([str(files[0]), str(tmp_path / "gone.jsonl")], files[:1]),
                              ({"test": [str(files[0]), str(files[2])]}, [files[0], files[2]])):
        config = {"dataset_path": "json", "dataset_kwargs": {"data_files": data_files, "revision": "x"}}
        found = lmeval.provenance(config, 2)
        assert found == {"dataset": "json", "config": "", "task_version": "2",
                         "sha256": {str(f): sha[str(f)] for f in named}}, data_files


@pytest.fixture
def evaluated(monkeypatch):
    """`simple_evaluate` replaced by a recorder returning an outcome shaped as lm-eval's."""
    from lm_eval import evaluator

    calls = []
    outcome = {"results": {"tiny": {"acc,none": 0.5, "acc_stderr,none": 0.1, "alias": "tiny"}},
               "configs": {"tiny": {"output_type": "multiple_choice", "dataset_path": "piqa", "num_fewshot": 2}},
               "n-samples": {"tiny": {"original": 100, "effective": 40}}, "versions": {"tiny": 1.5},
               "n-shot": {"tiny": 2}}

    def simple_evaluate(**kwargs):
        calls.append(kwargs)
        return outcome

    def simple_evaluate_quietly(**kwargs):
        kwargs["git lookup"] = evaluator.get_git_commit_hash
        return simple_evaluate(**kwargs)

    monkeypatch.setattr(evaluator, "simple_evaluate", simple_evaluate_quietly)
    monkeypatch.setattr(lmeval, "harness_model", lambda member, options: ("model of", member.name, options.seed))
    monkeypatch.setattr(lmeval, "task_manager", lambda options, names=(): ("manager for", options.seed, tuple(names)))
    return calls, outcome


def test_a_task_is_evaluated_with_the_runs_settings_and_its_outcome_recorded(evaluated):
    calls, outcome = evaluated
    options = Settings(num_fewshot=2, limit=40, seed=7)
    member = Member(Path("enc"), "encoder", ENCODER)
    [r] = lmeval.run(member, "tiny", options)
    from lm_eval import evaluator

    from twofold.quiet import _git_hash

    assert calls == [{"model": ("model of", "encoder", 7), "tasks": ["tiny"],
                      "task_manager": ("manager for", 7, ("tiny",)), "num_fewshot": 2, "limit": 40,
                      "bootstrap_iters": 0, "log_samples": False, "random_seed": 7, "numpy_random_seed": 7,
                      "torch_random_seed": 7, "fewshot_random_seed": 7,
                      "git lookup": _git_hash}]
    assert evaluator.get_git_commit_hash is not _git_hash  # restored after
    assert (r.task, r.metrics, r.n, r.seed, r.suite, r.library) == ("lm-eval/tiny", {"acc": 0.5}, 40, 7, "lm-eval",
                                                                      "lm-eval")
    assert r.data == {"dataset": "piqa", "config": "", "revision": "unpinned (latest)", "task_version": "1.5"}
    assert {k: r.details[k] for k in ("model", "num_fewshot", "limit", "output_type")} == {
        "model": "twofold-mlm (pseudo-log-likelihood)", "num_fewshot": 2, "limit": 40,
        "output_type": "multiple_choice"}
    [d] = lmeval.run(Member(Path("dec"), "decoder", DECODER, causal=True), "tiny", options)
    assert d.details["model"] == "hf" and d.details["task_config_hash"] == r.details["task_config_hash"]
    assert len(r.details["task_config_hash"]) == 16
    outcome["configs"]["tiny"] = {**outcome["configs"]["tiny"], "num_fewshot": 3}  # one value changed
    [changed] = lmeval.run(member, "tiny", options)
    assert changed.details["task_config_hash"] != r.details["task_config_hash"]
    outcome["results"] = {"tiny_sub": {"acc,none": 1.0}}
    with pytest.raises(TwofoldError, match=r"^lm-eval returned no result named 'tiny'; run its subtasks by name$"):
        lmeval.run(member, "tiny", options)


def test_an_outcome_without_configs_or_counts_is_recorded_with_what_it_has(evaluated):
    calls, outcome = evaluated
    for key in ("configs", "n-samples", "versions", "n-shot"):
        outcome.pop(key)
    [r] = lmeval.run(Member(Path("enc"), "encoder", ENCODER), "tiny", Settings())
    assert r.n == 0 and r.details["num_fewshot"] is None and r.details["output_type"] is None
    assert r.data == {"dataset": "", "config": "", "revision": "unpinned (latest)", "task_version": "None"}
