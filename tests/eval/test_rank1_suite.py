"""`--suite rank1`, fast, on a tiny decoder export and an 8-document BEIR folder: the tasks and
their data, each first stage (BM25, a TREC run file, an embedder), rank1's score against the
decoder's own logits whatever the batching, the prompt cut to the model's context, the reasoning
step, the rerank's tie-breaking, and the two results a task gives. The CLI end to end:
tests/eval/test_suites.py."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from tests.eval.conftest import Bars
from tools import suite_data

import twofold
from twofold.errors import TwofoldError
from twofold.eval.member import DECODER, Member
from twofold.eval.metrics import retrieval_scores
from twofold.eval.settings import Settings
from twofold.eval.suites import rank1
from twofold.files import sha256_file
from twofold.finetune.datasets import RetrievalSet


@pytest.fixture(scope="module")
def decoder_dir(tmp_path_factory, tokenizer):
    from tests.eval.conftest import tiny_model

    path = tmp_path_factory.mktemp("rank1") / "decoder"
    torch.manual_seed(21)
    model = tiny_model(tokenizer, causal=True)
    with torch.no_grad():  # sharper random weights: the verdict then depends on the passage, not only the suffix
        for name, weight in model.named_parameters():
            if weight.dim() == 2 and "embeddings" not in name:
                weight.mul_(10)
    twofold.save(model, path, tokenizer=Path(tokenizer.source).parent)
    return path


@pytest.fixture(scope="module")
def short_context(tmp_path_factory, tokenizer):
    """A decoder of 96 positions: rank1's prompt must be cut to fit it."""
    from twofold.model import TwofoldModel, preset

    s = tokenizer.special
    path = tmp_path_factory.mktemp("rank1-short") / "decoder"
    torch.manual_seed(22)
    model = TwofoldModel(preset("tiny", causal=True, vocab_size=tokenizer.vocab_size, max_position_embeddings=96,
                                cls_token_id=s.cls, sep_token_id=s.sep, pad_token_id=s.pad, mask_token_id=s.mask,
                                bos_token_id=s.bos, eos_token_id=s.eos))
    twofold.save(model, path, tokenizer=Path(tokenizer.source).parent)
    return path


@pytest.fixture(scope="module")
def scorer(decoder_dir):
    return rank1.Rank1Scorer(decoder_dir, think_tokens=0, batch_size=2)


@pytest.fixture
def beir(tmp_path):
    return suite_data.write_beir(tmp_path / "data" / "tiny")


def data_of(folder: Path) -> RetrievalSet:
    return rank1.load(folder.name, Settings(data_dir=folder.parent))[0]


def verdict(scorer, ids: list[int]) -> float:
    with torch.no_grad():
        last = scorer.model(torch.tensor([ids])).logits[0, -1]
    return float(torch.softmax(last[[scorer.true, scorer.false]], -1)[0])


# ----------------------------------------------------------------------------- tasks and data

def test_tasks_are_beir_folders_under_the_data_dir_or_rank1s_default_sets(tmp_path, beir):
    suite_data.write_beir(tmp_path / "data" / "other")
    (tmp_path / "data" / "notes").mkdir()
    assert rank1.tasks(Settings()) == list(rank1.DEFAULT_TASKS) == ["SciFact", "NFCorpus", "ArguAna", "SCIDOCS",
                                                                    "FiQA2018", "TRECCOVID"]
    assert rank1.tasks(Settings(tasks=("tiny", "other", "tiny"), data_dir=tmp_path / "data")) == ["tiny", "other"]
    assert rank1.tasks(Settings(tasks=("SciFact",))) == ["SciFact"]  # no data dir: mteb's task of that name
    with pytest.raises(TwofoldError, match=f"^--suite rank1: unknown task 'gone': no BEIR folder "
                                           f"{tmp_path / 'data' / 'gone'}; valid tasks here: other, tiny$"):
        rank1.tasks(Settings(tasks=("tiny", "gone", "also"), data_dir=tmp_path / "data"))
    with pytest.raises(TwofoldError, match="valid tasks here: none$"):
        rank1.tasks(Settings(tasks=("gone",), data_dir=tmp_path / "data" / "notes"))


