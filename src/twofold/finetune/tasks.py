"""The five tasks, each on the library the field uses for it. One `Task` per name:

    build(base, recipe)            the library's model, not fine-tuned yet
    train(model, data, recipe, lr, workdir, recorder)   fine-tune it in place
    score(model, split, recipe)    held-out metrics from the library's own evaluator
    save(model, out)               a directory the library loads unchanged

Retrieval tasks score nDCG@10 (and MRR@10) with Sentence Transformers' / PyLate's
information-retrieval evaluators (rerank: CrossEncoderRerankingEvaluator over each query's
positives and mined hard negatives); classify scores accuracy, macro-F1 and Matthews
correlation, or Pearson / Spearman for regression.

generate (`twofold.finetune.sft`) fine-tunes a decoder on prompt -> completion pairs with
transformers' Trainer, the loss on the completion only, and scores greedy generations with
sacrebleu's chrF, chrF++ and BLEU and exact match.

Imported where used, being optional and heavy: sentence-transformers, transformers, datasets,
scipy and scikit-learn (the `finetune` extra), PyLate (its own environment, `make colbert`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from twofold.errors import TwofoldError
from twofold.finetune import sft
from twofold.finetune.datasets import LabelledData, RetrievalData, RetrievalSet
from twofold.finetune.inputs import BaseModel
from twofold.finetune.recipes import Recipe
from twofold.finetune.training import OrderRecorder, train_with, training_args
from twofold.quiet import quiet_head_load_reports

ST_POOLING = {"mean": "mean", "last": "lasttoken", "cls": "cls"}


def pooling_for(base: BaseModel, recipe: Recipe) -> str:
    """The recipe's pooling, else the member's: encoder mean, decoder last token."""
    return recipe.pooling or ("last" if base.causal else "mean")


def pooling_used(task: str, base: BaseModel, recipe: Recipe) -> str:
    """What turns token states into the task's output, as built below (recorded in finetune.json)."""
    if task == "sparse":
        return "max"  # SPLADE: max over tokens of the MLM logits
    if task == "colbert":
        return "none"  # late interaction: one vector per token
    if task == "generate":
        return "none"  # the LM head predicts the next token at every position
    if task == "rerank" and base.causal:
        return "last"  # ModernBertDecoderForSequenceClassification scores the last token
    return pooling_for(base, recipe)


def _ir_metrics(results: dict) -> dict[str, float]:
    """nDCG@10 and MRR@10 out of an evaluator's {name_score_metric: value}."""
    out = {}
    for metric in ("ndcg@10", "mrr@10"):
        values = [v for k, v in results.items() if k.endswith(metric)]
        if values:
            out[metric] = float(values[0])
    return out


def unfit(task: str, base: BaseModel) -> str | None:
    """Why the model cannot do `task`, or None when it can."""
    if task == "sparse" and base.causal:
        return (f"{base.path}: sparse (SPLADE) needs a masked-LM head; {base.name} is a decoder. "
                "Fine-tune the encoder, or use embed/rerank/colbert/classify for the decoder")
    if task == "generate" and not base.causal:
        return (f"{base.path}: {base.name} is an encoder and generate fine-tunes a decoder; continue it as "
                f"a decoder first (`twofold train --init-from {base.path} --objective clm …`) and fine-tune that run")
    return None


def check_fits(task: str, base: BaseModel) -> None:
    """Refuse, before any work, a task the model cannot do."""
    reason = unfit(task, base)
    if reason:
        raise TwofoldError(reason)


# ----------------------------------------------------------------------------- mining

def embedder(base: BaseModel, recipe: Recipe):
    """A Sentence Transformers embedder of the base model with the member's pooling."""
    from sentence_transformers import SentenceTransformer, models

    quiet_head_load_reports()
    transformer = models.Transformer(base.path, max_seq_length=recipe.max_length)
    size = transformer.get_embedding_dimension() if hasattr(transformer, "get_embedding_dimension") \
        else transformer.get_word_embedding_dimension()
    pooling = models.Pooling(size, pooling_mode=ST_POOLING[pooling_for(base, recipe)])
    return SentenceTransformer(modules=[transformer, pooling])


