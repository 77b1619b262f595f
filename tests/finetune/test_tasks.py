"""The five tasks' own choices, checked on the real libraries with tiny models and data (about a second a
training run): which pooling and head each member gets, what loss, batch sampler and arguments each trainer
is handed, which rows mining and the classifier's dataset build, and that each score names the metrics
the sweep selects on. PyLate (colbert) lives in its own environment (`make colbert`, tests/finetune/
test_colbert.py)."""

import numpy as np
import pytest
import torch

from twofold.errors import TwofoldError
from twofold.finetune import tasks
from twofold.finetune.datasets import LabelledData, RetrievalSet
from twofold.finetune.inputs import resolve
from twofold.finetune.recipes import recipe_for
from twofold.finetune.training import OrderRecorder

PAIRS = [{"query": f"how to parse item {i}", "positive": f"def parse_{i}(text): return text.split({i})"}
         for i in range(8)]


@pytest.fixture(scope="module")
def members(exports, tmp_path_factory):
    scratch = tmp_path_factory.mktemp("scratch")
    return {name: resolve(exports[name], scratch, name=name) for name in ("encoder", "decoder")}


@pytest.fixture
def trained(monkeypatch):
    """Every trainer a task hands to `train_with`, kept after its real training."""
    found = []
    real = tasks.train_with

    def keep(trainer, recorder):
        found.append(trainer)
        real(trainer, recorder)

    monkeypatch.setattr(tasks, "train_with", keep)
    return found


@pytest.mark.parametrize("task, member, pooling, used", [
    ("embed", "encoder", None, "mean"), ("embed", "decoder", None, "last"), ("embed", "decoder", "mean", "mean"),
    ("classify", "encoder", "cls", "cls"), ("rerank", "encoder", None, "mean"), ("rerank", "encoder", "cls", "cls"),
    ("rerank", "decoder", "mean", "last"), ("sparse", "encoder", "mean", "max"), ("colbert", "decoder", None, "none"),
    ("generate", "decoder", None, "none")])
def test_the_pooling_each_task_and_member_uses(members, task, member, pooling, used):
    assert tasks.pooling_used(task, members[member], recipe_for(task, pooling=pooling)) == used


def test_the_ir_metrics_are_picked_by_their_suffix_and_the_primary_metric_by_the_task():
    found = tasks._ir_metrics({"dev_cosine_ndcg@100": 0.1, "dev_cosine_ndcg@10": 0.5, "dev_dot_ndcg@10": 0.7,
                               "dev_cosine_mrr@10": np.float64(0.25), "dev_cosine_map@10": 0.9})
    assert found == {"ndcg@10": 0.5, "mrr@10": 0.25} and type(found["mrr@10"]) is float
    assert tasks._ir_metrics({"dev_cosine_ndcg@10": 0.5}) == {"ndcg@10": 0.5}
    regression = LabelledData("r", [], [], [], None)
    classes = LabelledData("c", [], [], [], ["a", "b"])
    assert [tasks.primary_metric("classify", d) for d in (regression, classes)] == ["pearson", "accuracy"]
    assert tasks.primary_metric("generate", classes) == "chrf" and tasks.primary_metric("rerank", None) == "ndcg@10"


def test_what_each_member_cannot_do(members):
    encoder, decoder = members["encoder"], members["decoder"]
    assert [tasks.unfit(t, encoder) for t in ("embed", "sparse", "rerank", "classify")] == [None] * 4
    assert [tasks.unfit(t, decoder) for t in ("embed", "rerank", "classify", "generate")] == [None] * 4
    assert "needs a masked-LM head" in tasks.unfit("sparse", decoder)
    assert "generate fine-tunes a decoder" in tasks.unfit("generate", encoder)
    tasks.check_fits("embed", decoder)
    with pytest.raises(TwofoldError, match="needs a masked-LM head"):
        tasks.check_fits("sparse", decoder)


@pytest.mark.parametrize("member, pooling, mode", [("encoder", None, "mean"), ("decoder", None, "lasttoken"),
                                                   ("encoder", "cls", "cls")])
def test_the_embedder_has_the_members_pooling_and_the_recipes_length(members, member, pooling, mode):
    model = tasks.embedder(members[member], recipe_for("embed", max_length=24, pooling=pooling))
    assert model.max_seq_length == 24 and model[1].get_config_dict()["pooling_mode"] == mode
    assert model[1].get_sentence_embedding_dimension() == model[0].get_word_embedding_dimension()