def test_a_beir_folder_is_read_with_its_checksums_and_a_seeded_sample_of_limit_queries(beir):
    data, provenance = rank1.load("tiny", Settings(data_dir=beir.parent))
    assert len(data.queries) == 8 and len(data.corpus) == 8 and data.qrels["q3"] == {"d3": 1} and data.name == "tiny"
    assert provenance == {"path": str(beir.resolve()), "sha256": {name: sha256_file(beir / name) for name in (
        "corpus.jsonl", "qrels/test.tsv", "queries.jsonl")}}
    samples = {seed: sorted(rank1.load("tiny", Settings(data_dir=beir.parent, limit=3, seed=seed))[0].queries)
               for seed in (0, 1, 2)}
    assert all(len(q) == 3 for q in samples.values()) and len({tuple(q) for q in samples.values()}) > 1
    rank1.check_data(["tiny"], Settings(data_dir=beir.parent))
    with pytest.raises(TwofoldError, match="--first-stage 'bm52': give bm25"):
        rank1.check_data(["tiny"], Settings(data_dir=beir.parent, first_stage="bm52"))
    broken = suite_data.write_beir(beir.parent / "broken")
    (broken / "qrels" / "test.tsv").rename(broken / "qrels" / "dev.tsv")  # found before any model runs
    with pytest.raises(TwofoldError, match="broken: no qrels/test.tsv; evaluation scores the test queries"):
        rank1.check_data(["tiny", "broken"], Settings(data_dir=beir.parent))


def test_without_a_limit_every_judged_query_of_a_beir_folder_is_scored(tmp_path):
    folder = tmp_path / "data" / "large"
    suite_data.jsonl(folder / "corpus.jsonl", [{"_id": f"d{i}", "title": "", "text": f"doc {i}"} for i in range(120)])
    suite_data.jsonl(folder / "queries.jsonl", [{"_id": f"q{i}", "text": f"query {i}"} for i in range(120)])
    (folder / "qrels").mkdir()
    (folder / "qrels" / "test.tsv").write_text("".join(f"q{i}\td{i}\t1\n" for i in range(110)))
    assert len(rank1.load("large", Settings(data_dir=folder.parent))[0].queries) == 110
    assert len(rank1.load("large", Settings(data_dir=folder.parent, limit=100))[0].queries) == 100


def test_without_a_data_dir_a_task_is_read_from_mtebs_dataset(monkeypatch):
    import mteb

    class Task:
        metadata = SimpleNamespace(dataset={"path": "mteb/tiny", "revision": "abc"})

        def load_data(self):
            self.dataset = {"default": {"test": {
                "corpus": [{"id": "d1", "title": "Parsing", "text": "json text"}, {"id": "d2", "text": "sorting"},
                           {"id": "d3", "title": None, "text": "zip"}],
                "queries": [{"id": q, "text": f"query {q}"} for q in ("q3", "q1", "q2", "q4")],
                "relevant_docs": {"q3": {"d3": 1}, "q1": {"d1": 2, "d2": 0}, "q2": {"d2": 0}, "q4": {"d1": 1}}}}}

    asked = []
    monkeypatch.setattr(mteb, "get_task", lambda name: asked.append(name) or Task())
    data, provenance = rank1.load("Tiny", Settings(limit=2))
    assert asked == ["Tiny"]
    assert data.corpus == {"d1": "Parsing json text", "d2": "sorting", "d3": "zip"}
    assert data.queries == {"q1": "query q1", "q3": "query q3"}  # q2 has no relevant document; the first 2 sorted
    assert data.qrels == {"q1": {"d1": 2, "d2": 0}, "q3": {"d3": 1}} and data.name == "Tiny"
    assert provenance == {"dataset": "mteb/tiny", "revision": "abc"}
    assert sorted(rank1.load("Tiny", Settings())[0].queries) == ["q1", "q3", "q4"]
    asked.clear()
    rank1.check_data(["Tiny"], Settings())  # the hub's data is left to the run
    assert asked == []

    def unknown(name):
        raise KeyError(name)

    monkeypatch.setattr(mteb, "get_task", unknown)
    with pytest.raises(TwofoldError, match=r"^--suite rank1: unknown task 'Nope'; name an MTEB retrieval task or give "
                                           "--data-dir with a BEIR folder of that name$"):
        rank1.load("Nope", Settings())

    class Offline(Task):
        def load_data(self):
            raise ConnectionError("no network")

    monkeypatch.setattr(mteb, "get_task", lambda name: Offline())
    with pytest.raises(TwofoldError, match=r"^rank1 Tiny: its data does not load \(ConnectionError: no network\); "
                                           "with no internet, give --data-dir with a BEIR folder per task$"):
        rank1.load("Tiny", Settings())


