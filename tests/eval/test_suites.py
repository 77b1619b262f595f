"""`twofold eval --suite`: each suite end to end on local data in the real formats, for both members
of a tiny pair, with scores checked on cases whose answer is known.

The libraries are real (mteb, lm-eval, transformers, sentence-transformers, bm25s); the data is
written by `tools/suite_data.py` in the layouts the real data has.
"""

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from tools import suite_data

import twofold
from twofold.cli import main
from twofold.errors import TwofoldError
from twofold.eval.metrics import p_mrr, retrieval_scores
from twofold.eval.mlm_scoring import pseudo_loglikelihood, split_request, vocabulary
from twofold.eval.suites import Settings, member_of, plan, run_plan
from twofold.eval.tasks.lm import continuation_logprob
from twofold.files import sha256_file
from twofold.results import Result, load_results


def quiet(_line: str) -> None:
    pass


@pytest.fixture(scope="module")
def pair(tmp_path_factory, tokenizer):
    """A tiny random pair with fixed weights (whatever ran before), exported with its tokenizer."""
    from tests.eval.conftest import export_pair

    torch.manual_seed(1234)
    return export_pair(tmp_path_factory.mktemp("pair"), tokenizer)


@pytest.fixture(scope="module")
def encoder(pair):
    return twofold.load(pair / "encoder").eval()


@pytest.fixture(scope="module")
def decoder(pair):
    return twofold.load(pair / "decoder").eval()


@pytest.fixture(scope="module")
def members(pair):
    return [member_of(pair / "encoder"), member_of(pair / "decoder")]


# ----------------------------------------------------------------------------- metrics on known answers

def test_p_mrr_of_a_followed_and_a_reversed_instruction_equals_mteb():
    from mteb._evaluators.retrieval_metrics import calculate_pmrr

    docs = [f"d{i}" for i in range(10)]
    ranked = lambda order: {d: float(len(order) - i) for i, d in enumerate(order)}  # noqa: E731
    original = {"q-og": ranked(docs)}  # the changed document d0 first
    followed = {"q-changed": ranked(docs[1:] + docs[:1])}  # ... and last once the instruction excludes it
    reversed_ = {"q-og": ranked(docs[1:] + docs[:1])}, {"q-changed": ranked(docs)}
    changed = {"q": ["d0"]}
    ours = p_mrr({"q": original["q-og"]}, {"q": followed["q-changed"]}, changed)
    assert ours == pytest.approx(1 - 1 / 10)
    assert calculate_pmrr(original, followed, changed) == pytest.approx(ours)
    back = p_mrr({"q": reversed_[0]["q-og"]}, {"q": reversed_[1]["q-changed"]}, changed)
    assert back == pytest.approx(1 / 10 - 1)
    assert calculate_pmrr(*reversed_, changed) == pytest.approx(back)
    assert p_mrr({"q": original["q-og"]}, {"q": original["q-og"]}, changed) == 0.0
    # ties are broken as mteb breaks them (doc id descending)
    tied = {"q": {d: 1.0 for d in docs}}
    assert p_mrr(tied, {"q": ranked(docs)}, changed) == pytest.approx(
        calculate_pmrr({"q-og": tied["q"]}, {"q-changed": ranked(docs)}, changed))


def test_glue_official_metrics_of_a_classifier_always_right_and_always_wrong():
    from twofold.eval.suites.glue import TASKS, official_metrics

    gold = np.array([0, 1, 1, 0, 1, 0])
    assert official_metrics(TASKS["cola"], gold, gold, ["0", "1"]) == {"mcc": 1.0}
    assert official_metrics(TASKS["cola"], 1 - gold, gold, ["0", "1"]) == {"mcc": -1.0}
    assert official_metrics(TASKS["mrpc"], gold, gold, ["0", "1"]) == {"f1": 1.0, "accuracy": 1.0}
    assert official_metrics(TASKS["mrpc"], 1 - gold, gold, ["0", "1"]) == {"f1": 0.0, "accuracy": 0.0}
    scores = np.array([0.1, 2.0, 3.5, 4.0])
    assert official_metrics(TASKS["stsb"], scores, scores, None) == pytest.approx({"pearson": 1.0, "spearman": 1.0})
    assert official_metrics(TASKS["stsb"], -scores, scores, None) == pytest.approx({"pearson": -1.0,
                                                                                   "spearman": -1.0})