def mine(train: list[dict], miner, count: int, output_format: str = "n-tuple", seed: int = 0):
    """Hard negatives with Sentence Transformers' own `mine_hard_negatives`, from the training positives.

    Rows that already carry negatives keep them. Returns a `datasets.Dataset`.
    """
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives

    pairs = [{"query": r["query"], "positive": r["positive"]} for r in train if "positive" in r]
    if count == 0 or any(k.startswith("negative") or k == "label" for r in train for k in r):
        if output_format == "labeled-pair" and not any("label" in r for r in train):
            return Dataset.from_list([{"query": r["query"], "passage": r["positive"], "label": 1.0} for r in pairs])
        return Dataset.from_list(train)
    torch.manual_seed(seed)
    return mine_hard_negatives(Dataset.from_list(pairs), miner, num_negatives=count, sampling_strategy="top",
                               output_format=output_format, batch_size=64, verbose=False)


# ----------------------------------------------------------------------------- embed

def _build_embed(base: BaseModel, recipe: Recipe):
    return embedder(base, recipe)


def _train_embed(model, data, recipe: Recipe, lr: float, workdir: Path, recorder: OrderRecorder) -> None:
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments, losses
    from sentence_transformers.training_args import BatchSamplers

    loss = _ranking_loss(losses, model, recipe)
    args = training_args(SentenceTransformerTrainingArguments, recipe, lr, workdir,
                          batch_sampler=BatchSamplers.NO_DUPLICATES)
    train_with(SentenceTransformerTrainer(model=model, args=args, train_dataset=data, loss=loss), recorder)


def _ranking_loss(losses, model, recipe: Recipe):
    """In-batch-negatives ranking loss. GradCache (the cached loss) splits a batch that does not fit
    in memory into mini-batches at the price of a second forward pass; a batch that fits in one
    mini-batch gets the plain loss, whose value and gradient are the same."""
    if recipe.batch_size <= recipe.mini_batch_size:
        return losses.MultipleNegativesRankingLoss(model)
    return losses.CachedMultipleNegativesRankingLoss(model, mini_batch_size=recipe.mini_batch_size)


def _score_embed(model, split: RetrievalSet, recipe: Recipe) -> dict[str, float]:
    from sentence_transformers.evaluation import InformationRetrievalEvaluator

    evaluator = InformationRetrievalEvaluator(split.queries, split.corpus, split.relevant, ndcg_at_k=[10],
                                              mrr_at_k=[10],
                                              accuracy_at_k=[1], precision_recall_at_k=[10], map_at_k=[10],
                                              batch_size=64, write_csv=False)
    return _ir_metrics(evaluator(model))


# ----------------------------------------------------------------------------- sparse

def _build_sparse(base: BaseModel, recipe: Recipe):
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.sparse_encoder import SparseEncoder
    from sentence_transformers.sparse_encoder.modules import SpladePooling

    check_fits("sparse", base)
    transformer = Transformer(base.path, transformer_task="fill-mask", max_seq_length=recipe.max_length)
    return SparseEncoder(modules=[transformer, SpladePooling(pooling_strategy="max")])


def _train_sparse(model, data, recipe: Recipe, lr: float, workdir: Path, recorder: OrderRecorder) -> None:
    from sentence_transformers.sparse_encoder import SparseEncoderTrainer, SparseEncoderTrainingArguments, losses
    from sentence_transformers.training_args import BatchSamplers

    loss = losses.SpladeLoss(model, losses.SparseMultipleNegativesRankingLoss(model),
                             query_regularizer_weight=recipe.query_regularizer,
                             document_regularizer_weight=recipe.document_regularizer)
    args = training_args(SparseEncoderTrainingArguments, recipe, lr, workdir,
                          batch_sampler=BatchSamplers.NO_DUPLICATES)
    train_with(SparseEncoderTrainer(model=model, args=args, train_dataset=data, loss=loss), recorder)


def _score_sparse(model, split: RetrievalSet, recipe: Recipe) -> dict[str, float]:
    from sentence_transformers.sparse_encoder.evaluation import SparseInformationRetrievalEvaluator

    evaluator = SparseInformationRetrievalEvaluator(split.queries, split.corpus, split.relevant, ndcg_at_k=[10],
                                                    mrr_at_k=[10], accuracy_at_k=[1], precision_recall_at_k=[10],
                                                    map_at_k=[10], batch_size=64, write_csv=False)
    return _ir_metrics(evaluator(model))


# ----------------------------------------------------------------------------- rerank