# ----------------------------------------------------------------------------- first stages

def test_each_first_stage_is_named_by_what_it_is(tmp_path, decoder_dir):
    run_file = suite_data.write_run(tmp_path / "run.trec", {"q0": ["d0"]})
    assert [rank1.first_stage_kind(s) for s in ("bm25", str(run_file), str(decoder_dir))] == ["bm25", "run", "dense"]
    with pytest.raises(TwofoldError, match=r"^--first-stage 'BM25': give bm25, a TREC run file \(qid Q0 docid rank "
                                           r"score tag\) or an embedder directory"):
        rank1.first_stage_kind("BM25")
    with pytest.raises(TwofoldError, match="--first-stage"):
        rank1.first_stage_kind(str(tmp_path))  # a folder without config.json


def test_a_run_file_gives_each_querys_top_depth_documents_by_score(tmp_path, beir):
    data = data_of(beir)
    path = tmp_path / "run.trec"
    path.write_text("q0 Q0 d1 1 0.5 t\n\nq0 Q0 d2 2 2.5 t\nq0 Q0 d3 3 1.5\nq1 Q0 d0 1 -1 t\nqX Q0 d0 1 9 t\n")
    assert rank1.read_run(path, data, 2) == {"q0": {"d2": 2.5, "d3": 1.5}, "q1": {"d0": -1.0}}
    assert list(rank1.read_run(path, data, 2)["q0"]) == ["d2", "d3"]
    assert rank1.first_stage(data, Settings(first_stage=str(path), depth=1)) == {"q0": {"d2": 2.5}, "q1": {"d0": -1.0}}
    path.write_text("q0 Q0 d1 1 0.5 t\nq0 Q0 d2 2\n")
    with pytest.raises(TwofoldError, match=f"^{path}:2: expected 'qid Q0 docid rank score \\[tag\\]'$"):
        rank1.read_run(path, data, 2)
    path.write_text("q0 Q0 d1 1 high t\n")
    with pytest.raises(TwofoldError, match=f"^{path}:1: score 'high' is not a number$"):
        rank1.read_run(path, data, 2)


def test_bm25_and_an_embedder_give_at_most_depth_documents_per_query(beir, decoder_dir):
    data = data_of(beir)
    bm25 = rank1.first_stage(data, Settings(depth=3))
    assert bm25 == rank1.bm25(data, 3) and all(len(docs) <= 3 for docs in bm25.values())
    assert set(bm25) <= set(data.queries)
    shared = RetrievalSet({"q": "return the value"}, {f"d{i}": f"return {i}" for i in range(5)}, {}, "shared")
    assert len(rank1.first_stage(shared, Settings(depth=3))["q"]) == 3
    dense = rank1.first_stage(data, Settings(first_stage=str(decoder_dir), depth=3, batch_size=4))
    assert set(dense) == set(data.queries) and all(len(docs) == 3 for docs in dense.values())
    everything = rank1.dense(decoder_dir, data, 50, 4)
    assert all(len(docs) == 8 for docs in everything.values())
    for q, docs in dense.items():  # the top 3 of the full ranking, with its scores
        top = sorted(everything[q].items(), key=lambda d: -d[1])[:3]
        assert docs == pytest.approx(dict(top), abs=1e-5)