def test_mining_keeps_given_negatives_and_labels_and_mines_the_miners_top_documents(members):
    from datasets import Dataset

    given = [{**row, "negative_1": "x"} for row in PAIRS]
    assert tasks.mine(given, None, 3).to_list() == given  # negatives given: kept, nothing mined
    labelled = [{"query": "q", "document": "d", "label": 1.0}, {"query": "q", "document": "e", "label": 0.0}]
    assert tasks.mine(labelled, None, 2, "labeled-pair").to_list() == labelled
    assert tasks.mine(PAIRS, None, 0).to_list() == PAIRS
    assert tasks.mine(PAIRS, None, 0, "labeled-pair").to_list() == [
        {"query": r["query"], "passage": r["positive"], "label": 1.0} for r in PAIRS]
    miner = tasks.embedder(members["encoder"], recipe_for("embed", max_length=24))
    mined = tasks.mine(PAIRS, miner, 2)
    assert mined.column_names == ["query", "positive", "negative_1", "negative_2"] and len(mined) == len(PAIRS)
    scores = miner.similarity(miner.encode([PAIRS[0]["query"]]), miner.encode([r["positive"] for r in PAIRS]))[0]
    ranked = [PAIRS[i]["positive"] for i in scores.argsort(descending=True).tolist() if i != 0]
    assert [mined[0]["negative_1"], mined[0]["negative_2"]] == ranked[:2]  # the top two, not a sample
    pairs = tasks.mine(PAIRS, miner, 2, "labeled-pair")
    assert len(pairs) == 3 * len(PAIRS) and pairs["label"].count(1) == len(PAIRS)
    assert isinstance(pairs, Dataset)


@pytest.mark.parametrize("batch, mini, cached", [(8, 8, False), (8, 4, True), (4, 8, False)])
def test_the_ranking_loss_is_cached_only_when_a_batch_needs_mini_batches(members, batch, mini, cached):
    from sentence_transformers import losses

    model = tasks.embedder(members["encoder"], recipe_for("embed", max_length=16))
    loss = tasks._ranking_loss(losses, model, recipe_for("embed", batch_size=batch, mini_batch_size=mini))
    assert isinstance(loss, losses.CachedMultipleNegativesRankingLoss) is cached
    assert isinstance(loss, losses.MultipleNegativesRankingLoss) is not cached and loss.model is model
    if cached:
        assert loss.mini_batch_size == mini


def test_embed_trains_with_no_duplicate_batches_of_the_recipes_size(members, trained, tmp_path):
    from datasets import Dataset
    from sentence_transformers.training_args import BatchSamplers

    recipe = recipe_for("embed", batch_size=4, mini_batch_size=2, max_length=16, seed=3)
    model = tasks.TASK_TABLE["embed"].build(members["encoder"], recipe)
    recorder = OrderRecorder(None)
    tasks.TASK_TABLE["embed"].train(model, Dataset.from_list(PAIRS), recipe, 2e-4, tmp_path / "work", recorder)
    [trainer] = trained
    assert trainer.args.batch_sampler == BatchSamplers.NO_DUPLICATES and trainer.args.learning_rate == 2e-4
    assert trainer.args.per_device_train_batch_size == 4 and trainer.args.seed == 3
    assert trainer.loss.mini_batch_size == 2 and trainer.model is model
    assert trainer.args.output_dir == str(tmp_path / "work")
    assert (recorder.batches, recorder.steps) == (2, 2)


def test_sparse_is_splade_on_the_mlm_head_with_the_recipes_regularizers(members, trained, tmp_path):
    from datasets import Dataset
    from sentence_transformers.sparse_encoder import losses
    from sentence_transformers.training_args import BatchSamplers

    recipe = recipe_for("sparse", batch_size=4, max_length=16, query_regularizer=1e-3, document_regularizer=2e-3)
    model = tasks.TASK_TABLE["sparse"].build(members["encoder"], recipe)
    assert model.max_seq_length == 16 and model[1].pooling_strategy == "max"
    assert type(model[0].auto_model).__name__ == "ModernBertForMaskedLM"  # token weights from the MLM head
    with pytest.raises(TwofoldError, match="needs a masked-LM head"):
        tasks.TASK_TABLE["sparse"].build(members["decoder"], recipe)
    tasks.TASK_TABLE["sparse"].train(model, Dataset.from_list(PAIRS), recipe, 1e-4, tmp_path, OrderRecorder(None))
    [trainer] = trained
    assert isinstance(trainer.loss, losses.SpladeLoss) and trainer.args.batch_sampler == BatchSamplers.NO_DUPLICATES
    assert isinstance(trainer.loss.loss, losses.SparseMultipleNegativesRankingLoss) and trainer.loss.loss.model is model
    assert trainer.args.output_dir == str(tmp_path)
    assert (trainer.loss.query_regularizer_weight, trainer.loss.document_regularizer_weight) == (1e-3, 2e-3)
    assert (trainer.args.learning_rate, trainer.args.per_device_train_batch_size) == (1e-4, 4)