@pytest.mark.parametrize("causal", [False, True])
def test_glue_scores_the_exported_classifier_it_loads(tmp_path, tokenizer, causal):
    """A classifier with a zeroed output layer always says "0" (a tie goes to the first class; the encoder's
    bias, where there is one, says so too): right on a dev set of 0s, wrong on one of 1s."""
    from tests.eval.conftest import tiny_model

    from twofold.eval.suites.glue import TASKS, score_classifier
    from twofold.model.heads import SequenceClassifier

    classifier = SequenceClassifier(tiny_model(tokenizer, causal).config, num_labels=2,
                                    pooling="last" if causal else "mean")
    with torch.no_grad():
        classifier.classifier.weight.zero_()
        if classifier.classifier.bias is not None:
            classifier.classifier.bias.copy_(torch.tensor([50.0, -50.0]))
    twofold.save(classifier, tmp_path / "clf", tokenizer=Path(tokenizer.source).parent)
    texts = [("a paraphrase", "the same"), ("json text", "parsed"), ("x", "y")]
    right = {"dev": [(t, 0) for t in texts]}
    wrong = {"dev": [(t, 1) for t in texts]}
    assert score_classifier(tmp_path / "clf", TASKS["sst2"], right, ["0", "1"], 32) == {"accuracy": 1.0}
    assert score_classifier(tmp_path / "clf", TASKS["sst2"], wrong, ["0", "1"], 32) == {"accuracy": 0.0}
    assert score_classifier(tmp_path / "clf", TASKS["mrpc"], wrong, ["0", "1"], 32) == {"f1": 0.0, "accuracy": 0.0}


# ----------------------------------------------------------------------------- glue

def test_glue_fine_tunes_and_scores_both_members_from_the_glue_layout(tmp_path, pair):
    data = suite_data.write_glue(tmp_path / "data")
    out = tmp_path / "out"
    argv = ["eval", str(pair), "--suite", "glue", "--tasks", "cola,stsb", "--data-dir", str(data), "--out", str(out),
            "--lr", "3e-4", "--epochs", "1", "--finetune-batch-size", "8", "--max-length", "32"]
    assert main(argv) == 0
    results = {(r.model, r.task): r for r in load_results(out)}
    for member in ("encoder", "decoder"):
        cola, stsb, average = (results[member, f"glue/{t}"] for t in ("cola", "stsb", "average"))
        assert set(cola.metrics) == {"mcc", "score"} and -1 <= cola.metrics["mcc"] <= 1
        assert set(stsb.metrics) == {"pearson", "spearman", "score"}
        assert average.metrics["score"] == pytest.approx((cola.metrics["score"] + stsb.metrics["score"]) / 2)
        assert cola.kind == member and cola.suite == "glue" and cola.library == "transformers"
        assert cola.library_version == __import__("transformers").__version__
        assert cola.data["sha256"]["train.tsv"] == sha256_file(data / "glue" / "CoLA" / "train.tsv")
        assert cola.n == 8 and cola.details["train"] == 24 and cola.details["learning_rate"] == 3e-4
        kept = Path(cola.details["finetuned"])
        assert json.loads((kept / "config.json").read_text())["architectures"][0].endswith("SequenceClassification")
    assert "glue/average" in (out / "report.md").read_text()


# ----------------------------------------------------------------------------- mteb

def test_mteb_runs_a_custom_task_on_both_members(tmp_path, members):
    task = suite_data.retrieval_task(suite_data.write_retrieval(tmp_path / "tiny"))
    steps = plan(["mteb"], Settings(tasks=(task,), batch_size=8))
    results = run_plan(members, steps, tmp_path / "out", say=quiet)
    assert [(r.model, r.task) for r in results] == [("encoder", "mteb/TinyCodeRetrieval"),
                                                    ("decoder", "mteb/TinyCodeRetrieval")]
    qrels = {f"q{i}": {f"d{i}": 1} for i in range(8)}
    for r in results:
        run = json.loads(Path(r.details["predictions"]).read_text())["default"]["test"]
        assert r.metrics["ndcg@10"] == pytest.approx(retrieval_scores(qrels, run)["ndcg@10"], abs=1e-4)
        assert r.library == "mteb" and r.data["sha256"]["qrels/test.jsonl"]
    assert results[1].details["model"] == "export, last-token pooling"