def test_an_embedder_directory_is_a_dense_first_stage_as_sentence_transformers_loads_it(tmp_path, beir, decoder_dir):
    from twofold.eval.suites.mteb_suite import embedding_model

    model, _ = embedding_model(Member(decoder_dir, "decoder", DECODER, causal=True), Settings(work=tmp_path),
                               "SciFact")
    model.save(str(tmp_path / "st"))
    data = data_of(beir)
    given, export = rank1.dense(tmp_path / "st", data, 3, 4), rank1.dense(decoder_dir, data, 3, 4)
    assert given.keys() == export.keys() and all(given[q] == pytest.approx(export[q], abs=1e-4) for q in given)


def test_a_sentence_transformers_directory_is_embedded_with_its_own_modules(tmp_path, beir, decoder_dir):
    from sentence_transformers import SentenceTransformer, models

    transformer = models.Transformer(str(decoder_dir))
    SentenceTransformer(modules=[transformer, models.Pooling(transformer.get_embedding_dimension(), "mean")]) \
        .save(str(tmp_path / "mean"))  # a decoder's export is pooled at its last token instead
    data = data_of(beir)
    given = rank1.dense(tmp_path / "mean", data, 8, 4)
    model = SentenceTransformer(str(tmp_path / "mean"))
    queries, ids = list(data.queries), list(data.corpus)
    want = model.similarity(model.encode([data.queries[q] for q in queries]), model.encode(list(data.corpus.values())))
    assert given == {q: pytest.approx(dict(zip(ids, row.tolist())), abs=1e-5) for q, row in zip(queries, want)}
    export = rank1.dense(decoder_dir, data, 8, 4)
    assert any(given[q][d] != pytest.approx(export[q][d], abs=1e-3) for q in given for d in given[q])


def test_an_export_is_embedded_as_twofolds_embedder_reads_it_to_its_length(decoder_dir):
    from transformers import AutoTokenizer

    long = "def pad(x):\n    return x\n" * 60
    assert len(AutoTokenizer.from_pretrained(str(decoder_dir))(long)["input_ids"]) > 300 > 256
    data = RetrievalSet({"q": "pad"}, {"a": long + "alpha()", "b": long + "zip(beta)"}, {}, "long")
    scores = rank1.dense(decoder_dir, data, 2, 4)["q"]  # the embed recipe reads 256 tokens: the tails are cut
    assert scores["a"] == pytest.approx(scores["b"], abs=1e-6)
    short = rank1.dense(decoder_dir, RetrievalSet({"q": "pad"}, {"a": "alpha()", "b": "zip(beta)"}, {}, "s"), 2, 4)
    assert short["q"]["a"] != pytest.approx(short["q"]["b"], abs=1e-4)


# ----------------------------------------------------------------------------- the reranker

def test_the_score_is_p_true_over_true_and_false_after_the_closed_reasoning_whatever_the_batching(decoder_dir):
    pairs = [("parse json", "def loads(s): return json.decoder.decode(s)"), ("sort numbers", "xs.sort()"),
             ("zip files", "def pack(files): zipfile.ZipFile('a.zip', 'w').write(files)"), ("x", "y = 1")]
    one = rank1.Rank1Scorer(decoder_dir, batch_size=1)
    close = one.tokenizer("\n</think>", add_special_tokens=False)["input_ids"]
    want = [verdict(one, one.prompt_ids(q, p) + close) for q, p in pairs]
    assert min(abs(a - b) for i, a in enumerate(want) for b in want[i + 1:]) > 1e-3
    for size in (1, 3, 16):
        scorer = rank1.Rank1Scorer(decoder_dir, batch_size=size)
        steps = []
        got = scorer.scores(pairs, SimpleNamespace(update=steps.append))
        assert got == pytest.approx(want, abs=1e-5)
        assert steps == [min(size, 4 - i) for i in range(0, 4, size)]
    ids = one.prompt_ids(*pairs[1])
    text = rank1.PROMPT.format(query=pairs[1][0], passage=pairs[1][1])
    assert ids == one.tokenizer(text)["input_ids"] and text.endswith("Passage: xs.sort()\n<think>")
    assert (one.true, one.false) == tuple(one.tokenizer(w, add_special_tokens=False)["input_ids"][0]
                                          for w in (" true", " false"))