@pytest.mark.parametrize("member", ["encoder", "decoder"])
def test_the_reranker_is_a_one_output_scoring_head_seeded_by_the_recipe(members, member):
    recipe = recipe_for("rerank", max_length=20, seed=5, pooling="mean" if member == "encoder" else None)
    first, again = (tasks.TASK_TABLE["rerank"].build(members[member], recipe) for _ in range(2))
    config = first.model.config
    assert config.num_labels == 1 and first.max_seq_length == 20
    if member == "decoder":
        assert type(first.model).__name__ == "ModernBertDecoderForSequenceClassification"
    else:
        assert config.classifier_pooling == "mean"  # not transformers' default (cls)
    assert all(torch.equal(a, b) for a, b in zip(first.model.state_dict().values(), again.model.state_dict().values()))


def test_rerank_trains_with_binary_cross_entropy_weighting_positives(members, trained, tmp_path):
    from datasets import Dataset
    from sentence_transformers.cross_encoder import losses

    recipe = recipe_for("rerank", batch_size=4, max_length=16, pos_weight=3.0)
    model = tasks.TASK_TABLE["rerank"].build(members["encoder"], recipe)
    rows = [{"query": r["query"], "passage": r["positive"], "label": float(i % 2)} for i, r in enumerate(PAIRS)]
    tasks.TASK_TABLE["rerank"].train(model, Dataset.from_list(rows), recipe, 1e-4, tmp_path, OrderRecorder(None))
    [trainer] = trained
    assert isinstance(trainer.loss, losses.BinaryCrossEntropyLoss) and trainer.loss.pos_weight.item() == 3.0
    assert trainer.args.output_dir == str(tmp_path)
    assert (trainer.args.learning_rate, trainer.args.per_device_train_batch_size) == (1e-4, 4)


def identical_split() -> RetrievalSet:
    """Each query's relevant document is the query's own text: any model ranks it first."""
    texts = [r["query"] for r in PAIRS[:4]]
    return RetrievalSet({f"q{i}": t for i, t in enumerate(texts)},
                        {**{f"d{i}": t for i, t in enumerate(texts)}, **{f"o{i}": r["positive"] for i, r in
                                                                          enumerate(PAIRS)}},
                        {f"q{i}": {f"d{i}": 1} for i in range(4)})


def test_each_retrieval_score_is_ndcg_and_mrr_at_10(members):
    recipe = recipe_for("embed", max_length=24)
    split = identical_split()
    embed = tasks.TASK_TABLE["embed"]
    assert embed.score(embed.build(members["encoder"], recipe), split, recipe) == {"ndcg@10": 1.0, "mrr@10": 1.0}
    sparse = tasks.TASK_TABLE["sparse"]
    scores = sparse.score(sparse.build(members["encoder"], recipe_for("sparse", max_length=24)), split, recipe)
    assert set(scores) == {"ndcg@10", "mrr@10"} and 0 < scores["mrr@10"] <= 1
    rerank = tasks.TASK_TABLE["rerank"]
    others = [r["positive"] for r in PAIRS]
    samples = [{"query": q, "positive": [q], "negative": others} for q in split.queries.values()]
    scores = rerank.score(rerank.build(members["encoder"], recipe_for("rerank", max_length=24)), samples, recipe)
    assert set(scores) == {"ndcg@10", "mrr@10"} and 0 < scores["mrr@10"] <= 1


# ----------------------------------------------------------------------------- classify

@pytest.mark.parametrize("member", ["encoder", "decoder"])
def test_the_classifier_has_the_labels_names_or_one_regression_output(members, member):
    recipe = recipe_for("classify", seed=4, pooling="cls" if member == "encoder" else None)
    build = tasks.TASK_TABLE["classify"].build
    first = build(members[member], recipe, labels=["neg", "neu", "pos"])
    config = first.model.config
    assert (config.num_labels, config.id2label, config.label2id, config.problem_type) == (
        3, {0: "neg", 1: "neu", 2: "pos"}, {"neg": 0, "neu": 1, "pos": 2}, "single_label_classification")
    assert not first.regression and getattr(config, "classifier_pooling", "cls") == "cls"
    again = build(members[member], recipe, labels=["neg", "neu", "pos"])
    assert all(torch.equal(a, b) for a, b in zip(first.model.state_dict().values(), again.model.state_dict().values()))
    regression = build(members[member], recipe_for("classify"), labels=None)
    assert regression.regression and regression.model.config.num_labels == 1
    if member == "encoder":  # the member's pooling, not transformers' default (cls)
        assert regression.model.config.classifier_pooling == "mean"
    assert regression.model.config.problem_type == "regression"