def _graded_beir(directory: Path) -> dict[str, dict[str, int]]:
    """A BEIR folder with titles, graded judgements, a zero-score row and a train split; half the queries
    are their relevant document's title and text word for word. Returns the test judgements."""
    topics = suite_data.TOPICS
    suite_data.jsonl(directory / "corpus.jsonl", [{"_id": f"d{i}", "title": topic, "text": code}
                                                  for i, (topic, _, code) in enumerate(topics)])
    queries = [f"{topic} {code}" if i % 2 else text for i, (topic, text, code) in enumerate(topics)]
    suite_data.jsonl(directory / "queries.jsonl", [{"_id": f"q{i}", "text": q} for i, q in enumerate(queries)])
    rows = [(f"q{i}", f"d{i}", 2) for i in range(len(topics))] + [(f"q{i}", f"d{(i + 3) % 8}", 1) for i in (0, 2)]
    (directory / "qrels").mkdir()
    (directory / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{q}\t{d}\t{score}\n" for q, d, score in [*rows, ("q4", "d5", 0)]))
    (directory / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td0\t1\n")
    qrels: dict[str, dict[str, int]] = {}
    for q, d, score in rows:
        qrels.setdefault(q, {})[d] = score
    return qrels


def test_mteb_scores_a_beir_folder_as_it_scores_the_same_set_as_a_dataset_repository(tmp_path, pair):
    """`--data-dir` with a BEIR folder (TSV qrels, as rank1 and `--task beir` read it) gives what mteb gives
    reading the same set from a dataset repository itself, and the nDCG@10 of its own predictions."""
    qrels = _graded_beir(tmp_path / "beir" / "SciFact")
    suite_data.beir_as_repository(tmp_path / "beir" / "SciFact", tmp_path / "hub" / "mteb" / "scifact")
    scored = {}
    for layout in ("beir", "hub"):
        argv = ["eval", str(pair / "encoder"), "--suite", "mteb", "--tasks", "SciFact", "--data-dir",
                str(tmp_path / layout), "--out", str(tmp_path / f"out-{layout}"), "--batch-size", "8"]
        assert main(argv) == 0
        [scored[layout]] = load_results(tmp_path / f"out-{layout}")
    beir, hub = scored["beir"], scored["hub"]
    run, hub_run = (json.loads(Path(r.details["predictions"]).read_text())["default"]["test"] for r in (beir, hub))
    assert run.keys() == hub_run.keys() and all(run[q] == pytest.approx(hub_run[q], abs=1e-6) for q in run)
    assert beir.metrics == pytest.approx(hub.metrics, abs=1e-9) and beir.n == hub.n == 8
    assert beir.metrics["ndcg@10"] == pytest.approx(retrieval_scores(qrels, run)["ndcg@10"], abs=1e-4)
    for i in (1, 3, 5, 7):  # a query that is its document word for word finds it first
        assert max(run[f"q{i}"], key=run[f"q{i}"].get) == f"d{i}"
    assert beir.data["sha256"]["qrels/test.tsv"] and beir.data["path"] == str(tmp_path / "beir" / "SciFact")


def documented_followir_layout() -> tuple[dict[str, list[str]], str]:
    """The FollowIR layout docs/evaluation.md shows: each file with the keys of its example row, and README.md."""
    text = (Path(__file__).parents[2] / "docs" / "evaluation.md").read_text()
    listing = text.split("```text\nDIR/mteb/Core17InstructionRetrieval/\n", 1)[1].split("```", 1)[0]
    files = {line.split()[0]: re.findall(r'"([\w-]+)":', line) for line in listing.splitlines()}
    readme = text.split("```yaml\n---\nconfigs:", 1)[1].split("```", 1)[0]
    return files, "---\nconfigs:" + readme


def test_a_repository_copy_with_tsv_qrels_is_read_as_the_beir_folder_it_is(tmp_path):
    """`datasets` fails on TSV qrels beside JSONL files in a local folder; twofold's BEIR reader reads them.
    JSONL qrels stay mteb's to read."""
    from twofold.eval.suites import mteb_suite

    tsv = suite_data.write_beir(tmp_path / "tsv" / "mteb" / "scifact")
    suite_data._readme(tsv, {"corpus": ("corpus", "corpus.jsonl"), "queries": ("queries", "queries.jsonl"),
                             "default": ("test", "qrels/test.tsv")})
    suite_data.beir_as_repository(suite_data.write_beir(tmp_path / "beir"), tmp_path / "jsonl" / "mteb" / "scifact")
    tasks = {name: mteb_suite.resolve("SciFact", Settings(tasks=("SciFact",), data_dir=tmp_path / name))
             for name in ("tsv", "jsonl")}
    assert mteb_suite.layout(tsv, tasks["tsv"]) == mteb_suite.BEIR and tasks["tsv"].data_loaded
    assert mteb_suite.layout(tmp_path / "jsonl" / "mteb" / "scifact", tasks["jsonl"]) == mteb_suite.REPOSITORY
    mteb_suite.check_data(["SciFact"], Settings(tasks=("SciFact",), data_dir=tmp_path / "jsonl"))  # mteb's loader
    ours, mtebs = (tasks[name].dataset["default"]["test"] for name in ("tsv", "jsonl"))
    assert ours["relevant_docs"] == mtebs["relevant_docs"] == {f"q{i}": {f"d{i}": 1} for i in range(8)}
    assert dict(zip(ours["queries"]["id"], ours["queries"]["text"])) == \
        dict(zip(mtebs["queries"]["id"], mtebs["queries"]["text"]))
    assert dict(zip(ours["corpus"]["id"], ours["corpus"]["text"])) == \
        dict(zip(mtebs["corpus"]["id"], mtebs["corpus"]["text"]))


def test_two_local_repository_copies_named_alike_are_each_read_as_they_are(tmp_path):
    """`datasets` caches a local copy under its folder's name and README: without a cache of its own per
    copy, the second copy below would be read as the first (and an edited copy as it was)."""
    from twofold.eval.suites import mteb_suite

    relevant = {}
    for copy, shift in (("first", 0), ("second", 1)):
        folder = suite_data.write_retrieval(tmp_path / copy / "mteb" / "scifact")
        suite_data.jsonl(folder / "qrels" / "test.jsonl", [{"query-id": f"q{i}", "corpus-id": f"d{(i + shift) % 8}",
                                                            "score": 1} for i in range(8)])
        options = Settings(tasks=("SciFact",), data_dir=tmp_path / copy)
        mteb_suite.check_data(["SciFact"], options)
        relevant[copy] = mteb_suite.resolve("SciFact", options).dataset["default"]["test"]["relevant_docs"]
    assert relevant["first"] == {f"q{i}": {f"d{i}": 1} for i in range(8)}
    assert relevant["second"] == {f"q{i}": {f"d{(i + 1) % 8}": 1} for i in range(8)}


def test_followir_p_mrr_is_mtebs_and_ours_on_the_same_run(tmp_path, pair):
    """On the layout docs/evaluation.md documents, file for file."""
    data = tmp_path / "data"
    written = suite_data.write_followir(data / "mteb" / "Core17InstructionRetrieval")
    files, readme = documented_followir_layout()
    assert sorted(files) == sorted(str(f.relative_to(written)) for f in written.rglob("*") if f.is_file())
    assert (written / "README.md").read_text() == readme
    for name, keys in files.items():
        if name.endswith(".jsonl"):
            assert list(json.loads((written / name).read_text().splitlines()[0])) == keys, name
    out = tmp_path / "out"
    argv = ["eval", str(pair), "--suite", "followir", "--tasks", "Core17InstructionRetrieval",
            "--data-dir", str(data), "--out", str(out), "--batch-size", "8"]
    assert main(argv) == 0
    diff = {row["query-id"]: row["corpus-ids"] for row in map(json.loads, (
        data / "mteb" / "Core17InstructionRetrieval" / "qrel_diff.jsonl").read_text().splitlines())}
    results = load_results(out)
    assert {r.model for r in results} == {"encoder", "decoder"}
    for r in results:
        run = json.loads(Path(r.details["predictions"]).read_text())["default"]["test"]
        original = {q[:-3]: docs for q, docs in run.items() if q.endswith("-og")}
        changed = {q[:-8]: docs for q, docs in run.items() if q.endswith("-changed")}
        assert r.metrics["p-mrr"] == pytest.approx(p_mrr(original, changed, diff), abs=1e-9)
        assert r.details["main_score"] == "p-mrr"


# ----------------------------------------------------------------------------- lm-eval

def _single_token(vocab, context: str, token: int) -> str | None:
    """The token's text, if lm-eval's split of context + text gives back exactly that token."""
    text = vocab.decode([token])
    return text if text.strip() and split_request(vocab, context, text)[1] == [token] else None


def _ranked_tokens(model, tokenizer, context: str, causal: bool) -> list[int]:
    """Token ids best first: the decoder's next token, the encoder's guess for a [MASK] after the context."""
    vocab = vocabulary(tokenizer)
    ids = vocab.encode([context])[0]
    with torch.no_grad():
        if causal:
            logits = model(torch.tensor([[tokenizer.special.bos, *ids]])).logits[0, -1]
        else:
            logits = model(torch.tensor([[vocab.cls, *ids, vocab.mask, vocab.sep]])).logits[0, len(ids) + 1]
    return logits.argsort(descending=True).tolist()


def _choices(model, tokenizer, contexts, causal):
    """Per context: (greedy choice text, two other single-token choices)."""
    vocab = vocabulary(tokenizer)
    picked = []
    for context in contexts:
        ranked = _ranked_tokens(model, tokenizer, context, causal)
        texts = [_single_token(vocab, context, t) for t in ranked[:400]]
        if texts[0] is None:
            continue  # its greedy token does not survive the split: no known answer here
        others = [t for t in texts[1:] if t is not None][-2:]
        picked.append((context, texts[0], others))
    assert len(picked) >= 3
    return picked


CONTEXTS = ["import", "def read(path):\n", "class Parser", "    return", "for line in", "x = json.", "if not",
            "from os import", "self.", "raise ValueError("]
TARGETS = [("import", " os\nimport sys"), ("def read(path):\n", "    return open(path).read()"),
           ("x = ", "json.loads(text)"), ("for line in", " lines:\n        pass")]


def test_lm_eval_scores_both_members_on_known_answers_and_as_twofold_does(tmp_path, pair, members, encoder, decoder,
                                                                          tokenizer):
    tasks = tmp_path / "data" / "lm-eval"
    for member, model in (("encoder", encoder), ("decoder", decoder)):
        picked = _choices(model, tokenizer, CONTEXTS, model.config.causal)
        suite_data.write_lmeval(tasks, f"greedy_{member}", [
            {"context": c, "choices": [*others, greedy], "gold": 2} for c, greedy, others in picked])
        suite_data.write_lmeval(tasks, f"reversed_{member}", [
            {"context": c, "choices": [*others, greedy], "gold": 0} for c, greedy, others in picked])
        suite_data.write_lmeval(tasks, f"greedy_ll_{member}", [
            {"context": c, "target": greedy} for c, greedy, _ in picked], kind="loglikelihood")
    suite_data.write_lmeval(tasks, "text_ll", [{"context": c, "target": t} for c, t in TARGETS], kind="loglikelihood")
    names = ("greedy_encoder", "reversed_encoder", "greedy_ll_encoder", "greedy_decoder", "reversed_decoder",
             "greedy_ll_decoder", "text_ll")
    steps = plan(["lm-eval"], Settings(tasks=names, data_dir=tmp_path / "data", batch_size=7))
    results = {(r.model, r.task.split("/")[1]): r for r in run_plan(members, steps, tmp_path / "out", say=quiet)}
    for member in ("encoder", "decoder"):
        assert results[member, f"greedy_{member}"].metrics["acc"] == 1.0
        assert results[member, f"reversed_{member}"].metrics["acc"] == 0.0
        assert results[member, f"greedy_ll_{member}"].metrics["acc"] == 1.0  # lm-eval's is_greedy
        assert results[member, "text_ll"].library == "lm-eval" and results[member, "text_ll"].n == len(TARGETS)
    assert results["encoder", "text_ll"].details["model"] == "twofold-mlm (pseudo-log-likelihood)"
    # the decoder through lm-eval's hf model: the log-likelihood twofold's own scoring gives
    ours = np.mean([continuation_logprob(decoder, tokenizer, c, t)[0] for c, t in TARGETS])
    assert -math.log(results["decoder", "text_ll"].metrics["perplexity"]) == pytest.approx(ours, abs=1e-4)
    # the encoder: each continuation token masked alone, one at a time, with twofold's model
    vocab = vocabulary(tokenizer)
    naive = []
    for context, target in TARGETS:
        before, scored = split_request(vocab, context, target)
        ids = [vocab.cls, *before, *scored, vocab.sep]
        total = 0.0
        for offset, token in enumerate(scored):
            masked = list(ids)
            masked[1 + len(before) + offset] = vocab.mask
            with torch.no_grad():
                logits = encoder(torch.tensor([masked])).logits[0, 1 + len(before) + offset]
            total += float(logits.log_softmax(-1)[token])
        naive.append(total)
    assert -math.log(results["encoder", "text_ll"].metrics["perplexity"]) == pytest.approx(np.mean(naive), abs=1e-4)


def test_the_masked_lm_scorer_batches_as_it_scores_one_by_one(encoder, tokenizer):
    """Padding, length sorting and the batch size change nothing (twofold model and transformers' alike)."""
    requests = [(c, t) for c, t in TARGETS] + [("", "import os"), ("x", " = 1")]
    one = [pseudo_loglikelihood(encoder, tokenizer, [r], batch_size=1)[0] for r in requests]
    batched = pseudo_loglikelihood(encoder, tokenizer, requests, batch_size=5)
    assert [v for v, _ in batched] == pytest.approx([v for v, _ in one], abs=1e-5)


# ----------------------------------------------------------------------------- rank1

def test_rank1_reports_ndcg_before_and_after_with_perfect_and_reversed_first_stages(tmp_path, pair, capsys):
    data = tmp_path / "data"
    suite_data.write_beir(data / "tiny")
    documents = [f"d{i}" for i in range(8)]
    perfect = {f"q{i}": [f"d{i}"] + [d for d in documents if d != f"d{i}"] for i in range(8)}
    reversed_ = {q: docs[::-1] for q, docs in perfect.items()}
    scores = {}
    for name, ranking in (("perfect", perfect), ("reversed", reversed_)):
        out = tmp_path / name
        argv = ["eval", str(pair), "--suite", "rank1", "--tasks", "tiny", "--data-dir", str(data), "--out", str(out),
                "--first-stage", str(suite_data.write_run(tmp_path / f"{name}.trec", ranking)), "--depth", "8"]
        assert main(argv) == 0
        scores[name] = {r.variant: r for r in load_results(out)}
    assert "skipping --suite rank1 (an encoder" in capsys.readouterr().out
    assert scores["perfect"]["first-stage"].metrics["ndcg@10"] == 1.0
    assert scores["reversed"]["first-stage"].metrics["ndcg@10"] == pytest.approx(1 / math.log2(8 + 1))
    # the reranker sees the same passages either way: its order, hence its nDCG, does not depend on theirs
    # (up to the first stage breaking exact ties)
    after = [scores[name]["reranked"] for name in ("perfect", "reversed")]
    assert all(0 <= r.metrics["ndcg@10"] <= 1 and r.details["passages_per_second"] > 0 for r in after)
    assert {r.model for r in after} == {"decoder"}


def test_rank1_score_is_p_true_over_true_and_false_from_the_final_logits(pair, decoder, tokenizer):
    from twofold.eval.suites.rank1 import PROMPT, Rank1Scorer

    scorer = Rank1Scorer(pair / "decoder", think_tokens=0, batch_size=2)
    pairs = [("parse json", "def loads(s): return json.decoder.decode(s)"), ("sort numbers", "xs.sort()")]
    got = scorer.scores(pairs)
    true, false = (tokenizer.encode_batch([w])[0][0] for w in (" true", " false"))
    for (query, passage), value in zip(pairs, got):
        text = PROMPT.format(query=query, passage=passage) + "\n</think>"
        ids = torch.tensor([[tokenizer.special.bos, *tokenizer.encode_batch([text])[0]]])
        with torch.no_grad():
            last = decoder(ids).logits[0, -1]
        assert value == pytest.approx(float(torch.softmax(last[[true, false]], -1)[0]), abs=1e-5)
    thinking = Rank1Scorer(pair / "decoder", think_tokens=5)
    prompt = thinking.prompt_ids(*pairs[0])
    assert len(prompt) < len(thinking._think(prompt)) <= len(prompt) + 5 + len(
        tokenizer.encode_batch(["\n</think>"])[0]) + 5


# ----------------------------------------------------------------------------- the runner

def test_a_failing_task_is_recorded_and_the_suite_goes_on_keeping_earlier_results(tmp_path, members, monkeypatch):
    from twofold.eval.suites import rank1

    data = tmp_path / "data"
    suite_data.write_beir(data / "good")
    suite_data.write_beir(data / "bad")
    out = tmp_path / "out"
    out.mkdir()
    earlier = Result(task="glue/cola", model="decoder", metrics={"mcc": 0.5}, seed=0, n=8, suite="glue")
    (out / "earlier.json").write_text(json.dumps(earlier.to_dict()))
    real = rank1.first_stage

    def first_stage(data, options):
        if data.name == "bad":
            raise RuntimeError("the index broke\nsecond line")
        return real(data, options)

    monkeypatch.setattr(rank1, "first_stage", first_stage)
    steps = plan(["rank1"], Settings(tasks=("bad", "good"), data_dir=data, depth=8))
    results = run_plan(members[1:], steps, out, say=quiet)
    failed = [r for r in results if r.error]
    assert [(r.task, r.error) for r in failed] == [("rank1/bad", "RuntimeError: the index broke")]
    assert {r.variant for r in results if r.task == "rank1/good"} == {"first-stage", "reranked"}
    on_disk = load_results(out)
    assert any(r.error for r in on_disk) and any(r.task == "glue/cola" and r.metrics for r in on_disk)
    monkeypatch.setattr(rank1, "first_stage", real)  # the task works now: its error record goes
    run_plan(members[1:], plan(["rank1"], Settings(tasks=("bad",), data_dir=data, depth=8)), out, say=quiet)
    assert not any(r.error for r in load_results(out))


def test_suites_run_on_every_tagged_checkpoint_of_a_run(tmp_path, tokenizer):
    from tests.eval.conftest import tagged_run

    run = tagged_run(tmp_path / "decoder-run", tokenizer, causal=True)
    data = tmp_path / "data"
    suite_data.write_beir(data / "tiny")
    out = tmp_path / "out"
    argv = ["eval", str(run), "--all-checkpoints", "--tokenizer", str(Path(tokenizer.source).parent),
            "--suite", "rank1", "--data-dir", str(data), "--tasks", "tiny", "--depth", "4", "--out", str(out)]
    assert main(argv) == 0
    reranked = sorted((r.checkpoint, r.tokens) for r in load_results(out) if r.variant == "reranked")
    assert reranked == [("step1", 3000), ("step2", 6000)]
    assert (out / "vs-tokens.png").is_file() and not any((out / "work" / "exports").iterdir())


def test_old_results_still_load_and_new_ones_round_trip(tmp_path):
    old = {"task": "lm", "model": "encoder", "metrics": {"mlm_accuracy": 0.5}, "seed": 0, "n": 10}
    (tmp_path / "old.json").write_text(json.dumps(old))
    new = Result(task="mteb/SciFact", model="encoder", metrics={"ndcg@10": 0.3}, seed=0, n=300, suite="mteb",
                 library="mteb", library_version="2.26.24", data={"dataset": "mteb/scifact", "revision": "abc"})
    (tmp_path / "new.json").write_text(json.dumps(new.to_dict()))
    loaded = {r.task: r for r in load_results(tmp_path)}
    assert loaded["lm"].suite == "" and loaded["lm"].data == {}
    assert loaded["mteb/SciFact"] == new
    bad = {**new.to_dict(), "library_version": 2}
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(TwofoldError, match="library_version is 2, not text"):
        load_results(tmp_path / "bad.json")


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("make_argv, message", [
    (lambda d, p: ["--suite", "gleu"], "unknown suite 'gleu'; valid suites: glue, mteb, mteb-retrieval"),
    (lambda d, p: ["--suite", "glue", "--tasks", "cola,wnli"], "unknown task 'wnli'; valid tasks: cola, sst2"),
    (lambda d, p: ["--suite", "followir", "--tasks", "SciFact"], "unknown task 'SciFact'; valid tasks: Core17"),
    (lambda d, p: ["--suite", "mteb"], "name the MTEB tasks with --tasks"),
    (lambda d, p: ["--suite", "mteb", "--tasks", "SciFakt"], "unknown MTEB task 'SciFakt'; close: SciFact"),
    pytest.param(lambda d, p: ["--suite", "lm-eval", "--tasks", "arc_eazy", "--data-dir", str(d)],
                 "unknown task 'arc_eazy'; close: arc_easy", marks=pytest.mark.slow),  # indexes all of lm-eval: 20 s
    (lambda d, p: ["--suite", "glue", "--tasks", "cola", "--data-dir", str(d)], "CoLA: missing; --data-dir holds"),
    (lambda d, p: ["--suite", "glue", "--tasks", "mrpc", "--data-dir", str(d)], "MRPC/dev.tsv: missing"),
    (lambda d, p: ["--suite", "followir", "--tasks", "Core17InstructionRetrieval", "--data-dir", str(d)],
     "the local copy of Core17InstructionRetrieval does not load"),
    (lambda d, p: ["--suite", "rank1", "--tasks", "nothere", "--data-dir", str(d)], "unknown task 'nothere'"),
    (lambda d, p: ["--suite", "rank1", "--tasks", "tiny", "--data-dir", str(d), "--first-stage", "bm52"],
     "--first-stage 'bm52': give bm25"),
    (lambda d, p: ["--suite", "glue", "--task", "lm"], "--task runs the built-in tasks and --suite"),
    (lambda d, p: ["--suite", "glue", "--tasks", "gluee:cola"], "--tasks gluee:…: no suite 'gluee'"),
    (lambda d, p: ["--suite", "glue", "--tasks", "rank1:tiny"], "--suite rank1 is not asked for (--suite glue)"),
])
def test_bad_suite_input_is_one_line_and_exit_2(tmp_path, pair, capsys, make_argv, message):
    data = tmp_path / "data"
    (data / "glue" / "MRPC").mkdir(parents=True)
    (data / "glue" / "MRPC" / "train.tsv").write_text("Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\ta\tb\n")
    followir = suite_data.write_followir(data / "mteb" / "Core17InstructionRetrieval")
    (followir / "top_ranked.jsonl").unlink()  # a config the README declares is gone
    suite_data.write_beir(data / "tiny")
    out = tmp_path / "out"
    assert main(["eval", str(pair), *make_argv(data, pair), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err
    assert not out.exists()


@pytest.mark.parametrize("task, make, message", [
    ("SciFact", lambda d: (d / "notes.txt").write_text("scifact"),
     "SciFact: neither a copy of SciFact's dataset repository (mteb/scifact: README.md with its configs:) nor a "
     "BEIR folder (corpus.jsonl, queries.jsonl, qrels/test.tsv)"),
    ("SciFact", lambda d: (d / "qrels" / "test.tsv").rename(d / "qrels" / "train.tsv"),
     "SciFact: no qrels/test.tsv; mteb scores SciFact on split test"),
    ("SciFact", lambda d: (d / "queries.jsonl").unlink(), "SciFact: no queries.jsonl; a BEIR folder holds"),
    ("Core17InstructionRetrieval", lambda d: None, "a BEIR folder, but Core17InstructionRetrieval "
                                                   "(InstructionReranking) reads what BEIR does not hold"),
    ("CodeSearchNetRetrieval", lambda d: None, "a BEIR folder holds one set, but CodeSearchNetRetrieval has subsets"),
    ("NFCorpus", lambda d: None, "mteb/nfcorpus: missing; --data-dir holds, for each MTEB task, a copy of its"),
])
def test_a_local_copy_for_mteb_that_is_neither_layout_is_one_line(tmp_path, pair, capsys, task, make, message):
    folder = tmp_path / "data" / task
    if message.startswith("SciFact: neither"):
        folder.mkdir(parents=True)
    else:
        suite_data.write_beir(tmp_path / "data" / ("SciFact" if task == "NFCorpus" else task))
    make(folder)
    out = tmp_path / "out"
    argv = ["eval", str(pair), "--suite", "mteb", "--tasks", task, "--data-dir", str(tmp_path / "data"),
            "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err, err
    assert not out.exists()


def test_a_suite_refuses_a_model_it_cannot_evaluate_and_names_one_that_would(pair, capsys):
    assert main(["eval", str(pair / "encoder"), "--suite", "rank1"]) == 2
    err = capsys.readouterr().err
    assert "an encoder; --suite rank1 cannot evaluate it (it takes decoder); use --suite mteb" in err


def test_a_library_too_old_for_a_suite_is_one_line(pair, capsys, monkeypatch):
    from twofold.eval.suites import base

    monkeypatch.setattr(base, "version_of", lambda name: "1.38.0" if name == "mteb" else "")
    assert main(["eval", str(pair), "--suite", "csn"]) == 2
    assert "--suite mteb needs mteb >= 2.26, found 1.38.0; pip install -U 'twofold[suites]'" in capsys.readouterr().err