def test_a_long_passage_is_cut_to_its_first_characters_and_the_prompt_to_the_models_context(short_context):
    scorer = rank1.Rank1Scorer(short_context, think_tokens=4)
    assert scorer.context == 96
    ids = scorer.tokenizer(rank1.PROMPT.format(query="q", passage="z = 2\n" * 30))["input_ids"]
    cut = scorer.prompt_ids("q", "z = 2\n" * 30)
    room = 96 - 4 - 8  # the reasoning and "</think>" must fit after it
    assert len(ids) > room and len(cut) == room
    assert cut[0] == ids[0] and cut[1:] == ids[len(ids) - room + 1:]  # BOS kept, the start of the passage cut
    short = scorer.prompt_ids("q", "z = 2")
    assert short == scorer.tokenizer(rank1.PROMPT.format(query="q", passage="z = 2"))["input_ids"]


def test_a_passage_is_cut_to_its_first_characters(scorer):
    passage = " " * rank1.PASSAGE_CHARACTERS
    whole = scorer.prompt_ids("q", passage)
    assert len(whole) < scorer.context - 8  # no cut to the context here
    assert scorer.prompt_ids("q", passage + "def tail(): pass") == whole
    assert scorer.prompt_ids("q", passage[:-1] + "def tail(): pass") != whole


def test_with_think_tokens_the_model_writes_its_reasoning_greedily_before_the_verdict(decoder_dir):
    scorer = rank1.Rank1Scorer(decoder_dir, think_tokens=3)
    close = scorer.tokenizer("\n</think>", add_special_tokens=False)["input_ids"]
    prompt = scorer.prompt_ids("parse json", "def loads(s): return json.decoder.decode(s)")
    with torch.no_grad():
        out = scorer.model.generate(torch.tensor([prompt]), max_new_tokens=3, do_sample=False,
                                    pad_token_id=scorer.tokenizer.pad_token_id)
    thought = scorer.tokenizer.decode(out[0, len(prompt):], skip_special_tokens=True).split("</think>")[0]
    written = scorer.tokenizer(thought, add_special_tokens=False)["input_ids"]
    assert written and scorer._think(prompt) == prompt + written + close
    [value] = scorer.scores([("parse json", "def loads(s): return json.decoder.decode(s)")])
    assert value == pytest.approx(verdict(scorer, prompt + written + close), abs=1e-5)
    none = rank1.Rank1Scorer(decoder_dir, think_tokens=0)
    assert none._think(prompt) == prompt + close


def test_a_written_close_tag_ends_the_reasoning(decoder_dir, monkeypatch):
    scorer = rank1.Rank1Scorer(decoder_dir, think_tokens=5)
    monkeypatch.setattr(scorer.tokenizer, "decode", lambda ids, skip_special_tokens=False: "so yes</think> more")
    close = scorer.tokenizer("\n</think>", add_special_tokens=False)["input_ids"]
    prompt = scorer.prompt_ids("q", "p")
    assert scorer._think(prompt) == prompt + scorer.tokenizer("so yes", add_special_tokens=False)["input_ids"] + close


@pytest.mark.parametrize("words", [{" true": [7, 8], " false": [7, 9]}, {" true": [], " false": [9]},
                                   {" true": [9], " false": []}], ids=["same first token", "no true", "no false"])
def test_a_tokenizer_that_cannot_tell_true_from_false_is_one_line(decoder_dir, monkeypatch, words):
    from transformers import AutoTokenizer

    real = AutoTokenizer.from_pretrained

    def tokenizer_with(path, **kwargs):
        tokenizer = real(path, **kwargs)
        encode = tokenizer.__call__
        monkeypatch.setattr(type(tokenizer), "__call__", lambda self, text, **kw: {"input_ids": words[text]}
                            if text in words else encode(text, **kw))
        return tokenizer

    monkeypatch.setattr(AutoTokenizer, "from_pretrained", tokenizer_with)
    with pytest.raises(TwofoldError, match="the tokenizer cannot tell ' true' from ' false' by their first token"):
        rank1.Rank1Scorer(decoder_dir)