def test_a_decoder_classifier_pools_the_last_token_only(members):
    with pytest.raises(TwofoldError, match="pools the last token; drop --pooling"):
        tasks.TASK_TABLE["classify"].build(members["decoder"], recipe_for("classify", pooling="mean"),
                                           labels=["a", "b"])
    built = tasks.TASK_TABLE["classify"].build(members["encoder"], recipe_for("classify"), labels=["a", "b"])
    assert built.model.config.classifier_pooling == "mean"


def test_the_classifiers_dataset_encodes_text_pairs_truncated_with_their_labels(members):
    classifier = tasks.TASK_TABLE["classify"].build(members["encoder"], recipe_for("classify"), labels=["a", "b"])
    long = " ".join(["word"] * 100)
    examples = [(("first text", "second text"), 1), ((long, "x"), 0)]
    data = tasks._classify_dataset(classifier, examples, recipe_for("classify", max_length=12))
    expected = classifier.tokenizer(["first text", long], ["second text", "x"], truncation=True, max_length=12)
    assert data["input_ids"] == expected["input_ids"] and len(data["input_ids"][1]) == 12
    assert data["labels"] == [1, 0] and all(type(y) is int for y in data["labels"])
    regression = tasks.TASK_TABLE["classify"].build(members["encoder"], recipe_for("classify"), labels=None)
    values = tasks._classify_dataset(regression, [(("a",), 1), (("b",), 2.5)], recipe_for("classify"))["labels"]
    assert values == [1.0, 2.5] and all(type(y) is float for y in values)


def test_classify_trains_on_the_encoded_examples_and_predicts_each_in_order(members, trained, tmp_path):
    recipe = recipe_for("classify", batch_size=4, max_length=16, epochs=1)
    classifier = tasks.TASK_TABLE["classify"].build(members["encoder"], recipe, labels=["a", "b"])
    examples = [((f"text number {i} " * (1 + i % 5),), i % 2) for i in range(70)]
    tasks.TASK_TABLE["classify"].train(classifier, examples[:8], recipe, 1e-4, tmp_path, OrderRecorder(None))
    [trainer] = trained
    assert (trainer.args.learning_rate, trainer.args.per_device_train_batch_size) == (1e-4, 4)
    assert trainer.train_dataset["labels"] == [y for _, y in examples[:8]] and trainer.args.output_dir == str(tmp_path)
    logits = tasks.predict(classifier, examples, recipe)  # two batches of 64 and 6, padded apart
    assert logits.shape == (70, 2)
    classifier.model.eval()
    with torch.no_grad():
        for i in (0, 3, 64, 69):
            alone = classifier.tokenizer(*zip(*[examples[i][0]]), truncation=True, max_length=16, return_tensors="pt")
            np.testing.assert_allclose(logits[i], classifier.model(**alone).logits[0].numpy(), atol=1e-4)
    scores = tasks.TASK_TABLE["classify"].score(classifier, examples, recipe)
    assert scores == tasks.classification_metrics(logits, [y for _, y in examples], regression=False)


