"""Downstream fine-tuning of either member, or both, on the field's own libraries.

    from twofold.finetune import finetune, finetune_pair, recipe_for, load_data
    data = load_data("embed", "stdlib")
    result = finetune("embed", "runs/demo/export/encoder", data, "runs/ft/embed",
                      recipe_for("embed", batch_size=64, learning_rates=(3e-5, 8e-5)))
    result.test, result.before        # held-out nDCG@10 after / before

Tasks (`TASKS`): embed (Sentence Transformers), sparse (SparseEncoder), rerank (CrossEncoder),
colbert (PyLate), classify (transformers Trainer), generate (transformers Trainer on prompt ->
completion, scored with sacrebleu; `finetune_generate` is the one-call form); defaults are the published Ettin recipes
(`twofold.finetune.recipes`). The output directory loads unchanged in its library.
"""

from twofold.finetune.datasets import LabelledData, RetrievalData, RetrievalSet, load_labelled, load_retrieval
from twofold.finetune.generate import finetune_generate
from twofold.finetune.generation_data import Example, GenerationData, load_generation, stdlib_docstrings
from twofold.finetune.inputs import BaseModel, resolve, resolve_pair
from twofold.finetune.recipes import DEFAULTS, TASKS, Recipe, parse_learning_rates, recipe_for
from twofold.finetune.run import RECORD, RESULTS, FinetuneResult, finetune, finetune_pair, load_data, prepare

__all__ = ["DEFAULTS", "RECORD", "RESULTS", "TASKS", "BaseModel", "Example", "FinetuneResult", "GenerationData",
           "LabelledData", "Recipe", "RetrievalData", "RetrievalSet", "finetune", "finetune_generate", "finetune_pair",
           "load_data", "load_generation", "load_labelled", "load_retrieval", "parse_learning_rates", "prepare",
           "recipe_for", "resolve", "resolve_pair", "stdlib_docstrings"]