def test_by_default_sixteen_passages_share_a_forward_pass(decoder_dir):
    steps = []
    rank1.Rank1Scorer(decoder_dir).scores([("q", f"x = {i}") for i in range(17)], SimpleNamespace(update=steps.append))
    assert steps == [16, 1]


def test_a_model_whose_config_names_no_context_gets_2048_positions(decoder_dir, tmp_path):
    import shutil

    from transformers import BloomConfig, BloomForCausalLM

    config = BloomConfig(vocab_size=512, hidden_size=32, n_layer=1, n_head=2)  # ALiBi: no position limit given
    assert not hasattr(config, "max_position_embeddings")
    BloomForCausalLM(config).save_pretrained(tmp_path / "bloom")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(decoder_dir / name, tmp_path / "bloom" / name)
    scorer = rank1.Rank1Scorer(tmp_path / "bloom", think_tokens=1500)
    assert len(scorer.prompt_ids("q", "z = 2\n" * 600)) == 2048 - 1500 - 8


class Scripted:
    """A reranker whose score of each passage is given: only the rerank's own ordering is under test. It
    moves its progress bar as the real one does, and takes `seconds` of a `clock` if given one."""

    def __init__(self, values: dict[str, float], clock: list[float] | None = None, seconds: float = 0.0):
        self.values, self.asked, self.clock, self.seconds = values, [], clock, seconds

    def scores(self, pairs, progress=None):
        self.asked += pairs
        if self.clock:
            self.clock[0] += self.seconds
        if progress is not None:
            progress.update(len(pairs))
        return [self.values[passage] for _, passage in pairs]


