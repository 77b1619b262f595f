"""Evaluation v1: language modelling, retrieval, classification and samples for both members.

    from twofold.eval import evaluate_pair, Settings, save_results
    results = evaluate_pair(encoder, decoder, tokenizer, settings=Settings(seed=0))
    save_results(results, "runs/demo/eval")

Tasks: see `TASKS` (`lm`, `code-search`, `package-classification`, `samples` built in;
`classification` and `beir` on the user's files). Tables and plots: `twofold.report`.
"""

from twofold.eval.results import LOWER_IS_BETTER, METRIC_RANGES, Result, load_results, save_results
from twofold.eval.settings import QUICK, Settings
from twofold.eval.tasks import BUILTIN_TASKS, TASKS, check_tasks, evaluate, evaluate_pair

__all__ = ["BUILTIN_TASKS", "LOWER_IS_BETTER", "METRIC_RANGES", "QUICK", "TASKS", "Result", "Settings",
           "check_tasks", "evaluate", "evaluate_pair", "load_results", "save_results"]