def _build_rerank(base: BaseModel, recipe: Recipe):
    from sentence_transformers.cross_encoder import CrossEncoder

    torch.manual_seed(recipe.seed)  # the fresh scoring head
    # A scoring head on both members (Sentence Transformers would make a decoder a yes/no-logit
    # reranker): transformers' ModernBertDecoderForSequenceClassification pools the last token.
    config = {"architectures": ["ModernBertDecoderForSequenceClassification"]} if base.causal else \
        {"classifier_pooling": pooling_for(base, recipe)}
    return CrossEncoder(base.path, num_labels=1, max_length=recipe.max_length, config_kwargs=config)


def _train_rerank(model, data, recipe: Recipe, lr: float, workdir: Path, recorder: OrderRecorder) -> None:
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments, losses

    loss = losses.BinaryCrossEntropyLoss(model, pos_weight=torch.tensor(recipe.pos_weight))
    args = training_args(CrossEncoderTrainingArguments, recipe, lr, workdir)
    train_with(CrossEncoderTrainer(model=model, args=args, train_dataset=data, loss=loss), recorder)


def rerank_candidates(split: RetrievalSet, miner, count: int = 19) -> list[dict]:
    """Each query with its positives and the `count` documents the miner ranks highest otherwise."""
    queries = list(split.qrels)
    ids = list(split.corpus)
    query_vectors = miner.encode([split.queries[q] for q in queries], convert_to_tensor=True, batch_size=64)
    doc_vectors = miner.encode([split.corpus[d] for d in ids], convert_to_tensor=True, batch_size=64)
    scores = miner.similarity(query_vectors, doc_vectors)
    samples = []
    for row, q in zip(scores, queries):
        ranked = [ids[i] for i in row.argsort(descending=True).tolist() if ids[i] not in split.qrels[q]][:count]
        samples.append({"query": split.queries[q], "positive": [split.corpus[d] for d in sorted(split.qrels[q])],
                        "negative": [split.corpus[d] for d in ranked]})
    return samples


def _score_rerank(model, samples: list[dict], recipe: Recipe) -> dict[str, float]:
    from sentence_transformers.cross_encoder.evaluation import CrossEncoderRerankingEvaluator

    evaluator = CrossEncoderRerankingEvaluator(samples, at_k=10, batch_size=64, write_csv=False)
    return _ir_metrics(evaluator(model))


# ----------------------------------------------------------------------------- colbert (PyLate)

def check_environment(task: str) -> None:
    """Refuse, before the data is read or anything mined, a task whose library is not installed here."""
    import importlib.util

    if task == "colbert" and importlib.util.find_spec("pylate") is None:
        raise TwofoldError("colbert needs PyLate, which lives in its own environment (its pins clash with ours): "
                           "`make colbert` creates .venv-colbert; run `.venv-colbert/bin/twofold finetune colbert …`")


def _build_colbert(base: BaseModel, recipe: Recipe):
    check_environment("colbert")
    from pylate import models

    torch.manual_seed(recipe.seed)  # the fresh projection
    return models.ColBERT(base.path, query_length=recipe.query_length, document_length=recipe.max_length)


def _train_colbert(model, data, recipe: Recipe, lr: float, workdir: Path, recorder: OrderRecorder) -> None:
    from pylate import losses, utils
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.training_args import BatchSamplers

    loss = losses.CachedContrastive(model, mini_batch_size=recipe.mini_batch_size)
    args = training_args(SentenceTransformerTrainingArguments, recipe, lr, workdir,
                          batch_sampler=BatchSamplers.NO_DUPLICATES)
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=data, loss=loss,
                                         data_collator=utils.ColBERTCollator(model.tokenize))
    train_with(trainer, recorder)


def _score_colbert(model, split: RetrievalSet, recipe: Recipe) -> dict[str, float]:
    from pylate.evaluation import PyLateInformationRetrievalEvaluator

    evaluator = PyLateInformationRetrievalEvaluator(split.queries, split.corpus, split.relevant, ndcg_at_k=[10],
                                                    mrr_at_k=[10], accuracy_at_k=[1], precision_recall_at_k=[10],
                                                    map_at_k=[10], batch_size=64, write_csv=False)
    return _ir_metrics(evaluator(model))


# ----------------------------------------------------------------------------- classify

@dataclass
class Classifier:
    """A transformers sequence classifier and its tokenizer, as the Trainer fine-tunes it."""

    model: torch.nn.Module
    tokenizer: object
    regression: bool