def fake_clock(monkeypatch) -> list[float]:
    clock = [100.0]
    monkeypatch.setattr(rank1, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    return clock


def test_the_rerank_orders_by_rank1s_score_and_breaks_ties_by_the_first_stage():
    data = RetrievalSet({"q": "query", "r": "other"}, {f"d{i}": f"text {i}" for i in range(4)}, {}, "tiny")
    scorer = Scripted({"text 0": 0.5, "text 1": 0.5, "text 2": 0.9, "text 3": 0.1})
    stage = {"q": {"d0": 1.0, "d1": 3.0, "d2": 2.0, "d3": 0.5}, "r": {"d3": 1.0}}
    reranked, speed = rank1.rerank(scorer, data, stage, "decoder")
    assert scorer.asked == [("query", "text 1"), ("query", "text 2"), ("query", "text 0"), ("query", "text 3"),
                            ("other", "text 3")]
    assert [d for d, _ in sorted(reranked["q"].items(), key=lambda x: -x[1])] == ["d2", "d1", "d0", "d3"]
    assert reranked["q"]["d1"] == pytest.approx(0.5, abs=1e-8) and reranked["r"] == {"d3": pytest.approx(0.1)}
    assert speed > 0


def test_the_rerank_counts_its_passages_on_a_bar_and_reports_passages_per_second(monkeypatch):
    data = RetrievalSet({"q": "query", "r": "other"}, {f"d{i}": f"text {i}" for i in range(4)}, {}, "tiny")
    stage = {"q": {"d0": 1.0, "d1": 3.0, "d2": 2.0}, "r": {"d3": 1.0, "d0": 0.5}}
    bars = Bars()
    monkeypatch.setattr(rank1, "progress", bars)
    clock = fake_clock(monkeypatch)
    for seconds, speed in ((0.5, 10.0), (4.0, 1.25)):  # under a second and over it
        scorer = Scripted(dict.fromkeys(data.corpus.values(), 0.5), clock, seconds)
        assert rank1.rerank(scorer, data, stage, "decoder@step1")[1] == pytest.approx(speed)
    assert bars.opened == [("decoder@step1", "rank1 tiny", 5, "passage")] * 2 and bars.counted == [5, 5]


def test_a_task_reports_ndcg_before_and_after_on_the_judged_queries(beir, decoder_dir, tmp_path, monkeypatch):
    made = []
    real = rank1.Rank1Scorer

    def scorer(path, think_tokens, batch_size):
        made.append((path, think_tokens, batch_size))
        return real(path, think_tokens, batch_size)

    monkeypatch.setattr(rank1, "Rank1Scorer", scorer)
    monkeypatch.setattr(rank1, "_SCORERS", {})
    member = Member(decoder_dir, "decoder", DECODER, checkpoint="step1", causal=True)
    ranking = {f"q{i}": [f"d{(i + 1) % 8}", f"d{i}"] for i in range(7)}  # q7 missing from the run
    run_file = suite_data.write_run(tmp_path / "run.trec", ranking)
    options = Settings(data_dir=beir.parent, first_stage=str(run_file), depth=2, batch_size=4, seed=2)
    before, after = rank1.run(member, "tiny", options)
    qrels = {f"q{i}": {f"d{i}": 1} for i in range(8)}
    stage = {q: {d: 1.0 / rank for rank, d in enumerate(docs, start=1)} for q, docs in ranking.items()} | {"q7": {}}
    assert before.metrics == pytest.approx(retrieval_scores(qrels, stage))
    assert before.metrics["ndcg@10"] == pytest.approx(7 / 8 / math.log2(3))
    assert (before.task, before.variant, before.n, before.seed, before.library) == ("rank1/tiny", "first-stage", 8, 2,
                                                                                    "ranx")
    assert (after.variant, after.n, after.library, after.details["before"]) == ("reranked", 8, "transformers",
                                                                                before.metrics)
    assert after.details["first_stage"] == str(run_file) and after.details["depth"] == 2
    assert after.details["think_tokens"] == 0 and after.details["passages_per_second"] > 0
    assert before.data == after.data and before.data["path"] == str(beir.resolve())
    scores = rank1._SCORERS[(str(decoder_dir), 0, 4)].scores
    values = scores([(data_of(beir).queries[q], data_of(beir).corpus[d]) for q in ranking for d in ranking[q]])
    reranked = {q: {d: v - 1e-9 * i for i, (d, v) in enumerate(zip(ranking[q], values[2 * n:2 * n + 2]))}
                for n, q in enumerate(ranking)} | {"q7": {}}
    assert after.metrics == pytest.approx(retrieval_scores(qrels, reranked))
    assert made == [(decoder_dir, 0, 4)]
    monkeypatch.setattr(rank1, "Rank1Scorer", lambda *key: made.append(key) or Scripted(
        dict.fromkeys(data_of(beir).corpus.values(), 0.5)))
    rank1.run(member, "tiny", options)
    assert made == [(decoder_dir, 0, 4)]  # one scorer for the member's tasks
    bm25 = rank1.run(member, "tiny", Settings(data_dir=beir.parent, depth=2, think_tokens=1, batch_size=4))[0]
    assert made[1:] == [(decoder_dir, 1, 4)] and len(rank1._SCORERS) == 1
    assert bm25.library == "bm25s" and bm25.details["first_stage"] == "bm25"


def test_both_records_name_the_suite_task_and_seed_and_the_second_the_rerank_speed(beir, tmp_path, monkeypatch):
    data = data_of(beir)
    run_file = suite_data.write_run(tmp_path / "run.trec", {f"q{i}": [f"d{i}", f"d{(i + 1) % 8}"] for i in range(8)})
    clock = fake_clock(monkeypatch)
    monkeypatch.setattr(rank1, "Rank1Scorer", lambda *key: Scripted(dict.fromkeys(data.corpus.values(), 0.5),
                                                                    clock, 0.7))
    monkeypatch.setattr(rank1, "_SCORERS", {})
    bars = Bars()
    monkeypatch.setattr(rank1, "progress", bars)
    member = Member(Path("pair/decoder"), "decoder", DECODER, checkpoint="step1", causal=True)
    records = rank1.run(member, "tiny", Settings(data_dir=beir.parent, first_stage=str(run_file), depth=2, seed=5))
    assert [(r.task, r.suite, r.seed, r.variant) for r in records] == [
        ("rank1/tiny", "rank1", 5, "first-stage"), ("rank1/tiny", "rank1", 5, "reranked")]
    assert bars.opened == [(member.label, "rank1 tiny", 16, "passage")] and bars.counted == [16]
    assert records[1].details["passages_per_second"] == round(16 / 0.7, 2) == 22.86