def test_constant_regression_predictions_score_zero_correlation_and_a_saved_classifier_loads_back(members, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    regression = tasks.TASK_TABLE["classify"].build(members["encoder"], recipe_for("classify"), labels=None)
    examples = [(("same text",), float(i)) for i in range(4)]  # one text: one prediction, no correlation
    with pytest.warns(Warning):
        scores = tasks.TASK_TABLE["classify"].score(regression, examples, recipe_for("classify"))
    assert scores == {"pearson": 0.0, "spearman": 0.0}
    tasks.TASK_TABLE["classify"].save(regression, tmp_path / "out")
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out")
    assert (loaded.config.problem_type, loaded.config.num_labels) == ("regression", 1)
    assert AutoTokenizer.from_pretrained(tmp_path / "out").get_vocab() == regression.tokenizer.get_vocab()


def test_only_colbert_needs_an_environment_of_its_own(members):
    import importlib.util

    for task in ("embed", "sparse", "rerank", "classify", "generate"):
        tasks.check_environment(task)
    if importlib.util.find_spec("pylate") is None:
        with pytest.raises(TwofoldError, match=r"^colbert needs PyLate, which lives in its own environment .*"
                                               r"`make colbert` creates .venv-colbert"):
            tasks.check_environment("colbert")
        with pytest.raises(TwofoldError, match=r"^colbert needs PyLate"):  # building says so too, not ImportError
            tasks.TASK_TABLE["colbert"].build(members["encoder"], recipe_for("colbert"))


# ----------------------------------------------------------------------------- colbert, through a stand-in

@pytest.fixture
def pylate(monkeypatch):
    """A stand-in `pylate` written from the calls twofold makes (models.ColBERT, losses.CachedContrastive,
    utils.ColBERTCollator, evaluation.PyLateInformationRetrievalEvaluator): PyLate pins another
    sentence-transformers and lives in .venv-colbert, where tests/finetune/test_colbert.py trains the real one.
    Each part records what twofold hands it; Sentence Transformers' trainer is replaced by a recorder too."""
    import importlib.machinery
    import sys
    import types

    made = {}

    class ColBERT:
        def __init__(self, path, query_length=None, document_length=None):
            made["model"] = (path, query_length, document_length, torch.initial_seed())

        def tokenize(self, texts):
            return texts

    class CachedContrastive:
        def __init__(self, model, mini_batch_size=32):
            made["loss"] = (model, mini_batch_size)

    class ColBERTCollator:
        def __init__(self, tokenize):
            self.tokenize = tokenize

    class Evaluator:
        def __init__(self, queries, corpus, relevant_docs, ndcg_at_k=(10,), mrr_at_k=(10,), **kwargs):
            made["evaluator"] = (queries, corpus, relevant_docs)
            self.at = {"ndcg": list(ndcg_at_k), "mrr": list(mrr_at_k)}

        def __call__(self, model):
            made["scored"] = model
            return {f"split_MaxSim_{name}@{k}": 0.1 * k + (name == "mrr") for name, ks in self.at.items() for k in ks}

    module = types.ModuleType("pylate")
    module.__spec__ = importlib.machinery.ModuleSpec("pylate", None)
    module.models = types.SimpleNamespace(ColBERT=ColBERT)
    module.losses = types.SimpleNamespace(CachedContrastive=CachedContrastive)
    module.utils = types.SimpleNamespace(ColBERTCollator=ColBERTCollator)
    module.evaluation = types.ModuleType("pylate.evaluation")
    module.evaluation.PyLateInformationRetrievalEvaluator = Evaluator
    monkeypatch.setitem(sys.modules, "pylate", module)
    monkeypatch.setitem(sys.modules, "pylate.evaluation", module.evaluation)

    import sentence_transformers

    class Trainer:
        def __init__(self, **kwargs):
            made["trainer"] = kwargs

    monkeypatch.setattr(sentence_transformers, "SentenceTransformerTrainer", Trainer)
    monkeypatch.setattr(tasks, "train_with", lambda trainer, recorder: made.setdefault("trained", (trainer, recorder)))
    return made


def test_colbert_gets_the_recipes_lengths_seed_loss_sampler_and_collator(members, pylate, tmp_path):
    from sentence_transformers.training_args import BatchSamplers

    tasks.check_environment("colbert")  # PyLate found: nothing to refuse
    colbert = tasks.TASK_TABLE["colbert"]
    recipe = recipe_for("colbert", query_length=12, max_length=40, mini_batch_size=4, batch_size=8, seed=9)
    model = colbert.build(members["encoder"], recipe)
    assert pylate["model"] == (members["encoder"].path, 12, 40, 9)
    recorder = OrderRecorder(None)
    colbert.train(model, PAIRS, recipe, 3e-5, tmp_path / "work", recorder)
    trainer, handed = pylate["trained"]
    kwargs = pylate["trainer"]
    assert handed is recorder and trainer is not None and pylate["loss"] == (model, 4)
    assert (kwargs["model"], kwargs["train_dataset"]) == (model, PAIRS)
    assert kwargs["data_collator"].tokenize == model.tokenize and kwargs["loss"] is not None
    args = kwargs["args"]
    assert (args.learning_rate, args.per_device_train_batch_size, args.output_dir, args.batch_sampler) == (
        3e-5, 8, str(tmp_path / "work"), BatchSamplers.NO_DUPLICATES)


def test_colbert_is_scored_by_pylates_evaluator_on_the_split(members, pylate):
    split = identical_split()
    colbert = tasks.TASK_TABLE["colbert"]
    model = colbert.build(members["encoder"], recipe_for("colbert"))
    assert colbert.score(model, split, recipe_for("colbert")) == {"ndcg@10": pytest.approx(1.0),
                                                                  "mrr@10": pytest.approx(2.0)}
    assert pylate["evaluator"] == (split.queries, split.corpus, split.relevant) and pylate["scored"] is model