def _build_classify(base: BaseModel, recipe: Recipe, labels: list[str] | None = None):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(recipe.seed)  # the fresh classifier
    extra = {} if base.causal else {"classifier_pooling": pooling_for(base, recipe)}
    if base.causal and pooling_for(base, recipe) != "last":
        raise TwofoldError("classify: transformers' decoder classifier pools the last token; drop --pooling")
    if labels is None:
        extra |= {"num_labels": 1, "problem_type": "regression"}
    else:
        extra |= {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
                  "label2id": {name: i for i, name in enumerate(labels)},
                  "problem_type": "single_label_classification"}
    model = AutoModelForSequenceClassification.from_pretrained(base.path, **extra)
    tokenizer = AutoTokenizer.from_pretrained(base.path)
    return Classifier(model, tokenizer, labels is None)


def _classify_dataset(classifier: Classifier, examples, recipe: Recipe):
    from datasets import Dataset

    texts = [t for t, _ in examples]
    columns = list(zip(*texts))
    encoded = classifier.tokenizer(*columns, truncation=True, max_length=recipe.max_length)
    labels = [float(y) if classifier.regression else int(y) for _, y in examples]
    return Dataset.from_dict({**encoded, "labels": labels})


def _train_classify(classifier: Classifier, examples, recipe: Recipe, lr: float, workdir: Path,
                    recorder: OrderRecorder) -> None:
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    args = training_args(TrainingArguments, recipe, lr, workdir)
    trainer = Trainer(model=classifier.model, args=args, train_dataset=_classify_dataset(classifier, examples, recipe),
                      data_collator=DataCollatorWithPadding(classifier.tokenizer))
    train_with(trainer, recorder)


@torch.no_grad()
def predict(classifier: Classifier, examples, recipe: Recipe) -> np.ndarray:
    """Logits [N, labels] (regression: [N, 1]) in the examples' order."""
    from transformers import DataCollatorWithPadding

    data = _classify_dataset(classifier, examples, recipe).remove_columns("labels")
    collate = DataCollatorWithPadding(classifier.tokenizer)
    model = classifier.model.eval()
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(data), 64):
        batch = collate([data[i] for i in range(start, min(start + 64, len(data)))])
        out.append(model(**{k: v.to(device) for k, v in batch.items()}).logits.float().cpu())
    return torch.cat(out).numpy()


def classification_metrics(logits: np.ndarray, gold, regression: bool) -> dict[str, float]:
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    if regression:
        predictions = logits[:, 0]
        return {"pearson": float(pearsonr(predictions, gold)[0]), "spearman": float(spearmanr(predictions, gold)[0])}
    predictions = logits.argmax(-1)
    return {"accuracy": float(accuracy_score(gold, predictions)),
            "f1": float(f1_score(gold, predictions, average="macro")),
            "mcc": float(matthews_corrcoef(gold, predictions))}


def _score_classify(classifier: Classifier, examples, recipe: Recipe) -> dict[str, float]:
    metrics = classification_metrics(predict(classifier, examples, recipe), [y for _, y in examples],
                                     classifier.regression)
    return {k: (0.0 if np.isnan(v) else v) for k, v in metrics.items()}  # constant predictions: no correlation


def _save_classify(classifier: Classifier, out: Path) -> None:
    classifier.model.save_pretrained(out)
    classifier.tokenizer.save_pretrained(out)


# ----------------------------------------------------------------------------- the table

@dataclass(frozen=True)
class Task:
    library: str
    build: Callable
    train: Callable
    score: Callable
    primary: str  # the dev metric the sweep selects on
    save: Callable = lambda model, out: model.save_pretrained(str(out))
    details: Callable[[Recipe], dict] = lambda recipe: {}  # what finetune.json records beside the scores


TASK_TABLE: dict[str, Task] = {
    "embed": Task("sentence-transformers", _build_embed, _train_embed, _score_embed, "ndcg@10"),
    "sparse": Task("sentence-transformers (SparseEncoder)", _build_sparse, _train_sparse, _score_sparse, "ndcg@10"),
    "rerank": Task("sentence-transformers (CrossEncoder)", _build_rerank, _train_rerank, _score_rerank, "ndcg@10"),
    "colbert": Task("pylate", _build_colbert, _train_colbert, _score_colbert, "ndcg@10"),
    "classify": Task("transformers (Trainer)", _build_classify, _train_classify, _score_classify, "accuracy",
                     save=_save_classify),
    "generate": Task("transformers (Trainer), sacrebleu", sft.build, sft.train, sft.score, "chrf", save=sft.save,
                     details=sft.details),
}


def primary_metric(task: str, data: RetrievalData | LabelledData) -> str:
    if task == "classify" and data.regression:
        return "pearson"
    return TASK_TABLE[task].primary
